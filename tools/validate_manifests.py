#!/usr/bin/env python3
"""validate-manifests: offline schema validation of rendered Kubernetes manifests.

  helm-render CHART | validate-manifests                 # stdin
  validate-manifests a.yaml b.yaml [-k 1.32.0] [--istio-crds FILE]

Checks every document of a multi-document YAML stream:
  * built-in kinds against the Kubernetes JSON schemas bundled in the PyPI
    package kubernetes-validate (strict: unknown fields are errors);
  * Istio kinds (networking/security/telemetry/extensions.istio.io) against
    the openAPIV3Schema of the Istio CRDs in schemas/istio/ (Istio 1.31),
    Gateway API kinds against schemas/gateway-api/ (v1.6.0), the way the
    API server does: structural schema (unknown fields are errors, since
    the server would silently prune them), nullable, int-or-string, and the
    x-kubernetes-validations CEL rules (evaluated with cel-python);
  * metadata of every object (ObjectMeta schema, name and label syntax), and
    that workload selectors match their pod template labels.
Every failure is printed as `FAIL <source> <Kind>/<name> <path>: <message>`.
Exit status: 0 all valid, 1 any failure, 2 usage/input error.

Its Python packages (pinned) come from tests/requirements.txt into the
repository's .venv; the Istio and Gateway API CRD schemas are the pinned data
files in schemas/ beside this file.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from importlib import resources

import jsonschema
import yaml
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

# The pinned CRD schemas kept in the repository beside this file (schemas/README.md).
SCHEMAS_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "schemas")
ISTIO_CRDS = os.path.join(SCHEMAS_DIR, "istio")
DEFAULT_K8S_VERSION = "1.32.0"

# --------------------------------------------------------------- input -----
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available


class _Loader(_BaseLoader):
    """YAML as Kubernetes reads it: timestamps stay strings (go-yaml), '=' is a string."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))

_DOC_SEP = re.compile(r"^---[ \t]*(?:#.*)?$")
_SOURCE = re.compile(r"^#\s*Source:\s*(.+?)\s*$", re.M)


def read_documents(name: str, text: str):
    """Yield (source, index, obj-or-exception). 'source' is the Helm '# Source:' when present."""
    chunks, cur = [], []
    for line in text.splitlines(keepends=True):
        if _DOC_SEP.match(line.rstrip("\r\n")):
            chunks.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    chunks.append("".join(cur))
    idx = 0
    for chunk in chunks:
        m = _SOURCE.search(chunk)
        src = m.group(1) if m else name
        try:
            objs = list(yaml.load_all(chunk, Loader=_Loader))
        except yaml.YAMLError as e:
            idx += 1
            yield src, idx, e
            continue
        for obj in objs:
            if obj is None:
                continue
            idx += 1
            yield src, idx, obj


# -------------------------------------------------------- error format -----
def fmt_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "(root)"


def _describe(err: jsonschema.ValidationError) -> tuple[list, str]:
    """Pick the most specific message for oneOf/anyOf failures."""
    if err.validator == "anyOf" and err.schema == QUANTITY_SCHEMA:
        return list(err.absolute_path), f"{err.instance!r} is not a valid quantity (e.g. 500m, 0.5, 128Mi, 1G)"
    e = err
    while e.context:
        sub = best_match(e.context)
        if sub is None or sub.validator in ("oneOf", "anyOf", "not") and not sub.context:
            break
        e = sub
    if e is not err and e.validator == "required" and err.validator == "oneOf":
        e = err
    msg = e.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    return list(e.absolute_path), msg


# ----------------------------------------------------- Kubernetes schemas --
QUANTITY_RE = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
               r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
QUANTITY_SCHEMA = {"anyOf": [{"type": "string", "pattern": QUANTITY_RE}, {"type": "number"}, {"type": "null"}]}


class K8sSchemas:
    def __init__(self, version: str, strict: bool):
        base = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
        versions = sorted(
            (tuple(int(x) for x in re.match(r"v(\d+)\.(\d+)", p.name).groups()), p.name.split("-")[0])
            for p in base.iterdir() if re.match(r"v\d+\.\d+\.\d+-local$", p.name)
        )
        want = tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)", version).groups())
        usable = [v for v in versions if v[0] <= want]
        if not usable or want > versions[-1][0]:
            sys.stderr.write(f"validate-manifests: no bundled Kubernetes schemas for {version} "
                             f"(have {versions[0][1]}..{versions[-1][1]})\n")
            sys.exit(2)
        self.version = usable[-1][1]
        self.dir = base.joinpath(f"{self.version}-local" + ("-strict" if strict else ""))
        defs = json.loads(self.dir.joinpath("_definitions.json").read_text())
        # resource.Quantity: the bundled schema accepts any string; the API server does not
        defs["$defs"]["io.k8s.apimachinery.pkg.api.resource.Quantity"] = QUANTITY_SCHEMA
        self.registry = Resource.from_contents(defs) @ Registry()
        self._cache: dict = {}
        self.meta_validator = jsonschema.Draft202012Validator(
            {"$id": "https://kubernetes.io/api/objectmeta",
             "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            registry=self.registry)

    def validator(self, api_version: str, kind: str):
        key = (api_version, kind)
        if key not in self._cache:
            group_ver = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            f = self.dir.joinpath(f"{kind.lower()}-{group_ver}.json")
            v = None
            if f.is_file():
                schema = json.loads(f.read_text())
                # the bundled files name kinds case-insensitively: insist on the exact kind
                kenum = ((schema.get("properties") or {}).get("kind") or {}).get("enum")
                aenum = ((schema.get("properties") or {}).get("apiVersion") or {}).get("enum")
                if (not kenum or kind in kenum) and (not aenum or api_version in aenum):
                    v = jsonschema.Draft202012Validator(schema, registry=self.registry)
            self._cache[key] = v
        return self._cache[key]


# ------------------------------------------------------------ CRD schemas --
class CRDSchemas:
    """openAPIV3Schema of CRDs, turned into JSON Schema with API-server semantics."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.kinds: dict = {}  # (group, kind) -> {version: (validator, structural)}
        self.groups: set = set()
        self.sources: list = []

    def load(self, path: str) -> None:
        files = sorted(glob.glob(os.path.join(path, "*.yaml")) + glob.glob(os.path.join(path, "*.yml"))) \
            if os.path.isdir(path) else [path]
        for f in files:
            with open(f, encoding="utf-8") as fh:
                for crd in yaml.load_all(fh, Loader=_Loader):
                    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                        continue
                    spec = crd["spec"]
                    g, k = spec["group"], spec["names"]["kind"]
                    self.groups.add(g)
                    vers = self.kinds.setdefault((g, k), {})
                    for v in spec.get("versions") or []:
                        if not v.get("served", True):
                            continue
                        s = ((v.get("schema") or {}).get("openAPIV3Schema")) or {"type": "object",
                                                                                   "x-kubernetes-preserve-unknown-fields": True}
                        js = self._convert(s, root=True)
                        vers[v["name"]] = (jsonschema.Draft4Validator(js), s)
            self.sources.append(f)

    def _convert(self, s: dict, root=False, in_combinator=False) -> dict:
        out: dict = {}
        for k, v in s.items():
            if k == "properties":
                out[k] = {pk: self._convert(pv, in_combinator=in_combinator) for pk, pv in v.items()}
            elif k == "items":
                out[k] = self._convert(v, in_combinator=in_combinator) if isinstance(v, dict) else v
            elif k == "additionalProperties":
                out[k] = self._convert(v, in_combinator=in_combinator) if isinstance(v, dict) else v
            elif k in ("allOf", "anyOf", "oneOf"):
                out[k] = [self._convert(x, in_combinator=True) for x in v]
            elif k == "not":
                out[k] = self._convert(v, in_combinator=True)
            elif k in ("type", "enum", "required", "maximum", "minimum", "exclusiveMaximum",
                       "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
                       "minItems", "uniqueItems", "maxProperties", "minProperties", "multipleOf"):
                out[k] = v
            # description, format, default, nullable and x-kubernetes-* are handled below / ignored
        if s.get("x-kubernetes-int-or-string"):
            out["type"] = ["integer", "string"]
        if s.get("nullable") and "type" in out:
            t = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = t + ["null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
        if root:
            props = out.setdefault("properties", {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props["metadata"] = {"type": "object"}  # checked against ObjectMeta separately
        if (self.strict and not in_combinator and out.get("type") == "object"
                and "additionalProperties" not in s
                and not s.get("x-kubernetes-preserve-unknown-fields")
                and not s.get("x-kubernetes-embedded-resource")):
            out["additionalProperties"] = False
        return out

    def lookup(self, api_version: str, kind: str):
        group, _, version = api_version.rpartition("/")
        if group not in self.groups:
            return None
        vers = self.kinds.get((group, kind))
        if vers is None:
            return ("error", f"kind {kind} is not defined in group {group} by the loaded CRDs")
        if version not in vers:
            return ("error", f"{kind} is not served as {api_version} by the loaded CRDs (served: "
                             + ", ".join(f"{group}/{v}" for v in sorted(vers)) + ")")
        return ("ok", vers[version])


def prune_nulls(obj, schema):
    """The API server prunes null values of non-nullable fields in custom resources."""
    if isinstance(obj, dict):
        props = (schema or {}).get("properties") or {}
        addl = (schema or {}).get("additionalProperties")
        out = {}
        for k, v in obj.items():
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            if v is None and not (sub or {}).get("nullable"):
                continue
            out[k] = prune_nulls(v, sub)
        return out
    if isinstance(obj, list):
        items = (schema or {}).get("items")
        return [prune_nulls(v, items if isinstance(items, dict) else None) for v in obj]
    return obj


def apply_defaults(obj, schema):
    """Structural defaulting, as the API server does before validation: a missing
    property with a `default` in the schema gets that default (recursively)."""
    if not isinstance(schema, dict):
        return obj
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        out = {}
        for k, v in obj.items():
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            out[k] = apply_defaults(v, sub)
        for k, sub in props.items():
            if k not in out and isinstance(sub, dict) and "default" in sub:
                out[k] = apply_defaults(json.loads(json.dumps(sub["default"])), sub)
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in obj]
    return obj


# Property names CEL cannot spell directly are escaped by Kubernetes
# (https://kubernetes.io/docs/reference/using-api/cel/#escaping).
_CEL_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                 "function", "if", "import", "let", "loop", "package", "namespace", "return",
                 "var", "void", "while"}


def cel_escape_keys(obj):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _CEL_RESERVED:
                k = f"__{k}__"
            else:
                k = (k.replace("__", "__underscores__").replace(".", "__dot__")
                      .replace("-", "__dash__").replace("/", "__slash__"))
            out[k] = cel_escape_keys(v)
        return out
    if isinstance(obj, list):
        return [cel_escape_keys(v) for v in obj]
    return obj


# -------------------------------------------------------------- CEL rules --
def _k8s_cel_functions(celtypes) -> dict:
    """The Kubernetes CEL library functions Istio's rules use (url/isURL, strings ext)."""
    from urllib.parse import urlsplit

    S, B, I, L = celtypes.StringType, celtypes.BoolType, celtypes.IntType, celtypes.ListType

    def is_url(s):  # ~ Go's url.ParseRequestURI: absolute URI or absolute path
        s = str(s)
        if not s or any(ord(c) < 0x21 or c == "\x7f" for c in s):
            return B(False)
        if s.startswith("/"):
            return B(True)
        m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", s)
        if not m:
            return B(False)
        try:
            u = urlsplit(s)
            _ = u.port  # invalid ports raise
        except ValueError:
            return B(False)
        return B(True)

    def url(s):
        if not is_url(s):
            raise ValueError(f"URL parse error during conversion from string: {s}")
        return S(s)

    def part(fn):
        return lambda u: S(fn(urlsplit(str(u))) or "")

    def substring(s, start, end=None):
        s = str(s)
        return S(s[int(start):] if end is None else s[int(start):int(end)])

    return {
        "isURL": is_url, "url": url,
        "getScheme": part(lambda u: u.scheme), "getHost": part(lambda u: u.netloc.rsplit("@", 1)[-1]),
        "getHostname": part(lambda u: u.hostname), "getPort": part(lambda u: str(u.port or "")),
        "getEscapedPath": part(lambda u: u.path), "getQuery": lambda u: celtypes.MapType({}),
        "substring": substring,
        "lowerAscii": lambda s: S(str(s).lower()), "upperAscii": lambda s: S(str(s).upper()),
        "trim": lambda s: S(str(s).strip()),
        "indexOf": lambda s, sub, *a: I(str(s).find(str(sub), *(int(x) for x in a))),
        "lastIndexOf": lambda s, sub: I(str(s).rfind(str(sub))),
        "replace": lambda s, a, b, *n: S(str(s).replace(str(a), str(b), *(int(x) for x in n))),
        "split": lambda s, sep, *n: L([S(x) for x in str(s).split(str(sep), *(int(x) - 1 for x in n if int(x) > 0))]),
        "join": lambda lst, sep="": S(str(sep).join(str(x) for x in lst)),
    }


class CEL:
    def __init__(self):
        import celpy  # cel-python
        from celpy import celtypes

        self.celpy = celpy
        self.env = celpy.Environment()
        self.functions = _k8s_cel_functions(celtypes)
        self.progs: dict = {}

    def check(self, schema: dict, value, path: list, fails: list, warns: list) -> None:
        if not isinstance(schema, dict):
            return
        for r in schema.get("x-kubernetes-validations") or []:
            rule = r.get("rule", "")
            if "oldSelf" in rule:
                continue  # transition rules only apply to updates
            try:
                prog = self.progs.get(rule)
                if prog is None:
                    prog = self.progs[rule] = self.env.program(self.env.compile(rule), functions=self.functions)
            except Exception as e:  # noqa: BLE001
                warns.append((path, f"CEL rule not checked (cannot compile in cel-python): {rule!r}: {e}"))
                continue
            try:
                res = prog.evaluate({"self": self.celpy.json_to_cel(cel_escape_keys(value))})
                if isinstance(res, self.celpy.CELEvalError):
                    raise res
            except Exception as e:  # noqa: BLE001
                text = str(e)
                if any(x in text.lower() for x in ("no such", "unbound", "not implemented", "undeclared reference")):
                    warns.append((path, f"CEL rule not checked (unsupported in cel-python): {rule!r}"))
                else:
                    shown = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
                    fails.append((path, f"{r.get('message') or 'failed rule: ' + rule} "
                                        f"(value {shown}: the rule cannot be evaluated on it)"))
                continue
            if not bool(res):
                msg = r.get("message") or f"failed rule: {rule}"
                fails.append((path, msg))
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            addl = schema.get("additionalProperties")
            for k, v in value.items():
                if k in props:
                    self.check(props[k], v, path + [k], fails, warns)
                elif isinstance(addl, dict):
                    self.check(addl, v, path + [k], fails, warns)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, v in enumerate(value):
                self.check(schema["items"], v, path + [i], fails, warns)


# ------------------------------------------------------- metadata checks ---
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# kinds whose names are not plain DNS subdomains (RBAC allows ':' etc.): name syntax not checked
FREE_NAME_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
LABEL_NAME_KINDS = {"Service": DNS1035_LABEL, "Namespace": DNS1123_LABEL}


def _qualified_key_errors(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return "prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        return "name part must be <= 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric"
    return None


def metadata_checks(obj: dict, fails: list) -> None:
    kind = obj.get("kind")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        fails.append((["metadata"], "metadata is required"))
        return
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        fails.append((["metadata", "name"], "name or generateName is required"))
    elif isinstance(name, str) and kind not in FREE_NAME_KINDS:
        rx = LABEL_NAME_KINDS.get(kind)
        if rx is not None:
            if len(name) > 63 or not rx.match(name):
                what = "DNS-1035 label" if rx is DNS1035_LABEL else "DNS-1123 label"
                fails.append((["metadata", "name"], f"{name!r} is not a valid {what} (lowercase alphanumerics and '-', <= 63)"))
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            fails.append((["metadata", "name"], f"{name!r} is not a valid DNS-1123 subdomain (lowercase alphanumerics, '-' and '.')"))
    ns = meta.get("namespace")
    if isinstance(ns, str) and (len(ns) > 63 or not DNS1123_LABEL.match(ns)):
        fails.append((["metadata", "namespace"], f"{ns!r} is not a valid namespace name"))
    for field in ("labels", "annotations"):
        m = meta.get(field)
        if not isinstance(m, dict):
            continue
        for k, v in m.items():
            why = _qualified_key_errors(str(k))
            if why:
                fails.append((["metadata", field, k], f"invalid key: {why}"))
            if field == "labels" and isinstance(v, str) and (len(v) > 63 or not LABEL_VALUE.match(v)):
                fails.append((["metadata", field, k], f"invalid label value {v!r}"))


def selector_checks(obj: dict, fails: list) -> None:
    if obj.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    sel = (spec.get("selector") or {}).get("matchLabels") if isinstance(spec.get("selector"), dict) else None
    tmpl_labels = (((spec.get("template") or {}).get("metadata") or {}).get("labels")) or {}
    if isinstance(sel, dict) and isinstance(tmpl_labels, dict):
        for k, v in sel.items():
            if tmpl_labels.get(k) != v:
                fails.append((["spec", "template", "metadata", "labels"],
                              f"selector does not match template labels (missing {k}={v})"))


# ------------------------------------------------------------------ main ---
def main(argv=None) -> int:
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    p = argparse.ArgumentParser(prog="validate-manifests", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", help="YAML files ('-' or none: stdin)")
    p.add_argument("-k", "--kubernetes-version", default=os.environ.get("VALIDATE_K8S_VERSION", DEFAULT_K8S_VERSION),
                   help=f"Kubernetes schema version (default {DEFAULT_K8S_VERSION}, env VALIDATE_K8S_VERSION)")
    p.add_argument("--istio-crds", default=os.environ.get("ISTIO_CRDS"),
                   help="Istio CRD YAML file or directory (default: schemas/istio/ beside this tool)")
    p.add_argument("--crds", action="append", default=[], help="extra CRD YAML file/dir (repeatable)")
    p.add_argument("--no-gateway-api", action="store_true",
                   help="do not load the Gateway API CRDs found beside the Istio ones (schemas/gateway-api/)")
    p.add_argument("--no-strict", action="store_true", help="allow unknown fields")
    p.add_argument("--ignore-missing-schemas", action="store_true", help="kinds with no schema are warnings, not failures")
    p.add_argument("--no-cel", action="store_true", help="skip x-kubernetes-validations CEL rules")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    args = p.parse_args(argv)
    strict = not args.no_strict

    k8s = K8sSchemas(args.kubernetes_version, strict)
    crds = CRDSchemas(strict)
    istio = args.istio_crds
    if not istio:
        istio = ISTIO_CRDS
    if not istio or not os.path.exists(istio):
        print("validate-manifests: Istio CRDs not found (use --istio-crds or ISTIO_CRDS)", file=sys.stderr)
        return 2
    crds.load(istio)
    # Gateway API CRDs (schemas/gateway-api/), beside Istio's, unless --no-gateway-api.
    gw = os.path.join(os.path.dirname(os.path.abspath(istio if os.path.isdir(istio) else os.path.dirname(istio))),
                      "gateway-api")
    if not args.no_gateway_api and glob.glob(os.path.join(gw, "*.yaml")):
        crds.load(gw)
    for c in args.crds:
        crds.load(c)
    cel = None if args.no_cel else CEL()

    inputs = args.files or ["-"]
    n_ok = n_fail = n_warn = 0
    if not args.quiet:
        print(f"# kubernetes schemas {k8s.version} ({'strict' if strict else 'non-strict'}); "
              f"CRDs: {', '.join(os.path.normpath(s) for s in crds.sources)}")
    for name in inputs:
        try:
            text = sys.stdin.read() if name == "-" else open(name, encoding="utf-8").read()
        except OSError as e:
            print(f"validate-manifests: {name}: {e.strerror}", file=sys.stderr)
            return 2
        label = "<stdin>" if name == "-" else name
        for src, idx, obj in read_documents(label, text):
            where = src if src != label else f"{label}#{idx}"
            if isinstance(obj, Exception):
                print(f"FAIL {where} (document {idx}): YAML parse error: {obj}")
                n_fail += 1
                continue
            items = obj.get("items") if isinstance(obj, dict) and str(obj.get("kind", "")).endswith("List") \
                and isinstance(obj.get("items"), list) else [obj]
            for o in items:
                fails, warns = validate_object(o, k8s, crds, cel, args)
                ident = _ident(o)
                for path, msg in warns:
                    print(f"WARN {where} {ident} {fmt_path(path)}: {msg}")
                    n_warn += 1
                for path, msg in fails:
                    print(f"FAIL {where} {ident} {fmt_path(path)}: {msg}")
                if fails:
                    n_fail += 1
                else:
                    n_ok += 1
                    if not args.quiet:
                        print(f"ok   {where} {ident}")
    print(f"{n_ok} passed, {n_fail} failed" + (f", {n_warn} warnings" if n_warn else ""))
    return 1 if n_fail else 0


def _ident(o) -> str:
    if not isinstance(o, dict):
        return "?"
    meta = o.get("metadata") if isinstance(o.get("metadata"), dict) else {}
    return f"{o.get('kind', '?')}/{meta.get('name') or meta.get('generateName') or '?'}"


def validate_object(o, k8s: K8sSchemas, crds: CRDSchemas, cel, args):
    fails: list = []
    warns: list = []
    if not isinstance(o, dict):
        return [([], "document is not a YAML mapping")], warns
    api_version, kind = o.get("apiVersion"), o.get("kind")
    if not isinstance(api_version, str) or not api_version:
        fails.append((["apiVersion"], "apiVersion is required"))
    if not isinstance(kind, str) or not kind:
        fails.append((["kind"], "kind is required"))
    if fails:
        return fails, warns

    found = crds.lookup(api_version, kind)
    if found is not None:
        status, data = found
        if status == "error":
            return [([], data)], warns
        validator, structural = data
        inst = apply_defaults(prune_nulls(o, structural), structural)
        for e in validator.iter_errors(inst):
            fails.append(_describe(e))
        for e in k8s.meta_validator.iter_errors(inst.get("metadata") or {}):
            path, msg = _describe(e)
            fails.append((["metadata"] + path, msg))
        if cel is not None and not fails:
            cel.check(structural, inst, [], fails, warns)
    else:
        v = k8s.validator(api_version, kind)
        if v is None:
            msg = f"no schema for {kind} {api_version} (Kubernetes {k8s.version} or loaded CRDs)"
            (warns if args.ignore_missing_schemas else fails).append(([], msg))
            return fails, warns
        for e in v.iter_errors(o):
            fails.append(_describe(e))
    metadata_checks(o, fails)
    selector_checks(o, fails)
    # de-duplicate, keep order
    seen, uniq = set(), []
    for path, msg in fails:
        key = (tuple(path), msg)
        if key not in seen:
            seen.add(key)
            uniq.append((path, msg))
    return uniq, warns


if __name__ == "__main__":
    sys.exit(main())
