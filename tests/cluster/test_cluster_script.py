"""create-cluster.sh and the make targets, run against stand-in docker, kind,
kubectl, helm and istioctl (tests/cluster/fake_tools.py) placed first on PATH.
The system's other commands stay reachable through a folder of symlinks that
leaves the five real tools out, so a real installation cannot leak in."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import fake_tools
import pytest
from cluster_support import IN_CI, KIND_CONFIG, REPO, SCRIPT, script_setting

HOSTS_TOML = "/etc/containerd/certs.d/localhost:5001/hosts.toml"
NODES = ("demo-control-plane", "demo-worker")
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class Sandbox:
    """A PATH with the stand-ins, their state and their call log."""

    def __init__(self, root: Path, omit: tuple[str, ...] = ()) -> None:
        self.root = root
        self.fakebin = root / "fakebin"
        self.sysbin = root / "sysbin"
        self.state = root / "state"
        self.log = root / "calls.jsonl"
        (root / "home").mkdir(parents=True, exist_ok=True)
        fake_tools.install(self.fakebin, omit)
        self.sysbin.mkdir(exist_ok=True)
        for directory in map(Path, SYSTEM_DIRS):
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                link = self.sysbin / entry.name
                if entry.name in fake_tools.TOOLS or link.exists() or link.is_symlink():
                    continue
                if os.access(entry, os.X_OK) and not entry.is_dir():
                    link.symlink_to(entry)

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.fakebin}:{self.sysbin}", "HOME": str(self.root / "home"), "LANG": "C.UTF-8",
                "FAKE_STATE": str(self.state), "FAKE_LOG": str(self.log), **extra}

    def run(self, args: list[str], cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
        # Bounded: the stand-ins answer at once, so a hang is a bug.
        return subprocess.run(args, cwd=cwd, env=self.env(**env), capture_output=True, text=True, timeout=300)

    def script(self, script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess:
        return self.run(["bash", str(script)], cwd=script.parent, **env)

    def calls(self) -> list[dict]:
        return fake_tools.read_log(self.log)

    def clear_log(self) -> None:
        self.log.unlink(missing_ok=True)

    def node_file(self, node: str, path: str) -> str | None:
        import json

        state = json.loads((self.state / "state.json").read_text())
        return state["nodes"].get(node, {}).get(path)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def first(calls: list[dict], tool: str, *prefix: str, contains: str | None = None) -> int:
    """Index of the first call of `tool` whose arguments (without --context/-n
    options) start with `prefix` and, for `contains`, mention that text."""
    for i, call in enumerate(calls):
        if call["tool"] != tool:
            continue
        args = fake_tools.drop_options(call["args"], "--context", "--kube-context", "-n", "--namespace")
        if tuple(args[:len(prefix)]) == prefix and (contains is None or contains in " ".join(call["args"])):
            return i
    raise AssertionError(f"no call {tool} {' '.join(prefix)} {contains or ''} in:\n" +
                         "\n".join(f"{c['tool']} {' '.join(c['args'])}" for c in calls))


def count(calls: list[dict], tool: str, *prefix: str) -> int:
    n = 0
    for call in calls:
        args = fake_tools.drop_options(call["args"], "--context", "--kube-context", "-n", "--namespace")
        n += call["tool"] == tool and tuple(args[:len(prefix)]) == prefix
    return n


def applied(calls: list[dict], key: str) -> int:
    """Index of the first `kubectl apply` that applied the object `kind/namespace/name`."""
    for i, call in enumerate(calls):
        if call["tool"] == "applied" and any(a.startswith(key + " ") for a in call["args"]):
            return i
    raise AssertionError(f"{key} was never applied")


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def copy_of_the_repo_files(tmp_path: Path) -> Path:
    """create-cluster.sh with its inputs in a scratch folder the test may edit."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy2(SCRIPT, copy / SCRIPT.name)
    shutil.copy2(KIND_CONFIG, copy / KIND_CONFIG.name)
    shutil.copytree(REPO / "istio-add-ons", copy / "istio-add-ons")
    return copy


# --- the script -----------------------------------------------------------------------------------------

def test_first_run_creates_registry_cluster_istio_and_addons_in_order(sandbox):
    result = ok(sandbox.script())
    calls = sandbox.calls()
    registry = first(calls, "docker", "run")
    cluster = first(calls, "kind", "create", "cluster")
    hosts = [first(calls, "docker", "exec", "-i", node) for node in NODES]
    network = first(calls, "docker", "network", "connect", "kind", "kind-registry")
    hosting = applied(calls, "configmap/kube-public/local-registry-hosting")
    istio = first(calls, "istioctl", "install")
    label = first(calls, "kubectl", "label", "namespace", "demo-app", "istio-injection=enabled")
    telemetry = applied(calls, "telemetry/istio-system/mesh-default")
    addons = [applied(calls, f"deployment/istio-system/{name}") for name in ("jaeger", "prometheus", "grafana", "kiali")]
    loki = first(calls, "helm", "upgrade", "--install", "loki")
    alloy = first(calls, "helm", "upgrade", "--install", "alloy")
    waits = [first(calls, "kubectl", "rollout", "status", f"{kind}/{name}")
             for kind, name in (("deployment", "istiod"), ("deployment", "istio-ingressgateway"),
                                ("deployment", "jaeger"), ("deployment", "grafana"), ("statefulset", "loki"),
                                ("daemonset", "alloy"))]

    assert registry < cluster < min(hosts) and max(hosts) < network < hosting < istio
    assert istio < label < telemetry < min(addons) and max(addons) < loki < alloy
    assert istio < waits[0] and max(addons + [alloy]) < min(waits[2:])
    assert "Cluster demo is ready" in result.stdout

    # The registry recipe: 127.0.0.1:5001 -> 5000, pinned image; containerd pulls from it by name.
    run = calls[registry]["args"]
    assert "127.0.0.1:5001:5000" in run and "kind-registry" in run and run[-1] == script_setting("REGISTRY_IMAGE")
    assert str(KIND_CONFIG) in calls[cluster]["args"] and "demo" in calls[cluster]["args"]
    for node in NODES:
        assert sandbox.node_file(node, HOSTS_TOML) == '[host."http://kind-registry:5000"]\n'
    # Istio from the repository's operator file; charts pinned, from their repositories.
    assert str(REPO / "istio-add-ons" / "istio-operator.yaml") in calls[istio]["args"]
    for index, chart in ((loki, "LOKI"), (alloy, "ALLOY")):
        args = calls[index]["args"]
        assert args[args.index("--version") + 1] == script_setting(f"{chart}_CHART_VERSION")
        assert args[args.index("--repo") + 1] == script_setting(f"{chart}_CHART_REPO")
    # Every cluster call names the kind cluster's context: never the user's current one.
    for call in calls:
        if call["tool"] in ("kubectl", "helm", "istioctl") and call["args"][0] != "version" \
                and "--dry-run=client" not in call["args"]:
            assert "kind-demo" in call["args"], call


def test_second_run_finishes_and_changes_nothing(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    result = ok(sandbox.script())
    calls = sandbox.calls()
    assert count(calls, "docker", "run") == 0
    assert count(calls, "docker", "start") == 0
    assert count(calls, "kind", "create") == 0
    assert count(calls, "docker", "network", "connect") == 0
    assert not [c for c in calls if c["tool"] == "docker" and "cp" in c["args"]], "hosts.toml rewritten"
    assert count(calls, "istioctl", "install") == 0
    assert count(calls, "helm", "upgrade") == 0
    assert count(calls, "kubectl", "rollout", "restart") == 0
    changes = [a for c in calls if c["tool"] == "applied" for a in c["args"] if not a.endswith(" unchanged")]
    assert changes == []
    assert "already" in result.stdout


def test_changed_files_are_applied_again_and_the_reader_restarted(sandbox, tmp_path):
    repo = copy_of_the_repo_files(tmp_path)
    ok(sandbox.script(repo / "create-cluster.sh"))

    dashboard = repo / "istio-add-ons" / "grafana" / "dashboards" / "demo-app.json"
    dashboard.write_text(dashboard.read_text().replace('"refresh": "10s"', '"refresh": "30s"'))
    sandbox.clear_log()
    ok(sandbox.script(repo / "create-cluster.sh"))
    calls = sandbox.calls()
    assert first(calls, "kubectl", "rollout", "restart", "deployment/grafana") > \
        applied(calls, "configmap/istio-system/grafana-dashboards")
    assert count(calls, "istioctl", "install") == 0 and count(calls, "helm", "upgrade") == 0

    operator = repo / "istio-add-ons" / "istio-operator.yaml"
    operator.write_text(operator.read_text() + "# changed\n")
    values = repo / "istio-add-ons" / "loki-values.yaml"
    values.write_text(values.read_text() + "# changed\n")
    sandbox.clear_log()
    ok(sandbox.script(repo / "create-cluster.sh"))
    calls = sandbox.calls()
    assert count(calls, "istioctl", "install") == 1
    assert count(calls, "helm", "upgrade", "--install", "loki") == 1
    assert count(calls, "helm", "upgrade", "--install", "alloy") == 0
    assert count(calls, "kind", "create") == 0 and count(calls, "docker", "run") == 0


@pytest.mark.parametrize("tool", fake_tools.TOOLS)
def test_a_missing_prerequisite_stops_the_script_before_anything_is_created(tmp_path, tool):
    sandbox = Sandbox(tmp_path, omit=(tool,))
    result = sandbox.script()
    assert result.returncode == 1
    assert f"MISSING: {tool}" in result.stderr
    assert "install: http" in result.stderr or "install: curl -L https://istio.io" in result.stderr
    assert "nothing was created" in result.stderr
    # Only version queries ran: no container, no cluster, no install.
    assert {c["args"][0] for c in sandbox.calls()} <= {"version"}
    assert not (sandbox.state / "state.json").exists()


def test_docker_installed_but_not_running_stops_the_script(sandbox):
    result = sandbox.script(FAKE_DOCKER_DOWN="1")
    assert result.returncode == 1
    assert "Docker is installed but does not answer" in result.stderr
    assert count(sandbox.calls(), "docker", "run") == 0 and count(sandbox.calls(), "kind", "create") == 0


def test_other_tool_versions_warn_and_carry_on(sandbox):
    result = ok(sandbox.script(FAKE_KIND_VERSION="v0.31.0", FAKE_ISTIOCTL_VERSION="1.29.2",
                               FAKE_DOCKER_MEM=str(4 * 1024**3)))
    assert "WARNING: kind v0.31.0: this script was written for kind v0.32.0" in result.stderr
    assert f"WARNING: istioctl 1.29.2: this script was written for istioctl {script_setting('ISTIO_VERSION')}" \
        in result.stderr
    assert "Docker has 4096 MiB of memory" in result.stderr


def test_help_describes_the_script_without_running_anything(sandbox):
    result = ok(sandbox.script())  # noqa: F841  (a normal run first: --help must not depend on state)
    sandbox.clear_log()
    result = ok(sandbox.run(["bash", str(SCRIPT), "--help"]))
    assert "local-registry-hosting" in result.stdout and sandbox.calls() == []


# --- make targets ------------------------------------------------------------------------------------

def require_chart_targets() -> None:
    if not (REPO / "mk" / "charts.mk").exists():
        message = "mk/charts.mk (build-business-logic, build-front-end, push, helm-app) is not there yet"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def test_make_up_creates_the_cluster_then_builds_pushes_and_deploys(sandbox):
    require_chart_targets()
    result = ok(sandbox.run(["make", "up"]))
    calls = sandbox.calls()
    cluster = first(calls, "kind", "create", "cluster")
    addons = first(calls, "helm", "upgrade", "--install", "alloy")
    build_bl = first(calls, "docker", "build", contains="business-logic/Dockerfile")
    build_fe = first(calls, "docker", "build", contains="front-end/Dockerfile")
    push_bl = first(calls, "docker", "push", contains="localhost:5001/business-logic:")
    push_fe = first(calls, "docker", "push", contains="localhost:5001/front-end:")
    app = first(calls, "helm", "upgrade", "--install", "app")
    app_ready = first(calls, "kubectl", "rollout", "status", contains="front-end")
    assert cluster < addons < build_bl < build_fe < push_bl < push_fe < app < app_ready
    for url in ("/demo-app/", "/jaeger", "/grafana", "/kiali"):
        assert f"http://localhost:8080{url}" in result.stdout
    assert "make verify" in result.stdout.splitlines()[-1], "make up ends by pointing at make verify"

    sandbox.clear_log()
    ok(sandbox.run(["make", "up"]))
    calls = sandbox.calls()
    assert count(calls, "kind", "create") == 0 and count(calls, "docker", "run") == 0
    assert count(calls, "istioctl", "install") == 0


def test_make_clean_up_deletes_cluster_and_registry_and_tolerates_their_absence(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    ok(sandbox.run(["make", "clean-up"]))
    calls = sandbox.calls()
    first(calls, "kind", "delete", "cluster", "--name", "demo")
    first(calls, "docker", "rm", "-f", "kind-registry")
    sandbox.clear_log()
    result = ok(sandbox.run(["make", "clean-up"]))
    assert "not found" in result.stdout
    assert count(sandbox.calls(), "kind", "delete") == 0 and count(sandbox.calls(), "docker", "rm") == 0


def test_make_port_forward_targets_the_ingress_gateway(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    ok(sandbox.run(["make", "port-forward"]))
    call = sandbox.calls()[first(sandbox.calls(), "kubectl", "port-forward")]
    assert call["args"][-2:] == ["svc/istio-ingressgateway", "8080:80"]
    assert "istio-system" in call["args"] and "kind-demo" in call["args"]
