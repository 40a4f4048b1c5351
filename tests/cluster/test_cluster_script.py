"""create-cluster.sh and the make targets, run against stand-in docker, kind,
kubectl, helm, istioctl and curl (tests/cluster/fake_tools.py) placed first on PATH.
The system's other commands stay reachable through a folder of symlinks that
leaves the real tools out, so a real installation (or the network) cannot leak in."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fake_tools
import pytest
import yaml
from cluster_support import IN_CI, KIND_CONFIG, REPO, SCRIPT, istio_dashboard_urls, script_setting

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
        self.log = root / "calls.log"
        (root / "home").mkdir(parents=True, exist_ok=True)
        fake_tools.install(self.fakebin, omit)
        self.sysbin.mkdir(exist_ok=True)
        for directory in map(Path, SYSTEM_DIRS):
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                link = self.sysbin / entry.name
                if entry.name in fake_tools.TOOLS + fake_tools.HELPERS or link.exists() or link.is_symlink():
                    continue
                if os.access(entry, os.X_OK) and not entry.is_dir():
                    link.symlink_to(entry)

    def env(self, **extra: str) -> dict[str, str]:
        # The network the stand-in curl reaches: Istio's dashboards at the pinned release.
        return {"PATH": f"{self.fakebin}:{self.sysbin}", "HOME": str(self.root / "home"), "LANG": "C.UTF-8",
                "FAKE_STATE": str(self.state), "FAKE_LOG": str(self.log),
                "FAKE_URLS": " ".join(istio_dashboard_urls()), **extra}

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
        state = fake_tools.read_state(self.state)
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
    """Index of the first `kubectl apply` (or patch) that applied the object `kind/namespace/name`
    (`key` may end in the verb: `... configured`)."""
    for i, call in enumerate(calls):
        if call["tool"] == "applied" and any(a == key or a.startswith(key + " ") for a in call["args"]):
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


def state_of(sandbox: Sandbox) -> dict:
    return fake_tools.read_state(sandbox.state)


def namespace(sandbox: Sandbox, name: str = "demo-app") -> dict:
    """The labels and annotations the stand-in cluster holds for a namespace."""
    return state_of(sandbox).get("namespaces", {}).get(name, {"labels": {}, "annotations": {}})


def istio_operator_files(call: dict) -> list[str]:
    """The -f files of an `istioctl install`, in order, relative to istio-add-ons/."""
    args = call["args"]
    return [Path(args[i + 1]).name for i, a in enumerate(args) if a == "-f"]


SIDECAR_LABELS = {"istio-injection": "enabled"}
AMBIENT_LABELS = {"istio.io/dataplane-mode": "ambient"}
APP_PODS = ("demo-app/deployment.apps/front-end", "demo-app/deployment.apps/business-logic")


# --- the script -----------------------------------------------------------------------------------------

def test_first_run_creates_registry_cluster_istio_and_addons_in_order(sandbox):
    result = ok(sandbox.script())
    calls = sandbox.calls()
    registry = first(calls, "docker", "run")
    cluster = first(calls, "kind", "create", "cluster")
    hosts = [first(calls, "docker", "exec", "-i", node) for node in NODES]
    network = first(calls, "docker", "network", "connect", "kind", "kind-registry")
    hosting = applied(calls, "configmap/kube-public/local-registry-hosting")
    gateway_api = applied(calls, "customresourcedefinition/default/httproutes.gateway.networking.k8s.io")
    istio = first(calls, "istioctl", "install")
    label = first(calls, "kubectl", "label", "namespace", "demo-app", "istio-injection=enabled")
    telemetry = applied(calls, "telemetry/istio-system/mesh-default")
    addons = [applied(calls, f"deployment/istio-system/{name}") for name in ("jaeger", "prometheus", "grafana", "kiali")]
    loki = first(calls, "helm", "upgrade", "--install", "loki")
    alloy = first(calls, "helm", "upgrade", "--install", "alloy")
    waits = [first(calls, "kubectl", "rollout", "status", f"{kind}/{name}")
             for kind, name in (("deployment", "istiod"), ("deployment", "jaeger"), ("deployment", "grafana"),
                                ("statefulset", "loki"), ("daemonset", "alloy"))]

    assert registry < cluster < min(hosts) and max(hosts) < network < hosting < gateway_api < istio
    assert istio < label < telemetry < min(addons) and max(addons) < loki < alloy
    assert istio < waits[0] and max(addons + [alloy]) < min(waits[1:])
    # The default ingress is the Gateway API's (istiod deploys it with the app): no
    # istio-ingressgateway, and nothing waits for one.
    assert "--set" not in calls[istio]["args"]
    assert count(calls, "kubectl", "rollout", "status", "deployment/istio-ingressgateway") == 0
    assert sandbox.run(["kubectl", "--context", "kind-demo", "-n", "istio-system", "get",
                        "deployment/istio-ingressgateway"]).returncode != 0
    assert "Cluster demo is ready" in result.stdout
    # Sidecar mode (the default): the operator file alone, the namespace labelled for injection
    # only, no ztunnel or istio-cni and nothing waits for them.
    assert istio_operator_files(calls[istio]) == ["istio-operator.yaml"]
    assert namespace(sandbox)["labels"] == SIDECAR_LABELS
    assert namespace(sandbox)["annotations"] == {"demo.istio-add-ons/mesh-mode": "sidecar"}
    assert state_of(sandbox).get("istio_daemonsets", {}) == {}
    assert count(calls, "kubectl", "rollout", "status", "daemonset/ztunnel") == 0

    # The registry recipe: 127.0.0.1:5001 -> 5000, pinned image; containerd pulls from it by name.
    run = calls[registry]["args"]
    assert "127.0.0.1:5001:5000" in run and "kind-registry" in run and run[-1] == script_setting("REGISTRY_IMAGE")
    assert str(KIND_CONFIG) in calls[cluster]["args"] and "demo" in calls[cluster]["args"]
    for node in NODES:
        assert sandbox.node_file(node, HOSTS_TOML) == '[host."http://kind-registry:5000"]\n'
    # Istio from the repository's operator file; charts pinned, from their repositories.
    assert str(REPO / "istio-add-ons" / "istio-operator.yaml") in calls[istio]["args"]
    # The Gateway API release Istio 1.31 is built against, its standard channel, server-side.
    crds = calls[first(calls, "kubectl", "apply", "--server-side")]["args"]
    assert crds[crds.index("-f") + 1] == ("https://github.com/kubernetes-sigs/gateway-api/releases/download/"
                                          f"{script_setting('GATEWAY_API_VERSION')}/standard-install.yaml")
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
    assert count(calls, "curl") == 0, "Istio's dashboards downloaded again"
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
    # The new checksum lands on Grafana's pod template (a rollout), after the ConfigMap.
    assert applied(calls, "deployment/istio-system/grafana configured") > \
        applied(calls, "configmap/istio-system/grafana-dashboards configured")
    assert not [c for c in calls if c["tool"] == "applied" and any(
        a.startswith(("deployment/istio-system/jaeger ", "deployment/istio-system/kiali ")) and
        not a.endswith(" unchanged") for a in c["args"])]
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
    assert not (sandbox.state / fake_tools.STATE_FILE).exists()


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


# --- Istio's dashboards -------------------------------------------------------------------------------

def test_istio_dashboards_are_downloaded_from_the_pinned_release_into_their_configmap(sandbox):
    ok(sandbox.script())
    calls = sandbox.calls()
    downloads = [c["args"] for c in calls if c["tool"] == "curl"]
    assert [args[-1] for args in downloads] == istio_dashboard_urls()
    assert all("-f" in args[0] or "--fail" in args for args in downloads), "HTTP errors must fail curl"
    state = state_of(sandbox)["objects"]
    configmap = state["configmap/istio-system/istio-dashboards"]
    assert sorted(configmap["data"]) == sorted(fake_tools_file_names())
    for name, board in configmap["data"].items():
        recorded = Path(fake_tools.RECORDED_DASHBOARDS) / name
        title = json.loads(recorded.read_text())["title"] if recorded.is_file() else f"/manifests/addons/dashboards/{name}"
        assert json.loads(board)["title"].endswith(title), "as downloaded"
    assert configmap["annotations"]["demo.istio-add-ons/source"].startswith(script_setting("ISTIO_VERSION") + ":")
    # Server-side (the files outgrow client-side apply's annotation), before Grafana mounts it.
    apply = first(calls, "kubectl", "apply", "--server-side", "-f", "-")
    assert apply < applied(calls, "configmap/istio-system/istio-dashboards created") < \
        applied(calls, "deployment/istio-system/grafana")
    assert max(calls.index(c) for c in calls if c["tool"] == "curl") < apply


# Selectors of Istio's HTTP metrics (a sidecar or gateway reports them as source or destination, in
# ambient mode the waypoint as waypoint) and its TCP ones (ztunnel reports those).
HTTP_SELECTOR = re.compile(r"istio_(?:requests_total|request_duration_\w+|request_bytes_\w+|response_bytes_\w+)\{[^}]*\}")
TCP_SELECTOR = re.compile(r"istio_tcp_\w+\{[^}]*\}")
WITH_WAYPOINT = re.compile(r'reporter=~"(source|destination)\|waypoint"')


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def undo_waypoint(node):
    """A dashboard with every reporter=~"X|waypoint" put back to reporter="X"."""
    if isinstance(node, dict):
        return {key: undo_waypoint(value) for key, value in node.items()}
    if isinstance(node, list):
        return [undo_waypoint(value) for value in node]
    return WITH_WAYPOINT.sub(r'reporter="\1"', node) if isinstance(node, str) else node


def test_the_service_and_workload_dashboards_read_the_waypoints_http_metrics_too(sandbox):
    """Istio 1.31's Service and Workload dashboards (recorded in fixtures/istio-dashboards/, served
    by the stand-in curl) as the script provisions them: every HTTP panel and variable also reads
    reporter="waypoint", the Reporter variable offers it and starts on destination and waypoint,
    and nothing else differs from upstream."""
    ok(sandbox.script())
    data = state_of(sandbox)["objects"]["configmap/istio-system/istio-dashboards"]["data"]
    for name in ("istio-service-dashboard.json", "istio-workload-dashboard.json"):
        upstream = json.loads((Path(fake_tools.RECORDED_DASHBOARDS) / name).read_text())
        board = json.loads(data[name])
        texts = strings(board)
        reporters = [re.search(r'reporter=~?"[^"]*"', sel).group(0) for text in texts
                     for sel in HTTP_SELECTOR.findall(text) if "reporter" in sel]
        assert len(reporters) > 40 and set(reporters) == {
            'reporter=~"$qrep"', f'reporter=~"{"destination" if "service" in name else "source"}|waypoint"'}, name
        assert not [sel for text in texts for sel in TCP_SELECTOR.findall(text) if "waypoint" in sel], \
            "ztunnel reports TCP as source and destination"
        [qrep] = [v for v in board["templating"]["list"] if v["name"] == "qrep"]
        assert [o["value"] for o in qrep["options"]] == ["source", "destination", "waypoint"]
        assert qrep["multi"] and qrep["current"]["value"] == ["destination", "waypoint"]
        # Nothing else differs from upstream.
        undone = undo_waypoint(board)
        undone["templating"]["list"] = [next(u for u in upstream["templating"]["list"] if u["name"] == "qrep")
                                        if v["name"] == "qrep" else v for v in undone["templating"]["list"]]
        assert undone == upstream, name


def fake_tools_file_names() -> list[str]:
    return [url.rsplit("/", 1)[1] for url in istio_dashboard_urls()]


def test_another_istio_version_brings_its_dashboards_and_rolls_grafana(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    urls = istio_dashboard_urls("1.31.9")
    ok(sandbox.script(ISTIO_VERSION="1.31.9", FAKE_ISTIOCTL_VERSION="1.31.9", FAKE_URLS=" ".join(urls)))
    calls = sandbox.calls()
    assert [c["args"][-1] for c in calls if c["tool"] == "curl"] == urls
    assert applied(calls, "configmap/istio-system/istio-dashboards configured") < \
        applied(calls, "deployment/istio-system/grafana configured")


def test_a_failed_download_stops_the_script_with_a_hint_and_the_next_run_completes(sandbox):
    ok(sandbox.script())
    reference = state_of(sandbox)["objects"]
    fresh = Sandbox(sandbox.root / "fresh")
    result = fresh.script(FAKE_URLS=" ".join(istio_dashboard_urls()[:1]))
    assert result.returncode == 1
    second = istio_dashboard_urls()[1]
    assert f"could not download Istio's dashboard istio-service-dashboard.json from {second}" in result.stderr
    assert "404" in result.stderr and "HTTPS_PROXY" in result.stderr and "run this script again" in result.stderr
    objects = state_of(fresh)["objects"]
    assert "configmap/istio-system/istio-dashboards" not in objects
    assert "deployment/istio-system/grafana" not in objects, "stopped before the add-ons"
    ok(fresh.script())
    objects = state_of(fresh)["objects"]
    assert objects["configmap/istio-system/istio-dashboards"] == reference["configmap/istio-system/istio-dashboards"]


def test_a_missing_curl_stops_the_script_before_anything_is_created(tmp_path):
    sandbox = Sandbox(tmp_path, omit=("curl",))
    result = sandbox.script()
    assert result.returncode == 1
    assert "MISSING: curl" in result.stderr and "nothing was created" in result.stderr
    assert not (sandbox.state / fake_tools.STATE_FILE).exists()


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
    build_bl = first(calls, "docker", "build", contains="PACKAGE=business-logic")
    build_fe = first(calls, "docker", "build", contains="PACKAGE=front-end")
    push_bl = first(calls, "docker", "push", contains="localhost:5001/business-logic:")
    push_fe = first(calls, "docker", "push", contains="localhost:5001/front-end:")
    app = first(calls, "helm", "upgrade", "--install", "app")
    app_ready = first(calls, "kubectl", "rollout", "status", contains="front-end")
    assert cluster < addons < build_bl < build_fe < push_bl < push_fe < app < app_ready
    for url in ("/demo-app/", "/jaeger", "/grafana", "/kiali", "/prometheus"):
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


def test_make_port_forward_targets_the_gateway_istio_deploys(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    ok(sandbox.run(["make", "port-forward"]))
    call = sandbox.calls()[first(sandbox.calls(), "kubectl", "port-forward")]
    # helm/app's Gateway `demo-gateway` in the app's namespace: Istio names its Service demo-gateway-istio.
    assert call["args"][-2:] == ["svc/demo-gateway-istio", "8080:80"]
    assert "demo-app" in call["args"] and "kind-demo" in call["args"]


def test_make_port_forward_targets_istio_ingressgateway_for_the_istio_variant(sandbox):
    ok(sandbox.script())
    sandbox.clear_log()
    ok(sandbox.run(["make", "port-forward", "GATEWAY_API=istio", "NAMESPACE=shop"]))
    call = sandbox.calls()[first(sandbox.calls(), "kubectl", "port-forward")]
    assert call["args"][-2:] == ["svc/istio-ingressgateway", "8080:80"]
    assert "istio-system" in call["args"]


def test_the_istio_gateway_variant_installs_istio_ingressgateway_and_waits_for_it(sandbox):
    ok(sandbox.run(["make", "create-cluster", "GATEWAY_API=istio"]))
    calls = sandbox.calls()
    install = calls[first(calls, "istioctl", "install")]["args"]
    assert install[install.index("--set") + 1] == "components.ingressGateways.[name:istio-ingressgateway].enabled=true"
    assert first(calls, "istioctl", "install") < first(calls, "kubectl", "rollout", "status",
                                                        "deployment/istio-ingressgateway")
    assert sandbox.run(["kubectl", "--context", "kind-demo", "-n", "istio-system", "get",
                        "deployment/istio-ingressgateway"]).returncode == 0
    # `make port-forward GATEWAY_API=istio` then has a Service to forward to.
    ok(sandbox.run(["make", "port-forward", "GATEWAY_API=istio"]))


def test_switching_the_ingress_variant_reinstalls_istio_and_back(sandbox):
    ok(sandbox.script())
    for variant, gateway in (("istio", True), ("gateway", False)):
        sandbox.clear_log()
        ok(sandbox.script(GATEWAY_API=variant))
        calls = sandbox.calls()
        assert count(calls, "istioctl", "install") == 1, variant
        assert (count(calls, "kubectl", "rollout", "status", "deployment/istio-ingressgateway") == 1) is gateway
    sandbox.clear_log()
    ok(sandbox.script())
    assert count(sandbox.calls(), "istioctl", "install") == 0


def test_an_unknown_ingress_variant_is_refused_before_anything_runs(sandbox):
    result = sandbox.script(GATEWAY_API="nginx")
    assert result.returncode == 1 and "GATEWAY_API=nginx" in result.stderr
    assert sandbox.calls() == []


def test_grafana_queries_follow_the_app_namespace(sandbox):
    ok(sandbox.run(["make", "create-cluster", "NAMESPACE=shop"]))
    calls = sandbox.calls()
    first(calls, "kubectl", "label", "namespace", "shop", "istio-injection=enabled")
    state = state_of(sandbox)
    datasources = state["objects"]["configmap/istio-system/grafana-datasources"]["data"]["datasources.yaml"]
    assert '{namespace="shop"} |= "$${__trace.traceId}"' in datasources
    board = state["objects"]["configmap/istio-system/grafana-dashboards"]["data"]["demo-app.json"]
    assert 'namespace=\\"shop\\"' in board and "demo-app\\\"" not in board
    assert json.loads(board)  # still valid JSON


def test_an_invalid_namespace_is_refused_before_anything_runs(sandbox):
    result = sandbox.script(APP_NAMESPACE="Demo_App")
    assert result.returncode == 1 and "APP_NAMESPACE=Demo_App" in result.stderr
    assert sandbox.calls() == []


def each_step(steps, check) -> None:
    """Runs check(step) for every step, on as many threads as there are CPUs: each step has a
    sandbox of its own and spends its time in subprocesses (the script and the stand-in tools),
    so the steps run side by side. The first failure is raised, naming its step."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for _ in pool.map(check, steps):
            pass


def mutations(sandbox: Sandbox) -> int:
    return state_of(sandbox)["mutations"]


def cluster_state(sandbox: Sandbox) -> dict:
    state = state_of(sandbox)
    state.pop("mutations", None)
    return state


def mutating_calls(sandbox: Sandbox) -> list[str]:
    """Each state-changing call of a run with the objects it applied, temporary paths blanked."""
    calls: list[str] = []
    for call in sandbox.calls():
        text = re.sub(r"/tmp/tmp\.\w+", "/tmp/-", f"{call['tool']} {' '.join(call['args'])}")
        if call["tool"] == "applied" and calls:
            calls[-1] += "\n" + text
        elif call["tool"] in fake_tools.MUTATING and fake_tools.MUTATING[call["tool"]](call["args"]):
            calls.append(text)
    return calls


@pytest.mark.parametrize("mode", ["sidecar", "ambient"])
def test_a_run_interrupted_between_any_two_steps_is_completed_by_the_next(tmp_path, mode):
    """Every state-changing call of a first run is, in turn, the one that fails (the run
    dies there, as after Ctrl-C). The next run must finish and leave the cluster exactly as
    an uninterrupted run does. In ambient mode, only where that differs from sidecar mode: at
    each call the sidecar run does not make, and at the call after it (from a state it left)."""
    reference = Sandbox(tmp_path / "reference")
    ok(reference.script(MESH_MODE=mode))
    want, steps = cluster_state(reference), mutations(reference)
    assert steps >= 15, steps
    chosen = range(1, steps + 1)
    if mode != "sidecar":
        sidecar = Sandbox(tmp_path / "sidecar")
        ok(sidecar.script())
        calls, shared = mutating_calls(reference), set(mutating_calls(sidecar))
        assert len(calls) == steps
        own = {step for step, call in enumerate(calls, 1) if call not in shared}
        assert own, "the ambient run makes no call of its own"
        chosen = sorted({s for step in own for s in (step, step + 1) if s <= steps})
    def interrupted_at(step: int) -> None:
        sandbox = Sandbox(tmp_path / f"step-{step}")
        died = sandbox.script(MESH_MODE=mode, FAKE_FAIL_AT=str(step))
        assert died.returncode != 0, f"step {step}: the interruption went unnoticed"
        ok(sandbox.script(MESH_MODE=mode))
        # The same cluster as an uninterrupted run, so a further run changes nothing
        # (test_second_run_finishes_and_changes_nothing).
        assert cluster_state(sandbox) == want, f"interrupted at step {step}"

    each_step(chosen, interrupted_at)


def test_a_config_changed_after_an_interrupted_grafana_step_is_rolled_out(sandbox, tmp_path):
    """The old failure: Grafana's ConfigMaps applied, the run died before grafana.yaml, a
    dashboard changed, and the next run restarted a Deployment that was not there (NotFound).
    Now the ConfigMaps and the Deployment go in one apply and the pods carry the checksum."""
    repo = copy_of_the_repo_files(tmp_path)
    reference = Sandbox(tmp_path / "reference")
    ok(reference.script(repo / "create-cluster.sh"))
    calls = reference.calls()
    grafana_apply = applied(calls, "deployment/istio-system/grafana") - 1  # the kubectl call before its log
    step = sum(1 for c in calls[:grafana_apply + 1]
               if c["tool"] in fake_tools.MUTATING and fake_tools.MUTATING[c["tool"]](c["args"]))
    died = sandbox.script(repo / "create-cluster.sh", FAKE_FAIL_AT=str(step))
    assert died.returncode != 0 and "configmap/istio-system/grafana-dashboards" not in cluster_state(sandbox)["objects"]
    dashboard = repo / "istio-add-ons" / "grafana" / "dashboards" / "demo-app.json"
    dashboard.write_text(dashboard.read_text().replace('"refresh": "10s"', '"refresh": "30s"'))
    ok(sandbox.script(repo / "create-cluster.sh"))
    state = cluster_state(sandbox)["objects"]
    assert '"refresh": "30s"' in state["configmap/istio-system/grafana-dashboards"]["data"]["demo-app.json"]
    assert state["deployment/istio-system/grafana"]["template_annotations"]["demo.istio-add-ons/config-checksum"] != \
        cluster_state(reference)["objects"]["deployment/istio-system/grafana"]["template_annotations"][
            "demo.istio-add-ons/config-checksum"]


# --- ambient mode ----------------------------------------------------------------------------------------

def test_an_ambient_run_installs_the_ambient_profile_waits_for_its_node_agents_and_enrolls_the_namespace(sandbox):
    result = ok(sandbox.script(MESH_MODE="ambient"))
    calls = sandbox.calls()
    istio = first(calls, "istioctl", "install")
    # The mesh configuration from its one home, the ambient profile layered over it.
    assert istio_operator_files(calls[istio]) == ["istio-operator.yaml", "istio-ambient.yaml"]
    assert state_of(sandbox)["istio_profile"] == "ambient"
    assert state_of(sandbox)["istio_gateways"] == [], "the ambient profile has no istio-ingressgateway"
    cni = first(calls, "kubectl", "rollout", "status", "daemonset/istio-cni-node")
    ztunnel = first(calls, "kubectl", "rollout", "status", "daemonset/ztunnel")
    label = first(calls, "kubectl", "label", "namespace", "demo-app")
    assert istio < cni < label and istio < ztunnel < label, "the node agents are up before pods may start"
    assert calls[label]["args"][-3:] == ["istio.io/dataplane-mode=ambient", "istio-injection-", "--overwrite"]
    assert namespace(sandbox)["labels"] == AMBIENT_LABELS
    assert namespace(sandbox)["annotations"] == {"demo.istio-add-ons/mesh-mode": "ambient"}
    assert "Cluster demo is ready (MESH_MODE=ambient)" in result.stdout
    assert "make helm-app MESH_MODE=ambient" in result.stdout

    sandbox.clear_log()
    ok(sandbox.script(MESH_MODE="ambient"))
    calls = sandbox.calls()
    assert count(calls, "istioctl", "install") == 0 and count(calls, "kubectl", "rollout", "restart") == 0
    assert [a for c in calls if c["tool"] == "applied" for a in c["args"] if not a.endswith(" unchanged")] == []


def test_the_istio_gateway_variant_works_in_ambient_mode_too(sandbox):
    """The ambient profile turns istio-ingressgateway off; GATEWAY_API=istio's --set, applied after
    the files, turns it back on."""
    ok(sandbox.script(MESH_MODE="ambient", GATEWAY_API="istio"))
    calls = sandbox.calls()
    install = calls[first(calls, "istioctl", "install")]["args"]
    assert istio_operator_files({"args": install}) == ["istio-operator.yaml", "istio-ambient.yaml"]
    assert install.index("--set") > max(i for i, a in enumerate(install) if a == "-f")
    assert state_of(sandbox)["istio_gateways"] == ["istio-ingressgateway"]
    first(calls, "kubectl", "rollout", "status", "deployment/istio-ingressgateway")


def test_the_ambient_file_only_switches_the_profile_and_keeps_the_operators_name():
    """istio-operator.yaml stays the one home of the mesh configuration; istioctl prunes by the
    operator's name, so both files must carry the same one."""
    [operator] = [d for d in yaml.safe_load_all((REPO / "istio-add-ons" / "istio-operator.yaml").read_text()) if d]
    [ambient] = [d for d in yaml.safe_load_all((REPO / "istio-add-ons" / "istio-ambient.yaml").read_text()) if d]
    assert (ambient["apiVersion"], ambient["kind"]) == (operator["apiVersion"], operator["kind"])
    assert ambient["metadata"] == operator["metadata"]
    assert ambient["spec"]["profile"] == "ambient" and operator["spec"]["profile"] == "default"
    assert set(ambient["spec"]) == {"profile", "values"} and set(ambient["spec"]["values"]) == {"global", "ztunnel"}
    # The profile's own image variant, named so `make preflight MESH_MODE=ambient` checks those
    # images, and the waypoints' requests sized like the sidecars'.
    assert set(ambient["spec"]["values"]["global"]) == {"variant", "waypoint"}
    assert ambient["spec"]["values"]["global"]["variant"] == "distroless"
    assert ambient["spec"]["values"]["global"]["waypoint"]["resources"]["requests"] == \
        operator["spec"]["values"]["global"]["proxy"]["resources"]["requests"]
    requests = ambient["spec"]["values"]["ztunnel"]["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"}


def deploy_app(sandbox: Sandbox, mode: str = "sidecar") -> None:
    require_chart_targets()
    ok(sandbox.run(["make", "helm-app", f"MESH_MODE={mode}"]))


def pods(sandbox: Sandbox) -> dict[str, str]:
    """The data plane each app pod was created under."""
    return {key: mode for key, mode in state_of(sandbox).get("pods", {}).items() if key in APP_PODS}


def test_switching_modes_relabels_reinstalls_and_restarts_the_app_and_back(sandbox):
    ok(sandbox.script())
    deploy_app(sandbox)
    assert pods(sandbox) == dict.fromkeys(APP_PODS, "sidecar")

    sandbox.clear_log()
    result = ok(sandbox.script(MESH_MODE="ambient"))
    calls = sandbox.calls()
    install = first(calls, "istioctl", "install")
    assert istio_operator_files(calls[install]) == ["istio-operator.yaml", "istio-ambient.yaml"]
    label = first(calls, "kubectl", "label", "namespace", "demo-app")
    restarts = [first(calls, "kubectl", "rollout", "restart", workload.split("/", 1)[1]) for workload in APP_PODS]
    annotate = first(calls, "kubectl", "annotate", "namespace", "demo-app")
    assert install < label < min(restarts) and max(restarts) < annotate
    assert namespace(sandbox)["labels"] == AMBIENT_LABELS
    assert pods(sandbox) == dict.fromkeys(APP_PODS, "ambient"), "restarted without their sidecars"
    assert set(state_of(sandbox)["istio_daemonsets"]) == {"ztunnel", "istio-cni-node"}
    assert "restarting (its pods ran in sidecar mode)" in result.stdout
    # The chart follows with the same mode.
    deploy_app(sandbox, "ambient")
    assert state_of(sandbox)["releases"]["demo-app/app"]["set"]["mesh.mode"] == "ambient"

    sandbox.clear_log()
    ok(sandbox.script(MESH_MODE="sidecar"))
    calls = sandbox.calls()
    assert istio_operator_files(calls[first(calls, "istioctl", "install")]) == ["istio-operator.yaml"]
    assert namespace(sandbox)["labels"] == SIDECAR_LABELS
    assert pods(sandbox) == dict.fromkeys(APP_PODS, "sidecar"), "restarted with their sidecars"
    # istioctl pruned ztunnel and istio-cni itself: nothing left for the script to delete.
    assert state_of(sandbox)["istio_daemonsets"] == {}
    assert count(calls, "kubectl", "delete") == 0
    assert count(calls, "kubectl", "rollout", "status", "daemonset/ztunnel") == 0

    sandbox.clear_log()
    ok(sandbox.script(MESH_MODE="sidecar"))
    assert count(sandbox.calls(), "istioctl", "install") == 0
    assert count(sandbox.calls(), "kubectl", "rollout", "restart") == 0


def test_ztunnel_left_by_another_istio_version_is_removed_in_sidecar_mode(sandbox):
    """istioctl prunes only objects labelled with its own version: ambient mode with one
    version, then sidecar mode with another, leaves the old DaemonSets to the script."""
    ok(sandbox.script(MESH_MODE="ambient"))
    sandbox.clear_log()
    result = ok(sandbox.script(MESH_MODE="sidecar", ISTIO_VERSION="1.31.9", FAKE_ISTIOCTL_VERSION="1.31.9",
                               FAKE_URLS=" ".join(istio_dashboard_urls("1.31.9"))))
    calls = sandbox.calls()
    assert "ztunnel is left over from ambient mode" in result.stderr
    delete = first(calls, "kubectl", "delete", "daemonset", "ztunnel")
    assert first(calls, "istioctl", "install") < delete < first(calls, "kubectl", "label", "namespace", "demo-app")
    assert state_of(sandbox)["istio_daemonsets"] == {}


def test_leaving_ambient_mode_restarts_prometheus_out_of_the_mesh_once_ztunnel_is_gone(sandbox):
    """Prometheus' pod joins ambient mode by its own label (it scrapes the app over mTLS); a pod
    created in ambient mode keeps its redirection into ztunnel, so leaving ambient mode must
    recreate it without the label, after istioctl has removed ztunnel, and wait for it."""
    def prometheus_labels() -> dict:
        return state_of(sandbox)["objects"]["deployment/istio-system/prometheus"].get("template_labels", {})

    ok(sandbox.script(MESH_MODE="ambient"))
    assert prometheus_labels() == {"istio.io/dataplane-mode": "ambient"}
    sandbox.clear_log()
    ok(sandbox.script(MESH_MODE="sidecar"))
    calls = sandbox.calls()
    assert state_of(sandbox)["istio_daemonsets"] == {}
    restart = applied(calls, "deployment/istio-system/prometheus configured")
    assert first(calls, "istioctl", "install") < restart < \
        first(calls, "kubectl", "rollout", "status", "deployment/prometheus")
    assert prometheus_labels() == {}


def test_a_switch_interrupted_between_any_two_steps_is_completed_by_the_next(tmp_path):
    """sidecar -> ambient with the app running: each state-changing call of the switch, up to
    the namespace's record of the mode, fails in turn; the next run must leave the cluster as
    an uninterrupted switch does (pods restarted into ambient mode included)."""
    require_chart_targets()
    base = Sandbox(tmp_path / "base")
    ok(base.script())
    deploy_app(base)

    def from_base(name: str) -> Sandbox:
        sandbox = Sandbox(tmp_path / name)
        shutil.rmtree(sandbox.state, ignore_errors=True)
        shutil.copytree(base.state, sandbox.state)
        return sandbox

    reference = from_base("reference")
    before = mutations(reference)
    ok(reference.script(MESH_MODE="ambient"))
    want = cluster_state(reference)
    calls = [c for c in reference.calls() if c["tool"] in fake_tools.MUTATING and fake_tools.MUTATING[c["tool"]](c["args"])]
    last = next(i for i, c in enumerate(calls) if c["tool"] == "kubectl" and "annotate" in c["args"]
                and "namespace" in c["args"])
    assert first(calls, "istioctl", "install") < last
    def interrupted_at(step: int) -> None:
        sandbox = from_base(f"step-{step}")
        died = sandbox.script(MESH_MODE="ambient", FAKE_FAIL_AT=str(step))
        assert died.returncode != 0, f"step {step}: the interruption went unnoticed"
        ok(sandbox.script(MESH_MODE="ambient"))
        assert cluster_state(sandbox) == want, f"interrupted at step {step}"

    each_step(range(before + 1, before + last + 2), interrupted_at)


@pytest.mark.parametrize("mode", ["istio", "Ambient"])
def test_an_unknown_mesh_mode_is_refused_before_anything_runs(sandbox, mode):
    result = sandbox.script(MESH_MODE=mode)
    assert result.returncode == 1
    assert f"MESH_MODE={mode} is not valid; allowed: sidecar" in result.stderr
    assert sandbox.calls() == []
    result = sandbox.run(["make", "up", f"MESH_MODE={mode}"])
    assert result.returncode != 0 and f"MESH_MODE={mode} is not valid" in result.stderr
    assert sandbox.calls() == []


def test_make_up_in_ambient_mode_installs_ambient_istio_and_the_app_in_ambient_mode(sandbox):
    require_chart_targets()
    result = ok(sandbox.run(["make", "up", "MESH_MODE=ambient"]))
    calls = sandbox.calls()
    assert istio_operator_files(calls[first(calls, "istioctl", "install")])[-1] == "istio-ambient.yaml"
    app = calls[first(calls, "helm", "upgrade", "--install", "app")]["args"]
    assert app[app.index("mesh.mode=ambient") - 1] == "--set"
    assert namespace(sandbox)["labels"] == AMBIENT_LABELS
    assert pods(sandbox) == dict.fromkeys(APP_PODS, "ambient")
    assert "istioctl ztunnel-config workloads --workload-namespace demo-app" in result.stdout
    assert "istioctl waypoint status -n demo-app" in result.stdout
    assert "make verify" in result.stdout.splitlines()[-1]


def test_helm_app_in_the_other_mode_is_refused_with_the_command_that_converts(sandbox):
    require_chart_targets()
    ok(sandbox.run(["make", "up", "MESH_MODE=ambient"]))
    labels = namespace(sandbox)["labels"]
    sandbox.clear_log()
    result = sandbox.run(["make", "helm-app"])
    assert result.returncode == 2
    assert "Namespace demo-app runs in ambient mode, not sidecar" in result.stderr
    assert "make up MESH_MODE=sidecar" in result.stderr and "MESH_MODE=ambient" in result.stderr
    assert count(sandbox.calls(), "helm", "upgrade") == 0 and count(sandbox.calls(), "kubectl", "label") == 0
    assert namespace(sandbox)["labels"] == labels


def test_helm_app_in_ambient_mode_needs_ztunnel(sandbox):
    require_chart_targets()
    ok(sandbox.script())
    # A sidecar cluster whose namespace carries no recorded mode (as one made before ambient mode).
    state = state_of(sandbox)
    state["namespaces"]["demo-app"]["annotations"] = {}
    fake_tools.write_state(sandbox.state, state)
    sandbox.clear_log()
    result = sandbox.run(["make", "helm-app", "MESH_MODE=ambient"])
    assert result.returncode == 2 and "make create-cluster MESH_MODE=ambient" in result.stderr
    assert count(sandbox.calls(), "helm", "upgrade") == 0


def test_a_bad_mesh_mode_stops_helm_app_before_anything_changes(sandbox):
    require_chart_targets()
    result = sandbox.run(["make", "helm-app", "MESH_MODE=ambiant"])
    assert result.returncode == 2 and "MESH_MODE=ambiant is not valid" in result.stderr
    assert sandbox.calls() == []


def test_make_helm_app_and_the_script_label_the_namespace_alike():
    """The two homes of the per-mode namespace labels (helm-app labels the namespace before each
    install; the script when it makes or converts the cluster) must say the same."""
    charts_mk = (REPO / "mk" / "charts.mk").read_text()
    script = SCRIPT.read_text()
    for mode in ("sidecar", "ambient"):
        make_labels = re.search(rf"^mesh_labels_{mode} := (.+)$", charts_mk, re.M).group(1).split()
        script_labels = re.search(rf"^    {mode}\) printf '%s\\n' (.+) ;;$", script, re.M).group(1).split()
        assert make_labels == script_labels, mode
