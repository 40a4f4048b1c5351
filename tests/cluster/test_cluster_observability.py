"""The Grafana provisioning against the real services.

Both services run on loopback ports (business-logic logging JSON, the front-end
logging text) and export spans with their default exporter to a stand-in
collector (tests/service_process.py, which takes OTLP and Zipkin). Then:
  - the Loki data source's derived-field regex, read from
    istio-add-ons/grafana/datasources.yaml, is applied to the lines the services
    printed: every trace id it captures is a trace id the collector received;
  - the Jaeger data source's traces-to-logs query, with a received trace id
    substituted, finds that trace's lines from both services;
  - a real Prometheus (Debian package `prometheus`) scrapes both services every
    second, and every PromQL expression of the provisioned dashboard that does
    not need the mesh returns data;
  - exemplars: /metrics asked for OpenMetrics is valid OpenMetrics (the
    `prometheus_client` parser) whose slow-endpoint bucket holds the trace id
    the slow page printed and the collector received; asked for nothing, it is
    the plain text format with the same series; unsampled requests leave no
    exemplar; and Prometheus, with exemplar storage on, returns that trace id
    from /api/v1/query_exemplars for both services.
Every wait is bounded; every process is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from cluster_support import (
    ADDONS,
    APP_NAMESPACE,
    GRAFANA,
    grafana_datasources,
    load_docs,
    unavailable,
    unescape_provisioning,
)
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus_text
from service_process import Collector, Service, free_port, http_get, service_binaries, stop_process, wait_until

MESH_MARK = "Needs the mesh"
# Grafana's interval variables, for instant queries over the test's short window.
GRAFANA_INTERVALS = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "1m"}


def http_get_with(url: str, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, str, str]:
    """(status, Content-Type, body) of a GET with these request headers."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")
    except OSError:
        return 0, "", ""


# --- the services -------------------------------------------------------------------------------------

class Stack:
    def __init__(self, tmp: Path) -> None:
        bin_dir = service_binaries()
        self.collector = Collector()
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": "0", "RUST_LOG": "info",
            **self.collector.env(), "OTEL_BSP_SCHEDULE_DELAY": "100", "METRICS_ENABLED": "true", "SHUTDOWN_GRACE_PERIOD_SECS": "2",
            "WORK_DIR": str(tmp),
        }
        self.services: list[Service] = []
        try:
            self.backend = self._start(bin_dir / "business-logic", {
                **base, "LOG_FORMAT": "json", "DATABASE_URL": f"sqlite://{tmp / 'business-logic.db'}",
                "SLOW_ENDPOINT_DELAY_MS": "50"})
            self.frontend = self._start(bin_dir / "front-end", {
                **base, "LOG_FORMAT": "text", "BUSINESS_LOGIC_URL": self.backend.url})
        except BaseException:
            self.close()
            raise

    def _start(self, binary: Path, env: dict[str, str]) -> Service:
        service = Service(binary, env)
        self.services.append(service)
        return service

    def traffic(self, rounds: int) -> None:
        for _ in range(rounds):
            for path in ("/fast-page", "/slow-page?delay_ms=50"):
                status, _ = http_get(self.frontend.url + path)
                assert status == 200, (path, status)
            status, _ = http_get(self.backend.url + "/fast-endpoint")
            assert status == 200

    def lines(self) -> list[str]:
        return [line for s in self.services for line in s.lines]

    def wait_for_export(self) -> None:
        """Spans leave in batches, each service on its own schedule: waits until every
        service has exported the trace of every request it logged (other tests' too)."""
        regex = re.compile(loki_derived_field()["matcherRegex"])

        def all_exported() -> bool:
            return all(self.collector.exported_by(s.name) >= {m.group(1) for line in s.lines
                                                              if (m := regex.search(line))}
                       for s in self.services)

        wait_until(all_exported, 20, "the logged traces at the collector", step=0.2)

    def close(self) -> None:
        for service in self.services:
            service.stop()
        self.collector.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("services"))
    try:
        stack.traffic(rounds=3)
        stack.wait_for_export()
        yield stack
    finally:
        stack.close()


def loki_derived_field() -> dict:
    (field,) = grafana_datasources()["loki"]["jsonData"]["derivedFields"]
    return field


def traces_to_logs() -> dict:
    return grafana_datasources()["jaeger"]["jsonData"]["tracesToLogsV2"]


# --- logs <-> traces ------------------------------------------------------------------------------------

def test_the_derived_field_captures_exported_trace_ids_from_both_log_formats(stack):
    regex = re.compile(loki_derived_field()["matcherRegex"])  # Grafana runs it as Go RE2; this one is RE2-safe
    stack.wait_for_export()  # a test before this one may have sent pages whose batch has not left yet
    exported = stack.collector.trace_ids()
    for service, form in ((stack.frontend, "text"), (stack.backend, "json")):
        request_lines = [line for line in service.lines if "request completed" in line]
        assert request_lines, f"{service.name} logged no request ({form} format)"
        for line in request_lines:
            match = regex.search(line)
            assert match, f"{service.name} ({form}): no trace id captured in {line!r}"
            assert match.group(1) in exported, f"{match.group(1)} was logged but never exported"
    captured = {m.group(1) for line in stack.lines() if (m := regex.search(line))}
    # One trace spans both tiers: the front-end's and business-logic's lines share its id.
    joined = [t for t in captured if {"front-end", "business-logic"} <= stack.collector.services_of(t)]
    assert joined, "no trace was exported by both services"


def test_the_derived_field_ignores_lines_without_a_trace(stack):
    regex = re.compile(loki_derived_field()["matcherRegex"])
    startup = [line for line in stack.lines() if "listening" in line]
    assert startup and not any(regex.search(line) for line in startup)


def test_traces_to_logs_finds_the_lines_of_both_services_for_a_trace(stack):
    settings = traces_to_logs()
    assert settings["datasourceUid"] == "loki" and settings["customQuery"] is True
    template = unescape_provisioning(settings["query"])
    regex = re.compile(loki_derived_field()["matcherRegex"])
    for trace_id in stack.collector.trace_ids():
        if {"front-end", "business-logic"} <= stack.collector.services_of(trace_id):
            break
    else:
        pytest.fail("no trace spans both services")
    query = template.replace("${__trace.traceId}", trace_id)
    # The same query as the front-end's "logs in Grafana" link (front-end/src/links.rs).
    assert query == f'{{namespace="{APP_NAMESPACE}"}} |= "{trace_id}"'
    needle = re.fullmatch(r'\{[^}]*\} \|= "([^"]*)"', query).group(1)
    for service in stack.services:
        found = [line for line in service.lines if needle in line]
        assert found, f"the query finds no {service.name} line of trace {trace_id}"
        # ... and every line it finds links back to that same trace.
        assert {regex.search(line).group(1) for line in found} == {trace_id}


# --- the dashboard against a real Prometheus ---------------------------------------------------------

def prometheus_binary() -> str:
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or \
        ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None)
    if not found:
        unavailable("prometheus not installed (Debian: apt-get install prometheus)")
    return found


def dashboard_queries(mesh: bool = False) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus target that does not need the
    mesh, or with `mesh`, of every one that does."""
    board = json.loads((GRAFANA / "dashboards" / "demo-app.json").read_text())
    queries = []
    for panel in board["panels"]:
        if panel["type"] == "row" or panel["datasource"]["uid"] != "prometheus":
            continue
        if panel.get("description", "").startswith(MESH_MARK) != mesh:
            continue
        queries += [(panel["title"], t["expr"]) for t in panel["targets"]]
    return queries


def substitute(expr: str) -> str:
    board = json.loads((GRAFANA / "dashboards" / "demo-app.json").read_text())
    for variable in board["templating"]["list"]:
        expr = expr.replace(f"${variable['name']}", variable["allValue"])
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    binary = prometheus_binary()
    tmp = tmp_path_factory.mktemp("prometheus")
    targets = {s.name: urllib.parse.urlparse(s.url).netloc for s in stack.services}
    jobs = [{"job_name": name, "static_configs": [{"targets": [target]}]} for name, target in targets.items()]
    # As in the cluster (istio-add-ons/prometheus.yaml): OpenMetrics first. Prometheus
    # before 2.49 has no scrape_protocols and asks for OpenMetrics first by itself.
    if prometheus_version(binary) >= (2, 49):
        for job in jobs:
            job["scrape_protocols"] = cluster_scrape_protocols()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}
    with running_prometheus(binary, tmp, config, len(targets), lambda: stack.traffic(rounds=2),
                            "--enable-feature=exemplar-storage") as url:
        yield url


@contextlib.contextmanager
def running_prometheus(binary: str, tmp: Path, config: dict, targets: int, traffic, *flags: str):
    """A real Prometheus on a free loopback port scraping `config`'s jobs. Yields its URL once
    all `targets` are up and `traffic()` has run over several scrapes; stopped at the end."""
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", *flags],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(url + "/-/ready", 2)[0] == 200, 30, "Prometheus to be ready", step=0.2)
        wait_until(lambda: len(query(url, "up == 1")) == targets, 30, "every target to be up", step=0.5)
        # Traffic spread over several scrapes, then a few more scrapes.
        for _ in range(4):
            traffic()
            time.sleep(1)
        time.sleep(3)
        yield url
    finally:
        stop_process(proc)


def prometheus_version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    assert m, f"no version in {out.stdout!r}"
    return int(m.group(1)), int(m.group(2))


def cluster_scrape_protocols() -> list[str]:
    (config_map,) = [d for d in load_docs(ADDONS / "prometheus.yaml") if d["kind"] == "ConfigMap"]
    parsed = yaml.safe_load(config_map["data"]["prometheus.yml"])
    (pods,) = [job for job in parsed["scrape_configs"] if job["job_name"] == "kubernetes-pods"]
    return pods["scrape_protocols"]


def query(url: str, expr: str) -> list[dict]:
    status, body = http_get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, f"{expr}: HTTP {status} {body[:500]}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_the_dashboard_has_prometheus_queries_to_check():
    assert len(dashboard_queries()) >= 8


@pytest.mark.parametrize("title, expr", dashboard_queries(), ids=[f"{t}#{i}" for i, (t, _) in
                                                                   enumerate(dashboard_queries())])
def test_every_dashboard_query_returns_data(prometheus, title, expr):
    result = query(prometheus, substitute(expr))
    assert result, f"panel {title!r}: no data for {substitute(expr)}"
    values = [float(r["value"][1]) for r in result]
    assert any(math.isfinite(v) for v in values), f"panel {title!r}: only NaN/Inf: {result}"


def test_the_mesh_queries_are_valid_promql(prometheus):
    """Istio's metrics exist only in the cluster; here their queries must still
    parse and evaluate (to nothing) rather than fail in front of the user."""
    mesh = dashboard_queries(mesh=True)
    assert mesh, "no panel is marked as needing the mesh"
    for title, expr in mesh:
        query(prometheus, substitute(expr))  # asserts HTTP 200 and status success


def test_the_service_variable_lists_both_services(prometheus):
    """The dashboard's variable query, label_values(metric, label), asked the way Grafana's
    Prometheus data source asks it: the label's values API matching the metric."""
    board = json.loads((GRAFANA / "dashboards" / "demo-app.json").read_text())
    (variable,) = board["templating"]["list"]
    assert variable["datasource"]["uid"] == "prometheus"
    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]).groups()
    status, body = http_get(f"{prometheus}/api/v1/label/{label}/values?" +
                            urllib.parse.urlencode({"match[]": metric}))
    assert status == 200
    assert {"front-end", "business-logic"} <= set(json.loads(body)["data"])


# --- exemplars: from a latency spike to its trace ------------------------------------------------------

# A duration bucket, (0.5 s, 1 s], that no other request of this module falls in, so the
# slow page's exemplar stays the latest there.
SLOW_DELAY_MS = 700
SLOW_ENDPOINTS = {"front-end": "/slow-page", "business-logic": "/slow-endpoint"}
# What Prometheus 2.x sends when it scrapes.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PLAIN_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def exemplar_label() -> str:
    """The exemplar label Grafana opens in Jaeger (istio-add-ons/grafana/datasources.yaml)."""
    (destination,) = grafana_datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    return destination["name"]


@pytest.fixture(scope="module")
def slow_page(stack) -> str:
    """A slow page's trace id, as the page printed it, once both services exported it."""
    status, body = http_get(f"{stack.frontend.url}/slow-page?delay_ms={SLOW_DELAY_MS}", 20)
    assert status == 200, body[:500]
    trace_id = re.search(r'id="trace-id">([0-9a-f]{32})<', body).group(1)
    wait_until(lambda: set(SLOW_ENDPOINTS) <= stack.collector.server_spans_of(trace_id), 20,
               f"the server spans of trace {trace_id} from both services at the collector", step=0.2)
    return trace_id


def scrape_openmetrics(service: Service) -> str:
    status, content_type, body = http_get_with(service.url + "/metrics", {"Accept": PROMETHEUS_ACCEPT})
    assert status == 200
    assert content_type == "application/openmetrics-text; version=1.0.0; charset=utf-8", content_type
    return body


def series(samples) -> set[tuple]:
    """(sample name, labels) of each sample, `le` as a number (text writes 1, OpenMetrics 1.0)."""
    return {(s.name, tuple(sorted((k, str(float(v)) if k == "le" else v) for k, v in s.labels.items())))
            for s in samples}


@pytest.mark.parametrize("name", SLOW_ENDPOINTS)
def test_openmetrics_is_valid_and_the_slow_bucket_holds_the_slow_page_trace(stack, slow_page, name):
    service = {s.name: s for s in stack.services}[name]
    body = scrape_openmetrics(service)
    assert body.endswith("\n# EOF\n")
    families = {f.name: f for f in parse_openmetrics(body)}  # raises on anything that is not OpenMetrics
    label = exemplar_label()

    buckets = [s for s in families["http_requests_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["endpoint"] == SLOW_ENDPOINTS[name] and s.exemplar]
    slow = [s for s in buckets if s.exemplar.labels.get(label) == slow_page]
    assert len(slow) == 1, f"no {SLOW_ENDPOINTS[name]} bucket of {name} holds trace {slow_page}: {buckets}"
    (bucket,) = slow
    assert SLOW_DELAY_MS / 1000 <= bucket.exemplar.value <= float(bucket.labels["le"])
    assert bucket.labels["service"] == name and bucket.value >= 1
    # The exemplar's span is this service's span of that trace, as the collector received it.
    span = stack.collector.span(slow_page, bucket.exemplar.labels["span_id"])
    assert span and span["localEndpoint"]["serviceName"] == name, span
    assert span.get("kind") == "SERVER"

    # The request counter carries an exemplar too: the series' latest request, a received trace.
    (counter,) = [s for s in families["http_requests"].samples
                  if s.name == "http_requests_total" and s.labels["endpoint"] == SLOW_ENDPOINTS[name]]
    assert counter.exemplar and counter.exemplar.value == 1
    assert counter.exemplar.labels[label] in stack.collector.trace_ids()


@pytest.mark.parametrize("accept", [None, "text/plain", "*/*", "text/plain;q=0.9,application/openmetrics-text;q=0.5"])
def test_without_asking_for_openmetrics_metrics_stay_plain_text_with_the_same_series(stack, accept):
    for service in stack.services:
        headers = {"Accept": accept} if accept else {}
        http_get_with(service.url + "/metrics", headers)  # the scrape series exists in both answers below
        status, content_type, plain = http_get_with(service.url + "/metrics", headers)
        assert status == 200 and content_type == PLAIN_TEXT, content_type
        assert "# EOF" not in plain and " # {" not in plain
        # business-logic's series also carry its version (SERVICE_VERSION, v1 by default).
        version = ',version="v1"' if service.name == "business-logic" else ""
        assert (f'http_requests_total{{endpoint="/metrics",method="GET",service="{service.name}",'
                f'status="200"{version}}}') in plain
        assert "# TYPE http_requests_duration_seconds histogram" in plain
        plain_series = series(s for f in parse_prometheus_text(plain) for s in f.samples)
        openmetrics_series = series(s for f in parse_openmetrics(scrape_openmetrics(service)) for s in f.samples)
        assert plain_series == openmetrics_series


def test_unsampled_requests_leave_no_exemplar(stack):
    backend = stack.backend
    ids = {flags: (os.urandom(16).hex(), os.urandom(8).hex()) for flags in ("01", "00")}
    for flags, (trace_id, parent) in ids.items():
        status, _, body = http_get_with(backend.url + "/fast-endpoint",
                                        {"traceparent": f"00-{trace_id}-{parent}-{flags}"})
        assert status == 200 and json.loads(body)["trace_id"] == trace_id
    exemplars = {s.exemplar.labels.get(exemplar_label())
                 for f in parse_openmetrics(scrape_openmetrics(backend)) for s in f.samples if s.exemplar}
    assert ids["01"][0] in exemplars, "the sampled request left no exemplar"
    assert ids["00"][0] not in exemplars, "an unsampled request left an exemplar"


def test_exemplars_can_be_turned_off(tmp_path):
    bin_dir = service_binaries()
    service = Service(bin_dir / "business-logic", {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": "0", "RUST_LOG": "info",
        "OTEL_TRACES_EXPORTER": "none", "METRICS_EXEMPLARS": "false", "WORK_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite://{tmp_path / 'business-logic.db'}", "SHUTDOWN_GRACE_PERIOD_SECS": "2"})
    try:
        assert http_get(service.url + "/fast-endpoint")[0] == 200
        status, content_type, body = http_get_with(service.url + "/metrics", {"Accept": PROMETHEUS_ACCEPT})
        assert status == 200 and content_type == PLAIN_TEXT
        assert 'endpoint="/fast-endpoint"' in body and " # {" not in body
    finally:
        service.stop()


def query_exemplars(url: str, selector: str, start: float, end: float) -> list[dict]:
    status, body = http_get(f"{url}/api/v1/query_exemplars?" +
                            urllib.parse.urlencode({"query": selector, "start": start, "end": end}))
    assert status == 200, f"{selector}: HTTP {status} {body[:500]}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]


@pytest.mark.parametrize("name", SLOW_ENDPOINTS)
def test_prometheus_returns_the_slow_page_trace_as_an_exemplar(prometheus, stack, slow_page, name):
    label = exemplar_label()
    selector = f'http_requests_duration_seconds_bucket{{service="{name}", endpoint="{SLOW_ENDPOINTS[name]}"}}'

    def found() -> list[dict]:
        now = time.time()
        return [e for group in query_exemplars(prometheus, selector, now - 600, now + 60)
                for e in group["exemplars"] if e["labels"].get(label) == slow_page]

    (exemplar,) = wait_until(found, 20, f"Prometheus to store {name}'s exemplar of trace {slow_page}", step=0.5)
    assert float(exemplar["value"]) >= SLOW_DELAY_MS / 1000
    span = stack.collector.span(slow_page, exemplar["labels"]["span_id"])
    assert span and span["localEndpoint"]["serviceName"] == name
