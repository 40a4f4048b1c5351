"""Fixtures for the chart checks: the umbrella chart rendered under each values scenario,
in each of Istio's data-plane modes."""

from __future__ import annotations

import pytest
from chart_render import CASES, CHART, case_args, render_ok
from chart_wiring import load_docs


@pytest.fixture(params=CASES)
def scenario(request) -> str:
    """A values scenario and a mesh mode, as "scenario/mode" (chart_render.CASES)."""
    return request.param


@pytest.fixture
def manifests(scenario) -> list[dict]:
    """The umbrella chart's manifests under one values scenario and mesh mode."""
    values, extra = case_args(scenario)
    return load_docs(render_ok(CHART, values, *extra))
