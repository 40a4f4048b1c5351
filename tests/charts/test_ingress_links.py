"""The Gateway API ingress keeps the front-end's pages working under the app prefix.

The real business-logic and front-end run on loopback. In front of them a small
stand-in gateway applies the rendered chart's HTTPRoutes the way the Gateway API
specifies them (PathPrefix matching, ReplacePrefixMatch rewrite, the redirect of
the bare prefix); requests for the dashboards' backends are answered 204 so the
test only records that they reached the dashboards' route. A crawler then starts
at /demo-app, follows every link, stylesheet and form of every page it reaches
(relative links resolved as a browser does) and requires each to answer 200
through the gateway, from the front-end, with nothing escaping the prefix.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urljoin, urlsplit

import pytest
from chart_render import CHART, NAMESPACE, render_ok
from chart_wiring import load_docs, of_kind, resolve_route
from service_process import Collector, Service, service_binaries

PREFIX = "/demo-app/"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def fetch(url: str, timeout: float = 15.0):
    """(status, headers (case-insensitive), body) without following redirects."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")


class StandInGateway:
    """An HTTP server that routes by the chart's HTTPRoutes to the local front-end."""

    def __init__(self, routes: list[dict]) -> None:
        self.front_end_url = ""  # set once the front-end runs (its links name the gateway)
        self.seen: list[tuple[str, tuple | None]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                decision = resolve_route(routes, parts.path)
                gateway.seen.append((self.path, decision))
                if decision is None:
                    return self.answer(404, {}, b"no route")
                if decision[0] == "redirect":
                    # Istio derives the redirect's port from the request: the Host header's.
                    location = f"http://{self.headers['Host']}{decision[1]}"
                    return self.answer(302, {"Location": location}, b"")
                _, (ns, name, port), path = decision
                if (ns, name, port) != (NAMESPACE, "front-end", 8080):
                    return self.answer(204, {}, b"")  # a dashboard: not running here
                query = f"?{parts.query}" if parts.query else ""
                status, headers, body = fetch(gateway.front_end_url + path + query)
                keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "location")}
                return self.answer(status, keep, body.encode())

            def answer(self, status: int, headers: dict, body: bytes):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src", "action") and value is not None:
                self.found.append(value)


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    bin_dir = service_binaries()
    tmp = tmp_path_factory.mktemp("ingress")
    base = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": "0", "SHUTDOWN_GRACE_PERIOD_SECS": "1",
            "WORK_DIR": str(tmp)}
    services = []
    gateway = None
    sink = Collector()  # the front-end shows the Jaeger link only while it exports spans
    try:
        backend = Service(bin_dir / "business-logic", {
            **base, "OTEL_TRACES_EXPORTER": "none", "DATABASE_URL": f"sqlite://{tmp / 'links.db'}",
            "SLOW_ENDPOINT_DELAY_MS": "10"})
        services.append(backend)
        routes = of_kind(load_docs(render_ok(CHART)), "HTTPRoute")
        assert routes, "the chart renders no HTTPRoute"
        gateway = StandInGateway(routes)
        # The pages' dashboard links point at the gateway, as in the cluster (localhost:8080).
        front_end = Service(bin_dir / "front-end", {
            **base, "BUSINESS_LOGIC_URL": backend.url, "JAEGER_UI_URL": f"{gateway.url}/jaeger",
            "GRAFANA_URL": f"{gateway.url}/grafana", **sink.env()})
        services.append(front_end)
        gateway.front_end_url = front_end.url
        yield gateway, front_end
    finally:
        if gateway:
            gateway.close()
        for service in services:
            service.stop()
        sink.close()


def test_every_link_of_every_page_under_the_prefix_answers(gateway):
    gw, _ = gateway
    status, headers, _ = fetch(gw.url + PREFIX.rstrip("/"))
    assert status == 302 and headers["Location"] == gw.url + PREFIX, (status, headers)

    start = gw.url + PREFIX
    queue, visited, pages = [start], set(), 0
    while queue and len(visited) < 50:  # bounded: the app has a handful of pages
        url = queue.pop(0)
        if url in visited:
            continue
        visited.add(url)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != gw.url:
            continue  # another origin (none expected)
        status, headers, body = fetch(url)
        assert status in (200, 204), f"{url} answered {status} through the gateway"
        if status == 204:
            continue  # a dashboard route, checked below
        assert parts.path.startswith(PREFIX), f"{url} left the app prefix"
        if "text/html" in headers.get("Content-Type", ""):
            pages += 1
            for link in links_of(body):
                queue.append(urljoin(url, link).split("#")[0])
    app_paths = {urlsplit(u).path for u in visited}
    assert {PREFIX, PREFIX + "fast-page", PREFIX + "slow-page", PREFIX + "static/style.css"} <= app_paths, app_paths
    assert pages >= 3
    # What the front-end received was the path without the prefix.
    routed = [(path, d) for path, d in gw.seen if d and d[0] == "backend" and d[1][1] == "front-end"]
    assert routed and all(not d[2].startswith(PREFIX) for _, d in routed)


def test_the_dashboard_links_on_a_result_page_reach_the_dashboards_route(gateway):
    gw, _ = gateway
    status, _, body = fetch(gw.url + PREFIX + "fast-page")
    assert status == 200
    targets = [urljoin(gw.url + PREFIX + "fast-page", link) for link in links_of(body)]
    jaeger = [t for t in targets if urlsplit(t).path.startswith("/jaeger/")]
    assert jaeger, f"no Jaeger link among {targets}"
    routes = of_kind(load_docs(render_ok(CHART)), "HTTPRoute")
    decision = resolve_route(routes, urlsplit(jaeger[0]).path)
    assert decision[0] == "backend" and decision[1][:2] == ("istio-system", "tracing")


def test_a_nested_unknown_path_under_the_prefix_is_the_front_ends_404(gateway):
    gw, _ = gateway
    status, headers, body = fetch(gw.url + PREFIX + "no/such/page")
    assert status == 404 and "text/html" in headers.get("Content-Type", ""), (status, headers)
