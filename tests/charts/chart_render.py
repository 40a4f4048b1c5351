"""The repository's chart, the offline Helm tools (tools/, installed into the
.venv by tests/requirements.txt), and helm-render runs (cached for the session)."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "app"
SUBCHARTS = sorted(p.parent for p in (CHART / "charts").glob("*/Chart.yaml"))
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "app"
NAMESPACE = "demo-app"
KUBE_VERSION = "1.36.0"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# The umbrella chart under its defaults and under each ci/*-values.yaml.
SCENARIOS = ["defaults"] + [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
# Istio's data-plane modes (helm/app mesh.mode). Every scenario renders in both, except the
# combinations the chart refuses on purpose: scenario, mode -> the start of its error message.
MODES = ["sidecar", "ambient"]
REFUSED = {("fault-injection", "ambient"): "faultInjection needs mesh.mode=sidecar"}
# "scenario/mode" for every combination the chart must render.
CASES = [f"{s}/{m}" for s in SCENARIOS for m in MODES if (s, m) not in REFUSED]


def require_tool(name: str) -> Path:
    """helm-render or validate-manifests: from SHARED_TOOLS when that is set,
    else the repository's own (tools/), installed next to this Python."""
    folder = os.environ.get("SHARED_TOOLS")
    tool = Path(folder) / name if folder else Path(sys.executable).parent / name
    if not os.access(tool, os.X_OK):
        where = f"SHARED_TOOLS={folder}" if folder else "this Python's environment (make test-deploy installs " \
            "tests/requirements.txt, which installs tools/)"
        pytest.fail(f"{name} not found in {where}")
    return tool


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (tests/requirements.txt)."""
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.fail(f"{tool} not found: install tests/requirements.txt into this Python's environment")
    return str(tool)


@lru_cache(maxsize=None)
def _render(chart: str, values: str | None, extra: tuple[str, ...]) -> subprocess.CompletedProcess:
    args = [str(require_tool("helm-render")), chart, "--release", RELEASE, "--namespace", NAMESPACE,
            "--kube-version", f"v{KUBE_VERSION}"]
    if values:
        args += ["-f", values]
    args += list(extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def render(chart: Path, values: Path | None = None, *extra: str) -> subprocess.CompletedProcess:
    """helm-render CHART [-f VALUES] [EXTRA...] (cached; returns the finished process)."""
    return _render(str(chart), str(values) if values else None, tuple(extra))


def render_ok(chart: Path, values: Path | None = None, *extra: str) -> str:
    result = render(chart, values, *extra)
    assert result.returncode == 0, f"helm-render {chart} {values or ''} {extra} failed:\n{result.stderr}"
    return result.stdout


def scenario_values(scenario: str) -> Path | None:
    return None if scenario == "defaults" else CHART / "ci" / f"{scenario}-values.yaml"


def mode_args(mode: str) -> tuple[str, ...]:
    """What `make helm-app MESH_MODE=...` adds to the command line."""
    return ("--set", f"mesh.mode={mode}")


def case_args(case: str) -> tuple[Path | None, tuple[str, ...]]:
    """A "scenario/mode" case as render arguments: (values file or None, extra arguments)."""
    scenario, mode = case.split("/")
    return scenario_values(scenario), mode_args(mode)
