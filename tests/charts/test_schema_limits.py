"""The subcharts' values.schema.json bounds are the binaries' own limits.

For each bounded value the schema's minimum and maximum are rendered with
helm-render; the environment the Deployment passes is handed to the real binary
(on port 0, SQLite in a temp dir, no span export), which must start and answer
/readyz. One past each bound, the schema rejects the value (helm-render fails
naming it) and so does the binary (it exits naming the variable), so the two
limits are the same, not merely nested. The URL patterns get the same treatment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_render import CHART, render, render_ok
from chart_wiring import load_docs, of_kind
from service_process import Service, service_binaries

FRONT_END = CHART / "charts" / "front-end"
BUSINESS_LOGIC = CHART / "charts" / "business-logic"

# (subchart, value, environment variable the Deployment sets from it)
BOUNDED = [
    (FRONT_END, "fastPageTimeoutMs", "FAST_PAGE_TIMEOUT_MS"),
    (FRONT_END, "slowPageTimeoutMs", "SLOW_PAGE_TIMEOUT_MS"),
    (FRONT_END, "shutdownGracePeriodSecs", "SHUTDOWN_GRACE_PERIOD_SECS"),
    (BUSINESS_LOGIC, "slowEndpointDelayMs", "SLOW_ENDPOINT_DELAY_MS"),
    (BUSINESS_LOGIC, "databaseMaxConnections", "DATABASE_MAX_CONNECTIONS"),
    (BUSINESS_LOGIC, "shutdownGracePeriodSecs", "SHUTDOWN_GRACE_PERIOD_SECS"),
]


def schema_bounds(chart, value: str) -> tuple[int, int]:
    prop = json.loads((chart / "values.schema.json").read_text())["properties"][value]
    assert prop["type"] == "integer", f"{chart.name}.{value} is not an integer in the schema"
    return prop["minimum"], prop["maximum"]


def values_file(tmp_path, dotted: str, value) -> Path:
    """A values file setting one (dotted) key: integers stay integers, as in a user's file
    (`--set` would hand Helm a float)."""
    tree = value
    for key in reversed(dotted.split(".")):
        tree = {key: tree}
    path = tmp_path / f"{dotted}-{value}.yaml".replace("/", "_").replace(":", "_")
    path.write_text(yaml.safe_dump(tree))
    return path


def deployment_env(chart, values: Path | None = None) -> dict[str, str]:
    """The plain env entries of the subchart's Deployment, rendered with a values file."""
    [deployment] = of_kind(load_docs(render_ok(chart, values)), "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def run_env(rendered: dict[str, str], tmp_path) -> dict[str, str]:
    """The Deployment's env, made runnable here: loopback port 0, a SQLite file, no export."""
    return {**rendered, "PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": "0",
            "OTEL_TRACES_EXPORTER": "none", "DATABASE_URL": f"sqlite://{tmp_path / 'limits.db'}",
            "WORK_DIR": str(tmp_path)}


def starts(binary, env: dict[str, str]) -> None:
    service = Service(binary, env)  # waits for the listening line and /readyz 200, bounded
    service.stop()


def refused(binary, env: dict[str, str]) -> str:
    """The binary exits non-zero at start-up; returns its output."""
    result = subprocess.run([str(binary)], env=env, cwd=env["WORK_DIR"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0, f"{binary.name} started with {env}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def binaries():
    return service_binaries()


@pytest.mark.parametrize("chart, value, var", BOUNDED, ids=lambda x: getattr(x, "name", x))
def test_the_binary_accepts_each_bound_and_refuses_one_past_it(binaries, tmp_path, chart, value, var):
    binary = binaries / chart.name
    low, high = schema_bounds(chart, value)
    for bound in (low, high):
        env = deployment_env(chart, values_file(tmp_path, value, bound))
        assert env[var] == str(bound)
        starts(binary, run_env(env, tmp_path))
    for past in (low - 1, high + 1):
        if past < 0:
            continue  # not even representable in the binary's unsigned setting
        env = run_env(deployment_env(chart), tmp_path)
        output = refused(binary, {**env, var: str(past)})
        assert var in output, output


@pytest.mark.parametrize("chart, value, var", BOUNDED, ids=lambda x: getattr(x, "name", x))
def test_the_schema_rejects_one_past_each_bound(tmp_path, chart, value, var):
    low, high = schema_bounds(chart, value)
    for past in (low - 1, high + 1):
        for target, key in ((chart, value), (CHART, f"{chart.name}.{value}")):
            result = render(target, values_file(tmp_path, key, past))
            assert result.returncode != 0, f"{target.name}: {key}={past} was accepted"
            assert value in result.stderr, result.stderr


URLS = [
    # (chart, value, env var, accepted by both, refused by both)
    (FRONT_END, "businessLogicUrl", "BUSINESS_LOGIC_URL", "http://business-logic:8080", "https://business-logic:8443"),
    (FRONT_END, "global.tracing.zipkinEndpoint", "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
     "http://zipkin.istio-system:9411/api/v2/spans", "https://zipkin.istio-system:9411/api/v2/spans"),
    (BUSINESS_LOGIC, "global.tracing.otlpEndpoint", "OTEL_EXPORTER_OTLP_ENDPOINT",
     "http://jaeger-collector.istio-system:4318", "https://jaeger-collector.istio-system:4318"),
]


@pytest.mark.parametrize("chart, value, var, good, bad", URLS, ids=lambda x: getattr(x, "name", x))
def test_url_patterns_match_what_the_binary_accepts(binaries, tmp_path, chart, value, var, good, bad):
    binary = binaries / chart.name
    env = deployment_env(chart, values_file(tmp_path, value, good))
    assert env[var] == good
    starts(binary, run_env(env, tmp_path))
    result = render(chart, values_file(tmp_path, value, bad))
    assert result.returncode != 0 and value.rsplit(".", 1)[-1] in result.stderr, result.stderr
    output = refused(binary, {**run_env(deployment_env(chart), tmp_path), var: bad})
    assert var in output, output
