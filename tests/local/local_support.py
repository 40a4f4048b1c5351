"""Helpers for the checks of the local workflow: make run, make jaeger, the
Makefile's lint and help, and the repository standing alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_process import Collector, free_port, wait_until  # noqa: F401 (re-exported to the tests)

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """A prerequisite of a check is missing: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def venv_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        pytest.fail(f"{tool} not found: install tests/requirements.txt into this Python's environment")
    return str(tool)


def make(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def cargo_target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def build_services() -> None:
    """Brings target/debug's business-logic and front-end up to date (what make run builds)."""
    cargo = shutil.which("cargo")
    if not cargo:
        unavailable("cargo not on PATH: the make run checks need Rust")
    build = subprocess.run([cargo, "build", "--quiet", "-p", "business-logic", "-p", "front-end"], cwd=REPO,
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-4000:]


