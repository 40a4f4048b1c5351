"""`make run` and scripts/run-local.sh: the real services, built by cargo, on
free loopback ports, stopped the way a terminal's Ctrl-C stops them (SIGINT to
the whole process group) while slow pages are in flight."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from local_support import REPO, Collector, build_services, cargo_target_dir, free_port, wait_until

# Each stop must drain the in-flight slow pages within 40 s (and a second Ctrl-C within the
# page's delay): bounds for a machine that runs nothing else, so these run alone (tests/conftest.py).
pytestmark = pytest.mark.serial

SLOW_DELAY_MS = 1500
IN_FLIGHT = 3
ID = re.compile(r'<code id="trace-id">([0-9a-f]{32})</code>')


# Ctrl-C reaches a terminal job with SIGINT at its default. A background job of a non-interactive
# shell (`cmd &` in a CI script) starts with SIGINT ignored, which its children inherit and a shell
# cannot trap, so make run's script would never hear the Ctrl-C these tests send. A handled signal
# is reset to the default in a child, so handling it here gives every child a terminal's SIGINT.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Run:
    """`make run` (or the script alone) in a process group of its own, like a terminal job."""

    def __init__(self, args: list[str], tmp: Path, collector: Collector, **extra: str) -> None:
        self.fe_port, self.bl_port = free_port(), free_port()
        self.log = tmp / "run.log"
        env = {**os.environ, "FRONT_END_PORT": str(self.fe_port), "BUSINESS_LOGIC_PORT": str(self.bl_port),
               **collector.env(), "OTEL_BSP_SCHEDULE_DELAY": "60000",
               "DATABASE_URL": f"sqlite://{tmp / 'business-logic.db'}", "RUST_LOG": "info", **extra}
        # The services' own exporter choice and OTLP path, as make run gives them.
        for name in ("MAKEFLAGS", "MAKELEVEL", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            if name not in extra:
                env.pop(name, None)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.fe_port}{path}"

    def wait_ready(self) -> None:
        wait_until(lambda: f"Open http://localhost:{self.fe_port}/" in self.output() or self.proc.poll() is not None,
                   120, "make run to print the front-end's address")
        assert self.proc.poll() is None, self.output()

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def suggested(port: int) -> int:
    """The port make run suggests instead of a taken one: 1000 away (8080: 9080)."""
    return port + 1000 if port < 64535 else port - 1000


@pytest.fixture(scope="module")
def built():
    build_services()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def slow_page_into(run: Run, results: list) -> threading.Thread:
    """A slow page fetched by a thread (not started), its (status, body) appended to results: status None
    and the exception's text when it failed."""

    def fetch():
        try:
            with urllib.request.urlopen(run.url(f"/slow-page?delay_ms={SLOW_DELAY_MS}"), timeout=30) as r:
                results.append((r.status, r.read().decode()))
        except Exception as e:  # noqa: BLE001 (reported by the callers' assertions)
            results.append((None, repr(e)))

    return threading.Thread(target=fetch)


def slow_pages_in_flight(run: Run) -> tuple[list, list[threading.Thread]]:
    results: list = []
    threads = [slow_page_into(run, results) for _ in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    time.sleep(SLOW_DELAY_MS / 3000)  # all of them inside data_transformation by now
    return results, threads


def assert_drained(run: Run, results: list, threads: list[threading.Thread], collector: Collector) -> None:
    for t in threads:
        t.join(timeout=30)
    output = run.output()
    assert [status for status, _ in results] == [200] * IN_FLIGHT, f"{results}\n{output}"
    for _, body in results:
        trace_id = ID.search(body).group(1)
        # Spans are flushed on the way out (the batch delay is 60 s, so only the shutdown sends them).
        wait_until(lambda: collector.services_of(trace_id) >= {"front-end", "business-logic"}, 10,
                   f"the spans of {trace_id} from both services")
    assert "stopping: SIGTERM to business-logic and front-end" in output
    assert "business-logic stopped (exit 0)" in output and "front-end stopped (exit 0)" in output
    assert "both services stopped cleanly" in output
    assert "forced shutdown" not in output, output
    # The notice comes before the services stop, not after.
    assert output.index("stopping:") < output.index("business-logic stopped")


def test_the_script_drains_slow_pages_on_ctrl_c_and_exits_0(built, tmp_path, collector):
    run = Run(["scripts/run-local.sh"], tmp_path, collector, BIN_DIR=str(cargo_target_dir() / "debug"))
    try:
        run.wait_ready()
        results, threads = slow_pages_in_flight(run)
        run.ctrl_c()
        assert run.proc.wait(timeout=40) == 0, run.output()
        assert_drained(run, results, threads, collector)
    finally:
        run.stop()


def test_make_run_drains_slow_pages_on_ctrl_c_and_reports_no_error(built, tmp_path, collector):
    run = Run(["make", "run"], tmp_path, collector)
    try:
        run.wait_ready()
        assert "==> building business-logic and front-end" in run.output()
        results, threads = slow_pages_in_flight(run)
        run.ctrl_c()
        code = run.proc.wait(timeout=40)
        assert_drained(run, results, threads, collector)
        output = run.output()
        assert "Error" not in output and "Interrupt" not in output, output
        # The recipe ends with status 0; GNU make itself then re-raises the SIGINT
        # it got from the terminal (it always does), so its own status is 0 or
        # "killed by SIGINT" (130 in a shell), never an error.
        assert code in (0, -signal.SIGINT), (code, output)
    finally:
        run.stop()


def test_ctrl_c_after_a_fast_page_still_answers_the_slow_page(built, tmp_path, collector):
    """The newcomer's steps: one fast page, then a slow page, then Ctrl-C while it is in flight.

    The fast page leaves an idle connection to business-logic behind on the worker that served it; the
    slow page comes in on another connection, which actix-web gives to the next worker. Were the
    front-end's connections to business-logic shared by its workers, the slow page would borrow that
    idle one, and the first worker, with nothing in flight, would stop at once on Ctrl-C and take the
    connection with it: a 502 "business-logic is unreachable". Two workers make the crossing certain."""
    run = Run(["make", "run"], tmp_path, collector, WORKERS="2")
    try:
        run.wait_ready()
        with urllib.request.urlopen(run.url("/fast-page"), timeout=30) as fast:
            assert fast.status == 200
        results: list = []
        thread = slow_page_into(run, results)
        thread.start()
        wait_until(lambda: "applying the deliberate delay" in run.output(), 10, "the slow page's delay")
        run.ctrl_c()
        thread.join(timeout=30)
        code = run.proc.wait(timeout=40)
        output = run.output()
        assert [status for status, _ in results] == [200], f"{results}\n{output}"
        trace_id = ID.search(results[0][1]).group(1)
        wait_until(lambda: collector.services_of(trace_id) >= {"front-end", "business-logic"}, 10,
                   f"the spans of {trace_id} from both services")
        assert "unreachable" not in output, output
        assert code in (0, -signal.SIGINT), (code, output)
    finally:
        run.stop()


def test_make_run_stopped_with_sigterm_exits_0(built, tmp_path, collector):
    """A process manager's SIGTERM to make alone: make passes it on; all exit 0."""
    run = Run(["make", "run"], tmp_path, collector)
    try:
        run.wait_ready()
        results, threads = slow_pages_in_flight(run)
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(timeout=40)
        assert_drained(run, results, threads, collector)
        assert code in (0, -signal.SIGTERM), (code, run.output())
    finally:
        run.stop()


def test_a_second_ctrl_c_forces_the_stop(built, tmp_path, collector):
    run = Run(["scripts/run-local.sh"], tmp_path, collector, BIN_DIR=str(cargo_target_dir() / "debug"))
    try:
        run.wait_ready()
        results, threads = slow_pages_in_flight(run)
        started = time.monotonic()
        run.ctrl_c()
        wait_until(lambda: "stopping:" in run.output(), 5, "the stop notice")
        run.ctrl_c()
        code = run.proc.wait(timeout=10)
        assert time.monotonic() - started < SLOW_DELAY_MS / 1000, "the second Ctrl-C did not force the stop"
        assert "forcing the stop" in run.output()
        assert code != 0, run.output()
        for t in threads:
            t.join(timeout=10)
    finally:
        run.stop()


def test_make_run_without_cargo_says_how_to_get_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "make", "sed", "head", "env", "awk"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = subprocess.run(["make", "run"], cwd=REPO, env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr  # make's status for a failed recipe
    assert "Rust 1.89 or newer" in result.stderr and "https://rustup.rs" in result.stderr
    assert "Error 127" not in result.stderr and "command not found" not in result.stderr


def test_when_one_service_fails_the_script_stops_the_other_and_says_why(built, tmp_path, collector):
    """business-logic dies (SIGKILL) while both run: the script reports it, stops the front-end, exits non-zero."""
    run = Run(["scripts/run-local.sh"], tmp_path, collector, BIN_DIR=str(cargo_target_dir() / "debug"))
    try:
        run.wait_ready()
        pid = re.search(r"starting business-logic on \S+ \(pid (\d+)\)", run.output())
        assert pid, run.output()
        os.kill(int(pid.group(1)), signal.SIGKILL)
        code = run.proc.wait(timeout=40)
        output = run.output()
        assert code != 0, output
        assert "business-logic exited with status 137" in output, output
        assert "stopping the other service" in output and "front-end stopped (exit 0)" in output, output
        assert "both services stopped cleanly" not in output
    finally:
        run.stop()


def test_a_bind_failure_under_make_run_names_port_and_the_make_variable_without_a_backtrace(built, tmp_path,
                                                                                          collector):
    """A socket bound to business-logic's port but not listening passes the check (nothing accepts there),
    then business-logic's own bind fails: one line from the service naming PORT, no backtrace even with
    RUST_BACKTRACE=1, then the script's line naming BUSINESS_LOGIC_PORT; exit non-zero, never "Open"."""
    import socket

    with socket.socket() as held:  # no SO_REUSEADDR: the service's bind conflicts with it
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        run = Run(["scripts/run-local.sh"], tmp_path, collector, BIN_DIR=str(cargo_target_dir() / "debug"),
                  BUSINESS_LOGIC_PORT=str(port), RUST_BACKTRACE="1")
        try:
            code = run.proc.wait(timeout=40)
            output = run.output()
            assert code == 1, output
            assert (f"business-logic: cannot listen on 127.0.0.1:{port} (HOST=127.0.0.1, PORT={port}): "
                    f"Address already in use") in output, output
            assert f"its port is BUSINESS_LOGIC_PORT={port})" in output, output
            assert "backtrace" not in output.lower() and "Caused by" not in output, output
            assert "Open http" not in output and "front-end stopped (exit 0)" in output, output
        finally:
            run.stop()


class Intruder:
    """Another program on a port: an HTTP server that answers 200 to every GET, /readyz included."""

    def __init__(self, port: int = 0) -> None:
        class Answer(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_port_held_by_another_program_stops_make_run_before_anything_starts(built, tmp_path, collector):
    """What a newcomer met: another program answered /readyz on 8080, make run said "Open …" and then the
    front-end failed to bind. Now make run checks both ports first and says which variable to change."""
    intruder = Intruder()
    try:
        run = Run(["make", "run"], tmp_path, collector, FRONT_END_PORT=str(intruder.port))
        try:
            code = run.proc.wait(timeout=60)
            output = run.output()
            assert code != 0, output
            assert f"Port {intruder.port} (FRONT_END_PORT) is taken by another program" in output, output
            assert f"make run FRONT_END_PORT={suggested(intruder.port)}" in output, output
            assert "Open http" not in output, output
            assert "starting" not in output and "backtrace" not in output, output
            assert "==> building" not in output, "checked before the build"
            assert f"Port {run.bl_port} (BUSINESS_LOGIC_PORT)" not in output, "that port is free"
        finally:
            run.stop()
    finally:
        intruder.close()


def test_an_answer_from_another_program_on_a_services_port_is_not_taken_for_it(built, tmp_path, collector):
    """Another program takes the front-end's port after the check and answers /readyz there, while the
    front-end (a stand-in that never listens) runs: the script says so and exits 1, never "Open …"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "business-logic").symlink_to(cargo_target_dir() / "debug" / "business-logic")
    stand_in = bin_dir / "front-end"
    stand_in.write_text("#!/bin/sh\nexec sleep 60\n")
    stand_in.chmod(0o755)
    run = Run(["scripts/run-local.sh"], tmp_path, collector, BIN_DIR=str(bin_dir))
    intruder = None
    try:
        wait_until(lambda: "starting front-end" in run.output() or run.proc.poll() is not None, 30,
                   "the script to start the front-end")
        intruder = Intruder(run.fe_port)
        code = run.proc.wait(timeout=40)
        output = run.output()
        assert code == 1, output
        assert re.search(rf"front-end \(pid \d+\) does not listen on port {run.fe_port}", output), output
        assert f"make run FRONT_END_PORT={suggested(run.fe_port)}" in output, output
        assert "Open http" not in output, output
    finally:
        run.stop()
        if intruder:
            intruder.close()
