"""helm/app and its subcharts render under every values scenario, the output
passes the API-server-like schema check, and the values are strict and documented."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from chart_wiring import loose_schema_objects, undocumented_values
from chart_render import (CASES, CHART, KUBE_VERSION, MODES, REFUSED, REPO, SCENARIOS, SUBCHARTS, case_args,
                          mode_args, render, render_ok, require_tool, scenario_values)


def validate(manifests: str) -> subprocess.CompletedProcess:
    tool = require_tool("validate-manifests")
    return subprocess.run([str(tool), "-k", KUBE_VERSION, "-"], input=manifests,
                          capture_output=True, text=True, timeout=120)


# `make lint` (lint-charts) lints, renders and schema-checks helm/app under every scenario in
# the chart's default mode, sidecar, and each subchart alone; these cover the other mode.
AMBIENT_CASES = [case for case in CASES if case.endswith("/ambient")]


@pytest.mark.parametrize("case", AMBIENT_CASES)
def test_umbrella_chart_renders_and_validates(case):
    values, extra = case_args(case)
    result = validate(render_ok(CHART, values, *extra))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_scenario_is_rendered_in_both_modes_or_refused_on_purpose():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert sorted(MODES) == sorted(schema["properties"]["mesh"]["properties"]["mode"]["enum"])
    for scenario, mode in REFUSED:
        assert scenario in SCENARIOS and mode in MODES, (scenario, mode)  # no stale exception


@pytest.mark.parametrize("scenario, mode", sorted(REFUSED))
def test_the_refused_combinations_fail_with_a_message_that_says_why(scenario, mode):
    result = render(CHART, scenario_values(scenario), *mode_args(mode))
    assert result.returncode != 0, f"{scenario} in {mode} mode rendered"
    assert REFUSED[(scenario, mode)] in result.stderr, result.stderr
    assert "Alpha" in result.stderr  # the reason (Istio's support on waypoints), not only the rule


@pytest.mark.parametrize("case", AMBIENT_CASES)
def test_helm_lint_strict_passes(case):
    values, extra = case_args(case)
    args = [str(require_tool("helm-render")), "--lint", str(CHART), "--strict", *extra]
    if values:
        args += ["-f", str(values)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_a_broken_manifest():
    broken = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: "one"
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: x:1, imagePullPolicy: Sometimes, portz: []}]
"""
    result = validate(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout


@pytest.mark.parametrize("setting, message", [
    ("front-end.replicaCont=2", "replicaCont"),
    ("business-logic.slowEndpointDelay=1", "slowEndpointDelay"),
    ("postgres.enabled=false", "enabled"),
    ("gateway.host=x", "host"),
    ("front-end.logFormat=xml", "logFormat"),
    ("business-logic.slowEndpointDelayMs=70000", "slowEndpointDelayMs"),
    ("faultInjection.abort.percentage=150", "percentage"),
    ("mesh.mtlsMode=DISABLE", "mtlsMode"),
    ("mesh.mode=waypoint", "mode"),
    ("mesh.metricsScraper=prometheus", "metricsScraper"),
    ("mesh.waypoint.name=Waypoint_1", "name"),
    ("businessLogicRoute.requestTimeout=15", "requestTimeout"),
    ("businessLogicRoute.requestTimeout=1m", "requestTimeout"),
    ("gateway.api=nginx", "api"),
    ("global.tracing.zipkinEndpoint=https://zipkin.istio-system:9411/api/v2/spans", "zipkinEndpoint"),
    ("front-end.businessLogicUrl=https://business-logic:8443", "businessLogicUrl"),
    ("front-end.slowPageTimeoutMs=300001", "slowPageTimeoutMs"),
    ("front-end.image.digest=latest", "digest"),
])
def test_schemas_reject_typos_and_out_of_range_values(setting, message):
    result = render(CHART, None, "--set", setting)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert message in result.stderr, result.stderr


def test_a_digest_pins_the_image_and_leaves_the_version_label_alone():
    digest = "sha256:" + "ab" * 32
    docs = [d for d in yaml.safe_load_all(render_ok(CHART, None, "--set-string",
                                                    f"business-logic.image.digest={digest}")) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "business-logic"]
    pod = deployment["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == f"localhost:5001/business-logic:0.1.0@{digest}"
    assert pod["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0"
    # business-logic's `version` names the canary track (v1 or v2), not the image.
    assert pod["metadata"]["labels"]["version"] == "v1"
    (front_end,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "front-end"]
    assert front_end["spec"]["template"]["spec"]["containers"][0]["image"] == "localhost:5001/front-end:0.1.0"


def test_slow_page_timeout_must_exceed_the_slow_delay():
    result = render(CHART, None, "--set", "business-logic.slowEndpointDelayMs=12000")
    assert result.returncode != 0
    assert "slowPageTimeoutMs" in result.stderr, result.stderr
    render_ok(CHART, None, "--set", "business-logic.slowEndpointDelayMs=12000",
              "--set", "front-end.slowPageTimeoutMs=15000")


@pytest.mark.parametrize("timeout, accepted", [("3000ms", False), ("3s", False), ("3001ms", True), ("4s", True)])
def test_the_route_timeout_must_exceed_the_slow_delay(timeout, accepted):
    """business-logic.slowEndpointDelayMs is 3000 by default: the mesh must wait longer."""
    result = render(CHART, None, "--set-string", f"businessLogicRoute.requestTimeout={timeout}")
    assert (result.returncode == 0) == accepted, result.stderr
    if not accepted:
        assert "businessLogicRoute.requestTimeout" in result.stderr and "slowEndpointDelayMs" in result.stderr


CHARTS = [CHART] + SUBCHARTS


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_values_schema_is_strict(chart):
    schema = json.loads((chart / "values.schema.json").read_text())
    # Subcharts receive every global of the umbrella; the umbrella hands each
    # subchart's section to that subchart's own schema.
    open_ok = frozenset({"$.global", "$.front-end", "$.business-logic", "$.postgres"})
    assert loose_schema_objects(schema, allow_open=open_ok) == []


def test_strictness_check_finds_an_open_object():
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}}}}
    assert loose_schema_objects(schema) == ["$.a"]


@pytest.mark.parametrize("chart", CHARTS, ids=lambda p: p.name)
def test_every_value_has_a_comment(chart):
    assert undocumented_values((chart / "values.yaml").read_text()) == []


def test_documentation_check_finds_an_undocumented_value():
    values = """\
# The image.
image:
  repository: x
service:
  # The port.
  port: 8080
  type: ClusterIP
replicas: 1
"""
    assert undocumented_values(values) == ["service.type", "replicas"]


def test_chart_versions_follow_the_workspace_version():
    cargo = (REPO / "Cargo.toml").read_text()
    workspace_version = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"',
                                  cargo, re.M | re.S)[1]
    for chart in [CHART, CHART / "charts" / "front-end", CHART / "charts" / "business-logic"]:
        app_version = re.search(r'^appVersion:\s*"?([^"\s]+)"?', (chart / "Chart.yaml").read_text(), re.M)[1]
        assert app_version == workspace_version, f"{chart}/Chart.yaml appVersion"


NOTES_PROBE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-probe
data:
  notes: |
{{ include (print $.Template.BasePath "/NOTES.txt") . | indent 4 }}
"""


def rendered_notes(tmp_path, values=None, *extra: str) -> str:
    """NOTES.txt as Helm renders it (helm template does not print it): a copy of
    the chart with a ConfigMap that includes it."""
    copy = tmp_path / "app"
    shutil.copytree(CHART, copy)
    (copy / "templates" / "notes-probe.yaml").write_text(NOTES_PROBE)
    docs = yaml.safe_load_all(render_ok(copy, values, "-s", "templates/notes-probe.yaml", *extra))
    return next(d for d in docs if d)["data"]["notes"]


def test_notes_print_the_port_forward_and_every_url(tmp_path):
    notes = rendered_notes(tmp_path)
    assert "kubectl -n demo-app port-forward svc/demo-gateway-istio 8080:80" in notes
    istio = rendered_notes(tmp_path / "istio", CHART / "ci" / "istio-gateway-values.yaml")
    assert "kubectl -n istio-system port-forward svc/istio-ingressgateway 8080:80" in istio
    for url in ("/demo-app/", "/jaeger", "/grafana", "/kiali", "/prometheus"):
        assert f"http://localhost:8080{url}" in notes
    assert "Fault injection" not in notes


def test_notes_name_the_mesh_mode_and_the_namespace_label_it_needs(tmp_path):
    sidecar = rendered_notes(tmp_path / "sidecar")
    assert "Mesh mode: sidecar" in sidecar and "istio-injection=enabled" in sidecar
    assert "waypoint" not in sidecar
    ambient = rendered_notes(tmp_path / "ambient", None, "--set", "mesh.mode=ambient")
    assert "Mesh mode: ambient" in ambient and "istio.io/dataplane-mode=ambient" in ambient
    assert "istio-injection" not in ambient and "Deployment waypoint" in ambient


def test_notes_say_when_faults_are_on(tmp_path):
    notes = rendered_notes(tmp_path, CHART / "ci" / "fault-injection-values.yaml")
    assert "delay 2s on 50% of requests" in notes and "HTTP 503 on 20% of requests" in notes
