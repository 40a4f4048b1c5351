"""`make canary`, `make promote` and `make rollback` (mk/canary.mk) against the
stand-in kubectl and helm: the helm calls they make, in order, and that running
each one again changes nothing, in both mesh modes (MESH_MODE, helm/app mesh.mode).
tests/charts/test_canary.py checks the chart's weights value by value; the last test here renders
the values these targets actually pass, so the two cannot drift apart."""

from __future__ import annotations

import sys
from pathlib import Path

import fake_tools
import pytest
from test_cluster_script import Sandbox, ok, require_chart_targets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
from chart_render import CHART, render_ok  # noqa: E402  (tests/charts, for the real render)
from chart_wiring import load_docs, of_kind  # noqa: E402

SIDECAR = {"mesh.mode": "sidecar"}
ON_20 = {"business-logic.canary.enabled": "true", "canary.weights.v1": "80", "canary.weights.v2": "20", **SIDECAR}
ON_NO_CALLS = {"business-logic.canary.enabled": "true", "canary.weights.v1": "100", "canary.weights.v2": "0",
               **SIDECAR}
ALL_TO_V2 = {"business-logic.canary.enabled": "true", "canary.weights.v1": "0", "canary.weights.v2": "100", **SIDECAR}
OFF = {"business-logic.canary.enabled": "false", "canary.weights.v1": "100", "canary.weights.v2": "0", **SIDECAR}


def made(tmp_path, mode: str) -> Sandbox:
    """A sandbox whose stand-in cluster exists in mesh mode `mode`, with an empty call log."""
    require_chart_targets()
    sandbox = Sandbox(tmp_path)
    ok(sandbox.script(MESH_MODE=mode))
    sandbox.clear_log()
    return sandbox


@pytest.fixture
def cluster(tmp_path) -> Sandbox:
    return made(tmp_path, "sidecar")


@pytest.fixture
def ambient_cluster(tmp_path) -> Sandbox:
    """Made by `make create-cluster MESH_MODE=ambient`: helm-app refuses another mode there."""
    return made(tmp_path, "ambient")


def app_installs(sandbox: Sandbox) -> list[dict[str, str]]:
    """The --set values of each `helm upgrade --install app`, in order; every one
    is a full helm-app install (images, wait) without --reuse-values."""
    installs = []
    for call in sandbox.calls():
        args = call["args"]
        if call["tool"] != "helm" or "upgrade" not in args or "app" not in args:
            continue
        assert "--reuse-values" not in args and "--reset-then-reuse-values" not in args, args
        assert "--wait" in args and "business-logic.image.repository=localhost:5001/business-logic" in args, args
        values = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")
        # helm-app states the mesh mode on every install, once.
        assert sum(a.startswith("mesh.mode=") for a in args) == 1, args
        installs.append(values)
    return installs


def release(sandbox: Sandbox) -> dict:
    return fake_tools.read_state(sandbox.state)["releases"]["demo-app/app"]


def run(sandbox: Sandbox, *target: str) -> list[dict[str, str]]:
    sandbox.clear_log()
    ok(sandbox.run(["make", *target]))
    return app_installs(sandbox)


def test_canary_deploys_v2_with_no_calls_then_shifts_the_weight_and_a_second_run_changes_nothing(cluster):
    assert run(cluster, "canary", "WEIGHT=20") == [ON_NO_CALLS, ON_20]
    after_first = release(cluster)
    assert run(cluster, "canary", "WEIGHT=20") == [ON_20]
    assert release(cluster) == after_first
    assert run(cluster, "canary", "WEIGHT=35") == [{**ON_20, "canary.weights.v1": "65", "canary.weights.v2": "35"}]


def test_canary_defaults_to_twenty_percent(cluster):
    assert run(cluster, "canary")[-1] == ON_20


def test_promote_sends_everything_to_v2_and_is_idempotent(cluster):
    run(cluster, "canary", "WEIGHT=20")
    assert run(cluster, "promote") == [ALL_TO_V2]
    assert run(cluster, "promote") == [ALL_TO_V2]


def test_promote_without_a_canary_brings_v2_up_before_moving_calls(cluster):
    assert run(cluster, "promote") == [ON_NO_CALLS, ALL_TO_V2]


def test_rollback_drains_v2_then_removes_it_and_is_idempotent(cluster):
    run(cluster, "canary", "WEIGHT=20")
    assert run(cluster, "rollback") == [ON_NO_CALLS, OFF]
    after_first = release(cluster)
    assert run(cluster, "rollback") == [OFF]
    assert release(cluster) == after_first


def ambient(values: dict[str, str]) -> dict[str, str]:
    return {**values, "mesh.mode": "ambient"}


def test_in_ambient_mode_every_canary_step_keeps_the_mode(ambient_cluster):
    cluster = ambient_cluster
    assert run(cluster, "canary", "WEIGHT=20", "MESH_MODE=ambient") == [ambient(ON_NO_CALLS), ambient(ON_20)]
    assert run(cluster, "canary", "WEIGHT=20", "MESH_MODE=ambient") == [ambient(ON_20)]
    assert run(cluster, "promote", "MESH_MODE=ambient") == [ambient(ALL_TO_V2)]
    assert run(cluster, "rollback", "MESH_MODE=ambient") == [ambient(ON_NO_CALLS), ambient(OFF)]
    after_first = release(cluster)
    assert run(cluster, "rollback", "MESH_MODE=ambient") == [ambient(OFF)]
    assert release(cluster) == after_first


def test_promote_without_a_canary_in_ambient_mode_brings_v2_up_first(ambient_cluster):
    cluster = ambient_cluster
    assert run(cluster, "promote", "MESH_MODE=ambient") == [ambient(ON_NO_CALLS), ambient(ALL_TO_V2)]


def test_the_canary_keeps_the_values_files_of_helm_app(cluster):
    sandbox = cluster
    sandbox.clear_log()
    ok(sandbox.run(["make", "canary", "HELM_VALUES=helm/app/ci/fault-injection-values.yaml"]))
    installs = [c["args"] for c in sandbox.calls() if c["tool"] == "helm" and "upgrade" in c["args"]]
    assert installs and all("helm/app/ci/fault-injection-values.yaml" in args for args in installs)


@pytest.mark.parametrize("weight", ["101", "-5", "twenty", "", "2.5"])
def test_a_bad_weight_stops_before_any_helm_call(cluster, weight):
    cluster.clear_log()
    result = cluster.run(["make", "canary", f"WEIGHT={weight}"])
    assert result.returncode != 0
    assert "WEIGHT=" in result.stderr and "allowed" in result.stderr, result.stderr
    assert not any(c["tool"] == "helm" for c in cluster.calls())


def test_help_lists_the_canary_targets(cluster):
    listing = ok(cluster.run(["make", "help"])).stdout
    for target in ("canary", "promote", "rollback"):
        assert f" {target} " in listing.replace("\x1b[36m", " ").replace("\x1b[0m", " "), listing


def rendered_split(values: dict[str, str]) -> dict[str, int]:
    """What helm/app makes of one install's --set values: the weight per backend Service of the
    HTTPRoute that routes calls to business-logic."""
    docs = load_docs(render_ok(CHART, None, *[a for k, v in values.items() for a in ("--set", f"{k}={v}")]))
    [route] = [r for r in of_kind(docs, "HTTPRoute") if r["metadata"]["name"] == "business-logic"]
    [rule] = route["spec"]["rules"]
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


@pytest.mark.parametrize("mode", ["sidecar", "ambient"])
def test_the_calls_the_targets_make_render_to_the_intended_split(tmp_path, mode):
    """Each helm call of canary, promote and rollback, rendered by the real chart: first no calls
    to v2, then the weight, everything, and back to v1 alone, on the HTTPRoute in both modes."""
    cluster = made(tmp_path, mode)
    installs = run(cluster, "canary", "WEIGHT=35", f"MESH_MODE={mode}") + run(cluster, "promote", f"MESH_MODE={mode}") \
        + run(cluster, "rollback", f"MESH_MODE={mode}")
    assert [rendered_split(values) for values in installs] == [
        {"business-logic-v1": 100, "business-logic-v2": 0},
        {"business-logic-v1": 65, "business-logic-v2": 35},
        {"business-logic-v1": 0, "business-logic-v2": 100},
        {"business-logic-v1": 100, "business-logic-v2": 0},
        {"business-logic-v1": 100},
    ]
    assert {values["mesh.mode"] for values in installs} == {mode}


def test_a_canary_step_without_the_clusters_mode_is_refused_before_any_helm_call(ambient_cluster):
    """`make canary` on an ambient cluster without MESH_MODE=ambient would reinstall the app in
    sidecar mode: helm-app stops first and names the mode to use."""
    result = ambient_cluster.run(["make", "canary", "WEIGHT=20"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "runs in ambient mode, not sidecar" in result.stderr
    assert "MESH_MODE=ambient" in result.stderr
    assert app_installs(ambient_cluster) == []
