"""Static checks of the cluster files: the kind config, create-cluster.sh, the
Istio mesh configuration and the add-ons (manifests, Helm values, Grafana
provisioning). Nothing here needs a cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import alloy_syntax
import pytest
import yaml
from cluster_support import (
    ADDONS,
    ADDONS_NAMESPACE,
    APP_NAMESPACE,
    GRAFANA,
    KIND_CONFIG,
    REPO,
    SCRIPT,
    addon_objects,
    find,
    grafana_datasources,
    load_docs,
    manifest_files,
    pod_templates,
    script_setting,
    service_port,
    shared_tool,
    unavailable,
    unescape_provisioning,
)

DASHBOARD = GRAFANA / "dashboards" / "demo-app.json"
MESH_MARK = "Needs the mesh"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def jaeger_config() -> dict:
    return yaml.safe_load(find(addon_objects(), "ConfigMap", "jaeger")["data"]["config.yaml"])


def kiali_config() -> dict:
    return yaml.safe_load(find(addon_objects(), "ConfigMap", "kiali")["data"]["config.yaml"])


# --- schemas (make lint runs shellcheck, yamllint and the manifests' schema check) ---------------------------------------------------------------------------

def test_the_generated_grafana_configmaps_pass_the_schemas(tmp_path):
    """The ConfigMaps create-cluster.sh builds from istio-add-ons/grafana/ (same keys)."""
    def configmap(name, files):
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ADDONS_NAMESPACE},
                "data": {p.name: p.read_text() for p in files}}
    docs = [configmap("grafana-datasources", [GRAFANA / "datasources.yaml"]),
            configmap("grafana-dashboard-provider", [GRAFANA / "dashboard-provider.yaml"]),
            configmap("grafana-dashboards", sorted((GRAFANA / "dashboards").iterdir()))]
    out = tmp_path / "grafana-configmaps.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run([str(shared_tool("validate-manifests")), "-k", "1.36.0", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if not promtool:
        unavailable("promtool not installed (Debian package prometheus)")
    parsed = yaml.safe_load(find(addon_objects(), "ConfigMap", "prometheus")["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in parsed["scrape_configs"]}
    assert jobs["kubernetes-pods"]["kubernetes_sd_configs"] == [{"role": "pod"}]
    # Debian builds Prometheus without Kubernetes discovery: check everything
    # else (relabelling regexes included) with a static target in its place.
    for job in jobs.values():
        if job.pop("kubernetes_sd_configs", None):
            job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
        # scrape_protocols came with Prometheus 2.49; an older promtool (Debian
        # 12 has 2.42) would reject the field, so it is checked on its own in
        # test_prometheus_keeps_exemplars_and_asks_for_openmetrics_first.
        if promtool_version(promtool) < (2, 49):
            job.pop("scrape_protocols", None)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(parsed))
    result = subprocess.run([promtool, "check", "config", "--syntax-only", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_version(promtool: str) -> tuple[int, int]:
    out = subprocess.run([promtool, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    assert m, f"no version in {out!r}"
    return int(m.group(1)), int(m.group(2))


def test_prometheus_keeps_exemplars_and_asks_for_openmetrics_first():
    deployment = find(addon_objects(), "Deployment", "prometheus")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    features = {f for arg in container["args"] if arg.startswith("--enable-feature=")
                for f in arg.split("=", 1)[1].split(",")}
    assert "exemplar-storage" in features
    parsed = yaml.safe_load(find(addon_objects(), "ConfigMap", "prometheus")["data"]["prometheus.yml"])
    (pods,) = [job for job in parsed["scrape_configs"] if job["job_name"] == "kubernetes-pods"]
    protocols = pods["scrape_protocols"]
    # Exemplars travel only in OpenMetrics; protobuf would break Istio's metrics merging.
    assert protocols[0] == "OpenMetricsText1.0.0"
    assert "PrometheusProto" not in protocols
    known = {"OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "PrometheusText0.0.4"}
    assert set(protocols) <= known and len(protocols) == len(set(protocols))


# --- kind --------------------------------------------------------------------------------------------

def test_kind_config_points_containerd_at_the_hosts_toml_directory():
    patches = "\n".join(yaml.safe_load(KIND_CONFIG.read_text())["containerdConfigPatches"])
    assert re.search(r'config_path\s*=\s*"/etc/containerd/certs\.d"', patches)
    # create-cluster.sh writes the hosts.toml into that directory.
    assert "/etc/containerd/certs.d/localhost:${REG_PORT}" in SCRIPT.read_text()


# --- versions -------------------------------------------------------------------------------------------

def test_every_image_is_pinned_and_its_version_explained_in_a_comment():
    for path in manifest_files():
        comments = "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
        for obj in load_docs(path):
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                image = container["image"]
                name, _, tag = image.rpartition(":")
                assert name and tag and tag != "latest" and "/" not in tag, f"{path.name}: {image} not pinned"
                assert image in comments, f"{path.name}: say in a comment where {image} comes from"


def test_grafana_is_past_its_known_security_fixes():
    """CVE-2026-76154 affects Grafana up to 12.4.10, 13.0.8, 13.1.5 and 13.2.1."""
    [image] = [c["image"] for obj in load_docs(ADDONS / "grafana.yaml") if obj.get("kind") == "Deployment"
               for c in obj["spec"]["template"]["spec"]["containers"]]
    version = tuple(int(p) for p in image.rpartition(":")[2].split("."))
    fixed = {(12, 4): (12, 4, 11), (13, 0): (13, 0, 9), (13, 1): (13, 1, 6), (13, 2): (13, 2, 2)}
    assert version[:2] >= (13, 2) and version >= fixed.get(version[:2], (0,)), image


# Jaeger's v1 HTTP API, which Grafana's Jaeger data source calls, loses /api/services,
# /api/operations and the /api/traces search after this release (jaegertracing/jaeger#9260).
JAEGER_LAST_WITH_V1_SEARCH = (2, 20, 0)
# Grafana's experimental toggle that moves "Save & test" and the service and operation
# lists (not trace search) to Jaeger's /api/v3.
GRAFANA_JAEGER_GRPC_TOGGLE = "jaegerEnableGrpcEndpoint"


def container_env(path: Path, deployment: str) -> dict[str, str]:
    (container,) = find(load_docs(path), "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def image_version(path: Path, deployment: str) -> tuple[int, ...]:
    (container,) = find(load_docs(path), "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return tuple(int(p) for p in container["image"].rpartition(":")[2].lstrip("v").split("."))


def grafana_feature_toggles() -> set[str]:
    """Toggles turned on through GF_FEATURE_TOGGLES_ENABLE (Grafana's [feature_toggles] enable,
    a comma- or space-separated list); the repository has no grafana.ini."""
    value = container_env(ADDONS / "grafana.yaml", "grafana").get("GF_FEATURE_TOGGLES_ENABLE", "")
    return set(re.split(r"[,\s]+", value.strip())) - {""}


def test_a_jaeger_without_the_v1_endpoints_comes_with_grafanas_grpc_toggle():
    """Past 2.20.0, Grafana's "Save & test" and its service list fail with 404 unless the
    toggle sends them to /api/v3."""
    jaeger = image_version(ADDONS / "jaeger.yaml", "jaeger")
    if jaeger > JAEGER_LAST_WITH_V1_SEARCH:
        assert GRAFANA_JAEGER_GRPC_TOGGLE in grafana_feature_toggles(), (
            f"Jaeger {jaeger} has no /api/services (jaegertracing/jaeger#9260): enable "
            f"{GRAFANA_JAEGER_GRPC_TOGGLE} in grafana.yaml's GF_FEATURE_TOGGLES_ENABLE")


def test_jaeger_keeps_the_v1_search_grafanas_trace_search_calls():
    """Grafana's toggle does not cover trace search (still GET /api/traces?service=...), so
    Jaeger stays at or before 2.20.0 until a Grafana release searches through /api/v3."""
    jaeger = image_version(ADDONS / "jaeger.yaml", "jaeger")
    assert jaeger <= JAEGER_LAST_WITH_V1_SEARCH, (
        f"Jaeger {jaeger} removed GET /api/traces search (jaegertracing/jaeger#9260), which Grafana's "
        "Jaeger search calls even with " + GRAFANA_JAEGER_GRPC_TOGGLE)


# What Istio 1.31's own samples/addons ship (istio/istio release-1.31, samples/addons/):
# the add-ons here are never older.
ISTIO_131_SAMPLES = {("prometheus.yaml", "prometheus"): (3, 10, 0), ("kiali.yaml", "kiali"): (2, 27, 0)}


@pytest.mark.parametrize("file, deployment", sorted(ISTIO_131_SAMPLES))
def test_addons_are_not_older_than_istio_131_samples(file, deployment):
    assert image_version(ADDONS / file, deployment) >= ISTIO_131_SAMPLES[file, deployment]


def test_every_image_version_is_written_once():
    """The image tag is the one home of an add-on's version: no label or setting repeats it."""
    for path in manifest_files():
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for obj in load_docs(path):
            spec = obj.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                tag = container["image"].rpartition(":")[2]
                assert len(re.findall(rf"(?<![\w.]){re.escape(tag)}(?![\w.])", code)) == 1, \
                    f"{path.name}: version {tag} is written more than once"


# --- Istio mesh configuration ----------------------------------------------------------------------

def istio_operator() -> dict:
    (doc,) = load_docs(ADDONS / "istio-operator.yaml")
    return doc


def test_mesh_traces_to_the_zipkin_service_with_b3_and_w3c_propagation():
    operator = istio_operator()
    assert operator["kind"] == "IstioOperator" and operator["spec"]["profile"] == "default"
    mesh = operator["spec"]["meshConfig"]
    assert mesh["enableTracing"] is True
    (provider,) = [p for p in mesh["extensionProviders"] if p["name"] == "zipkin"]
    zipkin = provider["zipkin"]
    assert zipkin["service"] == "zipkin.istio-system.svc.cluster.local"
    assert zipkin["traceContextOption"] == "USE_B3_WITH_W3C_PROPAGATION"
    # The provider's service and port are a Service that the add-ons install.
    service, port = service_port(addon_objects(), zipkin["service"], zipkin["port"])
    assert service["spec"]["selector"] == {"app": "jaeger"}
    assert port["targetPort"] == 9411
    assert mesh["defaultProviders"]["tracing"] == ["zipkin"]


def test_telemetry_samples_every_request_into_the_zipkin_provider():
    telemetry = find(addon_objects(), "Telemetry", "mesh-default")
    assert telemetry["metadata"]["namespace"] == "istio-system"
    (tracing,) = telemetry["spec"]["tracing"]
    assert tracing["randomSamplingPercentage"] == 100
    providers = {p["name"] for p in istio_operator()["spec"]["meshConfig"]["extensionProviders"]}
    assert [p["name"] for p in tracing["providers"]] == ["zipkin"] and "zipkin" in providers


# --- add-on wiring ----------------------------------------------------------------------------------

CONTRACT_SERVICES = {  # name -> ports the contract names
    "tracing": {80}, "zipkin": {9411}, "jaeger-collector": {9411, 4317, 4318},
    "grafana": {3000}, "kiali": {20001}, "prometheus": {9090},
}


def test_the_contract_services_exist_in_istio_system():
    objects = addon_objects()
    for name, ports in CONTRACT_SERVICES.items():
        service = find(objects, "Service", name)
        assert service["metadata"]["namespace"] == ADDONS_NAMESPACE
        assert ports <= {p["port"] for p in service["spec"]["ports"]}, name


def test_every_service_selects_a_pod_and_targets_a_port_it_declares():
    objects = addon_objects()
    templates = pod_templates(objects)
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matches = [t for ns, t in templates if ns == service["metadata"]["namespace"]
                   and selector.items() <= t["metadata"]["labels"].items()]
        assert matches, f"Service {service['metadata']['name']} selects no pod"
        container_ports = {p["containerPort"] for t in matches for c in t["spec"]["containers"]
                           for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, (service["metadata"]["name"], port)
            assert port["name"].split("-")[0] in ("http", "grpc", "tcp") or port.get("appProtocol"), port


def test_addon_pods_stay_out_of_the_mesh():
    for _, template in pod_templates(addon_objects()):
        assert template["metadata"]["labels"].get("sidecar.istio.io/inject") == "false"


def test_jaeger_serves_the_ui_under_jaeger_and_receives_zipkin():
    config = jaeger_config()
    query = config["extensions"]["jaeger_query"]
    assert query["base_path"] == "/jaeger"
    assert config["receivers"]["zipkin"]["endpoint"].endswith(":9411")
    assert "zipkin" in config["service"]["pipelines"]["traces"]["receivers"]
    _, http = service_port(addon_objects(), "tracing.istio-system", 80)
    assert query["http"]["endpoint"].endswith(f":{http['targetPort']}")
    _, grpc = service_port(addon_objects(), "tracing.istio-system", 16685)
    assert query["grpc"]["endpoint"].endswith(f":{grpc['targetPort']}")


def test_kiali_serves_under_kiali_and_reads_traces_from_jaeger():
    config = kiali_config()
    objects = addon_objects()
    assert config["server"]["web_root"] == "/kiali"
    tracing = config["external_services"]["tracing"]
    assert tracing["enabled"] is True and tracing["provider"] == "jaeger"
    url = urlparse(tracing["internal_url"])
    service, port = service_port(objects, url.hostname, url.port or 80)
    assert service["metadata"]["name"] == "tracing"
    # Jaeger v2 serves gRPC on the query port named grpc-*; the path is Jaeger's base path.
    assert tracing["use_grpc"] is port["name"].startswith("grpc")
    assert url.path == jaeger_config()["extensions"]["jaeger_query"]["base_path"]
    assert tracing["external_url"] == "http://localhost:8080/jaeger"
    prometheus = urlparse(config["external_services"]["prometheus"]["url"])
    service_port(objects, prometheus.hostname, prometheus.port)
    deployment = find(objects, "Deployment", "kiali")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/kiali/healthz"


def test_grafana_serves_from_the_grafana_sub_path_with_the_generated_configmaps():
    deployment = find(addon_objects(), "Deployment", "grafana")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["GF_SERVER_SERVE_FROM_SUB_PATH"] == "true"
    assert urlparse(env["GF_SERVER_ROOT_URL"]).path == "/grafana/"
    mounted = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    script = SCRIPT.read_text()
    for name, source in (("grafana-datasources", "datasources.yaml"),
                         ("grafana-dashboard-provider", "dashboard-provider.yaml"),
                         ("grafana-dashboards", "dashboards")):
        assert name in mounted
        assert re.search(rf"create configmap {name}\s*\\?\s*\n?\s*--from-file=[^\n]*{source}", script), name
    provider = yaml.safe_load((GRAFANA / "dashboard-provider.yaml").read_text())
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert provider["providers"][0]["options"]["path"] in mounts


def test_grafana_data_sources_have_the_contract_uids_and_reach_the_addon_services():
    sources = grafana_datasources()
    assert set(sources) == {"prometheus", "loki", "jaeger"}
    assert {s["type"] for s in sources.values()} == {"prometheus", "loki", "jaeger"}
    objects = addon_objects()
    for uid in ("prometheus", "jaeger"):
        url = urlparse(sources[uid]["url"])
        service_port(objects, url.hostname, url.port or 80)
    assert urlparse(sources["jaeger"]["url"]).path == jaeger_config()["extensions"]["jaeger_query"]["base_path"]
    # Loki comes from its Helm chart: single binary, no gateway, so the Service `loki` serves 3100.
    assert urlparse(sources["loki"]["url"]).netloc == "loki.istio-system:3100"


def test_loki_link_goes_to_jaeger_and_jaeger_links_back_to_loki():
    sources = grafana_datasources()
    (field,) = sources["loki"]["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == "jaeger"
    assert unescape_provisioning(field["url"]) == "${__value.raw}"
    assert field["matcherRegex"] == r"trace_id\W+([0-9a-f]{32})"
    logs = sources["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert logs["datasourceUid"] == "loki" and logs["filterByTraceID"] is True
    assert "${__trace.traceId}" in unescape_provisioning(logs["query"])


# Span tags that name where a span was made: Istio's proxies set istio.canonical_service and
# istio.namespace on theirs (istio/istio pilot/pkg/networking/core/tracing.go); the services
# carry k8s.namespace.name in their resource (the chart's OTEL_RESOURCE_ATTRIBUTES).
SPAN_TAGS = {"istio.canonical_service", "istio.namespace", "k8s.namespace.name"}
# Labels of Istio's standard metrics that name the receiving side.
ISTIO_DESTINATION_LABELS = {"destination_canonical_service", "destination_workload_namespace", "destination_app",
                            "destination_workload", "destination_service_name", "destination_version"}
ISTIO_METRICS = ("istio_requests_total", "istio_request_duration_milliseconds_bucket")


def traces_to_metrics() -> dict:
    return grafana_datasources()["jaeger"]["jsonData"]["tracesToMetrics"]


# Queries on Istio's metrics end with this in their name; the others read Jaeger's span
# metrics (tests/cluster/test_span_metrics.py checks those).
MESH_QUERY_MARK = "(mesh)"
# An operation name as the front-end's sidecar reports it, for Grafana's ${__span.name}.
SPAN_NAME = "front-end.demo-app.svc.cluster.local:8080/*"


def metrics_link_queries(tags: str) -> list[tuple[str, str]]:
    """(name, PromQL) of each traces-to-metrics query as Grafana runs it: `$__tags` replaced
    by `tags` (the span's mapped tags as label matchers, empty when it has none) and
    `${__span.name}` by a span's operation name."""
    return [(q["name"], unescape_provisioning(q["query"]).replace("$__tags", tags)
             .replace("${__span.name}", SPAN_NAME).replace("$__rate_interval", "1m"))
            for q in traces_to_metrics()["queries"]]


def test_traces_to_metrics_queries_istio_metrics_in_prometheus_by_the_spans_service():
    link = traces_to_metrics()
    assert grafana_datasources()[link["datasourceUid"]]["type"] == "prometheus"
    tags = {t["key"]: t["value"] for t in link["tags"]}
    assert tags["istio.canonical_service"] == "destination_canonical_service"
    assert set(tags) <= SPAN_TAGS and set(tags.values()) <= ISTIO_DESTINATION_LABELS
    names = [q["name"] for q in link["queries"]]
    assert len(set(names)) == len(names)
    mesh = [q for q in link["queries"] if q["name"].endswith(MESH_QUERY_MARK)]
    assert len(mesh) >= 2
    for name, query in ((q["name"], unescape_provisioning(q["query"])) for q in mesh):
        assert "$__tags" in query, f"{name}: the span's tags must narrow the query"
        assert any(metric in query for metric in ISTIO_METRICS), name
        assert query.count('reporter=~"source|waypoint"') == query.count("istio_"), f"{name}: each request counted once, in both mesh modes"
        assert "by (destination_canonical_service" in query, f"{name}: one series per service"
    assert any('response_code=~"5.."' in q["query"] for q in mesh), "an error-rate query"
    assert not any("istio_" in q["query"] for q in link["queries"] if q not in mesh), \
        f"mark the Istio queries {MESH_QUERY_MARK}"
    # The services really carry the namespace tag the mapping reads.
    for chart in ("business-logic/templates/_deployment.tpl", "front-end/templates/deployment.yaml"):
        assert "k8s.namespace.name=$(POD_NAMESPACE)" in (REPO / "helm/app/charts" / chart).read_text()


@pytest.mark.parametrize("tags", ['destination_canonical_service="front-end", '
                                  'destination_workload_namespace="demo-app"', ""],
                         ids=["sidecar span", "span without mapped tags"])
def test_traces_to_metrics_queries_are_valid_promql(tmp_path, tags):
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None)
    if not promtool:
        unavailable("promtool not installed (Debian package prometheus)")
    queries = metrics_link_queries(tags)
    assert not [name for name, expr in queries if "$" in expr], "a Grafana variable left in the PromQL"
    rules = {"groups": [{"name": "traces-to-metrics", "rules": [
        {"record": f"check:{i}", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_exemplars_link_to_the_jaeger_data_source():
    sources = grafana_datasources()
    (destination,) = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # The label the services put on their exemplars (service-kit/src/middleware/metrics.rs;
    # test_cluster_observability reads it back from their OpenMetrics).
    assert destination["name"] == "trace_id"
    assert sources[destination["datasourceUid"]]["type"] == "jaeger"
    assert "url" not in destination, "an internal link needs no URL"


def test_provisioning_files_escape_every_grafana_variable():
    """An unescaped ${__value.raw} or $__tags would be replaced by an empty environment variable."""
    text = (GRAFANA / "datasources.yaml").read_text()
    assert not re.search(r"(?<!\$)\$\{?__", text)


# --- the dashboard -----------------------------------------------------------------------------------

def test_dashboard_has_the_demo_app_uid_and_known_data_sources():
    board = dashboard()
    assert board["uid"] == "demo-app"
    uids = set(grafana_datasources())
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == panel["datasource"]["uid"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_mesh_queries_count_each_request_once_in_both_mesh_modes():
    """Sidecar mode: the caller's sidecar or gateway reports (source); ambient mode: the waypoint
    (waypoint), ztunnel reports TCP only. reporter="destination" alone shows nothing for HTTP in
    ambient mode, and both reporters together count a sidecar-mode request twice."""
    exprs = [t["expr"] for p in dashboard_panels() for t in p["targets"] if "istio_" in t.get("expr", "")]
    assert len(exprs) >= 4
    for expr in exprs:
        assert expr.count('reporter=~"source|waypoint"') == expr.count("istio_"), expr


def test_dashboard_panels_do_not_overlap_on_the_grid():
    # Grafana stacks overlapping panels in an order of its own; rows are panels too.
    cells = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_rate_errors_percentiles_slow_versus_fast_and_logs():
    panels = dashboard_panels()
    exprs = [t["expr"] for p in panels if p["datasource"]["uid"] == "prometheus" for t in p["targets"]]
    assert any("rate(http_requests_total" in e and "sum by (service, endpoint)" in e for e in exprs)
    assert any('status=~"5.."' in e for e in exprs)
    for q in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({q}," in e and "http_requests_duration_seconds_bucket" in e
                   and "endpoint" in e for e in exprs), q
    assert any("Slow vs fast" in p["title"] for p in panels)
    # The app's logs; the gateway's access log is another panel (test_access_logs).
    (logs,) = [p for p in panels if p["title"] == "Logs (demo-app)"]
    assert logs["datasource"]["uid"] == "loki"
    assert f'namespace="{APP_NAMESPACE}"' in logs["targets"][0]["expr"]


# The services' histograms whose buckets carry exemplars (service-kit's metrics middleware).
EXEMPLAR_BUCKETS = ("http_requests_duration_seconds_bucket", "db_query_duration_seconds_bucket")


def test_the_latency_panels_show_exemplars():
    latency = [p for p in dashboard_panels() if p["type"] == "timeseries"
               and any(h in t["expr"] for h in EXEMPLAR_BUCKETS for t in p["targets"])]
    assert len(latency) >= 3
    for panel in latency:
        with_exemplars = [t for t in panel["targets"] if t.get("exemplar") is True]
        # One query per panel: its siblings share the selector, so more would draw every dot twice.
        assert len(with_exemplars) == 1, panel["title"]
        assert with_exemplars[0]["datasource"]["uid"] == "prometheus"
    others = [p for p in dashboard_panels() if p not in latency]
    assert not any(t.get("exemplar") for p in others for t in p["targets"])


def test_only_panels_marked_as_needing_the_mesh_use_istio_metrics():
    for panel in dashboard_panels():
        uses_mesh = any("istio_" in t.get("expr", "") for t in panel["targets"])
        assert uses_mesh == panel.get("description", "").startswith(MESH_MARK), panel["title"]


# --- Loki and Alloy Helm values ------------------------------------------------------------------------

ALLOY_RELABELS = {
    "namespace": "__meta_kubernetes_namespace",
    "pod": "__meta_kubernetes_pod_name",
    "container": "__meta_kubernetes_pod_container_name",
    "app": "__meta_kubernetes_pod_label_app",
}


def test_alloy_ships_pod_logs_to_loki_with_the_contract_labels():
    path = ADDONS / "alloy-values.yaml"
    values = yaml.safe_load(path.read_text())
    assert values["controller"]["type"] == "daemonset"
    config = alloy_syntax.parse(values["alloy"]["configMap"]["content"])
    for name, label in (("discovery.kubernetes", "pods"), ("discovery.relabel", "pods"),
                        ("loki.source.kubernetes", "pods"), ("loki.write", "default")):
        config.child(name, label)
    # The labels copied as they are (the gateway label, with its own regex, is in test_access_logs).
    rules = [r.attrs for r in config.child("discovery.relabel", "pods").children("rule")]
    copied = {r["target_label"]: r["source_labels"][0] for r in rules
              if len(r["source_labels"]) == 1 and set(r) == {"source_labels", "target_label"}}
    assert copied == ALLOY_RELABELS
    assert config.child("loki.write", "default").child("endpoint").attrs["url"] == \
        "http://loki.istio-system:3100/loki/api/v1/push"
    # One Alloy per node: each tails only its own node's pods.
    (selectors,) = config.child("discovery.kubernetes", "pods").children("selectors")
    node = alloy_syntax.Call("sys.env", ("HOSTNAME",))
    assert selectors.attrs["field"] == alloy_syntax.Concat(("spec.nodeName=", node))


def test_the_log_query_selects_on_labels_alloy_sets():
    query = unescape_provisioning(grafana_datasources()["jaeger"]["jsonData"]["tracesToLogsV2"]["query"])
    selector = re.match(r"\{([^}]*)\}", query).group(1)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', selector))
    assert set(labels) <= set(ALLOY_RELABELS)
    assert labels["namespace"] == APP_NAMESPACE == script_setting("APP_NAMESPACE")


# --- Istio's dashboards in Grafana, linked from Kiali ----------------------------------------------

ISTIO_DASHBOARD_TITLES = {"Istio Mesh Dashboard", "Istio Service Dashboard", "Istio Workload Dashboard",
                          "Istio Control Plane Dashboard", "Istio Ztunnel Dashboard"}


def grafana_pod() -> dict:
    return find(addon_objects(), "Deployment", "grafana")["spec"]["template"]["spec"]


def test_grafana_provisions_istios_dashboards_in_their_own_folder():
    providers = {p["name"]: p for p in yaml.safe_load((GRAFANA / "dashboard-provider.yaml").read_text())["providers"]}
    istio = providers["istio"]
    assert istio["folder"] == "Istio" and istio["folder"] != providers["demo-app"]["folder"]
    pod = grafana_pod()
    volumes = {v["name"]: v.get("configMap", {}).get("name") for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes[mounts[istio["options"]["path"]]] == "istio-dashboards"
    assert re.search(r"create configmap istio-dashboards --from-file=", SCRIPT.read_text())


def test_istios_dashboards_find_the_provisioned_prometheus():
    """Their panels use the `datasource` variable (type datasource, query prometheus: the
    default Prometheus data source) and the Reporter variable names the data source `Prometheus`."""
    prometheus = [s for s in grafana_datasources().values() if s["type"] == "prometheus"]
    assert len(prometheus) == 1
    assert prometheus[0]["name"] == "Prometheus" and prometheus[0]["isDefault"] is True


def test_kiali_links_to_istios_dashboards_where_grafana_is_served():
    grafana = kiali_config()["external_services"]["grafana"]
    assert grafana["enabled"] is True
    env = {e["name"]: e.get("value") for e in grafana_pod()["containers"][0]["env"]}
    root = urlparse(env["GF_SERVER_ROOT_URL"])
    # In-cluster: the grafana Service's port, under Grafana's sub-path.
    internal = urlparse(grafana["internal_url"])
    service, port = service_port(addon_objects(), internal.hostname, internal.port or 80)
    assert service["metadata"]["name"] == "grafana" and port["targetPort"] == 3000
    assert internal.path == root.path.rstrip("/")
    assert grafana["health_check_url"] == grafana["internal_url"] + "/api/health"
    # In the browser: Grafana's dashboard paths start with its sub-path, which Kiali joins to
    # external_url, so external_url is root_url without the path: the gateway's origin, the
    # same as Jaeger's link.
    external = urlparse(grafana["external_url"])
    assert (external.scheme, external.netloc, external.path) == (root.scheme, root.netloc, "")
    assert external.netloc == urlparse(kiali_config()["external_services"]["tracing"]["external_url"]).netloc
    # Istio's dashboards, by title; the links select the provisioned Prometheus.
    dashboards = {d["name"]: d.get("variables", {}) for d in grafana["dashboards"]}
    assert set(dashboards) == ISTIO_DASHBOARD_TITLES
    assert dashboards["Istio Service Dashboard"] == {"namespace": "var-namespace", "service": "var-service",
                                                     "datasource": "var-datasource"}
    assert dashboards["Istio Workload Dashboard"] == {"namespace": "var-namespace", "workload": "var-workload",
                                                      "datasource": "var-datasource"}
    assert grafana_datasources()[grafana["datasource_uid"]]["type"] == "prometheus"
    assert "Istio" not in dashboard()["title"], "Kiali finds dashboards by title: the app's must not match"
