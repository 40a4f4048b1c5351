#!/usr/bin/env python3
"""CPU work per fast page, in instructions: a figure that does not care how
busy the machine is.

Runs business-logic and front-end (release builds) each under
`valgrind --tool=callgrind`, sends a bounded number of warm-up `/fast-page`
requests, zeroes the counters, sends `--requests` more over one keep-alive
connection, dumps the counters and divides each service's instructions by
the requests. Spans go to a local Zipkin sink (loopback) so the export
thread's work is counted too. Each setting is a separate pair of processes.

    cargo build --release -p business-logic -p front-end
    bench/instructions.py                       # all settings, SQLite
    bench/instructions.py --settings instrumented --requests 500
    bench/instructions.py --database-url postgres://postgres@127.0.0.1:5432/postgres
    bench/instructions.py --rss                 # resident memory, native runs

Valgrind runs the threads of a process one at a time, so the figure is the
sum over every thread of the process (workers, sqlx's SQLite thread, the
span export thread, the log writer), for the measured requests only.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

SETTINGS = {
    # what `make bench` calls "instrumented": spans to Zipkin, metrics, info logs
    "instrumented": {},
    "instrumented-warn": {"RUST_LOG": "warn"},
    # the same without exemplars (issue 13: what they cost)
    "instrumented-no-exemplars": {"METRICS_EXEMPLARS": "false"},
    # the same spans over OTLP/HTTP protobuf instead of Zipkin JSON ({sink}: the local sink)
    "instrumented-otlp": {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "{sink}"},
    "uninstrumented": {"OTEL_TRACES_EXPORTER": "none", "METRICS_ENABLED": "false"},
    # one part at a time, to see what each costs
    "traces-only": {"METRICS_ENABLED": "false"},
    "metrics-only": {"OTEL_TRACES_EXPORTER": "none"},
    "uninstrumented-warn": {
        "OTEL_TRACES_EXPORTER": "none",
        "METRICS_ENABLED": "false",
        "RUST_LOG": "warn",
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink(http.server.BaseHTTPRequestHandler):
    """Accepts span batches and forgets them (counts the bytes)."""

    received = 0

    def do_POST(self):  # noqa: N802 (http.server's naming)
        n = int(self.headers.get("content-length", 0))
        Sink.received += len(self.rfile.read(n))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_http(port: int, path: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"port {port}{path} not ready after {limit:.0f} s")


def drive(port: int, count: int) -> None:
    """`count` GET /fast-page on one keep-alive connection, each checked."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        conn.request("GET", "/fast-page")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"/fast-page answered {response.status}: {body[:200]!r}")
    conn.close()


def callgrind_control(flag: str, pid: int) -> None:
    # vgdb names its pipes after $USER and $HOST: the services' environment.
    subprocess.run(
        ["callgrind_control", flag, str(pid)],
        env={"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


def totals(out_prefix: pathlib.Path) -> int:
    """Instructions in the dump requested after the measured requests
    (`<prefix>.<pid>.1`; the file without a number is written at exit)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for dump in out_prefix.parent.glob(out_prefix.name + ".*.1"):
            match = re.search(rb"^totals: (\d+)", dump.read_bytes(), re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.5)
    raise SystemExit(f"no callgrind dump under {out_prefix}")


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(args, name: str, env_extra: dict[str, str], work: pathlib.Path) -> dict:
    back_port, front_port = free_port(), free_port()
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    db_dir = pathlib.Path(tempfile.mkdtemp(dir=work))
    sink_url = f"http://127.0.0.1:{sink.server_port}"
    env_extra = {k: v.replace("{sink}", sink_url) for k, v in env_extra.items()}
    base_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOST": "127.0.0.1",
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{sink_url}/api/v2/spans",
        "RUST_LOG": "info",
    }
    back_env = {
        **base_env,
        "PORT": str(back_port),
        "DATABASE_URL": args.database_url or f"sqlite://{db_dir}/bench.db",
        **env_extra,
    }
    front_env = {
        **base_env,
        "PORT": str(front_port),
        "BUSINESS_LOGIC_URL": f"http://127.0.0.1:{back_port}",
        # valgrind runs code about fifty times slower
        "FAST_PAGE_TIMEOUT_MS": "30000",
        **env_extra,
    }
    procs, prefixes = {}, {}
    for service, binary, env in (
        ("business-logic", args.back, back_env),
        ("front-end", args.front, front_env),
    ):
        command = [str(binary)]
        if not args.rss:
            prefixes[service] = work / f"{name}.{service}.cg"
            command = [
                "valgrind",
                "--tool=callgrind",
                "--vgdb=yes",
                f"--callgrind-out-file={prefixes[service]}.%p",
                *command,
            ]
        log = open(work / f"{name}.{service}.log", "wb")
        procs[service] = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    result = {}
    try:
        wait_http(back_port, "/readyz", 120)
        wait_http(front_port, "/healthz", 120)
        if args.rss:
            time.sleep(1)
            for service, proc in procs.items():
                result[f"{service} idle KiB"] = rss_kib(proc.pid)
        drive(front_port, args.warmup)
        time.sleep(1)  # let the last export batch of the warm-up go out
        if not args.rss:
            for proc in procs.values():
                callgrind_control("-z", proc.pid)
        drive(front_port, args.requests)
        time.sleep(1.5)  # the export thread's batch belongs to these requests
        for service, proc in procs.items():
            if args.rss:
                result[f"{service} loaded KiB"] = rss_kib(proc.pid)
            else:
                callgrind_control("--dump", proc.pid)
                result[service] = totals(prefixes[service]) / args.requests
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = ROOT / "target" / "release"
    parser.add_argument("--front", type=pathlib.Path, default=target / "front-end")
    parser.add_argument("--back", type=pathlib.Path, default=target / "business-logic")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=sorted(SETTINGS),
        default=["instrumented", "instrumented-warn", "uninstrumented", "uninstrumented-warn"],
    )
    parser.add_argument("--rss", action="store_true", help="resident memory instead (no valgrind)")
    parser.add_argument("--keep", action="store_true", help="keep the dumps and logs")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 0 <= args.warmup <= 10_000:
        parser.error("--requests must be 1..100000 and --warmup 0..10000")
    for binary in (args.front, args.back):
        if not binary.exists():
            parser.error(f"{binary} is missing: cargo build --release -p business-logic -p front-end")
    if not args.rss and not shutil.which("valgrind"):
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="instructions-"))
    unit = "KiB" if args.rss else "instructions / fast page"
    print(f"{'setting':<22} {'business-logic':>16} {'front-end':>16}   ({unit})")
    for name in args.settings:
        result = run(args, name, SETTINGS[name], work)
        if args.rss:
            print(
                f"{name:<22} idle {result['business-logic idle KiB']:>6} loaded"
                f" {result['business-logic loaded KiB']:>6}   idle {result['front-end idle KiB']:>6}"
                f" loaded {result['front-end loaded KiB']:>6}"
            )
        else:
            print(f"{name:<22} {result['business-logic']:>16,.0f} {result['front-end']:>16,.0f}")
        sys.stdout.flush()
    if args.keep:
        print(f"dumps and logs in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
