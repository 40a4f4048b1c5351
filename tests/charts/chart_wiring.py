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
# Kubernetes Gateway API routing
# --------------------------------------------------------------------------
GATEWAY_API = "gateway.networking.k8s.io"
ISTIO_API = "networking.istio.io"
# The ingress gateway of Istio's default profile (istio-system/istio-ingressgateway) and its identity.
ISTIO_DEFAULT_INGRESS = ({"istio": "ingressgateway"},
                         "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")


def api_group(doc: dict) -> str:
    return doc.get("apiVersion", "").partition("/")[0]


def selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def listener_admits(gateway_ns: str, listener: dict, route_ns: str, route_kind: str = "HTTPRoute") -> bool:
    """Whether a Gateway listener accepts a route of this kind from route_ns. Only the
    `kubernetes.io/metadata.name` label is known of a namespace (Kubernetes sets it on every one)."""
    allowed = listener.get("allowedRoutes") or {}
    kinds = [k.get("kind") for k in allowed.get("kinds") or []]
    if kinds and route_kind not in kinds:
        return False
    if not kinds and route_kind == "HTTPRoute" and listener.get("protocol") not in ("HTTP", "HTTPS"):
        return False
    namespaces = allowed.get("namespaces") or {}
    source = namespaces.get("from", "Same")
    if source == "All":
        return True
    if source == "Same":
        return route_ns == gateway_ns
    if source == "Selector":
        return selector_matches(namespaces.get("selector") or {}, {"kubernetes.io/metadata.name": route_ns})
    return False


def reference_granted(grants: list[dict], from_ns: str, to_ns: str, service: str) -> bool:
    """A ReferenceGrant in to_ns lets HTTPRoutes of from_ns reference the Service."""
    for grant in grants:
        if ns_of(grant, "") != to_ns:
            continue
        spec = grant.get("spec", {})
        sources = any(f.get("group") == GATEWAY_API and f.get("kind") == "HTTPRoute" and f.get("namespace") == from_ns
                      for f in spec.get("from") or [])
        targets = any(t.get("group", "") == "" and t.get("kind") == "Service" and t.get("name", service) == service
                      for t in spec.get("to") or [])
        if sources and targets:
            return True
    return False


def service_parent_problems(route: dict, parent: dict, route_ns: str, known_services: dict) -> list[str]:
    """A route attached to a Service (Gateway API for meshes, GAMMA): the Service exists, in the
    route's namespace (a route there would be a consumer route, which this demo does not use),
    and the parent's port, when given, is one of its ports."""
    key = (parent.get("namespace", route_ns), parent.get("name"))
    service = known_services.get(key)
    if key[0] != route_ns:
        return [f"{ref(route)}: parent Service {key[0]}/{key[1]} is not in the route's namespace"]
    if service is None:
        return [f"{ref(route)}: parent Service {key[0]}/{key[1]} does not exist"]
    ports = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
    if "port" in parent and parent["port"] not in ports:
        return [f"{ref(route)}: parent Service {key[1]} has no port {parent['port']} ({ports})"]
    return []


def httproute_problems(docs: list[dict], default_ns: str, known_services: dict) -> list[str]:
    """Every HTTPRoute's parentRefs name an existing Gateway and a listener of it that admits
    the route's namespace; every backendRef names an existing Service and one of its ports,
    across namespaces only with a ReferenceGrant."""
    problems = []
    gateways = {(ns_of(g, default_ns), name_of(g)): g for g in of_kind(docs, "Gateway") if api_group(g) == GATEWAY_API}
    grants = of_kind(docs, "ReferenceGrant")
    for route in of_kind(docs, "HTTPRoute"):
        ns = ns_of(route, default_ns)
        spec = route.get("spec", {})
        if not spec.get("parentRefs"):
            problems.append(f"{ref(route)}: no parentRefs")
        for parent in spec.get("parentRefs") or []:
            if parent.get("group") == "" and parent.get("kind") == "Service":
                problems.extend(service_parent_problems(route, parent, ns, known_services))
                continue
            if parent.get("group", GATEWAY_API) != GATEWAY_API or parent.get("kind", "Gateway") != "Gateway":
                problems.append(f"{ref(route)}: parent {parent} is neither a Gateway nor a Service")
                continue
            gw_ns = parent.get("namespace", ns)
            gateway = gateways.get((gw_ns, parent.get("name")))
            if gateway is None:
                problems.append(f"{ref(route)}: Gateway {gw_ns}/{parent.get('name')} does not exist")
                continue
            listeners = gateway.get("spec", {}).get("listeners") or []
            if parent.get("sectionName"):
                listeners = [ln for ln in listeners if ln.get("name") == parent["sectionName"]]
                if not listeners:
                    problems.append(f"{ref(route)}: Gateway {gw_ns}/{name_of(gateway)} has no listener "
                                    f"{parent['sectionName']!r}")
                    continue
            if not any(listener_admits(gw_ns, ln, ns) for ln in listeners):
                problems.append(f"{ref(route)}: no listener of Gateway {gw_ns}/{name_of(gateway)} "
                                f"admits HTTPRoutes from namespace {ns}")
        for rule in spec.get("rules") or []:
            for backend in rule.get("backendRefs") or []:
                if backend.get("group", "") != "" or backend.get("kind", "Service") != "Service":
                    problems.append(f"{ref(route)}: backend {backend} is not a Service")
                    continue
                key = (backend.get("namespace", ns), backend.get("name"))
                service = known_services.get(key)
                if service is None:
                    problems.append(f"{ref(route)}: backend {key[0]}/{key[1]} is no known Service")
                    continue
                ports = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
                if backend.get("port") not in ports:
                    problems.append(f"{ref(route)}: backend {key[0]}/{key[1]}:{backend.get('port')} "
                                    f"is not a port of the Service {ports}")
                if key[0] != ns and not reference_granted(grants, ns, key[0], key[1]):
                    problems.append(f"{ref(route)}: backend {key[0]}/{key[1]} is in another namespace "
                                    "and no ReferenceGrant allows it")
    return problems


def ingress_principals(docs: list[dict], default_ns: str) -> set[str]:
    """Identities of the ingress gateways the manifests use: a Gateway API Gateway of class
    `istio` runs as ServiceAccount <name>-istio in its namespace (Istio deploys it); Istio's own
    Gateway on the default profile's selector runs as istio-ingressgateway-service-account."""
    out = set()
    for gateway in of_kind(docs, "Gateway"):
        spec = gateway.get("spec", {})
        if api_group(gateway) == GATEWAY_API and spec.get("gatewayClassName") == "istio":
            out.add(f"cluster.local/ns/{ns_of(gateway, default_ns)}/sa/{name_of(gateway)}-istio")
        elif api_group(gateway) == ISTIO_API and spec.get("selector") == ISTIO_DEFAULT_INGRESS[0]:
            out.add(ISTIO_DEFAULT_INGRESS[1])
    return out


WAYPOINT_CLASS = "istio-waypoint"
USE_WAYPOINT = "istio.io/use-waypoint"
# Attributes ztunnel cannot see (istio.io, ambient "Use Layer 4 security policy": anything beyond
# principals, namespaces, ipBlocks, ports and source/destination IP and port conditions is L7).
L7_SOURCE = {"requestPrincipals", "notRequestPrincipals"}
L7_OPERATION = {"hosts", "notHosts", "methods", "notMethods", "paths", "notPaths"}
L4_CONDITION_KEYS = {"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port",
                     "remote.ip"}


def waypoints(docs: list[dict], default_ns: str) -> dict[tuple[str, str], dict]:
    """(namespace, name) -> Gateway API Gateway of class istio-waypoint."""
    return {(ns_of(g, default_ns), name_of(g)): g for g in of_kind(docs, "Gateway")
            if api_group(g) == GATEWAY_API and g.get("spec", {}).get("gatewayClassName") == WAYPOINT_CLASS}


def waypoint_principals(docs: list[dict], default_ns: str) -> set[str]:
    """Identities of the waypoints: Istio deploys a waypoint as ServiceAccount <name> in its
    namespace (class istio-waypoint adds no suffix, unlike class istio's -istio)."""
    return {f"cluster.local/ns/{ns}/sa/{name}" for ns, name in waypoints(docs, default_ns)}


def waypoint_problems(docs: list[dict], default_ns: str) -> list[str]:
    """Each waypoint has the shape `istioctl waypoint generate` prints (one listener `mesh`, port
    15008, HBONE) and serves Service traffic; each Service's istio.io/use-waypoint names one of them
    in its namespace."""
    problems = []
    found = waypoints(docs, default_ns)
    for (ns, name), gw in found.items():
        listeners = [(ln.get("name"), ln.get("port"), ln.get("protocol")) for ln in gw["spec"].get("listeners") or []]
        if listeners != [("mesh", 15008, "HBONE")]:
            problems.append(f"{ref(gw)}: listeners {listeners}, a waypoint has one: mesh, 15008, HBONE")
        serves = (gw.get("metadata", {}).get("labels") or {}).get("istio.io/waypoint-for", "service")
        if serves not in ("service", "all"):
            problems.append(f"{ref(gw)}: istio.io/waypoint-for={serves} does not serve Service traffic")
    for svc in of_kind(docs, "Service"):
        name = (svc.get("metadata", {}).get("labels") or {}).get(USE_WAYPOINT)
        if name and (ns_of(svc, default_ns), name) not in found:
            problems.append(f"{ref(svc)}: {USE_WAYPOINT}={name} names no waypoint in {ns_of(svc, default_ns)}")
    return problems


def bound_services(docs: list[dict], default_ns: str) -> dict[tuple[str, str], str]:
    """(namespace, Service) -> the waypoint it is bound to (istio.io/use-waypoint)."""
    return {(ns_of(s, default_ns), name_of(s)): s["metadata"]["labels"][USE_WAYPOINT]
            for s in of_kind(docs, "Service") if (s.get("metadata", {}).get("labels") or {}).get(USE_WAYPOINT)}


def l7_attributes(rule: dict) -> list[str]:
    """The attributes of an AuthorizationPolicy rule that only an L7 proxy can check."""
    found = [k for f in rule.get("from") or [] for k in (f.get("source") or {}) if k in L7_SOURCE]
    found += [k for t in rule.get("to") or [] for k in (t.get("operation") or {}) if k in L7_OPERATION]
    found += [c.get("key", "") for c in rule.get("when") or [] if c.get("key") not in L4_CONDITION_KEYS]
    return found


def ambient_policy_problems(docs: list[dict], default_ns: str) -> list[str]:
    """Ambient mode: a policy with a `selector` is enforced by ztunnel, which sees no L7 (an
    ALLOW rule with L7 attributes there matches nothing); one with `targetRefs` is enforced by the
    waypoint of what it names, so each target is a waypoint or a Service bound to one. And a
    workload behind a waypoint-bound Service receives those calls from the waypoint: its L4 ALLOW
    policies must admit the waypoint's identity."""
    problems = []
    found = waypoints(docs, default_ns)
    bound = bound_services(docs, default_ns)
    services = service_index(docs, default_ns)
    templates = pod_templates(docs, default_ns)
    for ap in of_kind(docs, "AuthorizationPolicy"):
        ns, spec = ns_of(ap, default_ns), ap.get("spec", {})
        if spec.get("selector"):
            for rule in spec.get("rules") or []:
                if l7_attributes(rule):
                    problems.append(f"{ref(ap)}: L7 attributes {l7_attributes(rule)} in a selector policy, "
                                    "which ztunnel enforces")
        for target in spec.get("targetRefs") or []:
            kind, name = target.get("kind"), target.get("name")
            if kind == "Gateway" and target.get("group") == GATEWAY_API:
                if (ns, name) not in found:
                    problems.append(f"{ref(ap)}: target Gateway {name} is no waypoint in {ns}")
            elif kind == "Service" and target.get("group", "") == "":
                if (ns, name) not in services:
                    problems.append(f"{ref(ap)}: target Service {name} does not exist")
                elif (ns, name) not in bound:
                    problems.append(f"{ref(ap)}: target Service {name} has no waypoint to enforce it")
            else:
                problems.append(f"{ref(ap)}: target {target} is neither a waypoint nor a Service")
    for (ns, svc_name), waypoint in bound.items():
        principal = f"cluster.local/ns/{ns}/sa/{waypoint}"
        selector = services[(ns, svc_name)].get("spec", {}).get("selector") or {}
        pods = [tpl.get("metadata", {}).get("labels") or {} for _, tns, tpl in templates
                if tns == ns and selector and selector.items() <= (tpl.get("metadata", {}).get("labels") or {}).items()]
        for ap in of_kind(docs, "AuthorizationPolicy"):
            spec = ap.get("spec", {})
            match = (spec.get("selector") or {}).get("matchLabels")
            if ns_of(ap, default_ns) != ns or spec.get("action", "ALLOW") != "ALLOW" or not match:
                continue
            if any(match.items() <= labels.items() for labels in pods) and not any(
                    principal in (f.get("source") or {}).get("principals", [])
                    for rule in spec.get("rules") or [] for f in rule.get("from") or []):
                problems.append(f"{ref(ap)}: the pods of Service {svc_name} are reached through waypoint "
                                f"{waypoint}, whose identity {principal} it does not admit")
    return problems


def prefix_matches(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: element-wise, a trailing slash in the prefix ignored."""
    base = prefix.rstrip("/")
    return base == "" or path == base or path.startswith(base + "/")


def replace_prefix(prefix: str, replacement: str, path: str) -> str:
    """Gateway API URLRewrite ReplacePrefixMatch (the HTTPPathModifier table of the spec)."""
    rest = path[len(prefix.rstrip("/")):]
    return (replacement.rstrip("/") + rest) or "/"


def attached_to_a_gateway(route: dict) -> bool:
    """An ingress route (parentRefs a Gateway), not one of the mesh's (GAMMA: parentRefs a Service)."""
    return any(p.get("kind", "Gateway") == "Gateway" for p in route.get("spec", {}).get("parentRefs") or [{}])


def resolve_route(routes: list[dict], path: str) -> tuple | None:
    """What the gateway does with a request path: ("redirect", path), ("backend", (ns, name,
    port), rewritten path) or None (404). Exact matches win over prefixes, longer prefixes first.
    Routes attached only to Services (the mesh's, GAMMA) are not the gateway's and are left out."""
    candidates = []
    for route in routes:
        if not attached_to_a_gateway(route):
            continue
        for rule in route.get("spec", {}).get("rules") or []:
            for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                p = match.get("path") or {"type": "PathPrefix", "value": "/"}
                if p.get("type") == "Exact" and path == p["value"]:
                    candidates.append(((0, 0), route, rule, p))
                elif p.get("type", "PathPrefix") == "PathPrefix" and prefix_matches(p["value"], path):
                    candidates.append(((1, -len(p["value"].rstrip("/"))), route, rule, p))
    if not candidates:
        return None
    _, route, rule, p = min(candidates, key=lambda c: c[0])
    new_path = path
    for f in rule.get("filters") or []:
        if f.get("type") == "RequestRedirect":
            modifier = f["requestRedirect"].get("path") or {}
            if modifier.get("type") == "ReplaceFullPath":
                return ("redirect", modifier["replaceFullPath"])
            if modifier.get("type") == "ReplacePrefixMatch":
                return ("redirect", replace_prefix(p["value"], modifier["replacePrefixMatch"], path))
            return ("redirect", path)
        if f.get("type") == "URLRewrite":
            modifier = f["urlRewrite"].get("path") or {}
            if modifier.get("type") == "ReplacePrefixMatch":
                new_path = replace_prefix(p["value"], modifier["replacePrefixMatch"], path)
            elif modifier.get("type") == "ReplaceFullPath":
                new_path = modifier["replaceFullPath"]
    [backend] = rule.get("backendRefs")
    key = (backend.get("namespace", ns_of(route, "")), backend["name"], backend["port"])
    return ("backend", key, new_path)


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


def otlp_http_receivers(addon_docs: list[dict], default_ns: str = "istio-system") -> set[tuple[str, str, int]]:
    """(namespace, Service, port) of every Service port that reaches Jaeger's OTLP/HTTP receiver:
    the port the Jaeger ConfigMap's `receivers.otlp.protocols.http.endpoint` listens on, in the
    traces pipeline, reached through a Service whose targetPort is that port (by number or by
    the container port's name)."""
    out: set[tuple[str, str, int]] = set()
    for cm in of_kind(addon_docs, "ConfigMap"):
        config = yaml.safe_load((cm.get("data") or {}).get("config.yaml", "") or "{}") or {}
        http = (((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("http")
        pipeline = ((config.get("service") or {}).get("pipelines") or {}).get("traces") or {}
        if not isinstance(http, dict) or "otlp" not in (pipeline.get("receivers") or []):
            continue
        listen = int(str(http.get("endpoint", "0.0.0.0:4318")).rsplit(":", 1)[1])
        ns = ns_of(cm, default_ns)
        for owner, tns, tpl in pod_templates(addon_docs, default_ns):
            mounts_config = any((v.get("configMap") or {}).get("name") == name_of(cm)
                                for v in tpl.get("spec", {}).get("volumes") or [])
            if tns != ns or not mounts_config:
                continue
            labels = tpl.get("metadata", {}).get("labels") or {}
            names = {p.get("name") for c in tpl["spec"].get("containers") or [] for p in c.get("ports") or []
                     if p.get("containerPort") == listen}
            for svc in of_kind(addon_docs, "Service"):
                selector = svc.get("spec", {}).get("selector") or {}
                if ns_of(svc, default_ns) != ns or not selector or not selector.items() <= labels.items():
                    continue
                for port in svc["spec"].get("ports") or []:
                    target = port.get("targetPort", port.get("port"))
                    if target == listen or target in names:
                        out.add((ns, name_of(svc), port["port"]))
    return out


def otlp_endpoint_problems(docs: list[dict], default_ns: str, receivers: set[tuple[str, str, int]]) -> list[str]:
    """Each container's OTLP traces endpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, used as is, else
    OTEL_EXPORTER_OTLP_ENDPOINT, a base URL) is plain http:// to one of the receivers."""
    problems = []
    for owner, ns, tpl in pod_templates(docs, default_ns):
        for c in tpl.get("spec", {}).get("containers") or []:
            env = env_map(c)
            var, path = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces"
            if var not in env:
                var, path = "OTEL_EXPORTER_OTLP_ENDPOINT", ""
            if var not in env:
                continue
            value = env[var].get("value", "")
            url = urlsplit(value)
            key = resolve_host(url.hostname or "", ns)
            if url.scheme != "http" or key is None or (*key, url.port) not in receivers \
                    or url.path.rstrip("/") != path:
                problems.append(f"{ref(owner)}/{c.get('name')}: {var}={value!r} is not Jaeger's OTLP/HTTP "
                                f"receiver (one of {sorted(receivers)}{', path ' + path if path else ''})")
    return problems


VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def kubernetes_env(container: dict, pod_fields: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: entries in order, a fieldRef read from
    pod_fields (fieldPath -> value), `$(VAR)` replaced only when VAR was declared earlier in the list
    (otherwise left as written), `$$` an escaped `$`. Other valueFrom sources are left out."""
    out: dict[str, str] = {}
    for e in container.get("env") or []:
        if "value" in e:
            out[e["name"]] = VAR_REF.sub(lambda m: "$" if m[0] == "$$" else out.get(m[1], m[0]), e["value"])
        elif "fieldRef" in (e.get("valueFrom") or {}):
            out[e["name"]] = pod_fields.get(e["valueFrom"]["fieldRef"]["fieldPath"], "")
    return out


def resource_attribute_problems(docs: list[dict], default_ns: str) -> list[str]:
    """Each OTEL_RESOURCE_ATTRIBUTES is a `key=value,key=value` list whose every `$(VAR)` is a
    downward-API (fieldRef) variable declared earlier in the same container, so Kubernetes
    expands it (a later or unknown one stays `$(VAR)`, literally, on every span)."""
    problems = []
    for owner, _, tpl in pod_templates(docs, default_ns):
        for c in tpl.get("spec", {}).get("containers") or []:
            where = f"{ref(owner)}/{c.get('name')}"
            entries = c.get("env") or []
            names = [e.get("name") for e in entries]
            if "OTEL_RESOURCE_ATTRIBUTES" not in names:
                continue
            at = names.index("OTEL_RESOURCE_ATTRIBUTES")
            value = entries[at].get("value", "")
            for pair in value.split(","):
                key, eq, _ = pair.partition("=")
                if not eq or not key.strip():
                    problems.append(f"{where}: OTEL_RESOURCE_ATTRIBUTES entry {pair!r} is not key=value")
            for m in VAR_REF.finditer(value):
                if m[0] == "$$":
                    continue
                earlier = [e for e in entries[:at] if e.get("name") == m[1]]
                if not earlier:
                    later = m[1] in names[at + 1:]
                    problems.append(f"{where}: OTEL_RESOURCE_ATTRIBUTES refers to $({m[1]}), "
                                    f"{'declared after it' if later else 'not declared'}: Kubernetes leaves it as is")
                elif "fieldRef" not in (earlier[-1].get("valueFrom") or {}):
                    problems.append(f"{where}: $({m[1]}) in OTEL_RESOURCE_ATTRIBUTES is not from the downward API")
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
    """Workload `app` label (selector policies) or `Kind/name` (each targetRefs entry) ->
    principals its ALLOW policies admit."""
    out: dict[str, set[str]] = {}
    for ap in of_kind(docs, "AuthorizationPolicy"):
        spec = ap.get("spec", {})
        if spec.get("action", "ALLOW") != "ALLOW":
            continue
        keys = [f"{t.get('kind')}/{t.get('name')}" for t in spec.get("targetRefs") or []] or \
            [((spec.get("selector") or {}).get("matchLabels") or {}).get("app", "*")]
        for rule in spec.get("rules") or []:
            for source in rule.get("from") or []:
                for key in keys:
                    out.setdefault(key, set()).update(source.get("source", {}).get("principals") or [])
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
