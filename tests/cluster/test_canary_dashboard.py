"""The dashboard's canary row against the real services: business-logic v1 and a
v2 with the regression on, both scraped by a real Prometheus (Debian package
`prometheus`); each canary query tells the versions apart, and the error share
rises for v2 only. Bounded: a fixed number of requests, every wait timed."""

from __future__ import annotations

import math
import urllib.parse

import pytest
from test_cluster_observability import (Collector, Service, dashboard_queries, http_get, prometheus_binary, query,
                                        running_prometheus, service_binaries, substitute)

CANARY_TITLE = "Canary:"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """business-logic v1 (defaults) and v2 (its regression, half the fast requests failing)."""
    bin_dir = service_binaries()
    tmp = tmp_path_factory.mktemp("canary")
    collector = Collector()
    base = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": "0", "RUST_LOG": "info",
            **collector.env(), "SHUTDOWN_GRACE_PERIOD_SECS": "2"}
    services = {}
    try:
        for version, extra in (("v1", {}), ("v2", {"SERVICE_VERSION": "v2", "REGRESSION_EXTRA_QUERY": "true",
                                                   "REGRESSION_ERROR_RATE": "0.5"})):
            services[version] = Service(bin_dir / "business-logic", {
                **base, **extra, "DATABASE_URL": f"sqlite://{tmp / version}.db", "WORK_DIR": str(tmp)})
        yield services
    finally:
        for service in services.values():
            service.stop()
        collector.close()


@pytest.fixture(scope="module")
def prometheus(versions, tmp_path_factory):
    binary = prometheus_binary()
    tmp = tmp_path_factory.mktemp("canary-prometheus")
    targets = [urllib.parse.urlparse(s.url).netloc for s in versions.values()]
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "business-logic", "static_configs": [{"targets": targets}]}]}

    def traffic():
        for service in versions.values():
            for _ in range(20):  # 4 x 20 fast requests per version, spread over several scrapes
                assert http_get(service.url + "/fast-endpoint")[0] in (200, 500)

    with running_prometheus(binary, tmp, config, 2, traffic) as url:
        yield url


def canary_queries() -> list[tuple[str, str]]:
    return [(title, expr) for title, expr in dashboard_queries() if title.startswith(CANARY_TITLE)]


def test_the_dashboard_has_a_canary_row_with_rate_errors_and_p95():
    titles = {title for title, _ in canary_queries()}
    assert any("rate" in t for t in titles) and any("error" in t for t in titles) and any("p95" in t for t in titles)
    mesh = [expr for title, expr in dashboard_queries(mesh=True) if title.startswith("Canary (mesh)")]
    assert mesh and all("destination_version" in expr for expr in mesh)


@pytest.mark.parametrize("title, expr", canary_queries(), ids=[t for t, _ in canary_queries()])
def test_each_canary_query_tells_v1_and_v2_apart(prometheus, title, expr):
    result = query(prometheus, substitute(expr))
    by_version: dict[str, list[float]] = {}
    for series in result:
        by_version.setdefault(series["metric"].get("version"), []).append(float(series["value"][1]))
    assert set(by_version) == {"v1", "v2"}, f"{title}: {result}"
    assert all(math.isfinite(v) for values in by_version.values() for v in values), f"{title}: {result}"
    if "error" in title:
        assert by_version["v1"] == [0.0], f"v1 fails nothing: {result}"
        assert 0 < by_version["v2"][0] < 1, f"v2 fails about half: {result}"
