"""The real service binaries as child processes, shared by tests/charts and
tests/cluster: build them, start one on a loopback port, wait for it, stop it.
Every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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



def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


class Service:
    """A service binary on a free loopback port; its stdout lines are kept."""

    def __init__(self, binary: Path, env: dict[str, str]) -> None:
        self.name = binary.name
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd=env.get("WORK_DIR"))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            port = wait_until(self._port, 30, f"{self.name} to listen")
            self.url = f"http://127.0.0.1:{port}"
            wait_until(lambda: http_get(self.url + "/readyz", 2)[0] == 200, 30, f"{self.name} to be ready")
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}; its output:\n" + "\n".join(self.lines[-20:])) from None

    def _port(self) -> str | None:
        """The port of the start-up line: `... listening port=N` (text) or `"port":N` (JSON)."""
        for line in self.lines:
            if "listening" in line and (m := re.search(r'(?:port=|"port":)(\d+)', line)):
                return m.group(1)
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}")
        return None

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def service_binaries() -> Path:
    """target/debug with fresh business-logic and front-end binaries
    (SERVICE_BIN_DIR overrides; otherwise `cargo build` brings them up to date).
    Missing: fail in CI, skip elsewhere."""
    if os.environ.get("SERVICE_BIN_DIR"):
        bin_dir = Path(os.environ["SERVICE_BIN_DIR"])
    else:
        bin_dir = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug"
        cargo = shutil.which("cargo")
        if cargo:
            build = subprocess.run([cargo, "build", "--quiet", "-p", "business-logic", "-p", "front-end"],
                                   cwd=REPO, capture_output=True, text=True, timeout=1800)
            assert build.returncode == 0, build.stderr[-4000:]
    for name in ("business-logic", "front-end"):
        if not (bin_dir / name).is_file():
            message = f"{bin_dir / name} not built (run cargo build -p business-logic -p front-end)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return bin_dir


class Collector:
    """A stand-in Zipkin collector on loopback: accepts v2 JSON on /api/v2/spans
    and remembers every span."""

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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace_ids(self) -> set[str]:
        with self.lock:
            return {s["traceId"] for s in self.spans}

    def exported_by(self, service: str) -> set[str]:
        with self.lock:
            return {s["traceId"] for s in self.spans if s.get("localEndpoint", {}).get("serviceName") == service}

    def services_of(self, trace_id: str) -> set[str]:
        with self.lock:
            return {s.get("localEndpoint", {}).get("serviceName") for s in self.spans if s["traceId"] == trace_id}

    def server_spans_of(self, trace_id: str) -> set[str]:
        """The services whose SERVER span of this trace arrived (a request's last span to end)."""
        with self.lock:
            return {s.get("localEndpoint", {}).get("serviceName") for s in self.spans
                    if s["traceId"] == trace_id and s.get("kind") == "SERVER"}

    def span(self, trace_id: str, span_id: str) -> dict | None:
        with self.lock:
            return next((s for s in self.spans if s["traceId"] == trace_id and s["id"] == span_id), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
