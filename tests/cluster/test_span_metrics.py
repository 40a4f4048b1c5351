"""Jaeger's Monitor tab (SPM) and the service map, checked from the files.

The chain in the cluster: Jaeger's traces pipeline feeds the `spanmetrics`
connector; a metrics pipeline sends its output to a `prometheus` exporter;
Prometheus scrapes that port on Jaeger's pod; Jaeger's query service reads the
series back from that Prometheus (a `metric_backends` entry) for the Monitor
tab and /api/metrics/*. Each link is checked against the file at its other
end: ports against the Deployment and the scrape job, the backend URL against
the Prometheus Service, the metric names Jaeger's reader asks for against the
names the exporter writes.

Upstream facts used here, read in jaegertracing/jaeger at tag v2.20.0 (the
pinned image): the reader's naming rules and PromQL in
internal/storage/metricstore/prometheus/options.go and metricstore/reader.go;
the wiring in cmd/jaeger/config-spm.yaml and docker-compose/monitor/. The
connector's default namespace `traces.span.metrics` is in
opentelemetry-collector-contrib connector/spanmetricsconnector/factory.go.
"""

from __future__ import annotations

import http.server
import re
import threading
from urllib.parse import urlparse

import pytest
import yaml
from cluster_support import (
    GRAFANA,
    addon_objects,
    find,
    grafana_datasources,
    pod_templates,
    relabel,
    sanitize_label_name,
    service_port,
    unescape_provisioning,
)
from test_cluster_observability import GRAFANA_INTERVALS, prometheus_binary, query, running_prometheus

# spanmetricsconnector's DefaultNamespace and its histogram's default unit.
CONNECTOR_DEFAULT_NAMESPACE = "traces.span.metrics"
CONNECTOR_DEFAULT_UNIT = "ms"
# Jaeger's Prometheus reader at v2.20.0 (options.go): defaults of its metric_backends settings.
READER_DEFAULTS = {"metric_namespace": "traces_span_metrics", "latency_unit": "ms",
                   "normalize_calls": False, "normalize_duration": False}
# The unit words the OpenTelemetry Prometheus naming appends (reader.go's shortToLongName).
UNIT_WORDS = {"ms": "milliseconds", "s": "seconds"}
# The connector's default dimensions as Prometheus labels (dots become underscores).
SPAN_METRIC_LABELS = {"service_name", "span_name", "span_kind", "status_code"}
SPAN_METRICS_MARK = "(span metrics)"


def jaeger_config() -> dict:
    return yaml.safe_load(find(addon_objects(), "ConfigMap", "jaeger")["data"]["config.yaml"])


def prometheus_config() -> dict:
    return yaml.safe_load(find(addon_objects(), "ConfigMap", "prometheus")["data"]["prometheus.yml"])


def prometheus_jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}


def component_type(component_id: str) -> str:
    """An OpenTelemetry Collector component id is `type` or `type/name`."""
    return component_id.split("/", 1)[0]


def ids_of_type(section: dict, kind: str) -> list[str]:
    return [cid for cid in section if component_type(cid) == kind]


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert m, f"not a duration: {duration!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def spanmetrics_wiring() -> tuple[str, str, dict, dict]:
    """(connector id, exporter id, connector config, exporter config) of the span-metrics chain."""
    config = jaeger_config()
    (connector_id,) = ids_of_type(config.get("connectors", {}), "spanmetrics")
    (exporter_id,) = ids_of_type(config.get("exporters", {}), "prometheus")
    return (connector_id, exporter_id, config["connectors"][connector_id] or {},
            config["exporters"][exporter_id] or {})


def jaeger_pod() -> dict:
    return find(addon_objects(), "Deployment", "jaeger")["spec"]["template"]


# --- the collector pipelines ------------------------------------------------------------------------

def test_the_traces_pipeline_feeds_the_connector_and_a_metrics_pipeline_exports_it():
    config = jaeger_config()
    connector, exporter, _, _ = spanmetrics_wiring()
    pipelines = config["service"]["pipelines"]
    traces = [p for pid, p in pipelines.items() if component_type(pid) == "traces"]
    metrics = [p for pid, p in pipelines.items() if component_type(pid) == "metrics"]
    # Every received span is stored and counted.
    assert any(connector in p["exporters"] and "jaeger_storage_exporter" in p["exporters"] for p in traces)
    assert any(connector in p["receivers"] and exporter in p["exporters"] for p in metrics)
    # Nothing else feeds the exporter: the Monitor tab's series are the connector's alone.
    assert all(p["receivers"] == [connector] for p in metrics if exporter in p["exporters"])


def test_span_metrics_reach_prometheus_within_half_a_minute():
    """One connector flush plus one scrape: the Monitor tab and `make verify` see a page soon."""
    _, _, connector, _ = spanmetrics_wiring()
    flush = seconds(connector.get("metrics_flush_interval", "60s"))
    job = prometheus_jobs()["jaeger-span-metrics"]
    scrape = seconds(job.get("scrape_interval", prometheus_config()["global"]["scrape_interval"]))
    assert flush + scrape <= 30, (flush, scrape)


# --- Prometheus scrapes both of Jaeger's metrics ports ---------------------------------------------------

def keeps(job: dict, labels: dict[str, str]) -> bool:
    """Whether `job`'s keep and drop rules let a target with these discovery labels through (its
    other rules rename labels and drop nothing)."""
    rules = [r for r in job.get("relabel_configs", []) if r.get("action") in ("keep", "drop")]
    return relabel(rules, labels) is not None


def discovered_port_targets(namespace_names: list[str] | None) -> list[tuple[str, dict]]:
    """What Kubernetes pod discovery (role: pod) offers: one target per declared container port,
    with the pod's labels and annotations, in the namespaces the job watches."""
    targets = []
    for namespace, template in pod_templates(addon_objects()):
        if namespace_names and namespace not in namespace_names:
            continue
        meta = template["metadata"]
        base = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_phase": "Running"}
        base |= {f"__meta_kubernetes_pod_label_{sanitize_label_name(k)}": v
                 for k, v in meta.get("labels", {}).items()}
        base |= {f"__meta_kubernetes_pod_annotation_{sanitize_label_name(k)}": v
                 for k, v in meta.get("annotations", {}).items()}
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                labels = base | {"__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                                 "__meta_kubernetes_pod_container_port_number": str(port["containerPort"])}
                targets.append((meta["labels"].get("app", ""), labels))
    return targets


def test_prometheus_scrapes_the_exporter_port_on_jaegers_pod_and_nothing_else():
    _, _, _, exporter = spanmetrics_wiring()
    job = prometheus_jobs()["jaeger-span-metrics"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    names = sd.get("namespaces", {}).get("names")
    kept = [(app, int(labels["__meta_kubernetes_pod_container_port_number"]))
            for app, labels in discovered_port_targets(names) if keeps(job, labels)]
    # role: pod addresses each target at the pod IP and that container port.
    assert kept == [("jaeger", port_of(exporter["endpoint"]))]


def test_jaegers_own_metrics_stay_scraped_by_the_pod_job():
    config = jaeger_config()
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    own_port = reader["pull"]["exporter"]["prometheus"]["port"]
    annotations = jaeger_pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == own_port
    _, _, _, exporter = spanmetrics_wiring()
    assert port_of(exporter["endpoint"]) != own_port
    pods_job = prometheus_jobs()["kubernetes-pods"]
    assert any(keeps(pods_job, labels) for app, labels in discovered_port_targets(None) if app == "jaeger")


# --- the query service reads them back ----------------------------------------------------------------

def metrics_backend() -> dict:
    config = jaeger_config()
    name = config["extensions"]["jaeger_query"]["storage"]["metrics"]
    return config["extensions"]["jaeger_storage"]["metric_backends"][name]["prometheus"]


def test_the_query_service_reads_from_the_prometheus_that_scrapes_the_exporter():
    url = urlparse(metrics_backend()["endpoint"])
    assert url.scheme == "http" and url.path in ("", "/")
    objects = addon_objects()
    service, port = service_port(objects, url.hostname, url.port or 80)
    # That Service leads to the Prometheus whose configuration holds the span-metrics job.
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"
                     and service["spec"]["selector"].items() <= o["spec"]["template"]["metadata"]["labels"].items()]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert port["targetPort"] in {p["containerPort"] for p in container["ports"]}
    config_maps = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    assert config_maps == {"prometheus"}
    assert "jaeger-span-metrics" in prometheus_jobs()


def exported_names() -> dict[str, str]:
    """The connector's metrics as the Prometheus exporter writes them: the namespace with
    dots as underscores, `_total` on the counter, the unit word on the histogram."""
    _, _, connector, exporter = spanmetrics_wiring()
    # Other settings would drop the suffixes or keep the dots the names below assume.
    assert exporter.get("add_metric_suffixes", True) is True
    assert exporter.get("translation_strategy", "UnderscoreEscapingWithSuffixes") == "UnderscoreEscapingWithSuffixes"
    namespace = re.sub(r"[^A-Za-z0-9_]", "_", connector.get("namespace", CONNECTOR_DEFAULT_NAMESPACE))
    # The exporter's own `namespace` setting would prefix every name.
    assert not exporter.get("namespace"), "Jaeger's metric_namespace would have to carry the prefix"
    unit = connector.get("histogram", {}).get("unit", CONNECTOR_DEFAULT_UNIT)
    return {"calls": f"{namespace}_calls_total", "duration": f"{namespace}_duration_{UNIT_WORDS[unit]}",
            "unit": unit}


def reader_names() -> dict[str, str]:
    """The names Jaeger's reader queries (reader.go buildFullCallsMetricName and
    buildFullLatencyMetricName at v2.20.0)."""
    backend = READER_DEFAULTS | metrics_backend()
    calls = f"{backend['metric_namespace']}_calls"
    duration = f"{backend['metric_namespace']}_duration"
    if backend["normalize_calls"]:
        calls += "_total"
    if backend["normalize_duration"]:
        duration += "_" + UNIT_WORDS[backend["latency_unit"]]
    return {"calls": calls, "duration": duration, "unit": backend["latency_unit"]}


def test_jaeger_asks_for_the_metric_names_the_exporter_writes():
    assert reader_names() == exported_names()


# --- Grafana: span metrics from a span, and the service map ---------------------------------------------

def span_metric_queries() -> list[tuple[str, str]]:
    link = grafana_datasources()["jaeger"]["jsonData"]["tracesToMetrics"]
    return [(q["name"], unescape_provisioning(q["query"])) for q in link["queries"]
            if q["name"].endswith(SPAN_METRICS_MARK)]


def test_traces_to_metrics_has_span_metric_queries_by_service_and_operation():
    queries = span_metric_queries()
    assert len(queries) >= 3
    names = exported_names()
    allowed_metrics = {names["calls"], names["duration"] + "_bucket"}
    for name, query in queries:
        metrics = set(re.findall(r"\b(traces_\w+|\w+_total|\w+_bucket)\b", query))
        assert metrics and metrics <= allowed_metrics, (name, metrics)
        assert "$__tags" not in query, f"{name}: $__tags holds Istio's label names"
        labels = {m for m in re.findall(r"(\w+)\s*=~?\s*\"", query)}
        labels |= {label.strip() for group in re.findall(r"by \(([^)]*)\)", query) for label in group.split(",")}
        assert labels <= SPAN_METRIC_LABELS | {"le"}, (name, labels)
        assert "by (service_name" in query, f"{name}: one series per service"
    by_operation = [q for _, q in queries if 'span_name="${__span.name}"' in q]
    assert len(by_operation) >= 2, "queries narrowed to the span's operation"
    assert any('status_code="STATUS_CODE_ERROR"' in q for q in by_operation)
    assert any("histogram_quantile(0.95" in q for q in by_operation)
    assert any("span_name" not in q and 'span_kind="SPAN_KIND_SERVER"' in q for _, q in queries), \
        "a per-service overview, as on the Monitor tab"


def test_the_dashboard_has_a_service_map_from_jaegers_dependencies():
    board = yaml.safe_load((GRAFANA / "dashboards" / "demo-app.json").read_text())
    (panel,) = [p for p in board["panels"] if p["type"] == "nodeGraph"]
    assert "Service map" in panel["title"]
    assert grafana_datasources()[panel["datasource"]["uid"]]["type"] == "jaeger"
    (target,) = panel["targets"]
    # Grafana's Jaeger data source (pkg/tsdb/jaeger/querydata.go) answers this query type from
    # Jaeger's /api/dependencies with a nodes and an edges frame.
    assert target["queryType"] == "dependencyGraph"
    # The memory store answers /api/dependencies from the traces it holds (GetDependencies in
    # internal/storage/v2/memory/memory.go at v2.20.0); some other stores need a separate job.
    config = jaeger_config()
    store = config["extensions"]["jaeger_query"]["storage"]["traces"]
    assert set(config["extensions"]["jaeger_storage"]["backends"][store]) == {"memory"}


# --- against a real Prometheus --------------------------------------------------------------------------
# A stand-in for the exporter serves span metrics in the Prometheus text format under the names
# and labels derived above, with the labels the collector's Prometheus exporter adds to every
# series (job and instance from the span's resource, otel_scope_name); a real Prometheus
# (Debian package `prometheus`) scrapes it with the cluster job's name and label handling. Then
# the Grafana span-metrics queries must find what a page would have produced.

OPERATION = "GET /slow-endpoint"
BUCKETS = (10, 100, 1000, 5000)  # ms, a few of the connector's default bounds
# (service.name, span.name, span.kind, status.code, calls per scrape, latency in ms)
SPANS = [
    ("front-end", "GET /slow", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET", 2, 3000),
    ("business-logic", OPERATION, "SPAN_KIND_SERVER", "STATUS_CODE_UNSET", 3, 2900),
    ("business-logic", OPERATION, "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", 1, 50),
    ("business-logic", "SELECT catalog_items", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET", 3, 5),
    ("front-end.demo-app", "front-end.demo-app.svc.cluster.local:8080/*", "SPAN_KIND_SERVER",
     "STATUS_CODE_UNSET", 2, 3010),
]


class SpanMetricsStandIn:
    """Serves cumulative span metrics that grow by one batch of SPANS per scrape."""

    def __init__(self):
        names = exported_names()
        self.scrapes = 0
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                stand_in.scrapes += 1
                body = stand_in.exposition(names, stand_in.scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.target = f"127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def exposition(names: dict[str, str], n: int) -> str:
        calls, duration = names["calls"], names["duration"]
        lines = [f"# HELP {calls} Number of spans", f"# TYPE {calls} counter",
                 f"# HELP {duration} Duration of spans", f"# TYPE {duration} histogram"]
        for service, span, kind, status, count, latency in SPANS:
            labels = (f'service_name="{service}",span_name="{span}",span_kind="{kind}",status_code="{status}",'
                      f'otel_scope_name="spanmetricsconnector",job="{service}",instance="jaeger"')
            total = count * n
            lines.append(f"{calls}{{{labels}}} {total}")
            for bound in BUCKETS:
                lines.append(f'{duration}_bucket{{{labels},le="{bound}"}} {total if latency <= bound else 0}')
            lines.append(f'{duration}_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(f"{duration}_sum{{{labels}}} {total * latency}")
            lines.append(f"{duration}_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def span_metrics_prometheus(tmp_path_factory):
    binary = prometheus_binary()
    stand_in = SpanMetricsStandIn()
    cluster_job = prometheus_jobs()["jaeger-span-metrics"]
    # The cluster job with a static target in place of Kubernetes discovery (Debian builds
    # Prometheus without it; the relabel rules are checked above) and a 1 s interval.
    job = {"job_name": cluster_job["job_name"], "honor_labels": cluster_job.get("honor_labels", False),
           "static_configs": [{"targets": [stand_in.target]}]}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}
    try:
        with running_prometheus(binary, tmp_path_factory.mktemp("span-metrics"), config, 1, lambda: None) as url:
            yield url
    finally:
        stand_in.close()


def test_the_grafana_span_metric_queries_find_the_spans_operation(span_metrics_prometheus):
    for name, expr in span_metric_queries():
        expr = expr.replace("${__span.name}", OPERATION)
        for variable, value in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, value)
        result = query(span_metrics_prometheus, expr)
        services = {r["metric"]["service_name"] for r in result}
        if "span_name" in expr:
            assert services == {"business-logic"}, (name, result)
        else:  # the overview: every service's server spans, the proxies' included
            assert services == {"front-end", "business-logic", "front-end.demo-app"}, (name, result)
