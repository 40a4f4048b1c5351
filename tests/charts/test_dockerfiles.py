"""The one Dockerfile (the service chosen with --build-arg PACKAGE; `make lint` runs hadolint on it)
keeps the properties the chart relies on: pinned bases, a cached dependency layer, a
non-root shell-less runtime, port 8080. The .dockerignore keeps the workspace in the
build context and the rest out."""

from __future__ import annotations

import re
import subprocess

import pytest
from chart_render import REPO

SERVICES = ["front-end", "business-logic"]


DOCKERFILE = REPO / "Dockerfile"


def test_one_dockerfile_serves_both_services():
    assert [p.relative_to(REPO) for p in REPO.glob("*/Dockerfile")] == []
    assert set(SERVICES) <= set(workspace_members())


def stages(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)


def test_dockerfile_builds_a_pinned_non_root_shell_less_image():
    text = DOCKERFILE.read_text()
    bases = stages(text)
    external = [b for b in bases if ":" in b]
    # Pinned toolchain and runtime (no floating `latest`, a Rust version in the builder tag).
    assert re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-(bookworm|trixie)", external[0]), external[0]
    assert re.fullmatch(r"gcr\.io/distroless/cc-debian1[23]:nonroot", bases[-1]), bases[-1]
    assert re.search(r"cargo install --locked cargo-chef --version \"?\$\{CARGO_CHEF_VERSION\}", text)
    assert re.search(r"^ARG CARGO_CHEF_VERSION=\d+\.\d+\.\d+$", text, re.M)
    # Dependency layer before the sources, with the cargo registry cached.
    assert text.index("cargo chef cook") < text.index("COPY . .\n# The binary")
    assert "--mount=type=cache,target=/usr/local/cargo/registry" in text  # shared by both images
    # Architecture-neutral, no shell needed at run time.
    assert "--target" not in text and "x86_64" not in text and "aarch64" not in text
    assert not re.search(r"^HEALTHCHECK", text, re.M)
    final = text[text.rindex("FROM "):]
    assert re.search(r"^USER 65532(:65532)?$", final, re.M)
    assert re.search(r"^EXPOSE 8080$", final, re.M) and re.search(r"^ENV PORT=8080$", final, re.M)
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/service"\]$', final, re.M)


@pytest.mark.parametrize("service", SERVICES)
def test_the_package_argument_builds_and_names_each_service(service):
    """What `docker build --build-arg PACKAGE=<service>` does with the argument: the builder
    stage builds that package's binary under its own name, `service` links to it, and the
    runtime stage labels the image with it (no default: a build without it stops)."""
    text = DOCKERFILE.read_text()
    builder = text[text.index("AS builder"):text.rindex("FROM ")]
    assert re.search(r"^ARG PACKAGE$", builder, re.M) and 'if [ -z "${PACKAGE}" ]' in builder
    commands = builder.replace("${PACKAGE}", service)
    assert f'--package "{service}" --bin "{service}"' in commands
    assert f'cp "target/release/{service}" "/out/usr/local/bin/{service}"' in commands
    assert f'ln -s "{service}" /out/usr/local/bin/service' in commands
    final = text[text.rindex("FROM "):]
    assert 'org.opencontainers.image.title="${PACKAGE}"' in final and re.search(r"^ARG PACKAGE$", final, re.M)
    make = subprocess.run(["make", "--no-print-directory", "-n", f"build-{service}"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert f"--build-arg PACKAGE={service} " in make.stdout, make.stdout + make.stderr


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def pattern_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a path
    relative to the context; like Docker, a pattern also excludes everything below a match."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "(?:/.*)?")


def ignored(path: str, patterns: list[str]) -> bool:
    excluded = False
    for p in patterns:
        negate = p.startswith("!")
        if pattern_regex(p.lstrip("!")).fullmatch(path):
            excluded = not negate
    return excluded


def workspace_members() -> list[str]:
    cargo = (REPO / "Cargo.toml").read_text()
    return re.findall(r'"([^"]+)"', re.search(r"members\s*=\s*\[([^\]]*)\]", cargo)[1])


def test_dockerignore_keeps_the_workspace_and_drops_the_rest():
    patterns = dockerignore_patterns()
    needed = ["Cargo.toml", "Cargo.lock", ".cargo/config.toml", "front-end/static/style.css", "front-end/templates/base.html",
              "business-logic/migrations/postgres/0001.sql"]
    needed += [f"{m}/Cargo.toml" for m in workspace_members()] + [f"{m}/src/lib.rs" for m in workspace_members()]
    assert [p for p in needed if ignored(p, patterns)] == []
    dropped = ["target/release/front-end", ".git/HEAD", ".venv/bin/python", "helm/app/Chart.yaml",
               "front-end/tests/pages.rs", "business-logic.db", "README.md", "Dockerfile"]
    assert [p for p in dropped if not ignored(p, patterns)] == []


def test_dockerignore_matcher_follows_docker_rules():
    assert ignored("a/target/x", ["**/target/"]) and ignored("target", ["target/"])
    assert not ignored("a/b/tests/x", ["*/tests/"]) and ignored("a/tests/x", ["*/tests/"])
    assert not ignored("keep.md", ["*.md", "!keep.md"])
