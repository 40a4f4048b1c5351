"""The rendered chart is wired together: Services find their pods, routes reach
existing Services, identities in the AuthorizationPolicies are the ones the
workloads run as, both services export OTLP to Jaeger's OTLP/HTTP receiver past
their sidecars (Zipkin, the mesh's, one value away) with the pod named on every
span, and every container runs with the restricted security context. Each check also runs on a broken manifest
to show that it can fail."""

from __future__ import annotations

import re
import warnings
from urllib.parse import urlsplit

import pytest
import yaml
from chart_wiring import (GATEWAY_API, allowed_callers, attached_to_a_gateway, ambient_policy_problems, authorization_problems,
                          bound_services, env_map, httproute_problems, image_problems, ingress_principals,
                          kubernetes_env, load_dir, load_docs, mesh_zipkin_provider, of_kind, otlp_endpoint_problems,
                          otlp_http_receivers, pod_hygiene_problems, pod_templates, resolve_route,
                          resource_attribute_problems, security_context_problems, service_index,
                          service_port_problems, service_selector_problems, tracing_endpoint_problems,
                          virtualservice_problems, waypoint_principals, waypoint_problems, waypoints,
                          workload_identities)
from chart_render import CHART, IN_CI, NAMESPACE, REPO, mode_args, render, render_ok
from test_chart_render import validate

ADDONS = REPO / "istio-add-ons"
MESH_CONFIG = ADDONS / "istio-operator.yaml"
JAEGER = ADDONS / "jaeger.yaml"
# The two services' containers (business-logic's canary v2 runs a container of the same name).
APP_CONTAINERS = ("front-end", "business-logic")
INGRESS_GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
# The Gateway API gateway Istio deploys for the chart's Gateway `demo-gateway`.
GATEWAY_API_GATEWAY = f"cluster.local/ns/{NAMESPACE}/sa/demo-gateway-istio"
ISTIO_MODE = CHART / "ci" / "istio-gateway-values.yaml"
# Third-party images the chart may run, with a pinned tag.
THIRD_PARTY_IMAGES = {"postgres": "the official PostgreSQL image"}
# The add-on Services the chart routes to, as the project contract names them.
# Used only where istio-add-ons/ does not (yet) define one; CI requires the real manifest.
CONTRACT_ADDON_SERVICES = {
    ("istio-system", "tracing"): [80],
    ("istio-system", "zipkin"): [9411],
    ("istio-system", "grafana"): [3000],
    ("istio-system", "kiali"): [20001],
    ("istio-system", "prometheus"): [9090],
}


def addon_services() -> dict:
    """Services that istio-add-ons/ installs, keyed (namespace, name)."""
    return service_index(load_dir(ADDONS), "istio-system") if ADDONS.is_dir() else {}


def known_services(docs: list[dict]) -> dict:
    """The chart's Services, the add-ons' Services, and (outside CI) the contract's
    add-on Services that istio-add-ons/ does not define yet."""
    known = {**addon_services(), **service_index(docs, NAMESPACE)}
    missing = {k: v for k, v in CONTRACT_ADDON_SERVICES.items() if k not in known}
    if missing and not IN_CI:
        warnings.warn(f"istio-add-ons/ defines no Service {sorted(missing)}; using the contract's names")
        for (ns, name), ports in missing.items():
            known[(ns, name)] = {"kind": "Service", "metadata": {"name": name, "namespace": ns},
                                 "spec": {"ports": [{"port": p} for p in ports]}}
    return known


# --------------------------------------------------------------------------
# the checks on the chart, per values scenario
# --------------------------------------------------------------------------
def test_every_service_selects_a_pod_template(manifests):
    assert service_selector_problems(manifests, NAMESPACE) == []


def test_every_service_port_names_its_protocol(manifests):
    assert service_port_problems(manifests) == []


def test_every_virtualservice_destination_is_an_existing_service(manifests):
    assert virtualservice_problems(manifests, NAMESPACE, known_services(manifests)) == []


def test_the_addon_services_the_routes_need_are_in_istio_add_ons():
    """The routes' add-on destinations are real manifests in istio-add-ons/ (in CI a must)."""
    defined = addon_services()
    missing = sorted(k for k in CONTRACT_ADDON_SERVICES if k not in defined)
    if missing and not IN_CI:
        pytest.skip(f"istio-add-ons/ does not define {missing} yet (required when CI=true)")
    assert missing == [], f"istio-add-ons/ defines no Service {missing}"
    for key, ports in CONTRACT_ADDON_SERVICES.items():
        have = [p.get("port") for p in defined[key]["spec"].get("ports", [])]
        assert set(ports) <= set(have), f"{key}: ports {have}, the routes use {ports}"


def test_images_come_from_the_local_registry(manifests):
    assert image_problems(manifests, NAMESPACE, THIRD_PARTY_IMAGES) == []
    images = {c["name"]: c["image"] for _, _, t in pod_templates(manifests, NAMESPACE)
              for c in t["spec"]["containers"]}
    assert images["front-end"].startswith("localhost:5001/front-end:")
    assert images["business-logic"].startswith("localhost:5001/business-logic:")


def test_tracing_endpoint_is_the_meshs_zipkin_service(manifests):
    if not MESH_CONFIG.exists():
        if IN_CI:
            pytest.fail(f"{MESH_CONFIG} is missing")
        pytest.skip(f"{MESH_CONFIG} not written yet")
    provider = mesh_zipkin_provider(load_docs(MESH_CONFIG.read_text()))
    assert provider, f"{MESH_CONFIG} has no zipkin extension provider"
    assert tracing_endpoint_problems(manifests, NAMESPACE, provider) == []
    with_endpoint = [c["name"] for _, _, t in pod_templates(manifests, NAMESPACE)
                     for c in t["spec"]["containers"] if "OTEL_EXPORTER_ZIPKIN_ENDPOINT" in env_map(c)]
    assert sorted(set(with_endpoint)) == ["business-logic", "front-end"]  # v2 of the canary too


def jaeger_otlp_receivers() -> set[tuple[str, str, int]]:
    """The Service ports of istio-add-ons/jaeger.yaml that reach Jaeger's OTLP/HTTP receiver."""
    receivers = otlp_http_receivers(load_docs(JAEGER.read_text()))
    assert receivers, f"{JAEGER}: no Service port reaches the OTLP/HTTP receiver of Jaeger's traces pipeline"
    return receivers


def app_pods(docs: list[dict]) -> list[tuple[dict, dict, dict]]:
    """(workload, pod template, container) of front-end and business-logic (v1, and v2 with the canary)."""
    return [(owner, tpl, c) for owner, _, tpl in pod_templates(docs, NAMESPACE)
            for c in tpl["spec"]["containers"] if c["name"] in APP_CONTAINERS]


def test_both_services_export_otlp_to_jaegers_otlp_http_receiver(manifests):
    """By default both services export OTLP, to a Service port of istio-add-ons/jaeger.yaml that
    reaches the OTLP/HTTP receiver of Jaeger's traces pipeline (not gRPC's 4317, not Zipkin's)."""
    assert otlp_endpoint_problems(manifests, NAMESPACE, jaeger_otlp_receivers()) == []
    exporters = {(owner["metadata"]["name"], c["name"]): env_map(c)["OTEL_TRACES_EXPORTER"]["value"]
                 for owner, _, c in app_pods(manifests)}
    assert {c for _, c in exporters} == set(APP_CONTAINERS), exporters
    assert set(exporters.values()) == {"otlp"}, exporters


def test_the_sidecars_let_the_otlp_exports_through(manifests):
    """Each pod excludes its OTLP endpoint's port, a port of Jaeger's OTLP/HTTP receiver, from
    sidecar interception: span exports make no traces or Kiali edges of their own."""
    receiver_ports = {port for _, _, port in jaeger_otlp_receivers()}
    for owner, tpl, c in app_pods(manifests):
        port = urlsplit(env_map(c)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]).port
        excluded = tpl["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"]
        assert port in receiver_ports and str(port) in excluded.split(","), (owner["metadata"]["name"], excluded)


def test_every_span_resource_names_the_pod_through_the_downward_api(manifests):
    """OTEL_RESOURCE_ATTRIBUTES, as the kubelet expands it for a pod, names the pod's namespace,
    name and node (and for the front-end its version label; business-logic's version comes from
    SERVICE_VERSION): every $(VAR) in it is a fieldRef declared before it."""
    assert resource_attribute_problems(manifests, NAMESPACE) == []
    for owner, tpl, c in app_pods(manifests):
        labels = tpl["metadata"]["labels"]
        pod = {"metadata.name": f"{owner['metadata']['name']}-5d9c7b8f4-x2x7q", "metadata.namespace": NAMESPACE,
               "spec.nodeName": "demo-control-plane", **{f"metadata.labels['{k}']": v for k, v in labels.items()}}
        env = kubernetes_env(c, pod)
        attributes = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        want = {"k8s.namespace.name": NAMESPACE, "k8s.pod.name": pod["metadata.name"],
                "k8s.node.name": "demo-control-plane"}
        if c["name"] == "front-end":
            want["service.version"] = labels["version"]
        else:
            assert env["SERVICE_VERSION"] == labels["version"]
        assert attributes == want, owner["metadata"]["name"]


def test_every_httproute_is_attached_to_the_gateway_and_reaches_services(manifests):
    assert httproute_problems(manifests, NAMESPACE, known_services(manifests)) == []


def addon_principals() -> set[str]:
    """Identities the add-ons in istio-add-ons/ run as (Prometheus scrapes the services)."""
    return {f"cluster.local/ns/{ns}/sa/{sa}" for ns, sa in workload_identities(load_dir(ADDONS), "istio-system")}


def test_authorization_principals_are_the_workloads_service_accounts(manifests):
    gateways = ingress_principals(manifests, NAMESPACE)
    assert len(gateways) == 1, gateways
    external = gateways | waypoint_principals(manifests, NAMESPACE) | addon_principals()
    assert authorization_problems(manifests, NAMESPACE, external) == []


def test_every_waypoint_binding_names_a_waypoint_of_the_right_shape(manifests):
    assert waypoint_problems(manifests, NAMESPACE) == []


def test_ambient_policies_sit_where_they_can_be_enforced(scenario, manifests):
    """Ambient: a waypoint; L7 rules never in a ztunnel (selector) policy; targetRefs name a
    waypoint-bound Service; the pods behind a waypoint admit its identity. Sidecar mode: no
    waypoint, no binding, no targetRefs."""
    if scenario.endswith("/ambient"):
        assert waypoints(manifests, NAMESPACE)
        assert ambient_policy_problems(manifests, NAMESPACE) == []
    else:
        assert waypoints(manifests, NAMESPACE) == {} and bound_services(manifests, NAMESPACE) == {}
        assert not [ap for ap in of_kind(manifests, "AuthorizationPolicy") if ap["spec"].get("targetRefs")]


def test_exports_bypass_the_sidecar_on_the_collector_ports(manifests):
    """Both pods exclude the ports of the collector endpoints they are given (and no other)
    from sidecar interception, so span exports become no traces or Kiali edges of their own."""
    for name in ("front-end", "business-logic"):
        [(_, _, pod)] = [(o, n, t) for o, n, t in pod_templates(manifests, NAMESPACE) if o["metadata"]["name"] == name]
        env = env_map(pod["spec"]["containers"][0])
        want = {urlsplit(env[var]["value"]).port
                for var in ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")}
        annotation = pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"]
        assert {int(p) for p in annotation.split(",")} == want, name


def test_every_container_has_the_restricted_security_context(manifests):
    assert security_context_problems(manifests, NAMESPACE) == []


def test_every_pod_has_labels_identity_probes_and_resources(manifests):
    assert pod_hygiene_problems(manifests, NAMESPACE) == []


# --------------------------------------------------------------------------
# the chart's specific wiring
# --------------------------------------------------------------------------
def containers(docs: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for _, _, t in pod_templates(docs, NAMESPACE) for c in t["spec"]["containers"]}


def env_value(container: dict, name: str) -> str:
    return env_map(container)[name]["value"]


@pytest.mark.parametrize("values, gateway", [(None, GATEWAY_API_GATEWAY), (ISTIO_MODE, INGRESS_GATEWAY)],
                         ids=["gateway-api", "istio-gateway"])
def test_front_end_admits_exactly_the_gateway_of_the_chosen_ingress(values, gateway):
    docs = load_docs(render_ok(CHART, values))
    assert ingress_principals(docs, NAMESPACE) == {gateway}
    assert allowed_callers(docs, NAMESPACE)["front-end"] == {gateway}


def test_collector_ports_follow_the_endpoints():
    docs = load_docs(render_ok(CHART, None, "--set-string", "global.tracing.zipkinEndpoint=http://zipkin.obs:19411/api/v2/spans",
                               "--set-string", "global.tracing.exporter=otlp"))
    for _, _, pod in pod_templates(docs, NAMESPACE):
        annotations = pod["metadata"].get("annotations") or {}
        if pod["spec"]["containers"][0]["name"] in ("front-end", "business-logic"):
            assert annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] == "19411,4318"
            assert env_map(pod["spec"]["containers"][0])["OTEL_TRACES_EXPORTER"]["value"] == "otlp"
    result = render(CHART, None, "--set-string", "global.tracing.zipkinEndpoint=http://zipkin.obs/api/v2/spans")
    assert result.returncode != 0 and "zipkinEndpoint" in result.stderr


def test_collector_ports_follow_an_overridden_otlp_endpoint():
    endpoint = "http://otel-collector.observability:14318"
    manifests = render_ok(CHART, None, "--set-string", f"global.tracing.otlpEndpoint={endpoint}")
    docs = load_docs(manifests)
    assert len(app_pods(docs)) == 2
    for _, tpl, c in app_pods(docs):
        assert env_map(c)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == endpoint
        assert tpl["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"] == "9411,14318"
    result = validate(manifests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zipkin_stays_selectable_with_the_meshs_zipkin_service():
    manifests = render_ok(CHART, None, "--set-string", "global.tracing.exporter=zipkin")
    docs = load_docs(manifests)
    assert {env_map(c)["OTEL_TRACES_EXPORTER"]["value"] for _, _, c in app_pods(docs)} == {"zipkin"}
    provider = mesh_zipkin_provider(load_docs(MESH_CONFIG.read_text()))
    assert provider and tracing_endpoint_problems(docs, NAMESPACE, provider) == []
    for _, tpl, c in app_pods(docs):
        port = urlsplit(env_map(c)["OTEL_EXPORTER_ZIPKIN_ENDPOINT"]["value"]).port
        assert str(port) in tpl["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"].split(",")
    result = validate(manifests)
    assert result.returncode == 0, result.stdout + result.stderr


FRONT_END = f"cluster.local/ns/{NAMESPACE}/sa/front-end"
BUSINESS_LOGIC = f"cluster.local/ns/{NAMESPACE}/sa/business-logic"
WAYPOINT = f"cluster.local/ns/{NAMESPACE}/sa/waypoint"
PROMETHEUS = "cluster.local/ns/istio-system/sa/prometheus"
# What front-end asks of business-logic (contract/src/routes.rs, business_logic::*_ENDPOINT).
BUSINESS_LOGIC_CALLS = {"methods": ["GET"], "paths": ["/fast-endpoint", "/slow-endpoint"]}


def contract_business_logic_paths() -> list[str]:
    """The endpoints front-end calls: FAST_ENDPOINT and SLOW_ENDPOINT of contract::routes::business_logic."""
    source = (REPO / "contract/src/routes.rs").read_text()
    return [re.search(rf'pub const {name}: &str = "([^"]+)";', source)[1] for name in ("FAST_ENDPOINT", "SLOW_ENDPOINT")]


def policy(docs: list[dict], name: str) -> dict:
    [ap] = [a for a in of_kind(docs, "AuthorizationPolicy") if a["metadata"]["name"] == name]
    return ap["spec"]


def test_the_l7_rule_names_exactly_what_front_end_calls():
    assert BUSINESS_LOGIC_CALLS["paths"] == contract_business_logic_paths()
    front_end = (REPO / "front-end/src/backend.rs").read_text()
    assert "use contract::routes::business_logic::{FAST_ENDPOINT, SLOW_ENDPOINT};" in front_end


def test_sidecar_mode_only_the_gateway_reaches_front_end_only_front_end_reaches_business_logic():
    docs = load_docs(render_ok(CHART))
    callers = allowed_callers(docs, NAMESPACE)
    assert callers == {"front-end": {GATEWAY_API_GATEWAY}, "business-logic": {FRONT_END}, "postgres": {BUSINESS_LOGIC}}
    # business-logic's sidecar checks the method and path too.
    assert policy(docs, "business-logic")["rules"][0]["to"] == [{"operation": BUSINESS_LOGIC_CALLS}]
    [pa] = of_kind(docs, "PeerAuthentication")
    assert pa["spec"]["mtls"]["mode"] == "STRICT" and "selector" not in pa["spec"]
    hosts = {dr["spec"]["host"]: dr["spec"]["trafficPolicy"]["tls"]["mode"] for dr in of_kind(docs, "DestinationRule")}
    assert hosts == {f"{s}.{NAMESPACE}.svc.cluster.local": "ISTIO_MUTUAL"
                     for s in ("front-end", "business-logic", "business-logic-v1", "postgres")}


def test_ambient_mode_ztunnel_checks_identities_and_the_waypoint_checks_front_ends_calls():
    docs = load_docs(render_ok(CHART, CHART / "ci" / "canary-values.yaml", *mode_args("ambient")))
    callers = allowed_callers(docs, NAMESPACE)
    services = ("business-logic", "business-logic-v1", "business-logic-v2")
    assert callers == {"front-end": {GATEWAY_API_GATEWAY, PROMETHEUS}, "business-logic": {WAYPOINT, PROMETHEUS},
                       "postgres": {BUSINESS_LOGIC}, **{f"Service/{s}": {FRONT_END} for s in services}}
    # ztunnel: identities and the port, nothing it cannot see.
    assert policy(docs, "business-logic")["rules"][0]["to"] == [{"operation": {"ports": ["8080"]}}]
    for name in ("front-end", "business-logic"):
        assert policy(docs, name)["rules"][-1] == {"from": [{"source": {"principals": [PROMETHEUS]}}],
                                                  "to": [{"operation": {"ports": ["8080"]}}]}
    # The waypoint: front-end's original identity, the methods and paths, on every business-logic Service.
    l7 = policy(docs, "business-logic-l7")
    assert "selector" not in l7
    assert l7["targetRefs"] == [{"group": "", "kind": "Service", "name": s} for s in services]
    assert l7["rules"] == [{"from": [{"source": {"principals": [FRONT_END]}}],
                            "to": [{"operation": BUSINESS_LOGIC_CALLS}]}]
    assert bound_services(docs, NAMESPACE) == {(NAMESPACE, s): "waypoint" for s in services}
    # Same namespace-wide STRICT mTLS (ztunnel enforces it); the DestinationRules keep only the
    # HTTP pool (HBONE is mTLS anyway), and nothing for postgres (TCP, no pool to tune).
    [pa] = of_kind(docs, "PeerAuthentication")
    assert pa["spec"] == {"mtls": {"mode": "STRICT"}}
    pools = {dr["spec"]["host"].split(".")[0]: dr["spec"]["trafficPolicy"] for dr in of_kind(docs, "DestinationRule")}
    assert set(pools) == {"front-end", *services}
    assert all(p == {"connectionPool": {"http": {"idleTimeout": "30s"}}} for p in pools.values()), pools


def test_in_ambient_mode_the_prometheus_of_istio_add_ons_may_scrape_where_the_pods_say():
    """No metrics merging without a sidecar: Prometheus (istio-add-ons/prometheus.yaml) scrapes each
    annotated pod through ztunnel, as its own identity, on the pod's prometheus.io/port."""
    addons = load_dir(ADDONS)
    [prometheus] = [d for d in of_kind(addons, "Deployment") if d["metadata"]["name"] == "prometheus"]
    identity = f"cluster.local/ns/{prometheus['metadata']['namespace']}/sa/" \
               f"{prometheus['spec']['template']['spec']['serviceAccountName']}"
    assert identity == PROMETHEUS
    # That identity exists in ambient mode only if the pod is in the mesh: create-cluster.sh labels
    # it so in ambient mode (tests/cluster/test_cluster_script.py, leaving ambient mode).
    docs = load_docs(render_ok(CHART, CHART / "ci" / "canary-values.yaml", *mode_args("ambient")))
    scraped = {tpl["metadata"]["labels"]["app"]: tpl["metadata"]["annotations"]["prometheus.io/port"]
               for _, _, tpl in pod_templates(docs, NAMESPACE)
               if tpl["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"}
    assert set(scraped) == {"front-end", "business-logic"}
    for app, port in scraped.items():
        rules = [r for r in policy(docs, app)["rules"] if r["from"][0]["source"]["principals"] == [identity]]
        assert rules == [{"from": [{"source": {"principals": [identity]}}], "to": [{"operation": {"ports": [port]}}]}]
    off = load_docs(render_ok(CHART, None, *mode_args("ambient"), "--set", "mesh.metricsScraper="))
    assert PROMETHEUS not in set().union(*allowed_callers(off, NAMESPACE).values())
    sidecar = load_docs(render_ok(CHART))  # merged metrics on the sidecar's port, outside the policies
    assert PROMETHEUS not in set().union(*allowed_callers(sidecar, NAMESPACE).values())


def test_ambient_mode_deploys_one_waypoint_for_business_logic_only():
    docs = load_docs(render_ok(CHART, None, *mode_args("ambient")))
    [(key, gateway)] = waypoints(docs, NAMESPACE).items()
    assert key == (NAMESPACE, "waypoint")
    assert gateway["apiVersion"] == f"{GATEWAY_API}/v1"
    assert gateway["metadata"]["labels"]["istio.io/waypoint-for"] == "service"
    # Its pods get these labels, not the Gateway's: no app name for Istio to name its spans after.
    infra = gateway["spec"]["infrastructure"]["labels"]
    assert not {"app", "app.kubernetes.io/name"} & infra.keys(), infra
    # front-end (called by the ingress gateway, itself an L7 proxy) and postgres (TCP) are not bound.
    assert set(bound_services(docs, NAMESPACE)) == {(NAMESPACE, "business-logic"), (NAMESPACE, "business-logic-v1")}
    # The other name follows the value everywhere.
    renamed = load_docs(render_ok(CHART, None, *mode_args("ambient"), "--set", "mesh.waypoint.name=bl-waypoint"))
    assert set(waypoints(renamed, NAMESPACE)) == {(NAMESPACE, "bl-waypoint")}
    assert set(bound_services(renamed, NAMESPACE).values()) == {"bl-waypoint"}
    assert allowed_callers(renamed, NAMESPACE)["business-logic"] == {f"cluster.local/ns/{NAMESPACE}/sa/bl-waypoint",
                                                                   PROMETHEUS}
    assert ambient_policy_problems(renamed, NAMESPACE) == []


def test_the_ingress_gateway_pods_carry_no_app_name_of_the_chart():
    """Istio copies a Gateway's labels onto the pods it deploys unless spec.infrastructure.labels
    is set; app.kubernetes.io/name: app there would name the gateway's spans `app.<namespace>`."""
    docs = load_docs(render_ok(CHART))
    [gateway] = [g for g in of_kind(docs, "Gateway") if g["spec"]["gatewayClassName"] == "istio"]
    infra = gateway["spec"]["infrastructure"]["labels"]
    assert not {"app", "app.kubernetes.io/name"} & infra.keys(), infra


def test_services_have_the_contract_names_and_ports():
    docs = load_docs(render_ok(CHART))
    ports = {name_port["metadata"]["name"]: [(p["name"], p["port"]) for p in name_port["spec"]["ports"]]
             for name_port in of_kind(docs, "Service")}
    assert ports == {"front-end": [("http", 8080)], "business-logic": [("http", 8080)],
                     "business-logic-v1": [("http", 8080)], "postgres": [("tcp-postgres", 5432)]}
    accounts = sorted(sa["metadata"]["name"] for sa in of_kind(docs, "ServiceAccount"))
    assert accounts == ["business-logic", "front-end", "postgres"]


def test_gateway_api_ingress_matches_the_contract():
    docs = load_docs(render_ok(CHART))
    [gateway] = of_kind(docs, "Gateway")
    assert gateway["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway["spec"]["gatewayClassName"] == "istio"
    assert [(ln["name"], ln["port"], ln["protocol"]) for ln in gateway["spec"]["listeners"]] == [("http", 80, "HTTP")]
    assert not [v for v in of_kind(docs, "VirtualService") if v["spec"].get("gateways")]
    routes = ingress_routes(docs)
    assert {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in routes} == {
        (NAMESPACE, "front-end"), ("istio-system", f"{NAMESPACE}-dashboards")}
    assert resolve_route(routes, "/demo-app") == ("redirect", "/demo-app/")
    assert resolve_route(routes, "/demo-app/") == ("backend", (NAMESPACE, "front-end", 8080), "/")
    assert resolve_route(routes, "/demo-app/slow-page") == ("backend", (NAMESPACE, "front-end", 8080), "/slow-page")
    assert resolve_route(routes, "/jaeger/search") == ("backend", ("istio-system", "tracing", 80), "/jaeger/search")
    assert resolve_route(routes, "/grafana") == ("backend", ("istio-system", "grafana", 3000), "/grafana")
    assert resolve_route(routes, "/kiali/") == ("backend", ("istio-system", "kiali", 20001), "/kiali/")
    # Prometheus serves from `/`: the prefix is stripped (its links put it back).
    assert resolve_route(routes, "/prometheus") == ("backend", ("istio-system", "prometheus", 9090), "/")
    assert resolve_route(routes, "/prometheus/query") == ("backend", ("istio-system", "prometheus", 9090), "/query")
    assert resolve_route(routes, "/prometheusx") is None
    assert resolve_route(routes, "/demo-apps") is None and resolve_route(routes, "/") is None


def test_gateway_api_routes_follow_hosts_prefix_and_dashboards():
    docs = load_docs(render_ok(CHART, CHART / "ci" / "custom-values.yaml"))
    [route] = ingress_routes(docs)
    assert route["spec"]["hostnames"] == ["demo.example.test"]
    assert resolve_route([route], "/shop/fast-page") == ("backend", (NAMESPACE, "front-end", 8080), "/fast-page")
    [gateway] = of_kind(docs, "Gateway")
    [expr] = gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]["matchExpressions"]
    assert expr["values"] == [NAMESPACE]


def test_istio_ingress_matches_the_contract():
    docs = load_docs(render_ok(CHART, ISTIO_MODE))
    [gateway] = of_kind(docs, "Gateway")
    assert gateway["apiVersion"] == "networking.istio.io/v1"
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    assert gateway["spec"]["servers"][0]["port"]["number"] == 80
    assert ingress_routes(docs) == []
    [vs] = [v for v in of_kind(docs, "VirtualService") if v["spec"].get("gateways")]
    assert vs["spec"]["gateways"] == [gateway["metadata"]["name"]]
    routes = {}
    for http in vs["spec"]["http"]:
        for match in http["match"]:
            key = match["uri"].get("prefix") or match["uri"].get("exact")
            if "redirect" in http:
                routes[key] = ("redirect", http["redirect"]["uri"])
            else:
                dest = http["route"][0]["destination"]
                routes[key] = (dest["host"], dest["port"]["number"], (http.get("rewrite") or {}).get("uri"))
    assert routes == {
        "/demo-app": ("redirect", "/demo-app/"),
        "/demo-app/": (f"front-end.{NAMESPACE}.svc.cluster.local", 8080, "/"),
        "/jaeger": ("tracing.istio-system.svc.cluster.local", 80, None),
        "/grafana": ("grafana.istio-system.svc.cluster.local", 3000, None),
        "/kiali": ("kiali.istio-system.svc.cluster.local", 20001, None),
        # Exact and prefix-with-slash, both rewritten to `/`: /prometheusx stays unrouted.
        "/prometheus": ("prometheus.istio-system.svc.cluster.local", 9090, "/"),
        "/prometheus/": ("prometheus.istio-system.svc.cluster.local", 9090, "/"),
    }


def ingress_routes(docs: list[dict]) -> list[dict]:
    """The HTTPRoutes attached to a Gateway (the ingress), not to a Service (the mesh)."""
    return [r for r in of_kind(docs, "HTTPRoute") if attached_to_a_gateway(r)]


def business_logic_routes(docs: list[dict]) -> list[dict]:
    """Whatever routes calls to business-logic inside the mesh: HTTPRoutes on its Service,
    VirtualServices for its host."""
    host = f"business-logic.{NAMESPACE}.svc.cluster.local"
    return [r for r in of_kind(docs, "HTTPRoute")
            if {"group": "", "kind": "Service", "name": "business-logic", "port": 8080} in r["spec"]["parentRefs"]] + \
        [v for v in of_kind(docs, "VirtualService") if host in v["spec"]["hosts"]]


@pytest.mark.parametrize("values", [None, ISTIO_MODE], ids=["gateway-api", "istio-gateway"])
@pytest.mark.parametrize("mode", ["sidecar", "ambient"])
def test_calls_to_business_logic_go_through_one_httproute_on_its_service_whatever_the_ingress(values, mode):
    docs = load_docs(render_ok(CHART, values, *mode_args(mode)))
    [route] = business_logic_routes(docs)
    assert route["kind"] == "HTTPRoute" and route["metadata"]["namespace"] == NAMESPACE
    [rule] = route["spec"]["rules"]
    assert "matches" not in rule and rule["timeouts"] == {"request": "15s"}
    # Nothing routes business-logic with subsets any more: the versions are Services.
    assert not [dr for dr in of_kind(docs, "DestinationRule") if dr["spec"].get("subsets")]


def test_with_a_fault_one_virtualservice_replaces_the_httproute_in_sidecar_mode():
    docs = load_docs(render_ok(CHART, CHART / "ci" / "fault-injection-values.yaml"))
    [vs] = business_logic_routes(docs)
    assert vs["kind"] == "VirtualService" and "gateways" not in vs["spec"]  # the mesh: front-end's sidecar
    [http] = vs["spec"]["http"]
    assert http["timeout"] == "15s"
    assert [r["destination"]["host"] for r in http["route"]] == [f"business-logic-v1.{NAMESPACE}.svc.cluster.local"]


def test_front_end_env_points_at_business_logic_and_the_dashboards():
    docs = load_docs(render_ok(CHART))
    fe = containers(docs)["front-end"]
    url = urlsplit(env_value(fe, "BUSINESS_LOGIC_URL"))
    assert (url.hostname, url.port) == ("business-logic", 8080)
    assert env_value(fe, "JAEGER_UI_URL") == "http://localhost:8080/jaeger"
    assert env_value(fe, "GRAFANA_URL") == "http://localhost:8080/grafana"
    # The log links select this release's namespace, wherever it is installed.
    assert env_value(fe, "LOKI_SELECTOR") == f'{{namespace="{NAMESPACE}"}}'
    other = load_docs(render_ok(CHART, None, "--namespace", "shop", "--set-string", "front-end.grafanaUrl="))
    assert env_value(containers(other)["front-end"], "LOKI_SELECTOR") == '{namespace="shop"}'
    assert "GRAFANA_URL" not in env_map(containers(other)["front-end"])
    assert int(env_value(fe, "SLOW_PAGE_TIMEOUT_MS")) > int(env_value(containers(docs)["business-logic"],
                                                                      "SLOW_ENDPOINT_DELAY_MS"))


def test_grace_period_outlasts_the_services_own_shutdown_grace():
    docs = load_docs(render_ok(CHART))
    for owner, _, tpl in pod_templates(docs, NAMESPACE):
        for c in tpl["spec"]["containers"]:
            own = int(env_map(c).get("SHUTDOWN_GRACE_PERIOD_SECS", {"value": "0"})["value"])
            assert tpl["spec"]["terminationGracePeriodSeconds"] > own, owner["metadata"]["name"]


def test_business_logic_uses_postgres_through_the_secret():
    docs = load_docs(render_ok(CHART))
    bl = containers(docs)["business-logic"]
    env = [e["name"] for e in bl["env"]]
    url = env_value(bl, "DATABASE_URL")
    assert url.startswith("postgres://demo:$(POSTGRES_PASSWORD)@postgres:5432/demo")
    # $(VAR) expands only from variables defined earlier in the list.
    assert env.index("POSTGRES_PASSWORD") < env.index("DATABASE_URL")
    ref = env_map(bl)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    [secret] = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == ref["name"]]
    assert ref["key"] in secret["data"]
    pg = containers(docs)["postgres"]
    assert env_map(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert not any(m["mountPath"] == "/data" for m in bl["volumeMounts"])


def test_business_logic_uses_sqlite_in_an_emptydir_without_postgres():
    docs = load_docs(render_ok(CHART, CHART / "ci" / "postgres-disabled-values.yaml"))
    assert not [d for d in docs if d["metadata"]["name"] == "postgres"]
    bl = containers(docs)["business-logic"]
    assert env_value(bl, "DATABASE_URL") == "sqlite:///data/business-logic.db"
    assert "POSTGRES_PASSWORD" not in env_map(bl)
    assert {"mountPath": "/data", "name": "data"} in bl["volumeMounts"]


def test_postgres_keeps_its_data_in_a_volume_claim_subdirectory():
    docs = load_docs(render_ok(CHART))
    [sts] = of_kind(docs, "StatefulSet")
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    pg = sts["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in pg["volumeMounts"]}
    assert mounts["/var/lib/postgresql"] == "data"
    assert {"/var/run/postgresql", "/tmp"} <= mounts.keys()
    assert env_value(pg, "PGDATA").startswith("/var/lib/postgresql/") and env_value(pg, "PGDATA") != "/var/lib/postgresql"
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999


def test_fault_injection_is_off_by_default_and_both_faults_switch_on():
    def fault(docs):
        [vs] = [v for v in of_kind(docs, "VirtualService") if v["metadata"]["name"] == "business-logic"]
        return vs["spec"]["http"][0].get("fault")

    assert [v["metadata"]["name"] for v in of_kind(load_docs(render_ok(CHART)), "VirtualService")] == []
    on = fault(load_docs(render_ok(CHART, CHART / "ci" / "fault-injection-values.yaml")))
    assert on["delay"]["fixedDelay"] and on["delay"]["percentage"]["value"] > 0
    assert on["abort"]["httpStatus"] == 503 and on["abort"]["percentage"]["value"] > 0


# --------------------------------------------------------------------------
# each check catches a broken manifest
# --------------------------------------------------------------------------
def deployment(name="web", labels=None, container=None, sa="web", annotations=None, pod_sc=None):
    labels = labels if labels is not None else {"app": name, "version": "v1"}
    c = {"name": name, "image": f"localhost:5001/{name}:1.0",
         "ports": [{"name": "http", "containerPort": 8080}],
         "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
         "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}},
         "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                             "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
                             "seccompProfile": {"type": "RuntimeDefault"}}}
    c.update(container or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"template": {
                "metadata": {"labels": labels, "annotations": annotations if annotations is not None else {
                    "proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}},
                "spec": {"serviceAccountName": sa, "securityContext": pod_sc or {}, "containers": [c]}}}}


def service(name="web", selector=None, ports=None):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"selector": selector if selector is not None else {"app": name},
                     "ports": ports or [{"name": "http", "port": 8080}]}}


def account(name="web"):
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}}


def test_fixture_manifests_pass_every_check():
    docs = [deployment(), service(), account()]
    assert service_selector_problems(docs, NAMESPACE) == []
    assert service_port_problems(docs) == []
    assert image_problems(docs, NAMESPACE, {}) == []
    assert security_context_problems(docs, NAMESPACE) == []
    assert pod_hygiene_problems(docs, NAMESPACE) == []


def test_selector_check_finds_a_service_without_pods():
    docs = [deployment(), service(selector={"app": "wbe"})]
    assert len(service_selector_problems(docs, NAMESPACE)) == 1


def test_port_check_finds_an_unnamed_protocol():
    docs = [service(ports=[{"name": "web", "port": 80}, {"name": "postgres", "port": 5432},
                           {"name": "db", "port": 5433, "appProtocol": "tcp"}])]
    assert len(service_port_problems(docs)) == 2


def test_route_check_finds_missing_services_ports_and_gateways():
    vs = {"kind": "VirtualService", "metadata": {"name": "r", "namespace": NAMESPACE},
          "spec": {"hosts": ["*"], "gateways": ["nope"], "http": [
              {"route": [{"destination": {"host": "web", "port": {"number": 8080}}}]},
              {"route": [{"destination": {"host": "web.demo-app.svc.cluster.local", "port": {"number": 9999}}}]},
              {"route": [{"destination": {"host": "grafana.istio-system.svc.cluster.local", "port": {"number": 3000}}}]},
          ]}}
    docs = [service(), vs]
    problems = virtualservice_problems(docs, NAMESPACE, service_index(docs, NAMESPACE))
    assert len(problems) == 3, problems
    assert any("gateway nope" in p for p in problems)
    assert any("9999" in p for p in problems)
    assert any("grafana" in p for p in problems)


def test_image_check_finds_foreign_and_unpinned_images():
    docs = [deployment(name="a", container={"image": "docker.io/library/nginx:1.27"}),
            deployment(name="b", container={"image": "localhost:5001/b:latest"}),
            deployment(name="c", container={"image": "postgres"})]
    assert len(image_problems(docs, NAMESPACE, {"postgres": "pinned"})) == 3


def test_tracing_check_finds_a_wrong_collector():
    provider = mesh_zipkin_provider([{"kind": "IstioOperator", "spec": {"meshConfig": {"extensionProviders": [
        {"name": "zipkin", "zipkin": {"service": "zipkin.istio-system.svc.cluster.local", "port": 9411}}]}}}])
    good = deployment(container={"env": [{"name": "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                                          "value": "http://zipkin.istio-system:9411/api/v2/spans"}]})
    bad = deployment(name="x", container={"env": [{"name": "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                                                   "value": "http://jaeger.observability:9411/api/v2/spans"}]})
    local = deployment(name="y", container={"env": [{"name": "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
                                                     "value": "http://localhost:9411/api/v2/spans"}]})
    assert tracing_endpoint_problems([good], NAMESPACE, provider) == []
    assert len(tracing_endpoint_problems([bad, local], NAMESPACE, provider)) == 2


def test_otlp_receiver_lookup_follows_jaegers_config():
    docs = load_docs(JAEGER.read_text())
    receivers = otlp_http_receivers(docs)
    assert ("istio-system", "jaeger-collector", 4318) in receivers
    assert not [r for r in receivers if r[2] in (4317, 9411)], receivers  # gRPC and Zipkin are not it
    [cm] = of_kind(docs, "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "0.0.0.0:14318"
    cm["data"]["config.yaml"] = yaml.safe_dump(config)
    assert otlp_http_receivers(docs) == set()  # no Service port leads to 14318
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = "0.0.0.0:4318"
    config["service"]["pipelines"]["traces"]["receivers"] = ["zipkin"]
    cm["data"]["config.yaml"] = yaml.safe_dump(config)
    assert otlp_http_receivers(docs) == set()  # received, but in no pipeline


def test_otlp_check_finds_a_wrong_receiver():
    receivers = {("istio-system", "jaeger-collector", 4318)}

    def with_env(name, **env):
        return deployment(name=name, container={"env": [{"name": k, "value": v} for k, v in env.items()]})

    good = [with_env("a", OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger-collector.istio-system:4318"),
            with_env("b", OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger-collector.istio-system.svc.cluster.local:4318/"),
            with_env("c", OTEL_EXPORTER_OTLP_ENDPOINT="http://nowhere:1",
                     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://jaeger-collector.istio-system:4318/v1/traces")]
    bad = [with_env("grpc", OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger-collector.istio-system:4317"),
           with_env("zipkin", OTEL_EXPORTER_OTLP_ENDPOINT="http://zipkin.istio-system:4318"),
           with_env("tls", OTEL_EXPORTER_OTLP_ENDPOINT="https://jaeger-collector.istio-system:4318"),
           with_env("path", OTEL_EXPORTER_OTLP_ENDPOINT="http://jaeger-collector.istio-system:4318/v1/traces"),
           with_env("local", OTEL_EXPORTER_OTLP_ENDPOINT="http://localhost:4318"),
           with_env("full", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://jaeger-collector.istio-system:4318")]
    assert otlp_endpoint_problems(good, NAMESPACE, receivers) == []
    problems = otlp_endpoint_problems(bad, NAMESPACE, receivers)
    assert [p.split("/")[1].split(":")[0] for p in problems] == ["grpc", "zipkin", "tls", "path", "local", "full"], \
        problems


def test_resource_attribute_check_finds_late_unknown_and_plain_references():
    field = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    env = [{"name": "PLAIN", "value": "x"},
           {"name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": "k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME),a=$(PLAIN),novalue,b=$$(POD_NAME)"},
           {"name": "POD_NAME", **field}]
    late = deployment(container={"env": env})
    problems = resource_attribute_problems([late], NAMESPACE)
    assert len(problems) == 4, problems
    assert any("$(POD_NAME), declared after it" in p for p in problems)
    assert any("$(NODE_NAME), not declared" in p for p in problems)
    assert any("$(PLAIN)" in p and "downward API" in p for p in problems)
    assert any("'novalue'" in p for p in problems)
    # What the kubelet makes of it: the later variable stays as written, the escaped one loses a $.
    expanded = kubernetes_env(late["spec"]["template"]["spec"]["containers"][0], {"metadata.name": "web-1"})
    assert expanded["OTEL_RESOURCE_ATTRIBUTES"] == \
        "k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME),a=x,novalue,b=$(POD_NAME)"
    early = deployment(container={"env": [{"name": "POD_NAME", **field},
                                          {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.pod.name=$(POD_NAME)"}]})
    assert resource_attribute_problems([early], NAMESPACE) == []
    assert kubernetes_env(early["spec"]["template"]["spec"]["containers"][0],
                          {"metadata.name": "web-1"})["OTEL_RESOURCE_ATTRIBUTES"] == "k8s.pod.name=web-1"


def test_authorization_check_finds_unknown_principals_and_selectors():
    ap = {"kind": "AuthorizationPolicy", "metadata": {"name": "web", "namespace": NAMESPACE},
          "spec": {"selector": {"matchLabels": {"app": "wbe"}}, "action": "ALLOW", "rules": [{"from": [
              {"source": {"principals": [f"cluster.local/ns/{NAMESPACE}/sa/frontend",
                                         f"cluster.local/ns/{NAMESPACE}/sa/web", "spiffe://x"]}}]}]}}
    problems = authorization_problems([deployment(), account(), ap], NAMESPACE, set())
    assert len(problems) == 3, problems


def test_security_context_check_finds_each_missing_setting():
    loose = deployment(container={"securityContext": {"allowPrivilegeEscalation": True,
                                                      "capabilities": {"add": ["NET_ADMIN"]}}})
    problems = security_context_problems([loose], NAMESPACE)
    assert len(problems) == 6, problems
    pod_level = deployment(pod_sc={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                           container={"securityContext": {"allowPrivilegeEscalation": False,
                                                          "readOnlyRootFilesystem": True,
                                                          "capabilities": {"drop": ["ALL"]}}})
    assert security_context_problems([pod_level], NAMESPACE) == []


def test_hygiene_check_finds_missing_labels_identity_probes_and_limits():
    bare = deployment(labels={"app": "web"}, sa="default", annotations={},
                      container={"livenessProbe": None, "resources": {"requests": {"cpu": "1m"}}})
    problems = pod_hygiene_problems([bare, account()], NAMESPACE)
    assert len(problems) == 6, problems


def gateway_api_fixture():
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": NAMESPACE},
               "spec": {"gatewayClassName": "istio", "listeners": [
                   {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}

    def route(name, ns=NAMESPACE, parent=None, backend=None):
        return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"parentRefs": [parent or {"name": "gw", "namespace": NAMESPACE, "sectionName": "http"}],
                         "rules": [{"backendRefs": [backend or {"name": "web", "port": 8080}]}]}}
    return gateway, route


def test_httproute_check_finds_detached_routes_and_missing_backends():
    gateway, route = gateway_api_fixture()
    good = route("ok")
    docs = [gateway, service(), good,
            route("no-gateway", parent={"name": "nope"}),
            route("no-listener", parent={"name": "gw", "sectionName": "https"}),
            route("other-ns", ns="istio-system", parent={"name": "gw", "namespace": NAMESPACE},
                  backend={"name": "grafana", "port": 3000}),
            route("no-service", backend={"name": "wbe", "port": 8080}),
            route("no-port", backend={"name": "web", "port": 80}),
            route("cross-ns", backend={"name": "grafana", "namespace": "istio-system", "port": 3000})]
    grafana = {"kind": "Service", "metadata": {"name": "grafana", "namespace": "istio-system"},
               "spec": {"ports": [{"port": 3000}]}}
    known = {**service_index(docs, NAMESPACE), ("istio-system", "grafana"): grafana}
    problems = httproute_problems(docs, NAMESPACE, known)
    assert [p.split(":")[0] for p in problems] == [
        "HTTPRoute/no-gateway", "HTTPRoute/no-listener", "HTTPRoute/other-ns", "HTTPRoute/no-service",
        "HTTPRoute/no-port", "HTTPRoute/cross-ns"], problems
    assert httproute_problems([gateway, service(), good], NAMESPACE, known) == []


def test_httproute_check_accepts_a_selected_namespace_or_a_reference_grant():
    gateway, route = gateway_api_fixture()
    gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"] = {"from": "Selector", "selector": {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["istio-system"]}]}}
    grafana = {"kind": "Service", "metadata": {"name": "grafana", "namespace": "istio-system"},
               "spec": {"ports": [{"port": 3000}]}}
    there = route("there", ns="istio-system", parent={"name": "gw", "namespace": NAMESPACE},
                  backend={"name": "grafana", "port": 3000})
    known = {("istio-system", "grafana"): grafana}
    assert httproute_problems([gateway, there], NAMESPACE, known) == []
    here = route("here", backend={"name": "grafana", "namespace": "istio-system", "port": 3000})
    grant = {"kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "istio-system"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NAMESPACE}],
                      "to": [{"group": "", "kind": "Service"}]}}
    problems = httproute_problems([gateway, here], NAMESPACE, known)
    assert any("admits" in p for p in problems) and any("ReferenceGrant" in p for p in problems)
    gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"] = {"from": "All"}
    assert httproute_problems([gateway, here, grant], NAMESPACE, known) == []


def test_ingress_identity_follows_the_gateway_kind():
    gateway, _ = gateway_api_fixture()
    assert ingress_principals([gateway], NAMESPACE) == {f"cluster.local/ns/{NAMESPACE}/sa/gw-istio"}
    gateway["spec"]["gatewayClassName"] = "envoy"
    assert ingress_principals([gateway], NAMESPACE) == set()
    istio = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
             "spec": {"selector": {"istio": "ingressgateway"}}}
    assert ingress_principals([istio], NAMESPACE) == {INGRESS_GATEWAY}


@pytest.mark.parametrize("prefix, replacement, path, want", [
    ("/foo", "/xyz", "/foo/bar", "/xyz/bar"), ("/foo/", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz", "/foo", "/xyz"), ("/foo", "/xyz", "/foo/", "/xyz/"), ("/foo/", "", "/foo", "/"),
    ("/foo", "/", "/foo/bar", "/bar"), ("/foo", "/", "/foo", "/"), ("/foo", "", "/foo/bar", "/bar"),
])
def test_prefix_rewrite_follows_the_gateway_api_table(prefix, replacement, path, want):
    route = {"metadata": {"namespace": "ns"}, "spec": {"rules": [{
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                  "replacePrefixMatch": replacement}}}],
        "backendRefs": [{"name": "b", "port": 1}]}]}}
    assert resolve_route([route], path) == ("backend", ("ns", "b", 1), want)


def keep_alive_secs() -> int:
    """service-kit's KEEP_ALIVE: how long the services keep an idle connection."""
    source = (REPO / "service-kit/src/server.rs").read_text()
    match = re.search(r"pub const KEEP_ALIVE: Duration = Duration::from_secs\((\d+)\);", source)
    assert match, "KEEP_ALIVE not found in service-kit/src/server.rs"
    return int(match[1])


def test_sidecars_close_idle_http_connections_before_the_services_do():
    docs = load_docs(render_ok(CHART))
    limit = keep_alive_secs()
    idle = {dr["spec"]["host"].split(".")[0]: dr["spec"]["trafficPolicy"].get("connectionPool", {})
            for dr in of_kind(docs, "DestinationRule")}
    for workload in ("front-end", "business-logic"):
        timeout = idle[workload]["http"]["idleTimeout"]
        assert re.fullmatch(r"\d+s", timeout), timeout
        assert int(timeout[:-1]) < limit, f"{workload}: {timeout} is not below the services' {limit} s keep-alive"
    # TCP to PostgreSQL has no HTTP pool.
    assert "http" not in idle["postgres"]


def test_httproute_check_follows_routes_attached_to_a_service():
    def mesh_route(name, parent):
        return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"parentRefs": [{"group": "", "kind": "Service", **parent}],
                         "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}}
    docs = [service(), mesh_route("ok", {"name": "web", "port": 8080}), mesh_route("no-port-given", {"name": "web"}),
            mesh_route("no-service", {"name": "wbe", "port": 8080}),
            mesh_route("wrong-port", {"name": "web", "port": 80}),
            mesh_route("consumer", {"name": "web", "namespace": "other", "port": 8080})]
    problems = httproute_problems(docs, NAMESPACE, service_index(docs, NAMESPACE))
    assert [p.split(":")[0] for p in problems] == ["HTTPRoute/no-service", "HTTPRoute/wrong-port",
                                                   "HTTPRoute/consumer"], problems
    configmap_parent = mesh_route("configmap", {"name": "web"})
    configmap_parent["spec"]["parentRefs"][0]["kind"] = "ConfigMap"
    assert httproute_problems([service(), configmap_parent], NAMESPACE, service_index(docs, NAMESPACE)) == [
        "HTTPRoute/configmap: parent {'group': '', 'kind': 'ConfigMap', 'name': 'web'} is neither a Gateway "
        "nor a Service"]


def waypoint_gateway(name="waypoint", listeners=None, serves="service"):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"istio.io/waypoint-for": serves}},
            "spec": {"gatewayClassName": "istio-waypoint",
                     "listeners": listeners or [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}}


def bound(svc: dict, waypoint="waypoint") -> dict:
    svc["metadata"]["labels"] = {"istio.io/use-waypoint": waypoint}
    return svc


def test_waypoint_check_finds_a_wrong_shape_and_a_binding_to_nothing():
    good = [waypoint_gateway(), bound(service())]
    assert waypoint_problems(good, NAMESPACE) == []
    assert waypoint_principals(good, NAMESPACE) == {f"cluster.local/ns/{NAMESPACE}/sa/waypoint"}
    bad = [waypoint_gateway(listeners=[{"name": "mesh", "port": 15008, "protocol": "HTTP"}]),
           waypoint_gateway("workloads", serves="workload"), bound(service("api"), "wp")]
    problems = waypoint_problems(bad, NAMESPACE)
    assert [p.split(":")[0] for p in problems] == ["Gateway/waypoint", "Gateway/workloads", "Service/api"], problems


def test_ambient_policy_check_finds_l7_at_ztunnel_unenforced_targets_and_a_shut_out_waypoint():
    waypoint = f"cluster.local/ns/{NAMESPACE}/sa/waypoint"

    def ap(name, spec):
        return {"kind": "AuthorizationPolicy", "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"action": "ALLOW", **spec}}
    l4 = ap("web", {"selector": {"matchLabels": {"app": "web"}},
                    "rules": [{"from": [{"source": {"principals": [waypoint]}}], "to": [{"operation": {"ports": ["8080"]}}]}]})
    l7 = ap("web-l7", {"targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
                       "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    good = [waypoint_gateway(), bound(service()), deployment(), l4, l7]
    assert ambient_policy_problems(good, NAMESPACE) == []
    l7_at_ztunnel = ap("paths", {"selector": {"matchLabels": {"app": "web"}},
                                 "rules": [{"from": [{"source": {"principals": [waypoint]}}],
                                            "to": [{"operation": {"paths": ["/x"]}}]}]})
    unbound = ap("unbound", {"targetRefs": [{"group": "", "kind": "Service", "name": "db"}]})
    missing = ap("missing", {"targetRefs": [{"group": "", "kind": "Service", "name": "nope"},
                                            {"group": GATEWAY_API, "kind": "Gateway", "name": "nope"}]})
    shut_out = ap("shut-out", {"selector": {"matchLabels": {"app": "web"}},
                               "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/x/sa/front"]}}]}]})
    problems = ambient_policy_problems(good + [service("db"), l7_at_ztunnel, unbound, missing, shut_out], NAMESPACE)
    assert [p.split(":")[0] for p in problems] == [
        "AuthorizationPolicy/paths", "AuthorizationPolicy/unbound", "AuthorizationPolicy/missing",
        "AuthorizationPolicy/missing", "AuthorizationPolicy/shut-out"], problems


def test_the_gateways_route_resolution_leaves_mesh_routes_out():
    mesh = {"metadata": {"namespace": "ns"}, "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "b", "port": 1}],
        "rules": [{"backendRefs": [{"name": "b-v1", "port": 1}]}]}}
    assert resolve_route([mesh], "/anything") is None
    mesh["spec"]["parentRefs"].append({"name": "gw"})  # also attached to a Gateway: the gateway's too
    assert resolve_route([mesh], "/anything") == ("backend", ("ns", "b-v1", 1), "/anything")
