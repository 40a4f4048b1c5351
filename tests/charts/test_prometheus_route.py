"""Prometheus' UI at /prometheus through the app's gateway, its API at the root for
everything inside the cluster.

istio-add-ons/prometheus.yaml gives Prometheus `--web.external-url=<path>` (what its
pages link to) and `--web.route-prefix=<root>` (where it serves). The chart's
routes, in both ingress variants, must turn a request for `<path>/x` into `<root>x`
at the Service `prometheus:9090`; Grafana's data source, Kiali's Prometheus URL and
the probes must address Prometheus under `<root>`. Each of those is read from its
file, so a change to one side alone fails here. The last test runs a real Prometheus
(Debian package `prometheus`) with the manifest's flags behind a stand-in gateway
that applies the rendered HTTPRoutes, and follows the UI from /prometheus.
"""

from __future__ import annotations

import posixpath
import shutil
import subprocess
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import yaml
from chart_render import CHART, IN_CI, REPO, render_ok
from chart_wiring import load_dir, load_docs, of_kind, resolve_route
from service_process import free_port, stop_process, wait_until

ADDONS = REPO / "istio-add-ons"
ISTIO_MODE = CHART / "ci" / "istio-gateway-values.yaml"
SERVICE = ("istio-system", "prometheus", 9090)
SERVICE_HOST = "prometheus.istio-system.svc.cluster.local"


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def addon(kind: str, name: str) -> dict:
    [obj] = [d for d in load_dir(ADDONS) if d.get("kind") == kind and d["metadata"]["name"] == name]
    return obj


def prometheus_container() -> dict:
    [container] = addon("Deployment", "prometheus")["spec"]["template"]["spec"]["containers"]
    return container


def web_flags() -> dict[str, str]:
    """The manifest's --web.* flags with a value."""
    flags = {}
    for arg in prometheus_container()["args"]:
        name, eq, value = arg.partition("=")
        if name.startswith("--web.") and eq:
            flags[name] = value
    return flags


def external_path() -> str:
    """The path the UI lives under (--web.external-url's path, no trailing slash)."""
    return urlsplit(web_flags()["--web.external-url"]).path.rstrip("/")


def route_prefix() -> str:
    """Where Prometheus serves: --web.route-prefix, which defaults to the external URL's path."""
    return web_flags().get("--web.route-prefix", external_path()).rstrip("/")


def served_path(path: str) -> str:
    """What Prometheus must receive for a browser's `path` under the external URL."""
    return (route_prefix() + path[len(external_path()):]) or "/"


def istio_resolve(virtual_service: dict, path: str) -> tuple | None:
    """An Istio VirtualService's first matching http route: (host, port, rewritten path)."""
    for http in virtual_service["spec"]["http"]:
        for match in http.get("match") or [{}]:
            uri = match.get("uri", {"prefix": "/"})
            if "exact" in uri and path == uri["exact"]:
                matched = path
            elif "prefix" in uri and path.startswith(uri["prefix"]):
                matched = uri["prefix"]
            else:
                continue
            if "redirect" in http:
                return ("redirect", http["redirect"]["uri"])
            rewrite = (http.get("rewrite") or {}).get("uri")
            new_path = rewrite + path[len(matched):] if rewrite is not None else path
            dest = http["route"][0]["destination"]
            return (dest["host"], dest["port"]["number"], new_path.replace("//", "/"))
    return None


# --- the routes and the flags agree ------------------------------------------------------------------

def test_the_prometheus_flags_keep_the_api_at_the_root_and_the_ui_under_prometheus():
    assert external_path() == "/prometheus"
    assert route_prefix() == "", "the in-cluster API path moved: fix every consumer (see prometheus.yaml)"


@pytest.mark.parametrize("path", ["/prometheus", "/prometheus/", "/prometheus/query", "/prometheus/api/v1/query",
                                  "/prometheus/static/x.js"])
def test_the_gateway_api_route_hands_prometheus_what_it_serves(path):
    routes = of_kind(load_docs(render_ok(CHART)), "HTTPRoute")
    assert resolve_route(routes, path) == ("backend", SERVICE, served_path(path))


@pytest.mark.parametrize("path", ["/prometheus", "/prometheus/", "/prometheus/query", "/prometheus/api/v1/query",
                                  "/prometheus/static/x.js"])
def test_the_istio_virtualservice_hands_prometheus_what_it_serves(path):
    docs = load_docs(render_ok(CHART, ISTIO_MODE))
    [vs] = [v for v in of_kind(docs, "VirtualService") if v["spec"].get("gateways")]
    assert istio_resolve(vs, path) == (SERVICE_HOST, SERVICE[2], served_path(path))


def test_no_route_catches_a_path_that_only_starts_like_prometheus():
    routes = of_kind(load_docs(render_ok(CHART)), "HTTPRoute")
    assert resolve_route(routes, "/prometheusx") is None
    [vs] = [v for v in of_kind(load_docs(render_ok(CHART, ISTIO_MODE)), "VirtualService") if v["spec"].get("gateways")]
    assert istio_resolve(vs, "/prometheusx") is None


def test_without_dashboards_there_is_no_prometheus_route():
    docs = load_docs(render_ok(CHART, CHART / "ci" / "custom-values.yaml"))  # dashboards: false
    assert resolve_route(of_kind(docs, "HTTPRoute"), "/prometheus/query") is None


# --- the in-cluster consumers address Prometheus where it serves ------------------------------------

def consumer_urls() -> dict[str, str]:
    """Every in-cluster URL of Prometheus' API, by who uses it."""
    grafana = yaml.safe_load((ADDONS / "grafana" / "datasources.yaml").read_text())
    [source] = [d for d in grafana["datasources"] if d["type"] == "prometheus"]
    kiali = yaml.safe_load(addon("ConfigMap", "kiali")["data"]["config.yaml"])
    return {"grafana data source": source["url"], "kiali": kiali["external_services"]["prometheus"]["url"]}


def test_grafana_and_kiali_reach_the_prometheus_service_under_its_route_prefix():
    for who, url in consumer_urls().items():
        parts = urlsplit(url)
        assert (parts.hostname.split(".")[:2], parts.port) == (["prometheus", "istio-system"], SERVICE[2]), who
        assert parts.path.rstrip("/") == route_prefix(), f"{who}: {url} is not under the route prefix"


def test_the_probes_ask_prometheus_under_its_route_prefix():
    container = prometheus_container()
    for probe, endpoint in (("readinessProbe", "/-/ready"), ("livenessProbe", "/-/healthy")):
        assert container[probe]["httpGet"]["path"] == route_prefix() + endpoint


# --- a real Prometheus behind the rendered routes ---------------------------------------------------

NO_REDIRECT = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
    "redirect_request": lambda self, *args, **kwargs: None}))


def get(url: str) -> tuple[int, dict, str]:
    try:
        with NO_REDIRECT.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")
    except OSError:
        return 0, {}, ""


class Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if (tag, name) in (("script", "src"), ("link", "href")) and value:
                self.found.append(value)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if shutil.which("/usr/bin/prometheus") else None)
    if not binary:
        unavailable("prometheus not installed (Debian: apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus-route")
    (tmp / "prometheus.yml").write_text("global:\n  scrape_interval: 10s\n")
    port = free_port()
    flags = [f"{k}={v}" for k, v in web_flags().items() if k in ("--web.external-url", "--web.route-prefix")]
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", *flags],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(url + route_prefix() + "/-/ready")[0] == 200, 30, "Prometheus to be ready", step=0.2)
        yield url
    finally:
        stop_process(proc)


def through_gateway(prometheus_url: str, path_and_query: str) -> tuple[int, dict, str]:
    """What a browser gets from the gateway: the rendered HTTPRoutes decide, Prometheus answers."""
    routes = of_kind(load_docs(render_ok(CHART)), "HTTPRoute")
    parts = urlsplit(path_and_query)
    decision = resolve_route(routes, parts.path)
    assert decision and decision[0] == "backend" and decision[1] == SERVICE, (path_and_query, decision)
    return get(prometheus_url + decision[2] + (f"?{parts.query}" if parts.query else ""))


def test_the_ui_opens_from_prometheus_through_the_gateway_with_every_asset(prometheus):
    status, headers, _ = through_gateway(prometheus, "/prometheus")
    assert status == 302, status
    page = headers["Location"]
    assert page.startswith("/prometheus/"), f"Prometheus redirects out of the gateway's prefix: {page}"
    status, _, body = through_gateway(prometheus, page)
    assert status == 200, (page, status)
    parser = Assets()
    parser.feed(body)
    assets = [urlsplit(urljoin(page, a)) for a in parser.found]
    assert assets, f"no script or stylesheet on {page}"
    for asset in assets:
        assert not asset.netloc and posixpath.normpath(asset.path).startswith("/prometheus/"), asset
        status, _, _ = through_gateway(prometheus, asset.path + (f"?{asset.query}" if asset.query else ""))
        assert status == 200, (asset.path, status)


def test_the_api_answers_through_the_gateway_and_at_every_consumers_url(prometheus):
    status, _, body = through_gateway(prometheus, "/prometheus/api/v1/query?query=1")
    assert status == 200 and '"status":"success"' in body, (status, body)
    for who, url in consumer_urls().items():
        path = urlsplit(url).path.rstrip("/")
        status, _, body = get(f"{prometheus}{path}/api/v1/query?query=1")
        assert status == 200 and '"status":"success"' in body, (who, status, body)
    for probe in ("readinessProbe", "livenessProbe"):
        assert get(prometheus + prometheus_container()[probe]["httpGet"]["path"])[0] == 200, probe
