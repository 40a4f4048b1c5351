"""`make preflight` (scripts/preflight.sh) against the stand-in tools of
fake_tools.py: what passes, what fails and what each failure says.

The pins the stand-ins know are collected here, independently of the script,
from the files that hold them; the stand-ins answer for those and nothing
else, so a pin the script forgets to check, or checks under a wrong name, shows
up as a failure or as a call that never happened."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fake_tools
import pytest
import yaml
from cluster_support import KIND_CONFIG, REPO, istio_dashboard_urls, load_docs, script_setting
from test_cluster_script import Sandbox

GIB = 1024**3


# --- the pins, read here from their homes ----------------------------------------------------------------

def pinned_images(repo: Path = REPO) -> list[str]:
    """Every image the walkthrough pulls: kind's node image, the registry, Istio's, the add-ons', the app
    chart's third-party images, the Dockerfile's base images."""
    images = [node["image"] for node in yaml.safe_load((repo / KIND_CONFIG.name).read_text())["nodes"]]
    images.append(script_setting("REGISTRY_IMAGE"))
    (operator,) = load_docs(repo / "istio-add-ons" / "istio-operator.yaml")
    istio = script_setting("ISTIO_VERSION")
    images += [f"{operator['spec']['hub']}/{name}:{istio}" for name in ("pilot", "proxyv2")]
    for path in sorted((repo / "istio-add-ons").glob("*.yaml")):
        for doc in load_docs(path):
            template = doc.get("spec", {}).get("template", {}) if isinstance(doc.get("spec"), dict) else {}
            images += [c["image"] for c in template.get("spec", {}).get("containers", [])]
    for values in sorted((repo / "helm" / "app" / "charts").glob("*/values.yaml")):
        image = yaml.safe_load(values.read_text()).get("image", {})
        if image.get("tag") and not image["repository"].startswith("localhost:"):
            images.append(f"{image['repository']}:{image['tag']}")
    stages: set[str] = set()
    for line in (repo / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] and words[0].upper() == "FROM":
            image = next(w for w in words[1:] if not w.startswith("--"))
            if image not in stages:
                images.append(image)
            if len(words) >= 4 and words[-2].upper() == "AS":
                stages.add(words[-1])
    return list(dict.fromkeys(images))


def pinned_charts() -> list[str]:
    """The Helm charts create-cluster.sh installs, as the stand-in helm names them (URL/NAME:VERSION)."""
    return [f"{script_setting(f'{chart.upper()}_CHART_REPO')}/{chart}:{script_setting(f'{chart.upper()}_CHART_VERSION')}"
            for chart in ("loki", "alloy")]


def pinned_urls() -> list[str]:
    version = script_setting("GATEWAY_API_VERSION")
    return [f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{version}/standard-install.yaml",
            *istio_dashboard_urls()]


def test_the_pins_found_here_are_the_ones_expected():
    """The collection above finds what the repository pins (so the tests below test something)."""
    images = pinned_images()
    assert any(i.startswith("kindest/node:v1.36.") and "@sha256:" in i for i in images)
    assert "docker.io/istio/pilot:" + script_setting("ISTIO_VERSION") in images
    for name in ("grafana/grafana", "jaegertracing/jaeger", "kiali/kiali", "prom/prometheus", "postgres:",
                 "registry:", "rust:", "distroless/"):
        assert any(name in image for image in images), name
    assert not any(i.startswith("localhost:") or i in ("chef", "planner", "builder") for i in images)


# --- running it --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def listening() -> Iterator[int]:
    """A port something listens on, on 127.0.0.1, for the duration."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def network(images: list[str] | None = None, charts: list[str] | None = None,
            urls: list[str] | None = None) -> dict[str, str]:
    """What the stand-ins find: by default, every pin."""
    return {"FAKE_IMAGES": " ".join(pinned_images() if images is None else images),
            "FAKE_CHARTS": " ".join(pinned_charts() if charts is None else charts),
            "FAKE_URLS": " ".join(pinned_urls() if urls is None else urls)}


def preflight(sandbox: Sandbox, *make_args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """`make preflight` with every pin resolvable and free registry and gateway ports, unless `env` says
    otherwise."""
    settings = {**network(), "REG_PORT": str(free_port()), **env}
    return sandbox.run(["make", "preflight", f"GATEWAY_PORT={free_port()}", *make_args], cwd=cwd, **settings)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def failures(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"^ *FAIL +(.*)$", result.stdout, re.M)


def summary(result: subprocess.CompletedProcess) -> str:
    return result.stdout.rsplit("==> Summary", 1)[1]


def asked(sandbox: Sandbox, tool: str, *prefix: str) -> list[list[str]]:
    return [c["args"] for c in sandbox.calls() if c["tool"] == tool and c["args"][:len(prefix)] == list(prefix)]


def failed_run(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """The script exits 1, so make fails (2) and names the target."""
    assert result.returncode == 2 and "preflight] Error 1" in result.stderr, f"exit {result.returncode}\n{output(result)}"
    assert "Fix what is marked FAIL above" in summary(result)
    return result


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --- everything there ------------------------------------------------------------------------------------

def test_with_everything_in_place_it_passes_and_checks_every_pin(sandbox):
    result = preflight(sandbox)
    assert result.returncode == 0, output(result)
    assert failures(result) == []
    assert "ready for make up" in summary(result)
    inspected = [args[-1] for args in asked(sandbox, "docker", "manifest", "inspect")]
    assert sorted(set(inspected)) == sorted(pinned_images())
    assert len(inspected) == len(set(inspected)), "each image once"
    shown = [f"{fake_tools.option(a, '--repo')}/{a[2]}:{fake_tools.option(a, '--version')}"
             for a in asked(sandbox, "helm", "show", "chart")]
    assert sorted(shown) == sorted(pinned_charts())
    assert [args[-1] for args in asked(sandbox, "curl")] == pinned_urls()
    for tool, version in (("kind", script_setting("KIND_VERSION")), ("istioctl", script_setting("ISTIO_VERSION"))):
        assert re.search(rf"ok +{tool} {re.escape(version)}$", result.stdout, re.M), tool


def test_it_changes_nothing(sandbox):
    preflight(sandbox)
    changing = [c for c in sandbox.calls() if c["tool"] in fake_tools.MUTATING and fake_tools.MUTATING[c["tool"]](c["args"])]
    assert changing == []
    assert not (sandbox.state / fake_tools.STATE_FILE).exists()


def test_skip_pins_leaves_the_network_alone(sandbox):
    result = preflight(sandbox, "SKIP_PINS=1", **network(images=[], charts=[], urls=[]))
    assert result.returncode == 0, output(result)
    assert "pinned images and charts not checked: --skip-pins" in summary(result)
    assert asked(sandbox, "docker", "manifest") == [] and asked(sandbox, "helm", "show") == []
    assert asked(sandbox, "curl") == []


# --- a tool missing or at another version -----------------------------------------------------------------

INSTALL_HINTS = {
    "docker": "https://docs.docker.com/get-started/get-docker/",
    "kind": "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "https://kubernetes.io/docs/tasks/tools/",
    "helm": "https://helm.sh/docs/intro/install/",
    "istioctl": "curl -L https://istio.io/downloadIstio | ISTIO_VERSION=",
}


@pytest.mark.parametrize("tool", fake_tools.TOOLS)
def test_a_missing_tool_fails_with_an_install_hint(tmp_path, tool):
    sandbox = Sandbox(tmp_path, omit=(tool,))
    result = failed_run(preflight(sandbox))
    [failure] = [f for f in failures(result) if f.startswith(f"{tool}:")]
    assert failure.startswith(f"{tool}: not found")
    hint = result.stdout.split(failure, 1)[1].splitlines()[1]
    assert "hint: install it: " + INSTALL_HINTS[tool] in hint
    assert re.search(rf"failed: .*\b{tool}\b", summary(result))
    if tool == "docker":
        # Nothing else asks a Docker that is not there; the images are reported as unchecked.
        assert any("not checked (docker is missing)" in f for f in failures(result))
    else:
        assert len(failures(result)) == 1 + (tool == "helm"), failures(result)  # helm: the charts unchecked too


@pytest.mark.parametrize(("tool", "version", "expected"), [
    ("istioctl", "1.30.5", "istioctl " + script_setting("ISTIO_VERSION")),
    ("istioctl", "1.31.0", "istioctl " + script_setting("ISTIO_VERSION")),
    ("kind", "v0.31.0", "kind " + script_setting("KIND_VERSION")),
    ("kubectl", "v1.34.3", "kubectl v1.36 (one minor version either side works)"),
    ("kubectl", "v1.38.0", "kubectl v1.36 (one minor version either side works)"),
    ("helm", "v3.17.4+g1234567", "Helm v4 (v3.18 or newer works too)"),
    ("docker", "26.1.4", "Docker Engine 27 or newer"),
])
def test_another_version_fails_and_names_the_one_expected(sandbox, tool, version, expected):
    result = failed_run(preflight(sandbox, **{f"FAKE_{tool.upper()}_VERSION": version}))
    shown = version.split("+")[0]
    assert failures(result) == [f"{tool} {shown}: the scripts expect {expected}"]
    hint = result.stdout.split(failures(result)[0], 1)[1].splitlines()[1]
    assert "install that version: " + INSTALL_HINTS[tool] in hint


@pytest.mark.parametrize(("tool", "version"), [
    ("kubectl", "v1.35.0"), ("kubectl", "v1.37.2"), ("helm", "v3.18.0"), ("helm", "v4.1.1"), ("docker", "29.0.1"),
])
def test_versions_within_the_expected_range_pass(sandbox, tool, version):
    result = preflight(sandbox, **{f"FAKE_{tool.upper()}_VERSION": version})
    assert result.returncode == 0, output(result)


# --- Docker's resources --------------------------------------------------------------------------------

def reported_memory(gb: int) -> int:
    """What `docker info` reports as MemTotal for a Docker set to `gb` GB: the VM's kernel keeps
    some, so Docker Desktop set to 8 GB reports about 7.65 GiB."""
    return int(gb * GIB * 7.65 / 8)


def test_too_little_memory_fails_and_says_what_to_set(sandbox):
    minimum = int(script_setting("DOCKER_MIN_MEMORY_GIB"))
    mem = reported_memory(minimum - 1)
    result = failed_run(preflight(sandbox, FAKE_DOCKER_MEM=str(mem)))
    assert failures(result) == [
        f"Docker has {mem // 1024**2} MiB of memory; kind, Istio, the add-ons and the image build need "
        f"Docker set to {minimum} GB or more (8 GB is comfortable)"]
    assert f"set Docker's memory to {minimum} GB or more (Docker Desktop: Settings > Resources" in result.stdout
    assert "Docker memory" in summary(result)


def test_a_docker_set_to_the_minimum_passes_though_it_reports_less(sandbox):
    minimum = int(script_setting("DOCKER_MIN_MEMORY_GIB"))
    result = preflight(sandbox, FAKE_DOCKER_MEM=str(reported_memory(minimum)))
    assert result.returncode == 0, output(result)
    # create-cluster.sh warns on the same threshold.
    assert "Docker has" not in sandbox.script(FAKE_DOCKER_MEM=str(reported_memory(minimum))).stderr


def test_too_few_cpus_fail(sandbox):
    minimum = int(script_setting("DOCKER_MIN_CPUS"))
    result = failed_run(preflight(sandbox, FAKE_DOCKER_CPUS=str(minimum - 1)))
    assert failures(result) == [f"Docker has {minimum - 1} CPU(s); the stack needs {minimum} or more (4 are comfortable)"]


def test_docker_not_running_fails_with_a_hint_to_start_it(sandbox):
    result = failed_run(preflight(sandbox, FAKE_DOCKER_DOWN="1"))
    assert failures(result)[0] == "Docker is installed but does not answer ('docker info' failed)"
    assert "colima start" in result.stdout
    assert "Docker memory" not in result.stdout


# --- pins that do not resolve ------------------------------------------------------------------------------

@pytest.mark.parametrize("image", pinned_images())
def test_an_image_that_does_not_resolve_is_named(sandbox, image):
    result = failed_run(preflight(sandbox, **network(images=[i for i in pinned_images() if i != image])))
    [failure] = failures(result)
    assert failure.startswith(f"{image} (") and f"does not resolve: no such manifest: {image}" in failure
    assert f"image {image}" in summary(result)


def test_an_istio_image_that_does_not_resolve_points_at_istios_own_registry(sandbox):
    """Istio publishes its images on registry.istio.io/release, its default hub since
    istio/istio#59364, as well as on Docker Hub: the other hub is the way round a Docker Hub limit."""
    image = "docker.io/istio/pilot:" + script_setting("ISTIO_VERSION")
    result = failed_run(preflight(sandbox, **network(images=[i for i in pinned_images() if i != image])))
    [failure] = failures(result)
    hint = result.stdout.split(failure, 1)[1].splitlines()[1]
    assert "registry.istio.io/release" in hint and "istio/istio#59364" in hint and "istio-operator.yaml" in hint


@pytest.mark.parametrize("chart", ["loki", "alloy"])
def test_a_chart_that_does_not_resolve_is_named(sandbox, chart):
    version = script_setting(f"{chart.upper()}_CHART_VERSION")
    result = failed_run(preflight(sandbox, **network(charts=[c for c in pinned_charts() if f"/{chart}:" not in c])))
    [failure] = failures(result)
    assert failure.startswith(f"chart {chart} {version} (") and "not found" in failure
    assert f"chart {chart} {version}" in summary(result)


def test_gateway_api_crds_that_do_not_resolve_are_named(sandbox):
    result = failed_run(preflight(sandbox, **network(urls=pinned_urls()[1:])))
    [failure] = failures(result)
    assert failure.startswith("Gateway API v") and "404" in failure
    assert f" CRDs {pinned_urls()[0]} (create-cluster.sh) does not resolve" in failure


def test_istio_dashboards_that_do_not_resolve_are_named(sandbox):
    [mesh, *others] = istio_dashboard_urls()
    result = failed_run(preflight(sandbox, **network(urls=pinned_urls()[:1] + others)))
    [failure] = failures(result)
    assert failure.startswith("Istio ") and "404" in failure
    assert f" dashboard {mesh.rsplit('/', 1)[1]} {mesh} (create-cluster.sh) does not resolve" in failure
    assert "https://github.com/istio/istio/tags" in result.stdout.split(failure, 1)[1].splitlines()[1]
    assert "Istio dashboard istio-mesh-dashboard.gen.json" in summary(result)


def copy_of_the_repo(tmp_path: Path) -> Path:
    """The files `make preflight` reads, in a folder the test may edit."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("Makefile", "create-cluster.sh", KIND_CONFIG.name, "Dockerfile"):
        shutil.copy2(REPO / name, copy / name)
    for folder in ("mk", "scripts", "istio-add-ons", "helm"):
        shutil.copytree(REPO / folder, copy / folder)
    return copy


def test_a_pin_is_read_from_its_file(tmp_path):
    """Edit the Grafana image in a copy of istio-add-ons/grafana.yaml: that tag is the one checked."""
    repo = copy_of_the_repo(tmp_path)
    grafana = repo / "istio-add-ons" / "grafana.yaml"
    [image] = [i for i in pinned_images() if "grafana/grafana:" in i]
    wrong = image.rpartition(":")[0] + ":13.99.0"
    grafana.write_text(grafana.read_text().replace(f"image: {image}\n", f"image: {wrong}\n"))
    assert wrong in pinned_images(repo)
    sandbox = Sandbox(tmp_path / "sandbox")
    result = failed_run(preflight(sandbox, cwd=repo))
    [failure] = failures(result)
    assert failure.startswith(f"{wrong} (istio-add-ons/grafana.yaml) does not resolve")


# --- ports -------------------------------------------------------------------------------------------------

def test_a_registry_port_in_use_fails_and_names_it(sandbox):
    with listening() as port:
        result = failed_run(preflight(sandbox, REG_PORT=str(port)))
    assert failures(result) == [f"port {port} (REG_PORT, the local registry kind-registry) is in use by another program"]
    assert f"lsof -nP -iTCP:{port} -sTCP:LISTEN" in result.stdout
    assert f"port {port}" in summary(result)


def test_the_registry_port_held_by_the_running_registry_is_fine(sandbox):
    sandbox.state.mkdir(parents=True)
    fake_tools.write_state(
        sandbox.state, {"containers": {"kind-registry": {"running": True, "kind_network": True, "image": "registry"}}})
    with listening() as port:
        result = preflight(sandbox, REG_PORT=str(port))
    assert result.returncode == 0, output(result)
    assert f"port {port} (REG_PORT) is the running registry kind-registry's" in result.stdout


def test_a_host_port_of_the_kind_config_in_use_fails(tmp_path):
    repo = copy_of_the_repo(tmp_path)
    config = repo / KIND_CONFIG.name
    with listening() as port:
        config.write_text(config.read_text().replace(
            "  - role: control-plane\n",
            f"  - role: control-plane\n    extraPortMappings:\n      - containerPort: 30080\n        hostPort: {port}\n"))
        assert yaml.safe_load(config.read_text())["nodes"][0]["extraPortMappings"][0]["hostPort"] == port
        result = failed_run(preflight(Sandbox(tmp_path / "sandbox"), cwd=repo))
    assert failures(result) == [f"port {port} (kind-cluster-config.yaml maps it to the host) is in use by another program"]


def test_the_gateway_port_in_use_only_warns(sandbox):
    with listening() as port:
        result = preflight(sandbox, f"GATEWAY_PORT={port}")
    assert result.returncode == 0, output(result)
    assert f"warn  port {port} (GATEWAY_PORT, make port-forward) is in use" in result.stdout
    assert "1 warning(s)" in summary(result)


# --- documentation -----------------------------------------------------------------------------------------

def test_make_help_lists_preflight_before_up():
    help_text = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    targets = re.findall(r"^\s+(?:\x1b\[\d+m)?([a-z-]+)", help_text, re.M)
    assert targets.index("preflight") < targets.index("up")


# --- ambient mode ------------------------------------------------------------------------------------------

def ambient_istio_images() -> list[str]:
    """The Istio images the ambient profile pulls, read here from the operator files: the hub, the
    release, and the variant istio-ambient.yaml names."""
    (operator,) = load_docs(REPO / "istio-add-ons" / "istio-operator.yaml")
    (ambient,) = load_docs(REPO / "istio-add-ons" / "istio-ambient.yaml")
    tag = f"{script_setting('ISTIO_VERSION')}-{ambient['spec']['values']['global']['variant']}"
    return [f"{operator['spec']['hub']}/{name}:{tag}" for name in ("pilot", "proxyv2", "install-cni", "ztunnel")]


def ambient_images() -> list[str]:
    sidecar_istio = {i for i in pinned_images() if re.search(r"/istio/(pilot|proxyv2):", i)}
    return [i for i in pinned_images() if i not in sidecar_istio] + ambient_istio_images()


def test_ambient_mode_checks_the_ambient_profiles_images_and_passes(sandbox):
    result = preflight(sandbox, "MESH_MODE=ambient", **network(images=ambient_images()))
    assert result.returncode == 0, output(result)
    asked_for = {args[-1] for args in asked(sandbox, "docker", "manifest", "inspect")}
    assert asked_for == set(ambient_images())
    assert ambient_istio_images()[-1].endswith("/ztunnel:" + script_setting("ISTIO_VERSION") + "-distroless")


@pytest.mark.parametrize("image", ambient_istio_images())
def test_an_ambient_image_that_does_not_resolve_is_named(sandbox, image):
    result = failed_run(preflight(sandbox, "MESH_MODE=ambient",
                                  **network(images=[i for i in ambient_images() if i != image])))
    [failure] = failures(result)
    assert failure.startswith(f"{image} (") and "istio-ambient.yaml (variant)" in failure


def test_sidecar_mode_does_not_ask_for_the_ambient_images(sandbox):
    assert preflight(sandbox).returncode == 0
    asked_for = {args[-1] for args in asked(sandbox, "docker", "manifest", "inspect")}
    assert not asked_for & set(ambient_istio_images())


def test_an_unknown_mesh_mode_fails_preflight_and_names_the_allowed_ones(sandbox):
    result = preflight(sandbox, "MESH_MODE=sidecars")
    assert result.returncode != 0 and "MESH_MODE=sidecars is not valid; allowed: sidecar" in output(result)
