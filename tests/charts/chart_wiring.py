"""Wiring checks over rendered Kubernetes manifests (lists of dicts from PyYAML).

Each check returns a list of problems (strings); an empty list means the check
holds. The tests run them on the chart's output and on deliberately broken
manifests, so every check is shown to be able to fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Istio's protocol selection: a port name `<protocol>` or `<protocol>-<suffix>`.
ISTIO_PROTOCOLS = {
    "http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp",
    "mongo", "mysql", "redis",
}
CLUSTER_DOMAIN = "svc.cluster.local"
REGISTRY = "localhost:5001/"


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------
def load_docs(text: str) -> list[dict]:
    """All non-empty YAML documents of a multi-document string."""
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def load_dir(directory: Path) -> list[dict]:
    """Every YAML document of every *.yaml/*.yml file under a directory."""
    docs: list[dict] = []
    for path in sorted(directory.rglob("*.y*ml")):
        docs.extend(load_docs(path.read_text()))
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def ns_of(doc: dict, default: str) -> str:
    return doc.get("metadata", {}).get("namespace") or default


def name_of(doc: dict) -> str:
    return doc.get("metadata", {}).get("name", "?")


def ref(doc: dict) -> str:
    return f"{doc.get('kind')}/{name_of(doc)}"


# --------------------------------------------------------------------------
# pod templates
# --------------------------------------------------------------------------
def pod_templates(docs: list[dict], default_ns: str) -> list[tuple[dict, str, dict]]:
    """(owning workload, namespace, pod template) for every workload and bare Pod."""
    out = []
    for d in docs:
        if d.get("kind") in WORKLOAD_KINDS:
            out.append((d, ns_of(d, default_ns), d.get("spec", {}).get("template", {})))
        elif d.get("kind") == "Pod":
            out.append((d, ns_of(d, default_ns), d))
    return out


def all_containers(pod_spec: dict) -> list[dict]:
    return list(pod_spec.get("initContainers") or []) + list(pod_spec.get("containers") or [])


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


# --------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------
def service_selector_problems(docs: list[dict], default_ns: str) -> list[str]:
    """Every Service selector must match the labels of some pod template in its namespace."""
    problems = []
    templates = pod_templates(docs, default_ns)
    for svc in of_kind(docs, "Service"):
        selector = svc.get("spec", {}).get("selector")
        if not selector:
            problems.append(f"{ref(svc)}: no selector")
            continue
        ns = ns_of(svc, default_ns)
        if not any(
            tns == ns and selector.items() <= (tpl.get("metadata", {}).get("labels") or {}).items()
            for _, tns, tpl in templates
        ):
            problems.append(f"{ref(svc)}: selector {selector} matches no pod template in {ns}")
    return problems


def port_protocol_ok(port: dict) -> bool:
    if port.get("appProtocol"):
        return True
    name = port.get("name", "")
    return any(name == p or name.startswith(p + "-") for p in ISTIO_PROTOCOLS)


def service_port_problems(docs: list[dict]) -> list[str]:
    """Every Service port is named for its protocol (Istio/Kiali) or has appProtocol."""
    return [
        f"{ref(svc)}: port {port.get('port')} name {port.get('name')!r} names no protocol and has no appProtocol"
        for svc in of_kind(docs, "Service")
        for port in svc.get("spec", {}).get("ports") or []
        if not port_protocol_ok(port)
    ]


def service_index(docs: list[dict], default_ns: str) -> dict[tuple[str, str], dict]:
    """(namespace, name) -> Service."""
    return {(ns_of(s, default_ns), name_of(s)): s for s in of_kind(docs, "Service")}


def resolve_host(host: str, namespace: str) -> tuple[str, str] | None:
    """`name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local` -> (ns, name)."""
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2 or ".".join(parts[2:]) in ("svc", CLUSTER_DOMAIN):
        return parts[1], parts[0]
    return None  # an external host


# --------------------------------------------------------------------------
# Istio routing
# --------------------------------------------------------------------------
def virtualservice_destinations(vs: dict) -> list[dict]:
    spec = vs.get("spec", {})
    dests = []
    for section in ("http", "tcp", "tls"):
        for route in spec.get(section) or []:
            for r in route.get("route") or []:
                dests.append(r.get("destination", {}))
            if route.get("mirror"):
                dests.append(route["mirror"])
    return dests


def virtualservice_problems(docs: list[dict], default_ns: str, known_services: dict) -> list[str]:
    """Every VirtualService destination is an existing Service and one of its ports;
    every Gateway a VirtualService binds to exists."""
    problems = []
    gateways = {(ns_of(g, default_ns), name_of(g)) for g in of_kind(docs, "Gateway")}
    for vs in of_kind(docs, "VirtualService"):
        ns = ns_of(vs, default_ns)
        for gw in vs.get("spec", {}).get("gateways") or []:
            if gw == "mesh":
                continue
            key = (gw.split("/")[0], gw.split("/")[1]) if "/" in gw else (ns, gw)
            if key not in gateways:
                problems.append(f"{ref(vs)}: gateway {gw} does not exist")
        for dest in virtualservice_destinations(vs):
            host = dest.get("host", "")
            key = resolve_host(host, ns)
            if key is None or key not in known_services:
                problems.append(f"{ref(vs)}: destination {host} is no known Service")
                continue
            number = (dest.get("port") or {}).get("number")
            ports = [p.get("port") for p in known_services[key].get("spec", {}).get("ports") or []]
            if number is None and len(ports) != 1:
                problems.append(f"{ref(vs)}: destination {host} needs a port (Service has {ports})")
            elif number is not None and number not in ports:
                problems.append(f"{ref(vs)}: destination {host}:{number} is not a port of the Service {ports}")
    return problems


# --------------------------------------------------------------------------
# images, tracing, identities, security context
# --------------------------------------------------------------------------
def image_problems(docs: list[dict], default_ns: str, third_party: dict[str, str]) -> list[str]:
    """The demo's images come from the local registry; any other image is a listed
    third-party repository with a pinned tag (third_party: repository -> why)."""
    problems = []
    for owner, _, tpl in pod_templates(docs, default_ns):
        for c in all_containers(tpl.get("spec", {})):
            image = c.get("image", "")
            if image.startswith(REGISTRY):
                repo, _, tag = image[len(REGISTRY):].partition(":")
                if not tag or tag == "latest":
                    problems.append(f"{ref(owner)}/{c.get('name')}: image {image} has no pinned tag")
                continue
            repo, _, tag = image.partition(":")
            if repo not in third_party:
                problems.append(f"{ref(owner)}/{c.get('name')}: image {image} is not from {REGISTRY}")
            elif not tag or tag == "latest":
                problems.append(f"{ref(owner)}/{c.get('name')}: image {image} has no pinned tag")
    return problems


def mesh_zipkin_provider(mesh_docs: list[dict]) -> tuple[str, int] | None:
    """(service host, port) of the `zipkin` extension provider of the IstioOperator."""
    for op in of_kind(mesh_docs, "IstioOperator"):
        for provider in op.get("spec", {}).get("meshConfig", {}).get("extensionProviders") or []:
            if "zipkin" in provider:
                z = provider["zipkin"]
                return z.get("service", ""), int(z.get("port", 9411))
    return None


def tracing_endpoint_problems(docs: list[dict], default_ns: str, provider: tuple[str, int]) -> list[str]:
    """Each container's OTEL_EXPORTER_ZIPKIN_ENDPOINT is the mesh's Zipkin service."""
    problems = []
    want_host, want_port = provider
    want = resolve_host(want_host, "istio-system")
    for owner, ns, tpl in pod_templates(docs, default_ns):
        for c in tpl.get("spec", {}).get("containers") or []:
            var = env_map(c).get("OTEL_EXPORTER_ZIPKIN_ENDPOINT")
            if var is None:
                continue
            url = urlsplit(var.get("value", ""))
            got = resolve_host(url.hostname or "", ns)
            if got != want or url.port != want_port or url.path != "/api/v2/spans":
                problems.append(
                    f"{ref(owner)}/{c.get('name')}: OTEL_EXPORTER_ZIPKIN_ENDPOINT={var.get('value')!r} "
                    f"is not the mesh's Zipkin service {want_host}:{want_port}/api/v2/spans"
                )
    return problems


PRINCIPAL = re.compile(r"^cluster\.local/ns/(?P<ns>[^/]+)/sa/(?P<sa>[^/]+)$")


def workload_identities(docs: list[dict], default_ns: str) -> dict[tuple[str, str], list[dict]]:
    """(namespace, ServiceAccount) -> pod templates running as it."""
    out: dict[tuple[str, str], list[dict]] = {}
    for _, ns, tpl in pod_templates(docs, default_ns):
        sa = tpl.get("spec", {}).get("serviceAccountName") or "default"
        out.setdefault((ns, sa), []).append(tpl)
    return out


def authorization_problems(docs: list[dict], default_ns: str, external_principals: set[str]) -> list[str]:
    """AuthorizationPolicy principals name ServiceAccounts that workloads run as
    (in the chart, or a known external caller such as the ingress gateway), and
    each policy selects an existing workload."""
    problems = []
    identities = workload_identities(docs, default_ns)
    service_accounts = {(ns_of(s, default_ns), name_of(s)) for s in of_kind(docs, "ServiceAccount")}
    for ap in of_kind(docs, "AuthorizationPolicy"):
        ns = ns_of(ap, default_ns)
        spec = ap.get("spec", {})
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if selector and not any(
            tns == ns and selector.items() <= (tpl.get("metadata", {}).get("labels") or {}).items()
            for _, tns, tpl in pod_templates(docs, default_ns)
        ):
            problems.append(f"{ref(ap)}: selector {selector} matches no workload in {ns}")
        for rule in spec.get("rules") or []:
            for source in rule.get("from") or []:
                for principal in source.get("source", {}).get("principals") or []:
                    if principal in external_principals:
                        continue
                    m = PRINCIPAL.match(principal)
                    if not m:
                        problems.append(f"{ref(ap)}: principal {principal!r} is not cluster.local/ns/NS/sa/SA")
                        continue
                    key = (m["ns"], m["sa"])
                    if key not in identities:
                        problems.append(f"{ref(ap)}: no workload runs as {principal}")
                    elif key not in service_accounts:
                        problems.append(f"{ref(ap)}: ServiceAccount {principal} is not in the chart")
    return problems


def allowed_callers(docs: list[dict], default_ns: str) -> dict[str, set[str]]:
    """Workload `app` label -> principals its ALLOW policies admit."""
    out: dict[str, set[str]] = {}
    for ap in of_kind(docs, "AuthorizationPolicy"):
        spec = ap.get("spec", {})
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        app = ((spec.get("selector") or {}).get("matchLabels") or {}).get("app", "*")
        for rule in spec.get("rules") or []:
            for source in rule.get("from") or []:
                out.setdefault(app, set()).update(source.get("source", {}).get("principals") or [])
    return out


def security_context_problems(docs: list[dict], default_ns: str) -> list[str]:
    """Every container meets the restricted Pod Security profile, plus a read-only root filesystem."""
    problems = []
    for owner, _, tpl in pod_templates(docs, default_ns):
        pod_sc = tpl.get("spec", {}).get("securityContext") or {}
        for c in all_containers(tpl.get("spec", {})):
            sc = c.get("securityContext") or {}
            where = f"{ref(owner)}/{c.get('name')}"
            run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not true")
            if run_as_user == 0:
                problems.append(f"{where}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
    return problems


def pod_hygiene_problems(docs: list[dict], default_ns: str) -> list[str]:
    """What Istio, Kiali and a laptop cluster need from every pod: `app` and `version`
    labels, its own ServiceAccount, probes, requests and limits, named container
    ports, and the sidecar started before the app."""
    problems = []
    service_accounts = {(ns_of(s, default_ns), name_of(s)) for s in of_kind(docs, "ServiceAccount")}
    for owner, ns, tpl in pod_templates(docs, default_ns):
        where = ref(owner)
        labels = tpl.get("metadata", {}).get("labels") or {}
        annotations = tpl.get("metadata", {}).get("annotations") or {}
        spec = tpl.get("spec", {})
        for label in ("app", "version"):
            if not labels.get(label):
                problems.append(f"{where}: pod label {label!r} missing")
        sa = spec.get("serviceAccountName")
        if not sa or sa == "default" or (ns, sa) not in service_accounts:
            problems.append(f"{where}: does not run as its own ServiceAccount from the chart (got {sa!r})")
        proxy_config = yaml.safe_load(annotations.get("proxy.istio.io/config", "{}")) or {}
        if proxy_config.get("holdApplicationUntilProxyStarts") is not True:
            problems.append(f"{where}: no proxy.istio.io/config holdApplicationUntilProxyStarts: true")
        for c in spec.get("containers") or []:
            cw = f"{where}/{c.get('name')}"
            for probe in ("livenessProbe", "readinessProbe"):
                if not c.get(probe):
                    problems.append(f"{cw}: no {probe}")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set((res.get(kind) or {}).keys()):
                    problems.append(f"{cw}: resources.{kind} lacks cpu or memory")
            for port in c.get("ports") or []:
                if not port.get("name"):
                    problems.append(f"{cw}: container port {port.get('containerPort')} has no name")
    return problems


# --------------------------------------------------------------------------
# values documentation
# --------------------------------------------------------------------------
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\"'-]+):(?P<rest>.*)$")


def undocumented_values(values_yaml: str) -> list[str]:
    """Leaf keys of a values.yaml with no comment line directly above them or
    above one of their parent keys."""
    problems = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    previous = ""
    lines = values_yaml.splitlines()
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if not m or line.lstrip().startswith("#"):
            if line.strip():
                previous = line
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = previous.strip().startswith("#") and (
            len(previous) - len(previous.lstrip()) == indent
        )
        rest = m["rest"].split(" #")[0].strip()
        nxt = next((ln for ln in lines[i + 1:] if ln.strip() and not ln.lstrip().startswith("#")), "")
        is_parent = rest == "" and (len(nxt) - len(nxt.lstrip())) > indent
        path = ".".join([k for _, k, _ in stack] + [m["key"]])
        if not is_parent and not documented and not any(d for _, _, d in stack):
            problems.append(path)
        stack.append((indent, m["key"], documented))
        previous = line
    return problems


def loose_schema_objects(schema: dict, path: str = "$", allow_open: frozenset = frozenset()) -> list[str]:
    """Objects with `properties` that do not set additionalProperties: false
    (`allow_open` lists paths that may stay open, such as a subchart's `global`)."""
    problems = []
    if isinstance(schema, dict):
        if "properties" in schema and schema.get("additionalProperties") is not False and path not in allow_open:
            problems.append(path)
        for key, value in schema.items():
            child = f"{path}.{key}" if key != "properties" else path
            if key == "properties":
                for prop, sub in value.items():
                    problems.extend(loose_schema_objects(sub, f"{path}.{prop}", allow_open))
            elif isinstance(value, dict) and key not in ("properties",):
                problems.extend(loose_schema_objects(value, child, allow_open))
    return problems
