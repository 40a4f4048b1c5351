"""The README, docs/ and the chart's README stay true without pinning their sentences: the facts
they name are checked against the code. Every `make` target a page names exists; the
configuration tables list exactly the variables the code reads; the chart's values table covers
every value with its default; every repository path a page names exists; the architecture map's
crate layers are the ones Cargo.toml has; every relative link and anchor resolves; and the command
blocks of the walkthrough that run without a cluster are run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import yaml
from local_support import REPO, make
from service_process import Service, service_binaries

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "helm" / "app" / "README.md"]
CONFIGURATION = REPO / "docs" / "configuration.md"
RUNS_HERE = re.compile(r"<!-- runs-without-a-cluster(?P<service>: with make run-business-logic)? -->\n```sh\n(?P<block>.*?)^```",
                       re.M | re.S)


# --- reading Markdown ------------------------------------------------------------------------------------

FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)


def fenced_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    """Inline code, whitespace (line breaks included) folded to one space."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose(text))]


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading` (a Markdown heading line)."""
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{1,6} ", section, maxsplit=1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, f"no table under {heading}"
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows[2:]]


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(path.read_text()), re.M):
        slug = github_slug(heading)
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


# --- make targets ----------------------------------------------------------------------------------------

def make_targets() -> set[str]:
    text = "\n".join(p.read_text() for p in [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))])
    return set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", text, re.M))


def words(code: str) -> list[str]:
    try:
        return shlex.split(code, comments=True)
    except ValueError:  # an unbalanced quote in an excerpt
        return code.split()


def targets_named(text: str) -> set[str]:
    """The targets of every `make ...` command in code: the words after `make` up to the first
    that is neither a target nor a VARIABLE=value (a flag, a comment, a shell operator)."""
    named = set()
    lines = [line for block in fenced_blocks(text) for line in block.splitlines()]
    for code in [*code_spans(text), *lines]:
        ws = words(code)
        for i in [i for i, w in enumerate(ws) if w == "make"]:
            for word in ws[i + 1:]:
                if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", word, re.S):
                    continue
                if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                    break
                named.add(word)
    return named


def test_every_make_target_a_page_names_exists():
    targets = make_targets()
    assert {"run", "up", "preflight", "verify", "test", "help"} <= targets, targets
    missing = {f"{page.relative_to(REPO)}: make {t}" for page in PAGES for t in targets_named(page.read_text())
               if t not in targets}
    assert not missing, sorted(missing)


def test_the_readme_starts_with_the_commands_a_newcomer_needs():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    first = "\n".join(lines[:120])
    for target in ("run", "test", "preflight", "up", "verify"):
        assert target in targets_named(first), target



def test_the_readmes_tool_versions_are_the_pinned_ones():
    """The prerequisites table names kind and istioctl at the versions create-cluster.sh pins (and
    make preflight checks), so a bump there cannot leave the README behind."""
    script = (REPO / "create-cluster.sh").read_text()
    pins = {"kind": re.search(r"^KIND_VERSION=(\S+)", script, re.M)[1],
            "istioctl": re.search(r'^ISTIO_VERSION="\$\{ISTIO_VERSION:-([^}]+)\}"', script, re.M)[1]}
    rows = {row[0]: row for row in table_rows((REPO / "README.md").read_text(), "### Prerequisites")}
    for tool, pin in pins.items():
        versions = set(re.findall(r"v?\d+\.\d+\.\d+", " ".join(rows[tool][1:])))
        assert versions == {pin}, (tool, versions)

# --- configuration ---------------------------------------------------------------------------------------

def without_tests(rust: str) -> str:
    return rust.split("#[cfg(test)]\nmod tests", 1)[0]


def services_read() -> set[str]:
    """What the services read: the variable names their settings modules list (ENV_VARS, TEXT_VARS,
    read_env's list), and the OTEL_* variables the telemetry crate leaves to the OpenTelemetry SDK
    (named in its source, `OTEL_BSP_*` as a prefix)."""
    names = set()
    for path in ["service-kit/src/settings.rs", "telemetry/src/settings.rs", "business-logic/src/settings.rs",
                 "front-end/src/settings.rs"]:
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', without_tests((REPO / path).read_text())))
    for path in (REPO / "telemetry" / "src").rglob("*.rs"):
        names |= {n for n in re.findall(r"\bOTEL_[A-Z0-9_]*[A-Z0-9](?:_\*)?(?![\w*])", path.read_text())}
    return names


def make_variables() -> set[str]:
    text = "\n".join(p.read_text() for p in [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))])
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", text, re.M))


def others_read() -> set[str]:
    """The scripts' `${VAR:-default}` and the Rust tools' and tests' environment reads (clap's
    `env = "..."`, std::env::var), without what the system or Cargo sets (PATH, OUT_DIR)."""
    names = set()
    for path in [REPO / "create-cluster.sh", *sorted((REPO / "scripts").glob("*.sh"))]:
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", path.read_text()))
    for path in REPO.glob("*/**/*.rs"):
        if "target" in path.relative_to(REPO).parts[:1]:
            continue
        names |= set(re.findall(r'(?:env = |env::var(?:_os)?\()"([A-Z][A-Z0-9_]*)"', path.read_text()))
    return names - {"PATH", "OUT_DIR"}


def documented(heading: str) -> set[str]:
    return {name for row in table_rows(CONFIGURATION.read_text(), heading) for name in ticked(row[0])}


def covers(names: set[str], name: str) -> bool:
    """`OTEL_BSP_*` in the code covers every OTEL_BSP_ variable."""
    return name in names or any(n.endswith("_*") and name.startswith(n[:-1]) for n in names)


def test_the_services_table_lists_exactly_what_the_services_read():
    table, code = documented("## The services"), services_read()
    assert {"PORT", "DATABASE_URL", "BUSINESS_LOGIC_URL", "OTEL_TRACES_EXPORTER"} <= code, code
    assert sorted(n for n in table if not covers(code, n)) == [], "in the table, read by nothing"
    assert sorted(n for n in code if not n.endswith("_*") and n not in table) == [], "read, not in the table"
    assert sorted(n for n in code if n.endswith("_*") and not any(t.startswith(n[:-1]) for t in table)) == []


def test_the_make_table_lists_every_overridable_make_variable():
    table, code = documented("## `make` variables"), make_variables()
    assert {"FRONT_END_PORT", "MESH_MODE", "TEST_DATABASE_URL"} <= code, code
    assert sorted(table - code) == [] and sorted(code - table) == []


def test_every_variable_the_scripts_and_tools_read_has_a_row():
    rest = documented("## The scripts") | documented("## Tests, benchmark and verify")
    everything = rest | documented("## The services") | documented("## `make` variables")
    code = others_read()
    assert {"ISTIO_VERSION", "PREFLIGHT_SKIP_PINS", "BENCH_POSTGRES_URL", "CI"} <= code, code
    assert sorted(code - everything) == [], "read, not in any table"
    assert sorted(rest - code) == [], "in the table, read by nothing"


# --- the chart's values ----------------------------------------------------------------------------------

def chart_values() -> dict:
    """The umbrella's values with each subchart's own under its name (global left out: the
    umbrella's is the one that counts)."""
    chart = REPO / "helm" / "app"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    for sub in sorted((chart / "charts").iterdir()):
        own = yaml.safe_load((sub / "values.yaml").read_text())
        own.pop("global", None)
        values[sub.name] = own
    return values


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= leaves(value, path + ".")
        else:
            out[path] = value
    return out


def test_the_charts_values_table_covers_every_value_with_its_default():
    values = leaves(chart_values())
    rows = table_rows((REPO / "helm" / "app" / "README.md").read_text(), "## Values")
    named = []
    for row in rows:
        paths = ticked(row[0])
        named += paths
        for path in paths:
            assert path in values or any(v.startswith(path + ".") for v in values), f"no value {path}"
        defaults = [d for d in ticked(row[1])]
        if len(defaults) == len(paths) and all(p in values for p in paths):
            for path, default in zip(paths, defaults):
                assert yaml.safe_load(default) == values[path], f"{path}: table {default}, values {values[path]!r}"
    uncovered = [v for v in values if not any(v == n or v.startswith(n + ".") for n in named)]
    assert uncovered == [], "values without a row"


# --- the architecture map --------------------------------------------------------------------------------

# Files the measurement history names after they were removed (docs/instrumentation-cost.md tells
# what replaced each).
REMOVED_FILES = {"telemetry/src/traces/otlp.rs", "bench/instructions.py"}


def repository_paths(text: str) -> set[str]:
    """Inline code that reads as a path inside this repository (its first part is a top-level entry)."""
    tops = {p.name for p in REPO.iterdir()} | {"target"}
    return {span.rstrip("/") for span in code_spans(text)
            if re.fullmatch(r"[\w.-]+(/[\w.*<>-]+)*/?", span) and span.split("/")[0] in tops}


def workspace_binaries() -> set[str]:
    """The programs `cargo build` writes to target/release and target/debug."""
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    return ({m for m in members if (REPO / m / "src" / "main.rs").exists()}
            | {b.stem for m in members for b in (REPO / m / "src" / "bin").glob("*.rs")})


def exists(path: str) -> bool:
    """A tracked path exists in the checkout; under target/ (build output, absent from a clone) only
    the programs the workspace builds are checked."""
    if path.split("/")[0] == "target":
        parts = path.split("/")
        return len(parts) != 3 or parts[1] not in ("release", "debug") or parts[2] in workspace_binaries()
    return bool(list(REPO.glob(path)))


def test_every_repository_path_a_page_names_exists():
    pages = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    # verify/testdata/README.md names the upstream files its fixtures were recorded from.
    named = {page: repository_paths((REPO / page).read_text()) for page in pages
             if page != "verify/testdata/README.md"}
    assert len(named["docs/architecture.md"]) > 40, named["docs/architecture.md"]
    missing = {page: [p for p in sorted(paths) if "<" not in p and p not in REMOVED_FILES and not exists(p)]
               for page, paths in named.items()}
    assert {page: paths for page, paths in missing.items() if paths} == {}


def test_each_crate_depends_only_on_what_the_map_allows():
    rows = table_rows((REPO / "docs" / "architecture.md").read_text(), "## What may depend on what")
    allowed = {ticked(row[0])[0]: set(ticked(row[1])) for row in rows}
    members = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]
    assert sorted(allowed) == sorted(members)
    for crate in members:
        manifest = tomllib.loads((REPO / crate / "Cargo.toml").read_text())
        uses = set(manifest.get("dependencies", {})) & set(members)
        assert uses <= allowed[crate], f"{crate} depends on {sorted(uses - allowed[crate])}"


# --- links -----------------------------------------------------------------------------------------------

def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def test_the_slugs_follow_githubs_rules():
    assert github_slug("On the cluster (`make up`)") == "on-the-cluster-make-up"
    assert github_slug("What `make test` runs") == "what-make-test-runs"
    assert github_slug("Why the mesh keeps B3 (and the services speak OTLP)") == \
        "why-the-mesh-keeps-b3-and-the-services-speak-otlp"


# --- the commands the pages give -------------------------------------------------------------------------

def test_the_test_prerequisites_are_what_ci_installs():
    """One apt-get block across the pages, installing every Debian package CI installs (.ci/run),
    and cargo-nextest."""
    ci_packages = set(re.findall(r"need_apt\+=\(([\w.-]+)\)", (REPO / ".ci" / "run").read_text()))
    assert {"chromium", "prometheus", "valgrind"} <= ci_packages, ci_packages
    installs = [b for page in PAGES for b in fenced_blocks(page.read_text()) if "apt-get install -y" in b]
    assert len(installs) == 1, installs
    block = installs[0]
    assert "apt-get update" in block and "cargo install --locked cargo-nextest" in block
    apt = {w for w in re.search(r"apt-get install -y ([^\n]+)", block).group(1).split() if not w.startswith("-")}
    assert apt == ci_packages


def local_blocks() -> list[tuple[bool, str]]:
    found = [(bool(m["service"]), m["block"]) for m in RUNS_HERE.finditer((REPO / "docs" / "walkthrough.md").read_text())]
    assert found, "the walkthrough marks its blocks that run without a cluster"
    return found


def commands(block: str) -> list[list[str]]:
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


def test_the_walkthroughs_local_blocks_run(tmp_path):
    """Each marked block, command by command: `make` in the repository, `curl` against business-logic
    started as `make run-business-logic` starts it (its default port replaced by a free one)."""
    business_logic = None
    try:
        for needs_service, block in local_blocks():
            if needs_service and business_logic is None:
                env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "WORK_DIR": str(tmp_path),
                       "DATABASE_URL": f"sqlite://{tmp_path}/business-logic.db", "OTEL_TRACES_EXPORTER": "none",
                       "SLOW_ENDPOINT_DELAY_MS": "200"}
                business_logic = Service(service_binaries() / "business-logic", env)
            for words in commands(block):
                if words[0] == "make":
                    result = make(*words[1:])
                else:
                    assert words[0] == "curl" and business_logic, words
                    port = business_logic.url.rsplit(":", 1)[1]
                    args = [w.replace("localhost:8081", f"127.0.0.1:{port}") for w in words[1:]]
                    result = subprocess.run(["curl", "-fsS", "--max-time", "10", *args], capture_output=True,
                                            text=True, timeout=20)
                assert result.returncode == 0, (words, result.stdout[-2000:], result.stderr[-2000:])
                assert result.stdout.strip(), words
    finally:
        if business_logic:
            business_logic.stop()

