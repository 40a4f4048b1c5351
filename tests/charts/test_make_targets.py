"""mk/charts.mk: the targets mk/cluster.mk's `up` relies on exist, are documented
in `make help`, and run the commands the README promises (checked with make -n)."""

from __future__ import annotations

import re
import subprocess

import pytest
from chart_render import REPO

TARGETS = ["build-business-logic", "build-front-end", "build", "push", "helm-app",
           "lint-charts", "lint-docker", "lint-yaml"]


def make(*args: str) -> str:
    result = subprocess.run(["make", "--no-print-directory", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_lists_every_target():
    listed = re.findall(r"^\s+(?:\x1b\[\d+m)?([a-z-]+)", make("help"), re.M)
    assert [t for t in TARGETS if t not in listed] == []


def test_images_are_built_and_pushed_with_the_chart_version():
    version = re.search(r'^appVersion:\s*"?([^"\s]+)', (REPO / "helm/app/Chart.yaml").read_text(), re.M)[1]
    commands = make("-n", "build", "push")
    for service in ("business-logic", "front-end"):
        assert f"docker build --build-arg PACKAGE={service} -t localhost:5001/{service}:{version} ." in commands
        assert f"docker push localhost:5001/{service}:{version}" in commands


@pytest.mark.parametrize("context", ["", "kind-demo"])
def test_helm_app_labels_the_namespace_installs_and_waits(context):
    commands = make("-n", "helm-app", f"KUBE_CONTEXT={context}")
    ctx = f" --context {context}" if context else ""
    # Sidecar mode by default: injection on, and no ambient enrolment left over.
    assert f"kubectl{ctx} label namespace demo-app istio-injection=enabled istio.io/dataplane-mode- --overwrite" \
        in commands
    install = re.search(r"helm.* upgrade --install app helm/app -n demo-app.*", commands, re.S)[0]
    assert "--wait --timeout 5m" in install and "--set-string front-end.image.tag=" in install
    # The pushed digests are pinned, so a rebuild under the same tag rolls out.
    for service in ("front-end", "business-logic"):
        assert (f"--set-string {service}.image.digest=\"$(docker image inspect" in install
                and f"localhost:5001/{service}:" in install)
    for workload in ("deployment/front-end", "deployment/business-logic", "statefulset/postgres"):
        assert f"rollout status {workload}" in commands
    assert commands.index("istio-injection=enabled") < commands.index("upgrade --install")


@pytest.mark.parametrize(("mode", "labels"), [
    ("sidecar", "istio-injection=enabled istio.io/dataplane-mode-"),
    ("ambient", "istio.io/dataplane-mode=ambient istio-injection-"),
])
def test_helm_app_passes_the_mesh_mode_to_the_chart_and_labels_the_namespace_for_it(mode, labels):
    commands = make("-n", "helm-app", f"MESH_MODE={mode}")
    assert f"label namespace demo-app {labels} --overwrite" in commands
    install = re.search(r"helm.* upgrade --install app helm/app -n demo-app.*", commands, re.S)[0]
    assert re.findall(r"--set mesh\.mode=(\S+)", install) == [mode]
    # The mode is given before HELM_SET_ARGS, which the canary targets fill, so they keep it.
    with_args = make("-n", "helm-app", f"MESH_MODE={mode}", "HELM_SET_ARGS=--set canary.weights.v1=100")
    assert f"--set mesh.mode={mode}" in with_args and \
        with_args.index(f"--set mesh.mode={mode}") < with_args.index("--set canary.weights.v1=100")
    assert commands.index("label namespace") < commands.index("upgrade --install")


def test_mesh_mode_is_a_documented_variable_defaulting_to_sidecar():
    variables = make("help").split("Variables", 1)[1]
    assert re.search(r"MESH_MODE\S*\s+sidecar$", re.sub(r"\x1b\[\d*m", "", variables), re.M)
    assert "MESH_MODE" in make("help").split("Variables", 1)[0], "a target's help names it"
