"""Replica processes: start in their own session, identify by pid + start time, stop with grace.

A control plane that restarts re-adopts a process when its recorded pid still runs with the same
kernel start time (so a recycled pid is never mistaken for our replica). Knows nothing of Deployments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from graylane.runtime import exit_record

LOG_MAX_BYTES = 10 * 1024 * 1024


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks (field 22 of /proc/PID/stat), None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass
class PodRecord:
    """What survives a control-plane restart, one JSON file per pod in the state folder."""

    namespace: str
    name: str
    deployment: str
    template_hash: str
    labels: dict[str, str]
    port: int
    sidecar_port: int
    container_port: int
    service_account: str = "default"
    grace_s: float = 30.0  # the pod's terminationGracePeriodSeconds
    pid: int = 0
    ticks: int = 0
    created: float = field(default_factory=time.time)
    started: float = 0.0
    restarts: int = 0
    crashes: int = 0
    last_exit: str = ""
    container: str = ""  # the main container's name
    init_total: int = 0  # the pod's init containers...
    init_done: int = 0  # ...of which this many exited 0; while fewer, `pid` is init container number `init_done`

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class RecordStore:
    """`<state>/runtime/pods/<namespace>__<pod>.json`, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root / "runtime" / "pods"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, namespace: str, name: str) -> Path:
        return self.root / f"{namespace}__{name}.json"

    def save(self, rec: PodRecord) -> None:
        path = self._path(rec.namespace, rec.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec), sort_keys=True))
        os.replace(tmp, path)

    def remove(self, rec: PodRecord) -> None:
        for path in (self._path(rec.namespace, rec.name), self.exit_path(rec)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def exit_path(self, rec: PodRecord) -> Path:
        """Where the running init container's exit is recorded (graylane.runtime.exit_record)."""
        return self.root / f"{rec.namespace}__{rec.name}.exit"

    def load_all(self) -> list[PodRecord]:
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                out.append(PodRecord(**json.loads(path.read_text())))
            except (ValueError, TypeError, OSError):
                path.unlink(missing_ok=True)
        return out


def log_path(state: Path, namespace: str, pod: str, *, previous: bool = False) -> Path:
    folder = state / "logs" / "pods" / namespace
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (f"{pod}.previous.log" if previous else f"{pod}.log")


def init_log_path(state: Path, namespace: str, pod: str, container: str) -> Path:
    """An init container's log (every run of it, appended): `<pod>.<container>.init.log`."""
    return log_path(state, namespace, pod).with_name(f"{pod}.{container}.init.log")


def rotate_if_large(path: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
    """Copy-truncate: the process keeps its O_APPEND descriptor, older lines move to `.1`."""
    try:
        if path.stat().st_size <= max_bytes:
            return
    except FileNotFoundError:
        return
    shutil.copyfile(path, path.with_suffix(".log.1"))
    with open(path, "r+b") as fh:
        fh.truncate(0)


class Process:
    """One running container process (our child, or an adopted orphan)."""

    def __init__(self, pid: int, ticks: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.ticks = ticks
        self._popen = popen

    @classmethod
    def spawn(cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None, log: Path,
              exit_to: Path | None = None) -> Process:
        """Start in a new session so it outlives the control plane; stdout+stderr append to `log`.

        `exit_to`: run it through graylane.runtime.exit_record, which writes its exit there (readable by a control
        plane that re-adopted it, which cannot wait for it)."""
        with open(log, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} starting: "
                      f"{' '.join(argv)}\n".encode())
            out.flush()
            if exit_to is not None:
                exit_record.clear(exit_to)
            command = exit_record.wrapped(argv, exit_to) if exit_to is not None else list(argv)
            popen = subprocess.Popen(command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(popen.pid, start_ticks(popen.pid) or 0, popen)

    @classmethod
    def adopt(cls, pid: int, ticks: int) -> Process | None:
        """The recorded process if it still runs as the same process, else None."""
        if pid <= 0 or start_ticks(pid) != ticks:
            return None
        return cls(pid, ticks)

    def watch(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[], None]) -> None:
        """Call `on_exit()` in `loop` as soon as the process exits (a pidfd; no-op where unsupported)."""
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return

        def fired() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            on_exit()

        loop.add_reader(fd, fired)

    def exit_status(self) -> int | None:
        """None while running; the exit code (negative signal number) once it exited."""
        if self._popen is not None:
            return self._popen.poll()
        return None if start_ticks(self.pid) == self.ticks else -1

    @property
    def is_child(self) -> bool:
        """Started by this control plane (its exit status is known), not adopted."""
        return self._popen is not None

    @property
    def running(self) -> bool:
        return self.exit_status() is None

    def signal(self, sig: int) -> None:
        """Signal the replica's process group once (it leads its own session), else the process."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    async def stop(self, grace_s: float) -> int | None:
        """SIGTERM, wait up to `grace_s`, then SIGKILL (the whole process group)."""
        if not self.running:
            return self.exit_status()
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.running:
            self.signal(signal.SIGKILL)
            while self.running:
                await asyncio.sleep(0.02)
        # Tidy any grandchildren left in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.exit_status()


def describe_exit(code: int | None) -> str:
    if code is None:
        return ""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return "exited"
    return f"exited with code {code}"


def stop_recorded(state: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every recorded replica (used by `graylane down` when no control plane runs)."""
    records = RecordStore(state)
    stopped = []
    procs: list[tuple[PodRecord, Process]] = []
    for rec in records.load_all():
        proc = Process.adopt(rec.pid, rec.ticks)
        if proc is not None:
            proc.signal(signal.SIGTERM)
            procs.append((rec, proc))
        records.remove(rec)
        stopped.append(rec.key)
    deadline = time.monotonic() + grace_s
    while any(p.running for _, p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _, proc in procs:
        if proc.running:
            proc.signal(signal.SIGKILL)
    return stopped

