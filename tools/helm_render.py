#!/usr/bin/env python3
"""helm-render: an offline `helm template`, with no helm binary and no cluster.

It runs Helm's own Go code (helm.sh/helm/v4 v4.2.3), which ships compiled
inside the PyPI wheel `helm-python-sdk` (libhelm_c.so, called through ctypes).
The main manifest comes from Helm's real Install action in client-only
dry-run mode, which is exactly what `helm template` runs. Hooks are added
the way `helm template` prints them.

Usage:
  helm-render CHART_DIR [-f values.yaml]... [--set k=v]... [--release NAME]
              [--namespace NS] [--kube-version v1.32.0] [-a API_VERSION]...
              [--include-crds] [--skip-tests] [--no-hooks] [--is-upgrade]
              [-s templates/x.yaml]... [--debug]
  helm-render --lint CHART_DIR [-f values.yaml] [--set k=v] [--strict]

Installed into the repository's .venv from tests/requirements.txt (the
pinned wheel comes from PyPI); Helm's cache and configuration are kept under
$HELM_RENDER_CACHE (default ~/.cache/helm-render), away from the user's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import helm_python as helm
from helm_python import _native


def _cache_dir() -> str:
    base = os.environ.get("HELM_RENDER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "helm-render"
    )
    return os.path.abspath(base)


# Keep Helm away from the user's helm/kube configuration: rendering is offline.
_cache = _cache_dir()
for _k, _sub in (("HELM_CACHE_HOME", "helm-cache"), ("HELM_CONFIG_HOME", "helm-config"), ("HELM_DATA_HOME", "helm-data")):
    os.environ.setdefault(_k, os.path.join(_cache, _sub))
os.environ["KUBECONFIG"] = os.devnull

# pkg/release/v1/util/kind_sorter.go InstallOrder (Helm v4.2.3)
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
    "PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
    "ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
    "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
    "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]
_ORDER = {k: i for i, k in enumerate(INSTALL_ORDER)}
HOOK_EVENTS = {
    "pre-install", "post-install", "pre-delete", "post-delete", "pre-upgrade",
    "post-upgrade", "pre-rollback", "post-rollback", "test", "test-success",
}
_SEP = re.compile(r"(?:^|[\t\n\f\r ]*\n)---[\t\n\f\r ]*")


class RenderError(Exception):
    pass


def _err_text(e: Exception) -> str:
    detail = getattr(e, "detail", None)
    return str(detail or e).strip()


# ---------------------------------------------------------------- values ---
def _split_yaml_docs(text: str) -> list[str]:
    """Like k8s.io/apimachinery's YAMLReader: '---' lines separate documents."""
    docs, cur = [], []
    for line in text.splitlines(keepends=True):
        if line.startswith("---"):
            rest = line[3:].strip()
            if not rest or rest.startswith("#"):
                docs.append("".join(cur))
                cur = []
                continue
        cur.append(line)
    docs.append("".join(cur))
    return docs


def merge_maps(a: dict, b: dict) -> dict:
    """loader.MergeMaps: b wins, nested maps merged."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
        else:
            out[k] = v
    return out


def merge_set(base, upd):
    """Approximate strvals.ParseInto(expr, base): maps merge, list indexes merge."""
    if isinstance(base, dict) and isinstance(upd, dict):
        out = dict(base)
        for k, v in upd.items():
            out[k] = merge_set(out[k], v) if k in out else v
        return out
    if isinstance(base, list) and isinstance(upd, list):
        out = list(base) + [None] * max(0, len(upd) - len(base))
        for i, v in enumerate(upd):
            if v is None and i < len(base):
                continue  # index not addressed by this --set
            out[i] = merge_set(out[i], v) if i < len(base) else v
        return out
    return upd


def load_values_file(path: str) -> dict:
    try:
        raw = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as e:
        raise RenderError(f"open {path}: {e.strerror}")
    vals: dict = {}
    for doc in _split_yaml_docs(raw):
        try:
            cur = json.loads(_native.call_string("helm_values_from_yaml", doc))
        except Exception as e:  # noqa: BLE001
            raise RenderError(f"failed to parse {path}: {_err_text(e)}")
        if not isinstance(cur, dict):
            raise RenderError(f"failed to parse {path}: not a YAML mapping")
        vals = merge_maps(vals, cur)
    return vals


def build_values(args) -> dict:
    base: dict = {}
    for f in args.values:
        base = merge_maps(base, load_values_file(f))
    steps = [
        ("--set-json", args.set_json, "helm_strvals_parse_json"),
        ("--set", args.set, "helm_strvals_parse"),
        ("--set-string", args.set_string, "helm_strvals_parse_string"),
        ("--set-file", args.set_file, "helm_strvals_parse_file"),
        ("--set-literal", args.set_literal, "helm_strvals_parse_literal"),
    ]
    for flag, exprs, fn in steps:
        for expr in exprs:
            if flag == "--set-json" and expr.strip().startswith("{"):
                try:
                    obj = json.loads(expr)
                except ValueError:
                    raise RenderError(f"failed parsing --set-json data JSON: {expr}")
                base = merge_maps(base, obj)
                continue
            try:
                parsed = json.loads(_native.call_string(fn, expr))
            except Exception as e:  # noqa: BLE001
                raise RenderError(f"failed parsing {flag} data: {_err_text(e)}")
            base = merge_set(base, parsed)
    return base


# ----------------------------------------------------------- manifests ---
def split_manifests(big: str) -> list[str]:
    """releaseutil.SplitManifests, in document order."""
    out = []
    for d in _SEP.split(big.lstrip()):
        if d.strip() == "":
            continue
        out.append(d.lstrip())
    return out


def _kind_key(kind: str):
    return (0, _ORDER[kind], "") if kind in _ORDER else (1, 0, kind)


def sort_manifests(files: dict[str, str], lenient: bool = False):
    """releaseutil.SortManifests: returns (hooks, generic) sorted by kind.

    lenient: Helm's Go YAML parser already accepted these documents, so a
    document PyYAML cannot read is kept as a non-hook instead of failing."""
    import yaml  # PyYAML is only needed for the hook heads

    hooks, generic = [], []
    for path in sorted(files):
        content = files[path]
        if os.path.basename(path).startswith("_") or content.strip() == "":
            continue
        for m in split_manifests(content):
            try:
                head = yaml.safe_load(m)
            except yaml.YAMLError as e:
                if not lenient:
                    raise RenderError(f"YAML parse error on {path}: {e}")
                head = {}
            head = head if isinstance(head, dict) else {}
            kind = str(head.get("kind") or "")
            meta = head.get("metadata") if isinstance(head.get("metadata"), dict) else {}
            ann = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
            if "helm.sh/hook" not in ann:
                generic.append({"path": path, "kind": kind, "manifest": m})
                continue
            events = [e.strip().lower() for e in str(ann["helm.sh/hook"]).split(",")]
            if any(e not in HOOK_EVENTS for e in events):
                continue  # unknown hook types are skipped by Helm
            hooks.append({"path": path, "kind": kind, "manifest": m, "events": events})
    hooks.sort(key=lambda h: _kind_key(h["kind"]))
    generic.sort(key=lambda h: _kind_key(h["kind"]))
    return hooks, generic


def _glob_to_re(pat: str) -> re.Pattern:
    """Go's filepath.Match syntax ('*' does not cross '/')."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                out += re.escape(c)
            else:
                cls = pat[i + 1:j]
                if cls.startswith("^"):
                    cls = "^" + cls[1:]
                out += "[" + cls.replace("\\", "\\\\") + "]"
                i = j
        elif c == "\\" and i + 1 < len(pat):
            i += 1
            out += re.escape(pat[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


# --------------------------------------------------------------- render ---
def render(args) -> str:
    vals = build_values(args)
    values_json = json.dumps(vals) if vals else None
    api_versions = [v.strip() for a in args.api_versions for v in a.split(",") if v.strip()]
    try:
        chart = helm.Chart.load(args.chart)
    except Exception as e:  # noqa: BLE001
        raise RenderError(_err_text(e))
    with chart:
        # what `helm template` checks in the CLI before running the Install action
        meta = chart.metadata
        if meta.get("type") not in (None, "", "application"):
            raise RenderError(f"{meta.get('type')} charts are not installable")
        if meta.get("deprecated"):
            sys.stderr.write("helm-render: warning: this chart is deprecated\n")
        present = {d.get("name") for d in chart.dependencies}
        missing = [d.get("name") for d in meta.get("dependencies") or [] if d.get("name") not in present]
        if missing:
            raise RenderError("an error occurred while checking for chart dependencies. You may need to run "
                              "'helm dependency build' to fetch missing dependencies: found in Chart.yaml, "
                              "but missing in charts/ directory: " + ", ".join(missing))
        render_opts = {"name": args.release, "namespace": args.namespace, "revision": 1,
                       "is_install": not args.is_upgrade, "is_upgrade": args.is_upgrade}
        if args.kube_version:
            render_opts["kube_version"] = args.kube_version
        if api_versions:
            render_opts["api_versions"] = api_versions

        manifest = None
        if not args.is_upgrade:
            # The real thing: action.Install with DryRunStrategy=client (what `helm template` runs).
            install_opts = {"dry_run": "client", "namespace": args.namespace}
            if args.kube_version:
                install_opts["kube_version"] = args.kube_version
            if api_versions:
                install_opts["api_versions"] = api_versions
            if args.skip_schema_validation:
                install_opts["skip_schema_validation"] = True
            cfg = helm.Config(namespace=args.namespace, storage_driver="memory")
            try:
                rel = json.loads(_native.call_string(
                    "helm_install", cfg._raw(), _native.HANDLE(0), chart._raw(), None,
                    args.release, values_json, json.dumps(install_opts)))
            except Exception as e:  # noqa: BLE001
                dumped = _debug_dump(chart, values_json, render_opts, write=args.debug)
                yaml_problem = "YAML" in _err_text(e)
                hint = "\n\nUse --debug flag to render out invalid YAML" if dumped and yaml_problem and not args.debug else ""
                raise RenderError(_err_text(e) + hint)
            finally:
                cfg.close()
            manifest = rel.get("manifest", "")

        # Hooks are not part of the install summary: render once more with the
        # same engine and pick them out the way releaseutil.SortManifests does.
        hooks = []
        need_files = args.is_upgrade or not args.no_hooks
        if need_files:
            try:
                files = json.loads(_native.call_string(
                    "helm_render", chart._raw(), values_json, json.dumps(render_opts)))
            except Exception as e:  # noqa: BLE001
                if manifest is None:
                    raise RenderError(_err_text(e))
                sys.stderr.write(f"helm-render: warning: hooks omitted: {_err_text(e)}\n")
                files = {}
            files = {k: v for k, v in files.items() if not k.endswith("NOTES.txt")}
            hooks, generic = sort_manifests(files, lenient=manifest is not None)
            if manifest is None:  # --is-upgrade: Install cannot do it, sort ourselves
                manifest = "".join(f"---\n# Source: {m['path']}\n{m['manifest']}\n" for m in generic)
            if os.environ.get("HELM_RENDER_SELFCHECK") and not args.is_upgrade:
                mine = "".join(f"---\n# Source: {m['path']}\n{m['manifest']}\n" for m in generic)
                if mine.strip() != manifest.strip():
                    sys.stderr.write("helm-render: SELFCHECK: python sorter differs from Helm's manifest\n")
                else:
                    sys.stderr.write("helm-render: SELFCHECK: python sorter == Helm's manifest\n")

        if args.include_crds:
            crds = "".join(f"---\n# Source: {c['filename']}\n{c['data']}\n" for c in chart.crds)
            manifest = crds + manifest

    out = manifest.strip() + "\n"
    if not args.no_hooks:
        for h in hooks:
            if args.skip_tests and ("test" in h["events"] or "test-success" in h["events"]):
                continue
            out += f"---\n# Source: {h['path']}\n{h['manifest']}\n"

    if args.show_only:
        docs = split_manifests(out)
        src = re.compile(r"# Source: [^/]+/(.+)")
        picked = []
        for pat in args.show_only:
            rx = _glob_to_re(pat.replace(os.sep, "/"))
            hit = False
            for d in docs:
                m = src.search(d)
                if m and rx.match(m.group(1)):
                    picked.append(d)
                    hit = True
            if not hit:
                raise RenderError(f"could not find template {pat} in chart")
        out = "".join(f"---\n{d}\n" for d in picked)
    return out


def _debug_dump(chart, values_json, render_opts, write: bool) -> bool:
    """--debug: show every rendered file, as Helm does for invalid YAML.

    Returns whether the templates rendered at all (then the failure was in
    the YAML they produced, and the raw output helps)."""
    try:
        files = json.loads(_native.call_string("helm_render", chart._raw(), values_json, json.dumps(render_opts)))
    except Exception:  # noqa: BLE001
        return False
    if write:
        for name in sorted(files):
            if files[name].strip():
                sys.stdout.write(f"---\n# Source: {name}\n{files[name]}\n")
    return True


# ----------------------------------------------------------------- lint ---
def lint(args) -> int:
    vals = build_values(args)
    opts = {"with_subcharts": True, "namespace": args.namespace}
    if args.strict:
        opts["strict"] = True
    if args.kube_version:
        opts["kube_version"] = args.kube_version
    if args.skip_schema_validation:
        opts["skip_schema_validation"] = True
    try:
        report = json.loads(_native.call_string(
            "helm_lint_run_opts", args.chart, json.dumps(vals) if vals else None, json.dumps(opts)))
    except Exception as e:  # noqa: BLE001
        raise RenderError(_err_text(e))
    sev = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    print(f"==> Linting {args.chart}")
    failed = False
    for m in report.get("messages") or []:
        s = m.get("severity", 0)
        print(f"[{sev.get(s, s)}] {m.get('path')}: {m.get('error')}")
        if s == 3 or (args.strict and s == 2):
            failed = True
    failed = failed or bool(report.get("errors"))
    print(f"\n{report.get('total_charts_linted', 1)} chart(s) linted, {1 if failed else 0} chart(s) failed")
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="helm-render",
        description="Offline `helm template` (Helm v4.2.3 engine from the helm-python-sdk wheel).")
    p.add_argument("chart", help="chart directory or .tgz")
    p.add_argument("-f", "--values", action="append", default=[], metavar="FILE", help="values file (repeatable, '-' = stdin)")
    p.add_argument("--set", action="append", default=[], metavar="K=V")
    p.add_argument("--set-string", action="append", default=[], metavar="K=V")
    p.add_argument("--set-json", action="append", default=[], metavar="K=JSON")
    p.add_argument("--set-file", action="append", default=[], metavar="K=PATH")
    p.add_argument("--set-literal", action="append", default=[], metavar="K=V")
    p.add_argument("--release", "--name", default="release-name", help="release name (default: release-name, as helm template)")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--kube-version", help="Capabilities.KubeVersion (default: Helm's built-in v1.36.0)")
    p.add_argument("-a", "--api-versions", action="append", default=[], help="extra Capabilities.APIVersions (repeatable/comma-separated)")
    p.add_argument("--include-crds", action="store_true", help="include crds/ in the output")
    p.add_argument("--skip-tests", action="store_true", help="drop test hooks")
    p.add_argument("--no-hooks", action="store_true", help="drop all hooks")
    p.add_argument("--is-upgrade", action="store_true", help="set .Release.IsUpgrade instead of .Release.IsInstall")
    p.add_argument("--skip-schema-validation", action="store_true", help="skip values.schema.json checks")
    p.add_argument("-s", "--show-only", action="append", default=[], metavar="TEMPLATE", help="only these templates (glob, path inside the chart)")
    p.add_argument("--debug", action="store_true", help="on errors, print the raw rendered files to stdout")
    p.add_argument("--lint", action="store_true", help="run `helm lint --with-subcharts` instead of rendering")
    p.add_argument("--strict", action="store_true", help="with --lint: warnings fail too")
    args = p.parse_args(argv)
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.lint:
            return lint(args)
        sys.stdout.write(render(args))
        return 0
    except RenderError as e:
        sys.stderr.write(f"Error: {e}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
