"""The supervisor on small stand-in parts (real processes, a virtual clock for the backoff).

Exits are waited for through the supervisor's own pidfd poll (`step()`), never with sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graylane.runtime.process import start_ticks
from graylane.runtime.supervisor import (
    SUPERVISOR_FILE,
    Part,
    Supervisor,
    previous_log,
    read_status,
    set_aside_kept_snapshot,
)

SLEEPER = "import os, time; print('running', os.getpid(), flush=True); time.sleep(120)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def stand_in(state: Path, spawned: list[subprocess.Popen[bytes]], code: str = SLEEPER,
             name: str = "data-plane") -> Part:
    """A part running `python -c code`, recorded in `<name>.json` as `graylane up` records a daemon."""
    log = state / "logs" / f"{name}.log"

    def start() -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        spawned.append(proc)
        (state / f"{name}.json").write_text(json.dumps({"pid": proc.pid, "ticks": start_ticks(proc.pid) or 0,
                                                       "started": time.time(), "url": ""}))
        return proc

    return Part(name, f"{name}.json", log, start)


def step_until(sup: Supervisor, check: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sup.step(wait=False)
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        sup.poller.poll(200)  # the parts' pidfds: wakes as soon as one exits


def text_of(path: Path, timeout: float = 20) -> str:
    """The log once the process wrote its first line."""
    deadline = time.monotonic() + timeout
    while "running" not in (text := path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"nothing logged in {path}"
        time.sleep(0.02)
    return text


def test_a_killed_part_restarts_at_once_with_its_exit_recorded_and_the_old_log_kept(
        state_dir: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    part = stand_in(state_dir, spawned)
    sup = Supervisor(state_dir, [part], clock=Clock())
    sup.begin()
    sup.step(wait=False)
    first = spawned[0].pid
    assert f"running {first}" in text_of(part.log)
    os.kill(first, signal.SIGKILL)
    step_until(sup, lambda: len(spawned) == 2, "the restart")  # no backoff for a first crash: same step
    second = spawned[1].pid
    assert f"running {second}" in text_of(part.log) and str(first) not in part.log.read_text()
    assert f"running {first}" in previous_log(part.log).read_text()
    rec, parts = read_status(state_dir)
    assert rec is not None and rec.pid == os.getpid()
    assert parts["data-plane"].restarts == 1 and parts["data-plane"].pid == second
    assert parts["data-plane"].last_exit == "killed by signal 9 (SIGKILL)"
    assert parts["data-plane"].last_restart_at >= parts["data-plane"].last_exit_at > 0


def test_a_crash_loop_backs_off_doubling_and_a_stable_run_resets_it(
        state_dir: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    clock = Clock()
    part = stand_in(state_dir, spawned, code="raise SystemExit(3)")
    sup = Supervisor(state_dir, [part], clock=clock)
    slot = sup.slots["data-plane"]
    sup.begin()
    sup.step(wait=False)
    assert len(spawned) == 1
    for wait_s, starts in [(0.0, 2), (1.0, 3), (2.0, 4), (4.0, 5)]:  # at once, then 1 s doubling (30 s cap)
        crashes = slot.status.crash_loop
        step_until(sup, lambda n=crashes: slot.status.crash_loop == n + 1, "the stand-in to exit")
        assert slot.status.last_exit == "exited with code 3"
        if wait_s:  # backing off: not started before its due time, and `graylane status` can say when
            recorded = read_status(state_dir)[1]["data-plane"]
            assert recorded.next_start_at - recorded.last_exit_at == pytest.approx(wait_s, abs=0.05)
            sup.step(wait=False)
            assert len(spawned) == starts - 1 and slot.running is None
            clock.now += wait_s
            sup.step(wait=False)
        assert len(spawned) == starts  # a first crash restarts in the step that saw the exit
    assert slot.status.restarts == 4

    stable = Supervisor(state_dir, [stand_in(state_dir, spawned, name="control-plane")], clock=clock)
    run = stable.slots["control-plane"]
    stable.begin()
    run.status.crash_loop = 6  # deep in a crash loop...
    stable.step(wait=False)
    clock.now += 25  # ...then 25 s of running: past the 20 s reset
    os.kill(spawned[-1].pid, signal.SIGKILL)
    step_until(stable, lambda: run.status.restarts == 1, "the restart after a stable run")
    assert run.status.crash_loop == 1 and run.due_mono is None  # restarted at once


def test_a_new_supervisor_adopts_running_parts_and_keeps_their_history(
        state_dir: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    part = stand_in(state_dir, spawned)
    first = Supervisor(state_dir, [part])
    first.begin()
    first.step(wait=False)
    os.kill(spawned[0].pid, signal.SIGKILL)
    step_until(first, lambda: len(spawned) == 2, "the restart")
    # The first supervisor dies (its record stays behind); `graylane up` starts another.
    second = Supervisor(state_dir, [part])
    second.begin()
    second.step(wait=False)
    assert len(spawned) == 2  # adopted, not started again
    slot = second.slots["data-plane"]
    assert slot.status.restarts == 1 and slot.status.pid == spawned[1].pid
    os.kill(spawned[1].pid, signal.SIGKILL)
    step_until(second, lambda: len(spawned) == 3, "the adopted part's restart")
    assert slot.status.restarts == 2
    assert slot.status.last_exit == "exited (status unknown: adopted process)"  # not its child


def test_sigterm_stops_the_supervisor_alone_and_the_parts_keep_running(state_dir: Path) -> None:
    script = f"""
import json, subprocess, sys, time
from pathlib import Path
from graylane.runtime.process import start_ticks
from graylane.runtime.supervisor import Part, Supervisor
state = Path({str(state_dir)!r})
def start():
    proc = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], start_new_session=True)
    record = {{"pid": proc.pid, "ticks": start_ticks(proc.pid), "started": time.time()}}
    (state / "dp.json").write_text(json.dumps(record))
    return proc
Supervisor(state, [Part("data-plane", "dp.json", state / "dp.log", start)]).run()
"""
    sup = subprocess.Popen([sys.executable, "-c", script])
    part_pid = 0
    try:
        deadline = time.monotonic() + 20
        while not (part_pid := read_status(state_dir)[1].get("data-plane", None) and
                   read_status(state_dir)[1]["data-plane"].pid):
            assert sup.poll() is None and time.monotonic() < deadline, "the supervisor never started its part"
            time.sleep(0.02)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(10) == 0
        assert start_ticks(part_pid) is not None  # still running: nothing stops or restarts it
        assert not (state_dir / SUPERVISOR_FILE).exists()
    finally:
        if sup.poll() is None:
            sup.kill()
        if part_pid:
            os.kill(part_pid, signal.SIGKILL)


def test_a_data_plane_crashing_three_times_in_a_row_starts_without_its_kept_snapshot(state_dir: Path) -> None:
    kept = state_dir / "dataplane" / "proxy-snapshot.json"
    kept.parent.mkdir()
    kept.write_text('{"version": 7}')
    set_aside_kept_snapshot(state_dir, 2)
    assert kept.exists()
    set_aside_kept_snapshot(state_dir, 3)
    assert not kept.exists() and kept.with_name("proxy-snapshot.json.crashed").read_text() == '{"version": 7}'


def test_a_warm_standby_data_plane_serves_once_activated(state_dir: Path) -> None:
    from tests.conftest import free_port

    from graylane.runtime import daemons
    from graylane.runtime.socket_keeper import SocketKeeper
    from graylane.runtime.standby import Standby

    admin = free_port()
    standby = Standby(daemons.data_plane_argv(state_dir, admin), os.environ)
    standby.maintain(data_plane_ran_s=0.5)
    assert standby.proc is None  # not while the active data plane is still starting
    standby.maintain(data_plane_ran_s=5)
    assert standby.proc is not None
    keeper = SocketKeeper()
    env, fds, theirs = keeper.spawn_args()
    log = state_dir / "dataplane.log"
    proc = standby.activate(log, env, fds)
    theirs.close()
    assert proc is not None and standby.proc is None
    try:
        deadline = time.monotonic() + 30
        while "data plane admin on" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert f"(warm standby pid {proc.pid})" in log.read_text()
    finally:
        proc.kill()
        proc.wait(10)
        keeper.close()
    standby.maintain(data_plane_ran_s=5)
    assert standby.proc is not None
    standby.discard()  # the supervisor stops: so does its standby
    assert standby.proc is None


HEALTHY = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('content-length', '2'); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
server = http.server.HTTPServer(('127.0.0.1', PORT), H)
server.allow_reuse_address = True
print('running', os.getpid(), flush=True)
server.serve_forever()
"""


def test_a_hung_part_is_killed_by_its_liveness_check_and_restarted(
        state_dir: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    """A part that stops answering without exiting (SIGSTOP: alive, silent) fails its liveness check and is
    restarted as after a crash, its last exit saying why; while it answers, nothing happens to it."""
    from tests.prometheus_server import free_port

    from graylane.runtime.supervisor import Liveness

    port = free_port()
    part = stand_in(state_dir, spawned, HEALTHY.replace("PORT", str(port)))
    check = Liveness(f"http://127.0.0.1:{port}/healthz", period_s=0.1, timeout_s=0.3, failure_threshold=3,
                     initial_delay_s=0.0)
    sup = Supervisor(state_dir, [Part(part.name, part.record_file, part.log, part.start, liveness=check)],
                     clock=Clock())
    sup.begin()
    try:
        sup.step(wait=False)
        first = spawned[0].pid
        assert f"running {first}" in text_of(part.log)
        prober = sup.slots["data-plane"].prober
        assert prober is not None
        step_until(sup, lambda: prober.pid == first and prober.misses == 0 and prober.last_error == "",
                   "the first answered check")
        deadline = time.monotonic() + 1.0  # ten periods of answered checks: the part is left alone
        while time.monotonic() < deadline:
            sup.step(wait=False)
            sup.poller.poll(50)
        assert len(spawned) == 1
        os.kill(first, signal.SIGSTOP)  # hangs: the process is there, the port accepts, nothing answers
        step_until(sup, lambda: len(spawned) == 2, "the restart after the failed liveness checks")
        assert spawned[0].wait(10) == -signal.SIGKILL
        _, parts = read_status(state_dir)
        assert parts["data-plane"].restarts == 1 and parts["data-plane"].pid == spawned[1].pid
        assert parts["data-plane"].last_exit.startswith(
            f"killed after 3 failed liveness checks (http://127.0.0.1:{port}/healthz: "), parts["data-plane"].last_exit
    finally:
        for slot in sup.slots.values():
            if slot.prober is not None:
                slot.prober.stop()
