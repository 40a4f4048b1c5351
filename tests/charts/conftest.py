"""Fixtures for the chart checks: the umbrella chart rendered under each values scenario."""

from __future__ import annotations

import pytest
from chart_render import CHART, SCENARIOS, render_ok, scenario_values
from chart_wiring import load_docs


@pytest.fixture(params=SCENARIOS)
def scenario(request) -> str:
    return request.param


@pytest.fixture
def manifests(scenario) -> list[dict]:
    """The umbrella chart's manifests under one values scenario."""
    return load_docs(render_ok(CHART, scenario_values(scenario)))
