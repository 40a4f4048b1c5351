"""The repository stands alone and its Makefile has no dead ends: the offline
chart tools and CRD schemas are in the repository, `make help` shows every
lint target in one group and the main variables, `make clean` removes the
local artefacts, `make jaeger` runs the documented container, and no
PostgreSQL test can pass without a database (the tests that need one are
skipped by that need, not by their names)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from local_support import REPO, make, venv_tool

sys.path.insert(0, str(REPO / "tests" / "cluster"))
import fake_tools  # noqa: E402  (the stand-in docker of the cluster checks)

SCHEMAS = REPO / "tools" / "schemas"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- standing alone ----------------------------------------------------------------------------------

def test_the_pinned_crd_schemas_match_their_recorded_sums():
    readme = (SCHEMAS / "README.md").read_text()
    sums = re.findall(r"^\s+([0-9a-f]{64})\s+(\S+)$", readme, re.M)
    assert {path for _, path in sums} == {"istio/crd-all.gen.yaml", "gateway-api/standard-install.yaml"}
    for digest, path in sums:
        assert hashlib.sha256((SCHEMAS / path).read_bytes()).hexdigest() == digest, path
    for words in ("Istio 1.31", "Gateway API v1.6.0", "Apache-2.0"):
        assert words in readme
    assert (SCHEMAS / "LICENSE-Apache-2.0.txt").read_text().lstrip().startswith("Apache License")


def test_the_validator_uses_the_repository_schemas_and_catches_a_bad_istio_object(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n"
                   "spec: {hosts: [x], http: [{route: [{destination: {host: x}, wieght: 5}]}]}\n")
    result = subprocess.run([venv_tool("validate-manifests"), "-k", "1.36.0", str(bad)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "SHARED_TOOLS": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "wieght" in result.stdout and str(SCHEMAS / "istio") in result.stdout


def test_nothing_in_the_makefiles_tests_or_ci_needs_a_folder_outside_the_repository():
    # (.ci/standalone names ../shared only to make sure it is absent.)
    for path in ["Makefile", *sorted(map(str, (REPO / "mk").glob("*.mk"))), ".ci/run",
                 *sorted(map(str, (REPO / "tests").rglob("*.py")))]:
        text = (REPO / path).read_text()
        if Path(path).name == "test_repository.py":
            continue
        assert "../shared" not in text and "shared/tools" not in text, path


# --- help, clean ------------------------------------------------------------------------------------

def help_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    result = make("help")
    assert result.returncode == 0, result.stderr
    for line in ANSI.sub("", result.stdout).splitlines():
        if line and not line.startswith(" ") and not line.startswith("Usage"):
            current = line.split(" (")[0]
            sections[current] = []
        elif line.startswith("  ") and current:
            sections[current].append(line.split()[0])
    return sections


def test_help_groups_every_lint_target_together():
    sections = help_sections()
    declared = set(re.findall(r"^(lint[a-z-]*):.*##", "\n".join(
        p.read_text() for p in [REPO / "Makefile", *(REPO / "mk").glob("*.mk")]), re.M))
    assert {"lint", "lint-rust", "lint-charts", "lint-docker", "lint-yaml", "lint-shell", "lint-cluster"} <= declared
    assert set(sections["Lint"]) >= declared
    for name, targets in sections.items():
        if name != "Lint":
            assert not [t for t in targets if t.startswith("lint")], name


def test_help_shows_the_main_variables_with_their_values():
    variables = dict(line.split(maxsplit=1) if len(line.split()) > 1 else (line.strip(), "")
                     for line in ANSI.sub("", make("help", "FRONT_END_PORT=9090").stdout).split("Variables")[1]
                     .splitlines()[1:] if line.strip())
    assert variables["FRONT_END_PORT"] == "9090"
    assert variables["BUSINESS_LOGIC_PORT"] == "8081"
    for name in ("KUBE_VERSION", "REGISTRY", "JAEGER_IMAGE", "VENV", "CARGO", "CLUSTER_NAME", "NAMESPACE"):
        assert variables[name], f"make help shows no value for {name}"
    for name in ("SHARED_TOOLS", "TEST_DATABASE_URL"):
        assert name in variables


def test_make_clean_removes_the_local_artefacts_only():
    commands = make("-n", "clean").stdout
    for artefact in ("target", ".venv", "business-logic.db", "business-logic.db-shm", "business-logic.db-wal"):
        assert re.search(rf"rm -rf .*(?<![\w/.-]){re.escape(artefact)}(?![\w.-])", commands), artefact
    assert "helm" not in commands and ".git" not in commands.replace(".gitignore", "")


def test_make_run_checks_for_cargo_before_building():
    commands = make("-n", "run").stdout
    assert commands.index("command -v cargo") < commands.index("cargo build -p business-logic -p front-end")
    assert "scripts/run-local.sh" in commands


# --- make jaeger ---------------------------------------------------------------------------------------

def test_make_jaeger_runs_the_documented_jaeger_v2_container(tmp_path):
    fake_tools.install(tmp_path / "bin", omit=("kind", "kubectl", "helm", "istioctl"))
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "FAKE_STATE": str(tmp_path / "state")}
    result = make("jaeger", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (call,) = [c for c in fake_tools.read_log(log) if c["tool"] == "docker"]
    args = call["args"]
    image = re.search(r"image: (cr\.jaegertracing\.io/jaegertracing/jaeger:\S+)",
                      (REPO / "istio-add-ons" / "jaeger.yaml").read_text())[1]
    assert args[0] == "run" and "--rm" in args and args[-1] == image
    ports = {args[i + 1] for i, a in enumerate(args) if a == "-p"}
    assert ports == {"16686:16686", "9411:9411", "4318:4318"}
    assert "http://localhost:16686" in result.stdout
    # It publishes the port the services export to by default (OTLP/HTTP), and says so.
    assert f"{otlp_default_port()}:{otlp_default_port()}" in ports
    assert "OTLP/HTTP to 4318" in result.stdout and "OTEL_TRACES_EXPORTER=zipkin" in result.stdout


def otlp_default_port() -> int:
    """The port of the services' default OTLP endpoint, opentelemetry-otlp's, as telemetry/src/settings.rs
    names it."""
    source = (REPO / "telemetry" / "src" / "settings.rs").read_text()
    match = re.search(r"opentelemetry-otlp posts to\s+(?://!?/?\s*)?`http://localhost:(\d+)/v1/traces`", source)
    assert match, "the default OTLP endpoint not found in telemetry/src/settings.rs"
    return int(match[1])


def test_make_jaeger_without_docker_says_where_to_get_it(tmp_path):
    result = make("jaeger", "DOCKER=docker-that-is-not-installed")
    assert result.returncode != 0 and "https://docs.docker.com/get-started/get-docker/" in result.stderr


# --- PostgreSQL variants -------------------------------------------------------------------------------

def blank_comments_and_literals(source: str) -> str:
    """Rust source with comments and the insides of string and char literals blanked (same length), so
    braces and names are read from code only."""
    out = list(source)
    i, n = 0, len(source)

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif m := re.compile(r'b?r(#*)"').match(source, i):
            if i > 0 and (source[i - 1].isalnum() or source[i - 1] == "_"):
                i += 1
                continue
            close = '"' + m.group(1)
            j = source.find(close, m.end())
            j = n if j < 0 else j + len(close)
            blank(m.end(), j - len(close))
            i = j
        elif source[i] == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        elif m := re.compile(r"'(\\.[^']*|[^\\'])'").match(source, i):
            blank(i + 1, m.end() - 1)
            i = m.end()
        else:
            i += 1
    return "".join(out)


TEST_FN = re.compile(r"#\[(?:[\w:]+::)?test\b[^\]]*\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?"
                     r"(?:async\s+)?fn\s+(\$?\w+)")


def rust_tests() -> list[tuple[str, str]]:
    """Every Rust test function as (its name as nextest shows it: file module and inline modules, then the
    function; `$test` inside a macro, `path:` first), its body)."""
    found = []
    for path in sorted(REPO.glob("*/*/**/*.rs")):
        rel = path.relative_to(REPO)
        if rel.parts[1] not in ("src", "tests") or "target" in rel.parts:
            continue
        code = blank_comments_and_literals(path.read_text())
        # The file's own module path inside its crate or test binary.
        inner = list(rel.parts[2:])
        if rel.parts[1] == "tests" and len(inner) > 1:
            inner = inner[1:]  # tests/<binary>/...
        inner[-1] = inner[-1].removesuffix(".rs")
        file_mods = [p for p in inner if p not in ("main", "lib", "mod")]
        if rel.parts[1] == "tests" and len(rel.parts) == 3:
            file_mods = []  # tests/<binary>.rs is the binary's root
        stack: list[str | None] = []
        events = sorted([(m.start(), "mod", m) for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code)] +
                        [(m.start(), "test", m) for m in TEST_FN.finditer(code)] +
                        [(i, c, None) for i, c in enumerate(code) if c in "{}"], key=lambda e: e[0])
        pending_mod = None
        for pos, kind, m in events:
            if kind == "mod":
                pending_mod = m.group(1), m.end() - 1
            elif kind == "{":
                if pending_mod and pending_mod[1] == pos:
                    stack.append(pending_mod[0])
                    pending_mod = None
                else:
                    stack.append(None)
            elif kind == "}":
                stack.pop()
            else:
                body_start = code.index("{", m.end())
                depth, j = 0, body_start
                while True:
                    depth += {"{": 1, "}": -1}.get(code[j], 0)
                    if depth == 0:
                        break
                    j += 1
                name = "::".join([*file_mods, *(s for s in stack if s), m.group(1)])
                found.append((f"{rel}: {name}", code[body_start:j + 1]))
    return found


def test_each_test_that_needs_postgresql_carries_the_marker_and_no_other_does():
    """make test-rust skips by what a test needs, not by a word in its name: without TEST_DATABASE_URL it
    leaves out the filter NEEDS_POSTGRES, which must match exactly the tests that ask for PostgreSQL (pass
    `Backend::Postgres`, directly or through the on_both_databases! macro). A test that merely has
    "postgres" in its name (verify's graph without PostgreSQL) runs."""
    makefile = (REPO / "Makefile").read_text()
    marker = re.search(r"^NEEDS_POSTGRES := test\(/(.+)/\)$", makefile, re.M)
    assert marker, "Makefile: NEEDS_POSTGRES"
    skipped = re.compile(marker.group(1))
    tests = rust_tests()
    assert len(tests) > 100, len(tests)
    needs = {name for name, body in tests if re.search(r"Backend::Postgres(?!\s*=>)", body)}
    marked = {name for name, _ in tests if skipped.search(name.split(": ", 1)[1])}
    assert needs == marked, f"need PostgreSQL but run without it: {sorted(needs - marked)}; " \
                            f"skipped but need no PostgreSQL: {sorted(marked - needs)}"
    assert len(needs) >= 3, needs
    # The filter matches the module, not a word: a test about PostgreSQL that needs none runs.
    assert skipped.search("business_logic::api endpoints::needs_postgres::fast_page") and \
        not skipped.search("verify::bin/verify checks::kiali::tests::a_graph_without_postgresql_is_named")


def test_the_rust_test_scan_reads_modules_macros_and_literals(tmp_path):
    source = ('''mod a { #[test] fn x() { let s = "}{"; let c = '{'; } }\n'''
              '''// mod b { #[test] fn y() {} }\n'''
              '''macro_rules! m { ($($t:ident),*) => { mod needs_postgres { $(#[tokio::test] async fn $t() '''
              '''{ f(Backend::Postgres).await })* } }; }\n''')
    code = blank_comments_and_literals(source)
    assert len(code) == len(source) and "mod b" not in code and '"}{"' not in code
    names = [m.group(1) for m in TEST_FN.finditer(code)]
    assert names == ["x", "$t"]


def test_test_rust_skips_postgresql_visibly_and_refuses_to_in_ci():
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    local = make("-n", "test-rust", env={**env, "CI": ""}).stdout
    assert "-E 'not test(/(^|::)needs_postgres::/)'" in local, local
    assert "--status-level skip" in local and "need PostgreSQL" in local, local
    with_db = make("-n", "test-rust", env={**env, "TEST_DATABASE_URL": "postgres://x@127.0.0.1/y"}).stdout
    assert "nextest run --workspace --no-fail-fast" in with_db
    ci = subprocess.run(["make", "test-rust"], cwd=REPO, env={**env, "CI": "true", "CARGO": "false"},
                        capture_output=True, text=True, timeout=60)
    assert ci.returncode != 0 and "TEST_DATABASE_URL is unset" in ci.stderr


# --- README and docs/ -----------------------------------------------------------------------------------

INTERNAL_ISSUE = re.compile(r"\bissues?\s*#?\s*\d+\b|(?<![\w/-])#\d+\b", re.I)


def internal_issue_refs(text: str) -> list[str]:
    """"issue 15", "#15": our own issue numbers; an upstream reference (owner/repo#N, or the text of a
    [#N](https://github.com/...) link) is not one."""
    return [text[max(0, m.start() - 40):m.end() + 20] for m in INTERNAL_ISSUE.finditer(text)
            if not text.startswith("](https://github.com/", m.end())]


def test_the_readme_and_docs_speak_of_changes_not_internal_issue_numbers():
    """History is told by change ("before the instruction cuts"), never by our issue numbers."""
    for bad in ("before issue 15", "Issue #7", "a fix (#12)", "see issues 3"):
        assert internal_issue_refs(bad), bad
    for fine in ("[opentelemetry-rust#3250](https://github.com/o/r/issues/3250)",
                 "[#3492](https://github.com/o/r/pull/3492)", "tokio-rs/tracing#1303", "colour #1d2330"):
        assert not internal_issue_refs(fine), fine
    found = [f"{path}: ...{ref}..."
             for path in ["README.md", "helm/app/README.md",
                          *(str(p.relative_to(REPO)) for p in sorted((REPO / "docs").rglob("*.md")))]
             for ref in internal_issue_refs((REPO / path).read_text())]
    assert not found, "\n".join(found)


# --- lint output -----------------------------------------------------------------------------------------

def test_lint_prints_failures_and_a_summary_not_every_success():
    result = make("lint-charts", "lint-cluster", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("ok ", "ok\t", "[INFO]", "==> Linting"))], result.stdout
    (charts,) = [line for line in lines if line.startswith("lint-charts:")]
    assert re.search(r"lint-charts: \d+ checks .*, 0 failed$", charts), charts
    (cluster,) = [line for line in lines if line.startswith("lint-cluster:")]
    assert re.search(r"lint-cluster: \d+ passed, 0 failed$", cluster), cluster
    assert len(lines) < 10, result.stdout


def test_lint_charts_shows_what_failed(tmp_path):
    """A chart that renders an object the schemas reject: the FAIL line and a non-zero exit."""
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    - port: 80\n      prot: TCP\n")
    result = make("lint-charts", f"CHART={chart}", "CHART_CI_VALUES=", "SUBCHARTS=", "HELM=no-helm-here",
                  timeout=300)
    assert result.returncode != 0
    assert "FAIL helm lint" in result.stdout or "FAIL render" in result.stdout, result.stdout
    assert "prot" in result.stdout and "1 failed" in result.stdout.replace("2 failed", "1 failed"), result.stdout
