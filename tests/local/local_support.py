"""Helpers for the checks of the local workflow: make run, make jaeger, the
Makefile's lint and help, and the repository standing alone."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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


class Collector:
    """A stand-in Zipkin collector: accepts v2 JSON on /api/v2/spans, keeps every span."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = self.path == "/api/v2/spans"
                if ok:
                    with collector.lock:
                        collector.spans.extend(json.loads(body))
                self.send_response(202 if ok else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v2/spans"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def services_of(self, trace_id: str) -> set[str]:
        with self.lock:
            return {s.get("localEndpoint", {}).get("serviceName") for s in self.spans if s["traceId"] == trace_id}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
