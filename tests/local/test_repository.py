"""The repository stands alone and its Makefile has no dead ends: the offline
chart tools and CRD schemas are in the repository, every shell script is
linted, `make help` shows every lint target in one group and the main
variables, `make clean` removes the local artefacts, `make jaeger` runs the
documented container, and no PostgreSQL test can pass without a database."""

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


def git_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


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


def test_the_standalone_check_is_wired_into_ci():
    run = (REPO / ".ci" / "run").read_text()
    assert ".ci/standalone" in run and "make lint" in run and "make test" in run
    standalone = (REPO / ".ci" / "standalone").read_text()
    assert "git clone" in standalone and "CARGO_TARGET_DIR" in standalone
    for step in ("make lint", "make test-deploy"):
        assert step in standalone


# --- shell scripts, help, clean -----------------------------------------------------------------------

def shell_scripts() -> list[str]:
    out = []
    for f in git_files():
        path = REPO / f
        if not path.is_file():
            continue
        if f.endswith(".sh"):
            out.append(f)
            continue
        with path.open("rb") as fh:
            first = fh.readline(200)
        if re.match(rb"^#!(/usr)?/bin/(env +)?(ba|da|k)?sh( |$)", first.rstrip(b"\n")):
            out.append(f)
    return out


def test_lint_shell_runs_shellcheck_on_every_shell_script():
    scripts = shell_scripts()
    assert {".ci/run", ".ci/standalone", "create-cluster.sh", "scripts/run-local.sh"} <= set(scripts)
    result = make("lint-shell", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (summary,) = [line for line in result.stdout.splitlines() if line.startswith("lint-shell:")]
    assert f"passed on {len(scripts)} scripts" in summary and sorted(summary.split(": ")[-1].split()) == sorted(scripts)


def test_lint_shell_fails_on_a_bad_script(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = subprocess.run([venv_tool("shellcheck"), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout


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
    assert variables["KUBE_VERSION"] == "1.36.0" and variables["REGISTRY"] == "localhost:5001"
    assert variables["JAEGER_IMAGE"].startswith("cr.jaegertracing.io/jaegertracing/jaeger:2.")
    for name in ("VENV", "CARGO", "CLUSTER_NAME", "NAMESPACE", "SHARED_TOOLS", "TEST_DATABASE_URL"):
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
    log = tmp_path / "calls.jsonl"
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
    # The README documents the same command and image.
    readme = (REPO / "README.md").read_text()
    assert f"docker run --rm -p 16686:16686 -p 9411:9411 -p 4318:4318 {image}" in readme
    assert "make jaeger" in readme
    assert "http://localhost:16686" in result.stdout


def test_make_jaeger_without_docker_says_where_to_get_it(tmp_path):
    result = make("jaeger", "DOCKER=docker-that-is-not-installed")
    assert result.returncode != 0 and "https://docs.docker.com/get-started/get-docker/" in result.stderr


# --- PostgreSQL variants -------------------------------------------------------------------------------

def test_every_postgresql_test_has_postgres_in_its_name():
    """make test-rust leaves out `test(/postgres/)` when TEST_DATABASE_URL is unset, so that nextest
    counts them as skipped: every test that asks for PostgreSQL must match that filter."""
    found = 0
    for path in sorted(REPO.glob("*/tests/**/*.rs")):
        if "target" in path.parts:
            continue
        text = path.read_text()
        # A `Backend::Postgres =>` match arm only handles the variant; the test
        # that passes `Backend::Postgres` is the one that asks for PostgreSQL.
        for m in re.finditer(r"Backend::Postgres(?!\s*=>)", text):
            before = text[:m.start()]
            line = before[before.rfind("\n") + 1:]
            if "mod postgres" in text[before.rfind("macro_rules!"):m.start()] and "macro_rules!" in before:
                found += 1  # the on_both_databases! macro's `mod postgres { ... }` variants
                continue
            fns = re.findall(r"\bfn\s+(\w+)", before)
            assert fns and "postgres" in fns[-1], f"{path.relative_to(REPO)}: {fns[-1] if fns else line}"
            found += 1
    assert found >= 2


def test_test_rust_skips_postgresql_visibly_and_refuses_to_in_ci():
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"}
    local = make("-n", "test-rust", env={**env, "CI": ""}).stdout
    assert "-E 'not test(/postgres/)'" in local and "PostgreSQL tests" in local
    with_db = make("-n", "test-rust", env={**env, "TEST_DATABASE_URL": "postgres://x@127.0.0.1/y"}).stdout
    assert "nextest run --workspace --no-fail-fast" in with_db
    ci = subprocess.run(["make", "test-rust"], cwd=REPO, env={**env, "CI": "true", "CARGO": "false"},
                        capture_output=True, text=True, timeout=60)
    assert ci.returncode != 0 and "TEST_DATABASE_URL is unset" in ci.stderr


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
