"""Stand-in docker, kind, kubectl, helm and istioctl (and curl) for the
create-cluster.sh, `make up` and `make preflight` checks.

Each stand-in is a tiny script (written by `install`) that calls `main(tool)`.
It appends its arguments to the log $FAKE_LOG (a Python literal a line:
`read_log`) and keeps just enough state under $FAKE_STATE (`read_state`) to
answer the questions the script asks on a second run: the registry container
exists and is on the kind network, the cluster exists, hosts.toml is on the
nodes, objects were applied, Helm releases are deployed, Istio is installed.
Version strings can be overridden with FAKE_<TOOL>_VERSION; FAKE_DOCKER_DOWN=1
makes `docker info` fail, and FAKE_DOCKER_MEM (bytes) and FAKE_DOCKER_CPUS set
what it reports.
What exists on the network is listed, whitespace-separated, in FAKE_IMAGES
(`docker manifest inspect`), FAKE_CHARTS (`helm show chart NAME --repo URL
--version V` as `URL/NAME:V`) and FAKE_URLS (`curl`); anything else is not found.
`curl -o FILE URL` writes a stand-in Grafana dashboard (JSON naming the URL) to FILE, or for the
dashboards recorded in fixtures/istio-dashboards/ (Istio's own, as published) that recording.
FAKE_FAIL_AT=N interrupts the run at its Nth state-changing call (that call
fails before it changes anything), as a Ctrl-C or a dropped connection would.
Istio's data plane is modelled as far as the scripts can see it: `istioctl
install` with the `ambient` profile adds the DaemonSets ztunnel and
istio-cni-node, and one without it prunes those its own version made (as
istioctl's installer does); namespaces keep their labels and annotations; the
app chart's workloads exist once its release does, and each pod records the
data plane it was created under (the namespace's labels when the chart first
created it or `kubectl rollout restart` replaced it): `sidecar`, `ambient` or `none`.
"""

from __future__ import annotations

# Only what every call needs: a create-cluster.sh run calls the stand-ins about 80 times, so their
# start-up counts. json, re and pathlib (together as long to import as an empty interpreter takes to
# start) are imported where a stand-in needs them, and the state is kept with marshal: a whole
# cluster's, Grafana's dashboards included, loads and saves in about 1 ms (json: 10 ms). A run of
# create-cluster.sh takes 2.3 s instead of 2.8 s.
import marshal
import os
import sys

TOOLS = ("docker", "kind", "kubectl", "helm", "istioctl")
# Installed too, but not one of the cluster tools the scripts name (the sandbox
# keeps no real curl on PATH: nothing may reach the network).
HELPERS = ("curl",)

# `-S` leaves out site (the .pth files and the editable install's finder, about half of an empty
# interpreter's start-up) and the one folder of packages they need (PyYAML's) is added by hand.
WRAPPER = """#!{python} -S
import sys
sys.path.insert(0, {here!r})
sys.path.append({packages!r})
import fake_tools
sys.exit(fake_tools.main({tool!r}))
"""


def install(bin_dir: str | os.PathLike, omit: tuple[str, ...] = ()) -> None:
    """Writes the stand-ins (all but `omit`) into bin_dir."""
    import yaml

    os.makedirs(bin_dir, exist_ok=True)
    here = os.path.dirname(os.path.realpath(__file__))
    packages = os.path.dirname(os.path.dirname(os.path.realpath(yaml.__file__)))
    for tool in TOOLS + HELPERS:
        if tool in omit:
            continue
        path = os.path.join(bin_dir, tool)
        with open(path, "w") as f:
            f.write(WRAPPER.format(python=sys.executable, here=here, packages=packages, tool=tool))
        os.chmod(path, 0o755)


def read_log(path: str | os.PathLike) -> list[dict]:
    """The calls logged so far, in order."""
    import ast

    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [ast.literal_eval(line) for line in f if line.strip()]


STATE_FILE = "state.marshal"


def read_state(root: str | os.PathLike) -> dict:
    """The state the stand-ins keep under `root` ($FAKE_STATE); {} before the first call."""
    path = os.path.join(root, STATE_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        return marshal.load(f)


def write_state(root: str | os.PathLike, data: dict) -> None:
    # Atomic: a pipeline runs two stand-ins at once (`kubectl create ... | kubectl apply -f -`).
    tmp = os.path.join(root, f"{STATE_FILE}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        marshal.dump(data, f)
    os.replace(tmp, os.path.join(root, STATE_FILE))


class State:
    def __init__(self) -> None:
        self.root = os.environ["FAKE_STATE"]
        os.makedirs(self.root, exist_ok=True)
        self.data = read_state(self.root)

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        write_state(self.root, self.data)


def log(tool: str, args: list[str], **extra) -> None:
    entry = {"tool": tool, "args": args, **extra}
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(repr(entry) + "\n")


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def option(args: list[str], *names: str) -> str | None:
    """Value of `--name value` or `--name=value`."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1:]
    return None


def drop_options(args: list[str], *names: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(n + "=") for n in names):
            continue
        out.append(arg)
    return out


# --- docker -------------------------------------------------------------------------------------------

def docker(args: list[str], state: State) -> int:
    cmd = args[0] if args else ""
    registries = state.get("containers", {})
    if cmd == "version":
        print(os.environ.get("FAKE_DOCKER_VERSION", "28.5.1"))
    elif cmd == "info":
        if os.environ.get("FAKE_DOCKER_DOWN"):
            return fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
        fmt = option(args, "-f", "--format")
        if fmt is None:
            print("Server: fake")
        elif fmt == "{{.MemTotal}}":
            print(os.environ.get("FAKE_DOCKER_MEM", str(16 * 1024**3)))
        elif fmt == "{{.NCPU}}":
            print(os.environ.get("FAKE_DOCKER_CPUS", "8"))
        else:
            return fail(f"fake docker info: unexpected format {fmt}")
    elif args[:2] == ["manifest", "inspect"]:
        import json

        image = args[-1]
        if image not in os.environ.get("FAKE_IMAGES", "").split():
            return fail(f"no such manifest: {image}")
        print(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": []}))
    elif cmd == "inspect":
        name = args[-1]
        if name not in registries:
            return fail(f"Error: No such object: {name}")
        fmt = option(args, "-f", "--format") or ""
        container = registries[name]
        if ".State.Running" in fmt:
            print("true" if container["running"] else "false")
        elif "Networks.kind" in fmt:
            print('{"NetworkID":"fake"}' if container["kind_network"] else "null")
        else:
            print("[{}]")
    elif cmd == "run":
        name = option(args, "--name")
        if name in registries:
            return fail(f"Conflict. The container name \"/{name}\" is already in use.")
        registries[name] = {"running": True, "kind_network": False, "image": args[-1]}
        state.set("containers", registries)
        print("f" * 64)
    elif cmd == "start":
        registries[args[-1]]["running"] = True
        state.set("containers", registries)
    elif cmd == "rm":
        name = args[-1]
        if name not in registries:
            return fail(f"Error response from daemon: No such container: {name}")
        del registries[name]
        state.set("containers", registries)
    elif cmd == "network" and args[1] == "connect":
        network, name = args[2], args[3]
        if network != "kind" or not state.get("clusters"):
            return fail(f"Error response from daemon: network {network} not found")
        registries[name]["kind_network"] = True
        state.set("containers", registries)
    elif cmd == "exec":
        rest = [a for a in args[1:] if a not in ("-i", "-t", "-it")]
        node, command = rest[0], rest[1:]
        nodes = state.get("nodes", {})
        if node not in nodes:
            return fail(f"Error response from daemon: No such container: {node}")
        files = nodes[node]
        if command[0] == "cat":
            if command[1] not in files:
                return fail(f"cat: {command[1]}: No such file or directory")
            sys.stdout.write(files[command[1]])
        elif command[:2] == ["cp", "/dev/stdin"]:
            files[command[2]] = sys.stdin.read()
            state.set("nodes", nodes)
        elif command[0] == "mkdir":
            pass
        else:
            return fail(f"fake docker exec: unexpected command {command}")
    elif cmd in ("build", "push", "tag", "pull"):
        print(f"fake docker {cmd}")
    return 0


# --- kind ----------------------------------------------------------------------------------------------

def kind(args: list[str], state: State) -> int:
    clusters = state.get("clusters", [])
    name = option(args, "--name") or "kind"
    if args[:1] == ["version"]:
        print(f"kind {os.environ.get('FAKE_KIND_VERSION', 'v0.32.0')} go1.25.1 linux/amd64")
    elif args[:2] == ["get", "clusters"]:
        if not clusters:
            print("No kind clusters found.", file=sys.stderr)
        for cluster in clusters:
            print(cluster)
    elif args[:2] == ["get", "nodes"]:
        if name not in clusters:
            return fail(f'ERROR: no nodes found for cluster "{name}"')
        print(f"{name}-control-plane\n{name}-worker")
    elif args[:2] == ["create", "cluster"]:
        if name in clusters:
            return fail(f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"')
        config = option(args, "--config")
        if not config or not os.path.isfile(config):
            return fail(f"ERROR: config file {config} not found")
        state.set("clusters", clusters + [name])
        nodes = state.get("nodes", {})
        nodes.update({f"{name}-control-plane": {}, f"{name}-worker": {}})
        state.set("nodes", nodes)
        print(f'Creating cluster "{name}" ...')
    elif args[:2] == ["delete", "cluster"]:
        state.set("clusters", [c for c in clusters if c != name])
        state.set("nodes", {n: f for n, f in state.get("nodes", {}).items() if not n.startswith(name + "-")})
        print(f'Deleting cluster "{name}" ...')
    return 0


# --- kubectl -------------------------------------------------------------------------------------------

# PyYAML is imported where a stand-in needs it (most calls do not), with libyaml's safe loader and
# dumper where it was built with them (the wheels are): the Grafana dashboards the script applies
# are large, and the pure-Python parser took most of a run's time.

def safe_load_all(text: str) -> list:
    import yaml

    return list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def safe_dump_all(docs: list) -> str:
    import yaml

    return yaml.dump_all(docs, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))


def safe_dump(doc) -> str:
    return safe_dump_all([doc])


def manifest_docs(text: str) -> list[dict]:
    return [d for d in safe_load_all(text) if d]


def create_dry_run(args: list[str], namespace: str | None) -> int:
    from pathlib import Path

    kind_, name = args[1], args[2]
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    if kind_ == "namespace":
        obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    elif kind_ == "configmap":
        data = {}
        for arg in args:
            if arg.startswith("--from-literal="):
                key, _, value = arg[len("--from-literal="):].partition("=")
                data[key] = value
            elif arg.startswith("--from-file="):
                spec = arg[len("--from-file="):]
                key, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
                source = Path(path)
                if source.is_dir():
                    data.update({p.name: p.read_text() for p in sorted(source.iterdir()) if p.is_file()})
                else:
                    data[key or source.name] = source.read_text()
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
    else:
        return fail(f"fake kubectl: cannot create {kind_}")
    sys.stdout.write(safe_dump(obj))
    return 0


def annotate_local(args: list[str]) -> int:
    """`kubectl annotate --local -f - -o yaml KEY=VALUE...`: the object on stdin, annotated."""
    if option(args, "-f") != "-" or option(args, "-o") != "yaml":
        return fail(f"fake kubectl annotate: unexpected arguments {args}")
    values = [a for i, a in enumerate(args) if "=" in a and not a.startswith("-") and args[i - 1] not in ("-f", "-o")]
    (doc,) = manifest_docs(sys.stdin.read())
    annotations = doc["metadata"].setdefault("annotations", {})
    for value in values:
        key, _, val = value.partition("=")
        annotations[key] = val
    sys.stdout.write(safe_dump(doc))
    return 0


def kubectl(args: list[str], state: State) -> int:
    context = option(args, "--context")
    args = drop_options(args, "--context")
    namespace = option(args, "-n", "--namespace") or "default"
    rest = drop_options(args, "-n", "--namespace")
    if rest[:1] == ["version"]:
        print(f"Client Version: {os.environ.get('FAKE_KUBECTL_VERSION', 'v1.36.1')}\nKustomize Version: v5.7.1")
        return 0
    if rest[:1] == ["create"] and "--dry-run=client" in rest:
        return create_dry_run(rest, option(args, "-n", "--namespace"))
    if rest[:1] == ["annotate"] and "--local" in rest:
        return annotate_local(rest)
    if not state.get("clusters"):
        return fail("The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    if context and context.removeprefix("kind-") not in state.get("clusters"):
        return fail(f'error: context "{context}" does not exist')
    objects = state.get("objects", {})
    if rest[:2] == ["label", "namespace"]:
        return label_namespace(rest[2], [a for a in rest[3:] if not a.startswith("-")], state)
    if rest[:2] == ["annotate", "namespace"]:
        meta = namespace_meta(state, rest[2])
        if meta is None:
            return fail(f'Error from server (NotFound): namespaces "{rest[2]}" not found')
        for value in [a for a in rest[3:] if not a.startswith("-")]:
            key, _, val = value.partition("=")
            meta["annotations"][key] = val
        state.set("namespaces", {**state.get("namespaces", {}), rest[2]: meta})
        print(f"namespace/{rest[2]} annotated")
        return 0
    if rest[:1] == ["get"] and rest[1] in ("namespace", "ns") and len(rest) > 2:
        meta = namespace_meta(state, rest[2])
        if meta is None:
            return fail(f'Error from server (NotFound): namespaces "{rest[2]}" not found')
        jsonpath = option(rest, "-o") or ""
        if jsonpath.startswith("jsonpath={.metadata.annotations."):
            key = jsonpath[len("jsonpath={.metadata.annotations."):-1].replace("\\.", ".")
            print(meta["annotations"].get(key, ""), end="")
        return 0
    if rest[:2] == ["get", "deployments,statefulsets"] and option(rest, "-o") == "name":
        for workload in app_workloads(state, namespace):
            print(workload)
        return 0
    if rest[:2] == ["rollout", "restart"] and namespace != "istio-system":
        if rest[2] not in app_workloads(state, namespace):
            return fail(f'Error from server (NotFound): {rest[2]} not found')
        # The new pods are created under the namespace's labels of now.
        state.set("pods", {**state.get("pods", {}), f"{namespace}/{rest[2]}": pod_mode(state, namespace)})
        print(f"{rest[2]} restarted")
        return 0
    if rest[:2] == ["delete", "daemonset"] and namespace == "istio-system":
        daemonsets = state.get("istio_daemonsets", {})
        for name in [a for a in rest[2:] if not a.startswith("-")]:
            if name in daemonsets:
                del daemonsets[name]
                print(f'daemonset.apps "{name}" deleted')
            elif "--ignore-not-found" not in rest:
                return fail(f'Error from server (NotFound): daemonsets.apps "{name}" not found')
        state.set("istio_daemonsets", daemonsets)
        return 0
    if rest[:1] == ["apply"]:
        import hashlib  # here, not above: loading OpenSSL would add to every other call's start-up
        import json

        source = option(rest, "-f")
        if (source or "").startswith(("http://", "https://")):
            text = downloaded(source)
            if text is None:
                return fail(f'error: unable to read URL "{source}", server reported 404 Not Found')
        else:
            text = sys.stdin.read() if source == "-" else read_file(source)
        applied = []
        for doc in manifest_docs(text):
            ns = doc["metadata"].get("namespace", namespace)
            key = f"{doc['kind'].lower()}/{ns}/{doc['metadata']['name']}"
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
            verb = "created" if key not in objects else "unchanged" if objects[key]["digest"] == digest else "configured"
            objects[key] = {"digest": digest, "data": doc.get("data", {}),
                            "annotations": doc["metadata"].get("annotations", {}),
                            **{f: objects[key][f] for f in ("template_annotations", "template_labels")
                               if f in objects.get(key, {})}}
            print(f"{doc['kind'].lower()}/{doc['metadata']['name']} {verb}")
            applied.append(f"{key} {verb}")
        state.set("objects", objects)
        log("applied", applied)
        return 0
    if rest[:1] == ["get"]:
        kind_, _, name = rest[1].partition("/")
        name = name or (rest[2] if len(rest) > 2 and not rest[2].startswith("-") else "")
        if kind_ == "deployment" and namespace == "istio-system" and name in ("istiod", "istio-ingressgateway"):
            return 0 if name in istio_deployments(state) else \
                fail(f'Error from server (NotFound): deployments.apps "{name}" not found')
        if kind_ == "daemonset" and namespace == "istio-system" and name in ("ztunnel", "istio-cni-node"):
            return 0 if name in state.get("istio_daemonsets", {}) else \
                fail(f'Error from server (NotFound): daemonsets.apps "{name}" not found')
        if kind_ == "crd":
            namespace = "default"  # cluster-scoped
        obj = objects.get(f"{kind_}/{namespace}/{name}")
        if obj is None and (kind_, name) == ("deployment", "business-logic-v2") and any(
                r.get("set", {}).get("business-logic.canary.enabled") == "true"
                for key, r in state.get("releases", {}).items() if key.startswith(f"{namespace}/")):
            obj = {"data": {}}  # the app chart's canary Deployment (helm/app, business-logic.canary)
        if obj is None:
            return fail(f'Error from server (NotFound): {kind_}s "{name}" not found')
        jsonpath = option(rest, "-o") or ""
        if jsonpath.startswith("jsonpath={.data."):
            print(obj["data"].get(jsonpath[len("jsonpath={.data."):-1], ""), end="")
        elif jsonpath.startswith("jsonpath={.metadata.annotations."):
            key = jsonpath[len("jsonpath={.metadata.annotations."):-1].replace("\\.", ".")
            print(obj.get("annotations", {}).get(key, ""), end="")
        return 0
    if rest[:1] == ["patch"]:
        kind_, _, name = rest[1].partition("/")
        key = f"{kind_}/{namespace}/{name}"
        if key not in objects:
            return fail(f'Error from server (NotFound): {kind_}s.apps "{name}" not found')
        import json

        patch = json.loads(option(rest, "-p"))
        changed = False
        # A merge patch of the pod template's annotations or labels (null removes one).
        for field, wanted in patch.get("spec", {}).get("template", {}).get("metadata", {}).items():
            have = objects[key].setdefault(f"template_{field}", {})
            changed |= any(have.get(k) != v for k, v in wanted.items())
            have.update(wanted)
            objects[key][f"template_{field}"] = {k: v for k, v in have.items() if v is not None}
        state.set("objects", objects)
        print(f"{kind_}.apps/{name} patched" + ("" if changed else " (no change)"))
        log("applied", [f"{key} {'configured' if changed else 'unchanged'}"])
        return 0
    if rest[:2] in (["rollout", "restart"], ["rollout", "status"]) and namespace == "istio-system":
        kind_, _, name = rest[2].partition("/")
        known = f"{kind_}/{namespace}/{name}" in objects or (kind_ == "deployment" and name in istio_deployments(state)) \
            or (kind_ in ("statefulset", "daemonset") and f"{namespace}/{name}" in state.get("releases", {})) \
            or (kind_ == "daemonset" and name in state.get("istio_daemonsets", {}))
        if not known:
            return fail(f'Error from server (NotFound): {kind_}s.apps "{name}" not found')
    print(f"fake kubectl {' '.join(rest[:2])}")
    return 0


def downloaded(url: str) -> str | None:
    """What a release URL the script applies would hold: the Gateway API CRD bundle."""
    import re

    m = re.fullmatch(r"https://github.com/kubernetes-sigs/gateway-api/releases/download/(v[0-9.]+)/standard-install.yaml",
                     url)
    if not m:
        return None
    crds = ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants", "backendtlspolicies",
            "listenersets", "tlsroutes"]
    return safe_dump_all([
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": {"name": f"{crd}.gateway.networking.k8s.io",
                      "annotations": {"gateway.networking.k8s.io/bundle-version": m.group(1),
                                      "gateway.networking.k8s.io/channel": "standard"}}}
        for crd in crds])


def namespace_meta(state: State, name: str) -> dict | None:
    """Labels and annotations of a namespace that was applied (None: there is none)."""
    if not any(key.startswith("namespace/") and key.endswith(f"/{name}") for key in state.get("objects", {})):
        return None
    return state.get("namespaces", {}).get(name, {"labels": {}, "annotations": {}})


def label_namespace(name: str, values: list[str], state: State) -> int:
    """`kubectl label namespace NAME key=value key- ... --overwrite`."""
    meta = namespace_meta(state, name)
    if meta is None:
        return fail(f'Error from server (NotFound): namespaces "{name}" not found')
    for value in values:
        if value.endswith("-") and "=" not in value:
            if value[:-1] not in meta["labels"]:
                print(f'label "{value[:-1]}" not found.')
            meta["labels"].pop(value[:-1], None)
        else:
            key, _, val = value.partition("=")
            meta["labels"][key] = val
    state.set("namespaces", {**state.get("namespaces", {}), name: meta})
    print(f"namespace/{name} labeled")
    return 0


def pod_mode(state: State, namespace: str) -> str:
    """The data plane a pod created now in `namespace` gets: Istio injects a sidecar where the
    namespace says istio-injection=enabled (and ambient then leaves that pod alone); ztunnel
    captures the pods of a namespace labelled istio.io/dataplane-mode=ambient."""
    labels = state.get("namespaces", {}).get(namespace, {}).get("labels", {})
    if labels.get("istio-injection") == "enabled":
        return "sidecar"
    if labels.get("istio.io/dataplane-mode") == "ambient":
        return "ambient"
    return "none"


def app_workloads(state: State, namespace: str) -> list[str]:
    """The workloads (as `kubectl get -o name` prints them) of the app chart's releases in namespace."""
    workloads = []
    for key, release in state.get("releases", {}).items():
        if key.startswith(f"{namespace}/") and release["chart"].rstrip("/").endswith("helm/app"):
            workloads += ["deployment.apps/front-end", "deployment.apps/business-logic"]
            if release.get("set", {}).get("business-logic.canary.enabled") == "true":
                workloads.append("deployment.apps/business-logic-v2")
    return workloads


MUTATING = {
    "docker": lambda a: a[:1] in (["run"], ["start"], ["rm"]) or a[:2] == ["network", "connect"]
    or (a[:1] == ["exec"] and ("cp" in a or "mkdir" in a)),
    "kind": lambda a: a[:1] in (["create"], ["delete"]),
    "kubectl": lambda a: "--dry-run=client" not in a and "--local" not in a and bool(
        {"apply", "label", "annotate", "patch", "create", "delete"} & set(a[:6]) or "restart" in a),
    "helm": lambda a: "upgrade" in a or "uninstall" in a,
    "istioctl": lambda a: a[:1] == ["install"],
}


def interrupted(tool: str, args: list[str], state: State) -> bool:
    """FAKE_FAIL_AT=N: the Nth state-changing call of the sandbox fails before doing anything."""
    if not MUTATING[tool](args):
        return False
    count = state.get("mutations", 0) + 1
    state.set("mutations", count)
    return str(count) == os.environ.get("FAKE_FAIL_AT")


# --- helm ----------------------------------------------------------------------------------------------

def helm(args: list[str], state: State) -> int:
    context = option(args, "--kube-context")
    args = drop_options(args, "--kube-context")
    namespace = option(args, "-n", "--namespace") or "default"
    rest = drop_options(args, "-n", "--namespace")
    if rest[:1] == ["version"]:
        print(os.environ.get("FAKE_HELM_VERSION", "v4.0.4+g1234567"))
        return 0
    if rest[:2] == ["show", "chart"]:
        chart = f"{option(rest, '--repo')}/{rest[2]}:{option(rest, '--version')}"
        if chart not in os.environ.get("FAKE_CHARTS", "").split():
            return fail(f"Error: chart \"{rest[2]}\" version \"{option(rest, '--version')}\" not found in "
                        f"{option(rest, '--repo')} repository")
        print(f"apiVersion: v2\nname: {rest[2]}\nversion: {option(rest, '--version')}")
        return 0
    if not state.get("clusters"):
        return fail("Error: Kubernetes cluster unreachable")
    if context and context.removeprefix("kind-") not in state.get("clusters"):
        return fail(f'Error: context "{context}" does not exist')
    releases = state.get("releases", {})
    if rest[:1] == ["status"]:
        release = releases.get(f"{namespace}/{rest[1]}")
        if not release:
            return fail("Error: release: not found")
        import json

        print(json.dumps({"name": rest[1], "namespace": namespace,
                          "info": {"status": "deployed", "description": release["description"]},
                          "chart": {"metadata": {"version": release["version"]}}}))
        return 0
    if rest[:2] == ["upgrade", "--install"]:
        name, chart = rest[2], rest[3]
        for values in [v for i, v in enumerate(rest) if i and rest[i - 1] == "-f"]:
            if not os.path.isfile(values):
                return fail(f"Error: open {values}: no such file or directory")
        releases[f"{namespace}/{name}"] = {
            "chart": chart, "version": option(rest, "--version") or "", "repo": option(rest, "--repo") or "",
            "description": option(rest, "--description") or "Upgrade complete",
            # --set values, last one wins (as in helm); the canary's say whether v2 runs.
            "set": dict(v.split("=", 1) for i, v in enumerate(rest) if i and rest[i - 1] == "--set")}
        state.set("releases", releases)
        # Pods the chart creates now join the data plane the namespace's labels say; those that
        # run already keep theirs.
        pods = state.get("pods", {})
        for workload in app_workloads(state, namespace):
            pods.setdefault(f"{namespace}/{workload}", pod_mode(state, namespace))
        state.set("pods", pods)
        print(f'Release "{name}" has been upgraded. Happy Helming!')
    return 0


# --- istioctl ------------------------------------------------------------------------------------------

def istioctl(args: list[str], state: State) -> int:
    version = os.environ.get("FAKE_ISTIOCTL_VERSION", "1.31.1")
    if args[:1] == ["version"]:
        print(f"client version: {version}")
        return 0
    if args[:1] == ["install"]:
        if not state.get("clusters"):
            return fail("Error: failed to connect to Kubernetes API server")
        files = [v for i, v in enumerate(args) if i and args[i - 1] in ("-f", "--filename")]
        if not files:
            return fail("Error: no IstioOperator file given")
        spec: dict = {}
        for path in files:
            if not os.path.isfile(path):
                return fail(f"Error: could not read {path}")
            # istioctl merges the files in order, maps into maps (values.Map.MergeFrom).
            merge(spec, (next(iter(safe_load_all(read_file(path))), None) or {}).get("spec", {}))
        sets = [v for i, v in enumerate(args) if i and args[i - 1] == "--set"]
        profile = next((v.split("=", 1)[1] for v in sets if v.startswith("profile=")), spec.get("profile", "default"))
        if profile not in ("default", "ambient"):
            return fail(f'Error: profile "{profile}" not found')
        state.set("istio", True)
        state.set("istio_profile", profile)
        gateways = ingress_gateways(profile, spec, sets)
        state.set("istio_gateways", gateways)
        # The ambient profile adds istio-cni and ztunnel; any other install prunes those that carry
        # this istioctl's version label, and cannot see the others.
        daemonsets = state.get("istio_daemonsets", {})
        if profile == "ambient":
            daemonsets.update({"istio-cni-node": version, "ztunnel": version})
        else:
            daemonsets = {name: v for name, v in daemonsets.items() if v != version}
        state.set("istio_daemonsets", daemonsets)
        print("✔ Istio core installed\n✔ Istiod installed" + ("\n✔ CNI installed\n✔ Ztunnel installed"
                                                            if profile == "ambient" else "")
              + ("\n✔ Ingress gateways installed" if gateways else "") + "\n✔ Installation complete")
    return 0


def merge(base: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def ingress_gateways(profile: str, spec: dict, sets: list[str]) -> list[str]:
    """The ingress gateways an install creates: the profile's istio-ingressgateway (the `default`
    profile has it, `ambient` turns it off) unless the operator files' components.ingressGateways
    or a --set components.ingressGateways.[name:N].enabled=... says otherwise (istioctl's path
    syntax)."""
    import re

    enabled = {"istio-ingressgateway": profile == "default"}
    for gateway in spec.get("components", {}).get("ingressGateways", []):
        enabled[gateway["name"]] = gateway.get("enabled", True)
    for path in sets:
        m = re.fullmatch(r"components\.ingressGateways\.\[name:([\w-]+)\]\.enabled=(true|false)", path)
        if m:
            enabled[m.group(1)] = m.group(2) == "true"
    return sorted(name for name, on in enabled.items() if on)


def istio_deployments(state: State) -> set[str]:
    """The Deployments in istio-system an install made (none before it)."""
    return {"istiod", *state.get("istio_gateways", [])} if state.get("istio") else set()


RECORDED_DASHBOARDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "istio-dashboards")


# --- curl ----------------------------------------------------------------------------------------------

def curl(args: list[str]) -> int:
    import json
    from pathlib import Path

    url = args[-1]
    if url not in os.environ.get("FAKE_URLS", "").split():
        return fail("curl: (22) The requested URL returned error: 404", 22)
    output = option(args, "-o", "--output")
    recorded = Path(RECORDED_DASHBOARDS) / url.rsplit("/", 1)[1]
    if output and recorded.is_file():
        Path(output).write_bytes(recorded.read_bytes())
    elif output:
        board = {"title": f"stand-in for {url}",
                 "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]}}
        Path(output).write_text(json.dumps(board, indent=2) + "\n")
    return 0


def main(tool: str) -> int:
    args = sys.argv[1:]
    log(tool, args)
    if tool == "curl":
        return curl(args)
    state = State()
    if interrupted(tool, args, state):
        return fail(f"fake {tool}: interrupted (FAKE_FAIL_AT)", 130)
    return {"docker": docker, "kind": kind, "kubectl": kubectl, "helm": helm, "istioctl": istioctl}[tool](
        args, state)
