"""The Grafana provisioning against the real services.

Both services run on loopback ports (business-logic logging JSON, the front-end
logging text) and export spans to a stand-in Zipkin collector. Then:
  - the Loki data source's derived-field regex, read from
    istio-add-ons/grafana/datasources.yaml, is applied to the lines the services
    printed: every trace id it captures is a trace id the collector received;
  - the Jaeger data source's traces-to-logs query, with a received trace id
    substituted, finds that trace's lines from both services;
  - a real Prometheus (Debian package `prometheus`) scrapes both services every
    second, and every PromQL expression of the provisioned dashboard that does
    not need the mesh returns data.
Every wait is bounded; every process is stopped at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from service_process import Service, http_get, service_binaries, wait_until
from cluster_support import APP_NAMESPACE, GRAFANA, REPO, grafana_datasources, unavailable, unescape_provisioning

MESH_MARK = "Needs the mesh"
# Grafana's interval variables, for instant queries over the test's short window.
GRAFANA_INTERVALS = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "1m"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]





# --- a stand-in Zipkin collector --------------------------------------------------------------------

class Collector:
    """Accepts Zipkin v2 JSON on /api/v2/spans and remembers every span."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = self.path == "/api/v2/spans"
                if ok:
                    with collector.lock:
                        collector.spans.extend(json.loads(body))
                self.send_response(202 if ok else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v2/spans"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace_ids(self) -> set[str]:
        with self.lock:
            return {s["traceId"] for s in self.spans}

    def exported_by(self, service: str) -> set[str]:
        with self.lock:
            return {s["traceId"] for s in self.spans if s.get("localEndpoint", {}).get("serviceName") == service}

    def services_of(self, trace_id: str) -> set[str]:
        with self.lock:
            return {s.get("localEndpoint", {}).get("serviceName") for s in self.spans if s["traceId"] == trace_id}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the services -------------------------------------------------------------------------------------

class Stack:
    def __init__(self, tmp: Path) -> None:
        bin_dir = service_binaries()
        self.collector = Collector()
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": "0", "RUST_LOG": "info",
            "OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_ZIPKIN_ENDPOINT": self.collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "METRICS_ENABLED": "true", "SHUTDOWN_GRACE_PERIOD_SECS": "2",
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

    def close(self) -> None:
        for service in self.services:
            service.stop()
        self.collector.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("services"))
    try:
        stack.traffic(rounds=3)
        # Spans leave in batches, each service on its own schedule: wait until every
        # service has exported the trace of every request it logged.
        regex = re.compile(loki_derived_field()["matcherRegex"])

        def all_exported() -> bool:
            return all(stack.collector.exported_by(s.name) >= {m.group(1) for line in s.lines
                                                               if (m := regex.search(line))}
                       for s in stack.services)

        wait_until(all_exported, 20, "the logged traces at the collector", step=0.2)
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
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": name, "static_configs": [{"targets": [target]}]}
                                 for name, target in targets.items()]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(url + "/-/ready", 2)[0] == 200, 30, "Prometheus to be ready", step=0.2)
        wait_until(lambda: len(query(url, "up == 1")) == len(targets), 30, "both targets to be up", step=0.5)
        # Traffic spread over several scrapes, then a few more scrapes.
        for _ in range(4):
            stack.traffic(rounds=2)
            time.sleep(1)
        time.sleep(3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


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
    status, body = http_get(f"{prometheus}/api/v1/label/service/values?" +
                            urllib.parse.urlencode({"match[]": "http_requests_total"}))
    assert status == 200
    assert {"front-end", "business-logic"} <= set(json.loads(body)["data"])
