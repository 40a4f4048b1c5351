"""Shared helpers for the cluster checks: paths, tools, and the add-on files."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ADDONS = REPO / "istio-add-ons"
GRAFANA = ADDONS / "grafana"
SCRIPT = REPO / "create-cluster.sh"
KIND_CONFIG = REPO / "kind-cluster-config.yaml"
ADDONS_NAMESPACE = "istio-system"
APP_NAMESPACE = "demo-app"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Files in istio-add-ons/ that are not Kubernetes objects applied with kubectl.
NOT_MANIFESTS = {"istio-operator.yaml", "istio-ambient.yaml", "loki-values.yaml", "alloy-values.yaml"}


def unavailable(message: str) -> None:
    """A prerequisite of a check is missing: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def shared_tool(name: str) -> Path:
    """helm-render or validate-manifests: from SHARED_TOOLS when that is set,
    else the repository's own (tools/), installed next to this Python by
    tests/requirements.txt. Never skipped: the repository holds them."""
    folder = os.environ.get("SHARED_TOOLS")
    tool = Path(folder) / name if folder else Path(sys.executable).parent / name
    if not os.access(tool, os.X_OK):
        where = f"SHARED_TOOLS={folder}" if folder else "this Python's environment (make test-deploy installs " \
            "tests/requirements.txt, which installs tools/)"
        pytest.fail(f"{name} not found in {where}")
    return tool


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (tests/requirements.txt), else on PATH."""
    tool = Path(sys.executable).parent / name
    if tool.exists():
        return str(tool)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install tests/requirements.txt into this Python's environment")
    return found


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifest_files() -> list[Path]:
    return sorted(p for p in ADDONS.glob("*.yaml") if p.name not in NOT_MANIFESTS)


def addon_objects() -> list[dict]:
    """Every Kubernetes object the add-on manifests declare."""
    return [doc for path in manifest_files() for doc in load_docs(path)]


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{kind}/{name} not found in istio-add-ons/")


def pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    """(namespace, pod template) of every workload."""
    return [(obj["metadata"].get("namespace", ""), obj["spec"]["template"])
            for obj in objects if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet")]


def service_port(objects: list[dict], host: str, port: int) -> tuple[dict, dict]:
    """The Service and port a cluster URL host (`name.namespace[.svc...]`) and port reach."""
    name, _, rest = host.partition(".")
    namespace = rest.split(".")[0] if rest else ADDONS_NAMESPACE
    for obj in objects:
        if obj.get("kind") == "Service" and obj["metadata"]["name"] == name \
                and obj["metadata"].get("namespace") == namespace:
            for p in obj["spec"]["ports"]:
                if p["port"] == port:
                    return obj, p
            raise AssertionError(f"Service {namespace}/{name} has no port {port}")
    raise AssertionError(f"no Service {namespace}/{name} in istio-add-ons/")


def script_setting(name: str) -> str:
    """The default of a `NAME="${NAME:-default}"` or `NAME=value` line of create-cluster.sh."""
    text = SCRIPT.read_text()
    m = re.search(rf'^{name}="\$\{{{name}:-([^}}]*)\}}"$', text, re.M) or \
        re.search(rf"^{name}=(\S+)$", text, re.M)
    assert m, f"{name} not set in create-cluster.sh"
    return m.group(1)


def grafana_datasources() -> dict[str, dict]:
    """The provisioned Grafana data sources by uid."""
    doc = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())
    return {ds["uid"]: ds for ds in doc["datasources"]}


def unescape_provisioning(value: str) -> str:
    """Grafana provisioning files expand $VAR / ${VAR}; `$$` stands for a literal `$`."""
    return value.replace("$$", "$")


# Istio's Grafana dashboards create-cluster.sh downloads: mesh, service, workload, control
# plane and ztunnel, as named in manifests/addons/dashboards/ of istio/istio's release-1.31.
ISTIO_DASHBOARD_FILES = ("istio-mesh-dashboard.gen.json", "istio-service-dashboard.json",
                         "istio-workload-dashboard.json", "pilot-dashboard.gen.json", "ztunnel-dashboard.gen.json")


def istio_dashboard_urls(version: str | None = None) -> list[str]:
    """The raw files of the pinned Istio release (ISTIO_VERSION), in download order."""
    version = version or script_setting("ISTIO_VERSION")
    return [f"https://raw.githubusercontent.com/istio/istio/{version}/manifests/addons/dashboards/{name}"
            for name in ISTIO_DASHBOARD_FILES]


# --- Kubernetes discovery and relabelling, as Prometheus and Alloy do them ----------------------------

def sanitize_label_name(name: str) -> str:
    """How Kubernetes discovery turns a pod label or annotation into a label name
    (__meta_kubernetes_pod_label_<name>: Prometheus' strutil.SanitizeLabelName, which Alloy's
    discovery.kubernetes uses too)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Relabel rules (Prometheus' relabel_configs, Alloy's `rule` blocks: the same fields) applied
    in order to a target's labels: the source labels' values joined by the separator, matched by
    the fully anchored regex; `replace` expands the replacement's $1 into the target label (an
    empty result removes it), `keep`/`drop` end with None when the target is dropped."""
    out = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(out.get(name, "") for name in rule["source_labels"])
        regex = rule.get("regex", "(.*)")
        # A bare `true` in YAML is the string "true" to Prometheus.
        regex = str(regex).lower() if isinstance(regex, bool) else str(regex)
        m = re.fullmatch(regex, value)
        if action in ("keep", "drop"):
            if (m is not None) != (action == "keep"):
                return None
            continue
        assert action == "replace", action
        if not m:
            continue
        result = re.sub(r"\$\{?(\d+)\}?", lambda g: m.group(int(g.group(1))) or "", rule.get("replacement", "$1"))
        if result:
            out[rule["target_label"]] = result
        else:
            out.pop(rule["target_label"], None)
    return out
