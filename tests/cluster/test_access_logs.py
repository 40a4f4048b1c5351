"""Envoy access logs, end to end without a cluster: the mesh's JSON format
(istio-add-ons/istio-operator.yaml, telemetry.yaml), a line as Envoy writes it
in that format, how Alloy labels it (alloy-values.yaml, read with the Alloy
syntax reader in alloy_syntax.py), and Grafana's link from the line to its
trace (grafana/datasources.yaml) and the dashboard's gateway panel.

The line: no Envoy binary can be installed here, so `envoy_json_line` writes
what Envoy's JSON formatter writes for Istio's `logFormat.labels`, rule by
rule from Envoy's sources and docs (cited at each rule). It refuses any
operator whose output it does not know, so a key added to the format without
knowing what Envoy makes of it fails here.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from alloy_syntax import Block, Ref, parse
from cluster_support import ADDONS, GRAFANA, addon_objects, find, grafana_datasources, relabel, sanitize_label_name

PROVIDER = "envoy-json"
# The keys `make verify` (verify/) and the dashboard's queries read, and their operators. trace_id is
# the active span's trace id; the rest as in Istio's own JSON format (EnvoyJSONLogFormatIstio in
# pilot/pkg/model/telemetry_logging.go, release-1.31).
CONTRACT_KEYS = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "duration": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "authority": "%REQ(:AUTHORITY)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "x_request_id": "%REQ(X-REQUEST-ID)%",
    "trace_id": "%TRACE_ID%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "route_name": "%ROUTE_NAME%",
}

# Operators Envoy's docs mark "Renders a numeric value in typed JSON logs" (configuration/
# observability/access_log/usage.rst); the others used here render strings.
NUMERIC_OPERATORS = {"RESPONSE_CODE", "DURATION", "BYTES_RECEIVED", "BYTES_SENT"}
STRING_OPERATORS = {"START_TIME", "REQ", "PROTOCOL", "RESPONSE_CODE_DETAILS", "RESPONSE_FLAGS", "TRACE_ID",
                    "UPSTREAM_HOST", "UPSTREAM_CLUSTER_RAW", "DOWNSTREAM_REMOTE_ADDRESS", "ROUTE_NAME"}
OPERATOR = re.compile(r"%([A-Z_]+)(?:\(([^)]*)\))?%")

# A request through the Gateway API gateway to the front-end: what Envoy knows about it, by operator.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_REQUEST = {
    "START_TIME": "2026-12-07T00:31:05.123Z",
    "REQ(:METHOD)": "GET",
    # The gateway's URLRewrite replaces /demo-app/ by /: Envoy keeps the client's path in
    # x-envoy-original-path, which the format prefers.
    "REQ(X-ENVOY-ORIGINAL-PATH?:PATH)": "/demo-app/slow-page",
    "PROTOCOL": "HTTP/1.1",
    "RESPONSE_CODE": 200,
    "RESPONSE_CODE_DETAILS": "via_upstream",
    "RESPONSE_FLAGS": "-",  # Envoy's ResponseFlagUtils: "-" when no flag is set
    "DURATION": 3021,
    "BYTES_RECEIVED": 0,
    "BYTES_SENT": 1843,
    "REQ(:AUTHORITY)": "localhost:8080",
    "REQ(USER-AGENT)": "curl/8.11.1",
    "REQ(X-REQUEST-ID)": "0f2a8e34-54c1-9a6b-8d6f-3a5f1c2b7e90",
    "TRACE_ID": TRACE_ID,
    "UPSTREAM_HOST": "10.244.0.17:8080",
    "UPSTREAM_CLUSTER_RAW": "outbound|8080||front-end.demo-app.svc.cluster.local",
    "DOWNSTREAM_REMOTE_ADDRESS": "127.0.0.1:48122",
    "ROUTE_NAME": None,
}


def envoy_json_line(labels: dict[str, str], request: dict[str, object]) -> str:
    """The line Envoy writes for a `json_format` of these labels (Istio's logFormat.labels) and
    a request whose operator values are `request` (None: the operator has no value).

    - Keys sorted by name, no spaces, one line: JsonFormatBuilder sorts the struct's fields
      (sortJsonStructFields) and serializes `{"key":value,...}`, then a newline
      (source/common/formatter/substitution_formatter.cc); the docs of
      config.core.v3.JsonFormatOptions: "the properties are always sorted".
    - A value that is one operator alone keeps the operator's type (JsonFormatterImpl: a single
      provider goes through formatValue): numbers for the numeric operators, written in their
      shortest form, 200 not 200.0 (Buffer::Util::serializeDouble, std::to_chars).
    - An operator without a value writes null (SubstitutionFormatUtils::unspecifiedValue() is
      the null value), e.g. %TRACE_ID% on a request without a span, a missing header.
    """
    rendered = {}
    for key in sorted(labels):
        template = labels[key]
        m = OPERATOR.fullmatch(template)
        assert m, f"{key}: {template!r} is not one operator alone, so Envoy would make it a string"
        command = m.group(1)
        assert command in NUMERIC_OPERATORS | STRING_OPERATORS, \
            f"{key}: what Envoy writes for %{command}% is not modelled here; read its docs and add it"
        value = request[template.strip("%")]
        if value is not None:
            assert isinstance(value, int) == (command in NUMERIC_OPERATORS), (key, value)
        rendered[key] = value
    return json.dumps(rendered, separators=(",", ":"), ensure_ascii=False) + "\n"


def istio_operator() -> dict:
    (doc,) = yaml.safe_load_all((ADDONS / "istio-operator.yaml").read_text())
    return doc


def access_log_labels() -> dict[str, str]:
    mesh = istio_operator()["spec"]["meshConfig"]
    (provider,) = [p for p in mesh["extensionProviders"] if p["name"] == PROVIDER]
    file_log = provider["envoyFileAccessLog"]
    assert file_log["path"] == "/dev/stdout"  # the container's log, which Alloy tails
    assert not file_log.get("omitEmptyValues"), "unset values must stay in the line as null"
    return file_log["logFormat"]["labels"]


def gateway_line(**overrides) -> str:
    return envoy_json_line(access_log_labels(), {**GATEWAY_REQUEST, **overrides}).rstrip("\n")


def derived_field() -> dict:
    (field,) = grafana_datasources()["loki"]["jsonData"]["derivedFields"]
    return field


# --- the mesh's access-log format ----------------------------------------------------------------------

def test_the_access_log_format_carries_the_trace_id_and_the_keys_the_queries_read():
    labels = access_log_labels()
    assert {k: labels.get(k) for k in CONTRACT_KEYS} == CONTRACT_KEYS
    for key, template in labels.items():
        assert OPERATOR.fullmatch(template), f"{key}: one operator per value keeps numbers numbers"


def test_every_proxy_logs_through_that_provider():
    mesh = istio_operator()["spec"]["meshConfig"]
    assert mesh["defaultProviders"]["accessLogging"] == [PROVIDER]
    telemetry = find(addon_objects(), "Telemetry", "mesh-default")
    assert telemetry["metadata"]["namespace"] == "istio-system"  # the root namespace: the whole mesh
    (logging,) = telemetry["spec"]["accessLogging"]
    assert [p["name"] for p in logging["providers"]] == [PROVIDER]
    assert "disabled" not in logging and "filter" not in logging, "every request, every proxy"
    (tracing,) = telemetry["spec"]["tracing"]  # tracing stays as it was
    assert [p["name"] for p in tracing["providers"]] == ["zipkin"]


def test_the_proxies_trace_ids_are_128_bit_like_the_services():
    """%TRACE_ID% prints the Zipkin span's trace id: 32 hex digits when the tracer makes 128-bit
    ids, which Istio's zipkin provider asks for unless enable64bitTraceId is set
    (pilot/pkg/networking/core/tracing.go); the front-end's traceresponse and Jaeger use the same."""
    mesh = istio_operator()["spec"]["meshConfig"]
    (zipkin,) = [p["zipkin"] for p in mesh["extensionProviders"] if p["name"] == "zipkin"]
    assert not zipkin.get("enable64bitTraceId")
    assert mesh["defaultProviders"]["tracing"] == ["zipkin"]


# --- a line in that format, and Grafana's link to its trace ------------------------------------------------

def test_an_envoy_line_in_that_format_is_json_with_typed_values():
    record = json.loads(gateway_line())
    # What `make verify` and `| json | response_code >= 500` rely on.
    assert record["trace_id"] == TRACE_ID and record["path"] == "/demo-app/slow-page"
    assert record["response_code"] == 200 and isinstance(record["duration"], int)
    assert record["method"] == "GET" and record["route_name"] is None


def test_the_derived_field_links_an_access_log_line_to_its_trace():
    """Grafana runs matcherRegex with Go's RE2; this pattern (\\W, a class, a counted repeat, one
    group) means the same in Python's re."""
    field = derived_field()
    regex = re.compile(field["matcherRegex"])
    match = regex.search(gateway_line())
    assert match and match.group(1) == TRACE_ID
    assert grafana_datasources()[field["datasourceUid"]]["type"] == "jaeger"


def test_the_derived_field_links_nothing_on_a_line_without_a_trace():
    regex = re.compile(derived_field()["matcherRegex"])
    line = gateway_line(TRACE_ID=None)
    assert '"trace_id":null' in line
    assert not regex.search(line), "x_request_id or another value must not pass for a trace id"


def test_the_derived_field_ignores_the_other_ids_in_the_line():
    regex = re.compile(derived_field()["matcherRegex"])
    other = "0123456789abcdef0123456789abcdef"
    line = gateway_line(**{"REQ(X-REQUEST-ID)": other, "REQ(USER-AGENT)": f"probe trace {other}"})
    assert [m.group(1) for m in regex.finditer(line)] == [TRACE_ID]


# --- Alloy: labels on the streams and on the access-log lines --------------------------------------------

def alloy_config() -> Block:
    values = yaml.safe_load((ADDONS / "alloy-values.yaml").read_text())
    return parse(values["alloy"]["configMap"]["content"])


def pod_target(namespace: str, pod: str, container: str, pod_labels: dict[str, str]) -> dict[str, str]:
    target = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod,
              "__meta_kubernetes_pod_container_name": container}
    target.update({f"__meta_kubernetes_pod_label_{sanitize_label_name(k)}": v for k, v in pod_labels.items()})
    return target


# Pod labels as Istio 1.31 sets them (istio/istio release-1.31): the gateway it deploys for a
# Gateway API Gateway (manifests/charts/istio-control/istio-discovery/files/kube-gateway.yaml),
# a waypoint (files/waypoint.yaml), istio-ingressgateway (manifests/charts/gateways/istio-ingress,
# values.yaml `labels`), and a sidecar-injected app pod (the app chart's labels).
GATEWAY_API_POD = {"gateway.networking.k8s.io/gateway-name": "demo-gateway",
                   "gateway.networking.k8s.io/gateway-class-name": "istio",
                   "gateway.istio.io/managed": "istio.io-gateway-controller",
                   "service.istio.io/canonical-name": "demo-gateway-istio", "sidecar.istio.io/inject": "false"}
WAYPOINT_POD = {"gateway.networking.k8s.io/gateway-name": "waypoint",
                "gateway.networking.k8s.io/gateway-class-name": "istio-waypoint",
                "istio.io/dataplane-mode": "none"}
INGRESSGATEWAY_POD = {"app": "istio-ingressgateway", "istio": "ingressgateway"}
APP_POD = {"app": "front-end", "version": "v1", "security.istio.io/tlsMode": "istio"}


@pytest.mark.parametrize("namespace,pod_labels,container,gateway", [
    ("demo-app", GATEWAY_API_POD, "istio-proxy", "demo-gateway"),
    ("istio-system", INGRESSGATEWAY_POD, "istio-proxy", "istio-ingressgateway"),
    ("demo-app", WAYPOINT_POD, "istio-proxy", None),
    ("demo-app", APP_POD, "istio-proxy", None),
    ("demo-app", APP_POD, "front-end", None),
], ids=["gateway-api gateway", "istio-ingressgateway", "waypoint", "sidecar", "app container"])
def test_alloy_labels_the_streams_of_ingress_gateways_only(namespace, pod_labels, container, gateway):
    rules = alloy_config().child("discovery.relabel", "pods").children("rule")
    labels = relabel([rule.attrs for rule in rules], pod_target(namespace, "pod-0", container, pod_labels))
    labels = {k: v for k, v in labels.items() if not k.startswith("__")}
    assert labels.get("gateway") == gateway
    assert {labels["namespace"], labels["container"]} == {namespace, container}
    assert set(labels) <= {"namespace", "pod", "container", "app", "gateway"}


def logql_filters(selector: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A stream selector with equality matchers and line filters (|=, !=, |~, !~), the strings in
    LogQL's Go-style double quotes."""
    m = re.fullmatch(r'\{([^}]*)\}((?:\s*(?:\|=|!=|\|~|!~)\s*"(?:[^"\\]|\\.)*")*)\s*', selector)
    assert m, f"not a selector with line filters: {selector}"
    matchers = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1)))
    filters = [(op, json.loads(f'"{text}"'))
               for op, text in re.findall(r'(\|=|!=|\|~|!~)\s*"((?:[^"\\]|\\.)*)"', m.group(2))]
    return matchers, filters


def stage_match_selects(selector: str, labels: dict[str, str], line: str) -> bool:
    matchers, filters = logql_filters(selector)
    if any(labels.get(k) != v for k, v in matchers.items()):
        return False
    checks = {"|=": lambda t: t in line, "!=": lambda t: t not in line,
              "|~": lambda t: re.search(t, line) is not None, "!~": lambda t: re.search(t, line) is None}
    return all(checks[op](text) for op, text in filters)


def access_stage() -> Block:
    (match,) = alloy_config().child("loki.process", "access_logs").children("stage.match")
    return match


# What else an istio-proxy container prints: istio-agent's own log (text, and JSON with
# global.logAsJson), and Envoy's own log as the agent relays it.
OTHER_PROXY_LINES = [
    '2026-12-07T00:31:02.412301Z\tinfo\tFLAG: --concurrency="2"',
    "2026-12-07T00:31:03.004110Z\tinfo\tenvoy main external/envoy/source/server/server.cc:978\t"
    "starting main dispatch loop\tthread=15",
    '{"level":"info","time":"2026-12-07T00:31:03.100200Z","msg":"Readiness succeeded in 1.2s"}',
    # At debug level Envoy may print a JSON body that happens to hold the same keys.
    '2026-12-07T00:31:05.300000Z\tdebug\tenvoy http\tbody: {"trace_id":"%s","x_request_id":"x"}' % TRACE_ID,
]


def test_alloy_marks_envoy_access_log_lines_and_nothing_else():
    stage = access_stage()
    (static,) = stage.children("stage.static_labels")
    assert static.attrs["values"] == {"log_type": "access"}
    assert [b.name for b in stage.blocks] == ["stage.static_labels"]
    selector = stage.attrs["selector"]
    proxy = {"namespace": "demo-app", "container": "istio-proxy", "gateway": "demo-gateway"}
    assert stage_match_selects(selector, proxy, gateway_line())
    assert stage_match_selects(selector, {**proxy, "gateway": ""}, gateway_line(TRACE_ID=None))
    for line in OTHER_PROXY_LINES:
        assert not stage_match_selects(selector, proxy, line), line
    # The services' JSON logs carry a trace_id too, but come from their own containers.
    service_line = '{"timestamp":"2026-12-07T00:31:05.2Z","level":"INFO","trace_id":"%s","x_request_id":"x"}' % TRACE_ID
    assert not stage_match_selects(selector, {**proxy, "container": "front-end"}, service_line)


def test_alloy_sends_every_line_through_the_access_log_stage_to_loki():
    config = alloy_config()
    source = config.child("loki.source.kubernetes", "pods")
    assert source.attrs["forward_to"] == [Ref("loki.process.access_logs.receiver")]
    process = config.child("loki.process", "access_logs")
    assert process.attrs["forward_to"] == [Ref("loki.write.default.receiver")]
    # Labels only from the stage above and the relabel rules: nothing per request (no
    # response_code, path or trace_id label), so the number of streams stays small.
    stages = [b.name for b in process.blocks] + [b.name for b in access_stage().blocks]
    assert "stage.labels" not in stages and "stage.structured_metadata" not in stages


# --- Grafana: the queries ---------------------------------------------------------------------------------

ALLOY_LABELS = {"namespace", "pod", "container", "app", "gateway", "log_type"}


def test_the_gateway_access_log_panel_selects_on_labels_alloy_sets():
    board = json.loads((GRAFANA / "dashboards" / "demo-app.json").read_text())
    (panel,) = [p for p in board["panels"] if p.get("title") == "Gateway access log"]
    assert panel["type"] == "logs" and panel["datasource"]["uid"] == "loki"
    (target,) = panel["targets"]
    expr = target["expr"]
    selector = re.match(r"\{([^}]*)\}", expr).group(1)
    matchers = re.findall(r'(\w+)\s*(=|!=|=~|!~)\s*"([^"]*)"', selector)
    assert {name for name, _, _ in matchers} <= ALLOY_LABELS
    assert ("log_type", "=", "access") in matchers and ("gateway", "!=", "") in matchers
    assert "| json" in expr
    path_filter = re.search(r'\|\s*path\s*=~\s*"([^"]*)"', expr).group(1)
    assert re.fullmatch(path_filter, json.loads(gateway_line())["path"])


def test_make_verifys_access_log_query_selects_on_labels_alloy_sets_and_reads_keys_the_format_has():
    """verify/ (Rust) finds the gateway's line with GATEWAY_ACCESS_LOG |= "<trace id>" and reports
    the keys of its AccessLine (method, path, response_code, duration): the selector must use
    Alloy's labels and the keys must be in the mesh's format, or `make verify` fails on a healthy
    cluster."""
    check = (ADDONS.parent / "verify" / "src" / "checks" / "access_log.rs").read_text()
    selector = re.search(r'pub const GATEWAY_ACCESS_LOG: &str = r#"\{([^}]*)\}"#;', check).group(1)
    matchers = re.findall(r'(\w+)\s*(=|!=)\s*"([^"]*)"', selector)
    assert {name for name, _, _ in matchers} <= ALLOY_LABELS
    assert ("log_type", "=", "access") in matchers and ("gateway", "!=", "") in matchers
    line = json.loads(gateway_line())
    fields = re.search(r'pub struct AccessLine \{(.*?)\n\}', check, re.S).group(1)
    keys = re.findall(r'pub (\w+): ', fields)
    assert "trace_id" in keys and len(keys) > 1, "verify reads the line's keys into AccessLine"
    for key in keys:
        assert key in line, key
