"""The real service binaries as child processes, shared by tests/charts and
tests/cluster: build them, start one on a loopback port, wait for it, stop it.
Every wait is bounded."""

from __future__ import annotations

import base64
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
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                     ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

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
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


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


ZIPKIN_KINDS = ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")
HEX = re.compile(r"[0-9a-f]+")


def is_hex(value, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and HEX.fullmatch(value) is not None


def zipkin_spans(body: bytes) -> list[dict]:
    """A Zipkin v2 JSON batch, each span checked as test-support/src/collector.rs checks it
    (zipkin-api `zipkin2-api.yaml`, `Span`); ValueError names what is wrong."""
    try:
        batch = json.loads(body)
    except ValueError as e:
        raise ValueError(f"body is not JSON: {e}") from None
    if not isinstance(batch, list):
        raise ValueError(f"body is not a JSON array of spans: {body[:200]!r}")
    return [zipkin_span(span) for span in batch]


def zipkin_span(span) -> dict:
    if not isinstance(span, dict):
        raise ValueError(f"span {span!r} is not an object")
    if not is_hex(span.get("traceId"), 32):
        raise ValueError(f"traceId {span.get('traceId')!r} is not 32 lower-case hex digits")
    if not is_hex(span.get("id"), 16):
        raise ValueError(f"id {span.get('id')!r} is not 16 lower-case hex digits")
    if "parentId" in span and not is_hex(span["parentId"], 16):
        raise ValueError(f"parentId {span['parentId']!r} is not 16 lower-case hex digits")
    if "kind" in span and span["kind"] not in ZIPKIN_KINDS:
        raise ValueError(f"kind {span['kind']!r} is not a Zipkin span kind")
    if not isinstance(span.get("name"), str):
        raise ValueError(f"name missing or not a string in {span}")
    for field in ("timestamp", "duration"):
        if type(span.get(field)) is not int or span[field] < 0:
            raise ValueError(f"{field} missing or not a whole number of microseconds in {span}")
    # Microseconds since the epoch: after 2020 and not nanoseconds.
    if not 1_577_836_800_000_000 <= span["timestamp"] < 4_102_444_800_000_000:
        raise ValueError(f"timestamp {span['timestamp']} is not epoch microseconds")
    if not isinstance(span.get("localEndpoint"), dict) or not span["localEndpoint"].get("serviceName"):
        raise ValueError(f"localEndpoint.serviceName missing in {span}")
    tags = span.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ValueError(f"tags {tags!r} is not a map of strings")
    return {**span, "protocol": "zipkin"}


OTLP_KINDS = {OtlpSpan.SPAN_KIND_SERVER: "SERVER", OtlpSpan.SPAN_KIND_CLIENT: "CLIENT",
              OtlpSpan.SPAN_KIND_PRODUCER: "PRODUCER", OtlpSpan.SPAN_KIND_CONSUMER: "CONSUMER"}


def tag_text(value) -> str:
    """An OTLP AnyValue as Zipkin tag text, as the OpenTelemetry Collector's Zipkin exporter writes
    it: booleans `true`/`false`, numbers as text, arrays and maps as JSON, bytes in base64."""

    def plain(v):
        which = v.WhichOneof("value")
        if which == "array_value":
            return [plain(x) for x in v.array_value.values]
        if which == "kvlist_value":
            return {kv.key: plain(kv.value) for kv in v.kvlist_value.values}
        if which == "bytes_value":
            return base64.b64encode(v.bytes_value).decode()
        return getattr(v, which) if which else ""

    result = plain(value)
    if isinstance(result, bool):
        return "true" if result else "false"
    if isinstance(result, (list, dict)):
        return json.dumps(result)
    return str(result)


def otlp_spans(body: bytes, content_type: str) -> list[dict]:
    """The spans of an OTLP/HTTP protobuf export (ExportTraceServiceRequest, from the published
    .proto definitions) in the Zipkin v2 shape the collector keeps: ids as lower-case hex, kind
    SERVER/CLIENT/... (none for internal spans), localEndpoint.serviceName the resource's
    service.name, tags the resource's other attributes plus the span's; ValueError names what is
    wrong."""
    if content_type != "application/x-protobuf":
        raise ValueError(f"OTLP content-type {content_type!r}, expected application/x-protobuf")
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as e:
        raise ValueError(f"not an ExportTraceServiceRequest: {e}") from None
    out = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: tag_text(kv.value) for kv in resource_spans.resource.attributes}
        service = resource.pop("service.name", "")
        if not service:
            raise ValueError(f"resource without service.name: {resource}")
        for span in (span for scope in resource_spans.scope_spans for span in scope.spans):
            if len(span.trace_id) != 16 or len(span.span_id) != 8 or len(span.parent_span_id) not in (0, 8):
                raise ValueError(f"span {span.name!r} has malformed ids")
            converted = {
                "traceId": span.trace_id.hex(), "id": span.span_id.hex(), "name": span.name,
                "timestamp": span.start_time_unix_nano // 1000,
                "duration": max(0, span.end_time_unix_nano - span.start_time_unix_nano) // 1000,
                "localEndpoint": {"serviceName": service},
                "tags": {**resource, **{kv.key: tag_text(kv.value) for kv in span.attributes}},
                "protocol": "otlp",
            }
            if span.parent_span_id:
                converted["parentId"] = span.parent_span_id.hex()
            if span.kind in OTLP_KINDS:
                converted["kind"] = OTLP_KINDS[span.kind]
            out.append(converted)
    return out


# Answers: (status, content type, body). OTLP/HTTP answers success with an (empty) ExportTraceServiceResponse.
ZIPKIN_OK = (202, "text/plain", b"")
OTLP_OK = (200, "application/x-protobuf", ExportTraceServiceResponse().SerializeToString())


class Collector:
    """A stand-in for Jaeger's span receivers on loopback, like test-support/src/collector.rs:
    Zipkin v2 JSON on POST /api/v2/spans, OTLP/HTTP protobuf on POST /v1/traces. Every span is
    checked and kept in the Zipkin v2 shape (OTLP spans converted by `otlp_spans`), with a
    `protocol` key saying which way it came; a body that does not conform is answered 400 and
    recorded in `errors`, as a real collector would. `env()` points both exporters here."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/v2/spans":
                    status, content_type, answer = collector._receive(lambda: zipkin_spans(body), ZIPKIN_OK)
                elif self.path == "/v1/traces":
                    status, content_type, answer = collector._receive(
                        lambda: otlp_spans(body, self.headers.get("Content-Type", "")), OTLP_OK)
                else:
                    status, content_type, answer = 404, "text/plain", b""
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        base = f"http://127.0.0.1:{self.server.server_port}"
        self.zipkin_endpoint = f"{base}/api/v2/spans"
        self.otlp_endpoint = base  # the exporter appends /v1/traces
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        """The variables that point both span exporters here, whichever OTEL_TRACES_EXPORTER picks."""
        return {"OTEL_EXPORTER_ZIPKIN_ENDPOINT": self.zipkin_endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint}

    def _receive(self, parse, ok: tuple[int, str, bytes]) -> tuple[int, str, bytes]:
        try:
            spans = parse()
        except ValueError as e:
            with self.lock:
                self.errors.append(str(e))
            return 400, "text/plain; charset=utf-8", str(e).encode()
        with self.lock:
            self.spans.extend(spans)
        return ok

    def protocols(self) -> set[str]:
        """How the spans came: `zipkin`, `otlp` or both."""
        with self.lock:
            return {s["protocol"] for s in self.spans}

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
