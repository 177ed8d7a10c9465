"""The supervisor `graylane up` starts: keeps the data plane and the control plane running.

A small process of its own (`python -m graylane.runtime.supervisor`), so restarting either part depends
on neither of them being alive. It starts each part (or adopts one already running, identified by the
pid and kernel start time in its record), notices an exit at once (a pidfd; a 0.2 s poll where there
is none), moves the dead run's log to `<part>.previous.log`, and starts the part again after a backoff:
the first restart is immediate, then 1 s doubling to a 30 s cap, reset after 20 s of running. It keeps
the data plane's listening sockets (`socket_keeper.py`), so connections arriving while the data plane is
dead wait for the next one instead of being refused, and a warm standby data plane (`standby.py`), so the
next one is already started and has its imports done.

A part that hangs without exiting is found by its liveness check, as a kubelet's livenessProbe: its health
URL (the data plane's admin `/ready`, the control plane's `/healthz`) is asked every 10 s from a thread of its
own; three unanswered in a row (5 s each) and the part is SIGKILLed and restarted as after a crash, its last exit
saying why.

Restarts are recorded in `<state>/supervisor.json` (count, last exit, last restart time) for
`graylane status`. From its third crash in a row the data plane starts without its kept snapshot (it
may be what crashes it) and waits for the control plane's push. SIGTERM/SIGINT stop the supervisor
alone: the parts keep running, so `graylane down` stops it first and nothing is restarted while the
parts are being stopped. SIGHUP starts a part waiting out its backoff at once (`graylane up` sends it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graylane.dataplane_contract import SNAPSHOT_FILE
from graylane.runtime import daemons
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.process import start_ticks
from graylane.runtime.socket_keeper import SocketKeeper
from graylane.runtime.standby import Standby

log = logging.getLogger("graylane.supervisor")

SUPERVISOR_FILE = "supervisor.json"
DATA_PLANE, CONTROL_PLANE = "data-plane", "control-plane"
# Daemons restart faster than kubelet restarts containers: traffic waits on the data plane.
DAEMON_BACKOFF = BackoffPolicy(initial_s=1.0, cap_s=30.0, reset_after_s=20.0)
POLL_WITHOUT_PIDFD_S = 0.2
CRASHES_BEFORE_SETTING_ASIDE = 3


def describe_exit(returncode: int | None) -> str:
    """What `graylane status` says about a part's last exit.

    >>> describe_exit(-9), describe_exit(3), describe_exit(None)
    ('killed by signal 9 (SIGKILL)', 'exited with code 3', 'exited (status unknown: adopted process)')
    """
    if returncode is None:
        return "exited (status unknown: adopted process)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


@dataclass(frozen=True)
class Liveness:
    """A part's liveness check: GET `url` every `period_s`, answered (any status below 500) within `timeout_s`,
    from `initial_delay_s` after the process started; `failure_threshold` misses in a row kill it."""

    url: str
    period_s: float = 10.0
    timeout_s: float = 5.0
    failure_threshold: int = 3
    initial_delay_s: float = 30.0


@dataclass(frozen=True)
class Part:
    """One supervised process: how to start it and where its record and log live."""

    name: str  # DATA_PLANE | CONTROL_PLANE
    record_file: str  # pid file in the state folder (written by `start`)
    log: Path
    start: Callable[[], subprocess.Popen[bytes]]
    on_crash: Callable[[int], None] | None = None  # called with the consecutive-crash count before a restart
    while_running: Callable[[float], None] | None = None  # called every step with the seconds it has run
    close: Callable[[], None] | None = None  # called when the supervisor stops
    liveness: Liveness | None = None


class _Prober:
    """Asks one part's liveness URL from a daemon thread (a hung part must not stall the supervisor's loop);
    the loop reads `misses` for the pid it saw and acts."""

    def __init__(self, check: Liveness, running: Callable[[], int | None]) -> None:
        self.check = check
        self.running = running  # the pid of the part's current process, or None
        self.pid = 0
        self.misses = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        since = time.monotonic()
        while not self._stop.wait(self.check.period_s):
            pid = self.running()
            if pid != self.pid:  # a new process (or none): its initial delay starts now
                self.pid, self.misses, since = pid or 0, 0, time.monotonic()
                continue
            if not pid or time.monotonic() - since < self.check.initial_delay_s:
                continue
            try:
                with self._opener.open(self.check.url, timeout=self.check.timeout_s) as resp:
                    resp.read(4096)
                self.misses = 0
            except urllib.error.HTTPError as exc:
                self.misses = 0 if exc.code < 500 else self.misses + 1
                self.last_error = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                self.misses += 1
                self.last_error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__


@dataclass
class PartStatus:
    """What `supervisor.json` records per part."""

    pid: int = 0
    restarts: int = 0
    last_exit: str = ""
    last_exit_at: float = 0.0
    last_restart_at: float = 0.0
    next_start_at: float = 0.0  # wall clock of a pending (backed-off) start, 0 when none
    crash_loop: int = 0  # consecutive crashes, for the backoff


@dataclass
class _Running:
    pid: int
    ticks: int
    started_mono: float
    popen: subprocess.Popen[bytes] | None = None  # None for an adopted process (no exit status)
    pidfd: int | None = None


@dataclass
class _Slot:
    part: Part
    status: PartStatus = field(default_factory=PartStatus)
    running: _Running | None = None
    due_mono: float | None = 0.0  # when to start; None while running
    prober: _Prober | None = None
    killed_because: str = ""  # the liveness check's verdict, reported as the exit's reason


def previous_log(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".log") + ".previous.log")


class Supervisor:
    def __init__(self, state: Path, parts: list[Part], policy: BackoffPolicy = DAEMON_BACKOFF,
                 clock: Callable[[], float] = time.monotonic, keeper: SocketKeeper | None = None) -> None:
        self.state = state
        self.policy = policy
        self.clock = clock
        self.slots = {p.name: _Slot(p) for p in parts}
        for slot in self.slots.values():
            if slot.part.liveness is not None:
                slot.prober = _Prober(slot.part.liveness,
                                      lambda s=slot: s.running.pid if s.running is not None else None)
        self.poller = select.poll()
        self.keeper = keeper  # the data plane's listening sockets, kept across its restarts
        if keeper is not None:
            keeper.attach(self.poller)
        self.stopping = False
        self.nudged = False
        self.started = time.time()
        self._restore_counts()

    # -- signals (handlers only record) ----------------------------------------------------------------
    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, _frame: Any) -> None:
        self.nudged = True

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT; the parts keep running after it returns."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.poller.register(wake_r, select.POLLIN)
        self.begin()
        try:
            while not self.stopping:
                self.step()
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
        finally:
            signal.set_wakeup_fd(-1)
            for slot in self.slots.values():
                if slot.prober is not None:
                    slot.prober.stop()
                if slot.part.close is not None:
                    slot.part.close()
            if self.keeper is not None:
                self.keeper.close()
            with contextlib.suppress(FileNotFoundError):
                (self.state / SUPERVISOR_FILE).unlink()
            log.info("supervisor stopping; the parts keep running")

    def begin(self) -> None:
        """Adopt the parts already running (the others start on the first step) and write the record."""
        for slot in self.slots.values():
            self._adopt(slot)
            if slot.prober is not None:
                slot.prober.start()
        self._write()

    def step(self, wait: bool = True) -> None:
        """Reap what exited, start what is due (a first crash: in the same step), record changes; then (`wait`)
        sleep until the next event: an exit (pidfd), a message from the data plane, a signal, a due start."""
        if self.nudged:
            self.nudged = False
            for slot in self.slots.values():
                if slot.running is None:
                    slot.due_mono = self.clock()
        self._kill_unresponsive()
        if self._reap() | self._start_due():
            self._write()
        for slot in self.slots.values():
            if slot.running is not None and slot.part.while_running is not None:
                slot.part.while_running(self.clock() - slot.running.started_mono)
        if wait:
            for fd, _event in self.poller.poll(self._timeout_ms()):
                if self.keeper is not None and self.keeper.owns(fd):
                    self.keeper.drain()

    def _kill_unresponsive(self) -> None:
        """SIGKILL a part whose liveness check failed `failure_threshold` times in a row; the reap restarts it."""
        for slot in self.slots.values():
            probe, run = slot.prober, slot.running
            if probe is None or run is None or probe.pid != run.pid or not slot.part.liveness \
                    or probe.misses < slot.part.liveness.failure_threshold:
                continue
            check = slot.part.liveness
            slot.killed_because = (f"killed after {probe.misses} failed liveness checks ({check.url}: "
                                   f"{probe.last_error or 'no answer'} within {check.timeout_s:g}s)")
            probe.misses = 0
            log.warning("%s: pid %s %s", slot.part.name, run.pid, slot.killed_because)
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGKILL)

    def _timeout_ms(self) -> int:
        now = self.clock()
        waits = [max(0.0, s.due_mono - now) for s in self.slots.values() if s.due_mono is not None]
        if any(s.running is not None and s.running.pidfd is None for s in self.slots.values()):
            waits.append(POLL_WITHOUT_PIDFD_S)
        return int(min([1.0, *waits]) * 1000) + 1

    def _adopt(self, slot: _Slot) -> None:
        rec = daemons.read_daemon(self.state, slot.part.record_file, slot.part.name)
        if rec is None or not rec.running:
            return
        slot.running = _Running(rec.pid, rec.ticks, self.clock() - rec.uptime_s, None, self._pidfd(rec.pid))
        slot.due_mono = None
        slot.status.pid = rec.pid
        log.info("%s: adopted running pid %s", slot.part.name, rec.pid)

    def _pidfd(self, pid: int) -> int | None:
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return None
        self.poller.register(fd, select.POLLIN)
        return fd

    def _start_due(self) -> bool:
        changed = False
        now = self.clock()
        for slot in self.slots.values():
            if slot.running is not None or slot.due_mono is None or slot.due_mono > now:
                continue
            changed = True
            restart = bool(slot.status.last_exit)
            try:
                popen = slot.part.start()
            except OSError as exc:  # e.g. the interpreter vanished: keep backing off, say why
                log.error("%s: cannot start: %s", slot.part.name, exc)
                self._schedule(slot, now, f"could not start: {exc}", ran_s=0.0)
                continue
            slot.running = _Running(popen.pid, start_ticks(popen.pid) or 0, now, popen, self._pidfd(popen.pid))
            slot.due_mono = None
            slot.status.pid = popen.pid
            slot.status.next_start_at = 0.0
            if restart:
                slot.status.restarts += 1
                slot.status.last_restart_at = time.time()
            log.info("%s: %s pid %s", slot.part.name, "restarted as" if restart else "started", popen.pid)
        return changed

    def _reap(self) -> bool:
        changed = False
        now = self.clock()
        for slot in self.slots.values():
            run = slot.running
            if run is None:
                continue
            if run.popen is not None:
                code = run.popen.poll()
                if code is None:
                    continue
                reason = describe_exit(code)
            elif start_ticks(run.pid) == run.ticks:
                continue
            else:
                reason = describe_exit(None)
            if run.pidfd is not None:
                self.poller.unregister(run.pidfd)
                os.close(run.pidfd)
            if slot.killed_because:
                reason, slot.killed_because = slot.killed_because, ""
            slot.running = None
            changed = True
            self._rotate_log(slot.part.log)
            self._schedule(slot, now, reason, ran_s=now - run.started_mono)
            if slot.part.on_crash is not None:
                slot.part.on_crash(slot.status.crash_loop)
        return changed

    def _schedule(self, slot: _Slot, now: float, reason: str, ran_s: float) -> None:
        slot.status.crash_loop = self.policy.next_crash_count(slot.status.crash_loop, ran_s)
        delay = self.policy.delay_s(slot.status.crash_loop)
        slot.due_mono = now + delay
        slot.status.last_exit = reason
        slot.status.last_exit_at = time.time()
        slot.status.next_start_at = time.time() + delay if delay else 0.0
        log.warning("%s: pid %s %s after %.1fs; restarting in %gs", slot.part.name, slot.status.pid, reason,
                    ran_s, delay)

    @staticmethod
    def _rotate_log(path: Path) -> None:
        """The dead run's log becomes `<part>.previous.log` (`graylane logs PART --previous`)."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, previous_log(path))

    # -- the record ------------------------------------------------------------------------------------
    def _restore_counts(self) -> None:
        """A supervisor restarted by `graylane up` keeps the restart history of the one before it."""
        try:
            old = json.loads((self.state / SUPERVISOR_FILE).read_text())
        except (OSError, ValueError):
            return
        for name, data in (old.get("parts") or {}).items():
            if name in self.slots and isinstance(data, dict):
                known = {k: v for k, v in data.items() if k in PartStatus.__dataclass_fields__}
                self.slots[name].status = PartStatus(**{**known, "pid": 0, "next_start_at": 0.0})

    def _write(self) -> None:
        data = {"pid": os.getpid(), "ticks": start_ticks(os.getpid()) or 0, "started": self.started, "url": "",
                "parts": {name: asdict(slot.status) for name, slot in self.slots.items()}}
        tmp = self.state / (SUPERVISOR_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state / SUPERVISOR_FILE)


def read_status(state: Path) -> tuple[daemons.Daemon | None, dict[str, PartStatus]]:
    """The supervisor's record (None when there is none) and the restart history of each part."""
    rec = daemons.read_daemon(state, SUPERVISOR_FILE, "supervisor")
    parts: dict[str, PartStatus] = {}
    if rec is not None:
        for name, data in (rec.info.get("parts") or {}).items():
            if isinstance(data, dict):
                parts[name] = PartStatus(**{k: v for k, v in data.items() if k in PartStatus.__dataclass_fields__})
    return rec, parts


def set_aside_kept_snapshot(state: Path, crashes: int) -> None:
    """A data plane that keeps crashing may be crashing on the snapshot it restores: from the third crash in a
    row it starts without it (kept as `proxy-snapshot.json.crashed`) and waits for the control plane's push."""
    kept = state / "dataplane" / SNAPSHOT_FILE
    if crashes >= CRASHES_BEFORE_SETTING_ASIDE and kept.exists():
        os.replace(kept, kept.with_name(SNAPSHOT_FILE + ".crashed"))
        log.warning("data-plane: %d crashes in a row; it starts without its kept snapshot (moved to %s)",
                    crashes, kept.with_name(SNAPSHOT_FILE + ".crashed"))


def standard_parts(state: Path, admin_port: int, host: str | None, port: int | None,
                   keeper: SocketKeeper | None = None) -> list[Part]:
    """The data plane, and the control plane unless it runs in a terminal (`graylane up --foreground`)."""
    logs = state / "logs"
    standby = Standby(daemons.data_plane_argv(state, admin_port), os.environ) if keeper is not None else None

    def start_data_plane() -> subprocess.Popen[bytes]:
        if keeper is None or standby is None:
            return daemons.start_data_plane(state, admin_port)
        env, fds, theirs = keeper.spawn_args()
        try:
            proc = standby.activate(logs / "dataplane.log", env, fds)
            if proc is None:
                return daemons.start_data_plane(state, admin_port, {**os.environ, **env}, fds)
            daemons.record_data_plane(state, proc, admin_port)
            return proc
        finally:
            theirs.close()

    parts = [Part(DATA_PLANE, daemons.DATAPLANE_FILE, logs / "dataplane.log", start_data_plane,
                  on_crash=lambda crashes: set_aside_kept_snapshot(state, crashes),
                  while_running=standby.maintain if standby else None,
                  close=standby.discard if standby else None,
                  liveness=Liveness(f"http://127.0.0.1:{admin_port}/ready", initial_delay_s=10.0))]
    if host is not None and port is not None:
        ask = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
        parts.append(Part(CONTROL_PLANE, daemons.SERVER_FILE, logs / "server.log",
                          lambda: daemons.start_control_plane(state, host, port),
                          liveness=Liveness(f"http://{ask}:{port}/healthz")))
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graylane.runtime.supervisor", description=__doc__)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--host", default=None, help="control plane bind address (omit: no control plane)")
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = Path(args.state_dir)
    keeper = SocketKeeper()
    Supervisor(state, standard_parts(state, args.admin_port, args.host, args.port, keeper), keeper=keeper).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
