"""The background processes `graylane up` starts: supervisor, control plane and data plane, with pid files and logs.

Each daemon is recorded in `<state>/<name>.json` (pid, kernel start time, address), so `status`
and `down` find it again and a recycled pid is never mistaken for it. `graylane up` starts the
supervisor (`graylane.runtime.supervisor`), which starts the other two and restarts them when they die.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from graylane.dataplane_contract import DATAPLANE_FILE, MAX_WORKERS, WORKERS_FILE
from graylane.runtime.process import start_ticks

SERVER_FILE = "server.json"


@dataclass(frozen=True)
class Daemon:
    name: str  # "control-plane" | "data-plane"
    file: str
    pid: int
    ticks: int
    started: float
    url: str  # API URL or admin URL
    info: dict[str, Any]

    @property
    def running(self) -> bool:
        return self.pid > 0 and start_ticks(self.pid) == self.ticks

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.started)


def read_daemon(state: Path, file: str, name: str) -> Daemon | None:
    try:
        data = json.loads((state / file).read_text())
    except (OSError, ValueError):
        return None
    return Daemon(name=name, file=file, pid=int(data.get("pid", 0)), ticks=int(data.get("ticks", 0)),
                  started=float(data.get("started", 0)), url=str(data.get("url", "")), info=data)


def control_plane(state: Path) -> Daemon | None:
    return read_daemon(state, SERVER_FILE, "control-plane")


def data_plane(state: Path) -> Daemon | None:
    return read_daemon(state, DATAPLANE_FILE, "data-plane")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        # As the servers themselves do: a killed server's TIME_WAIT sockets must not block a restart.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
           pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, pass_fds=pass_fds)


def _record(state: Path, file: str, proc: subprocess.Popen[bytes], **info: Any) -> None:
    data = {"pid": proc.pid, "ticks": start_ticks(proc.pid) or 0, "started": time.time(), **info}
    tmp = state / (file + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, state / file)


def graylane_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "graylane.cli.main", *args]


def data_plane_workers(state: Path) -> int:
    """How many worker processes the local mesh's data plane runs (`graylane up --proxy-workers`, default 1)."""
    try:
        n = int((state / "dataplane" / WORKERS_FILE).read_text().strip())
    except (OSError, ValueError):
        return 1
    return n if 1 <= n <= MAX_WORKERS else 1


def save_data_plane_workers(state: Path, workers: int) -> None:
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"--proxy-workers must be from 1 to {MAX_WORKERS}, got {workers}")
    folder = state / "dataplane"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (WORKERS_FILE + ".tmp")
    tmp.write_text(f"{workers}\n")
    os.replace(tmp, folder / WORKERS_FILE)


def data_plane_argv(state: Path, admin_port: int) -> list[str]:
    keep = state / "dataplane"
    keep.mkdir(parents=True, exist_ok=True)
    # The lean entry point: the data plane does not load the CLI (faster start, lower RSS). One process unless
    # `graylane up --proxy-workers N` said otherwise (not `--concurrency`'s default of a worker per core: one
    # process keeps weighted splits exact). Either way the supervisor keeps the listening sockets across restarts
    # (socket_keeper.py, handoff.py; with workers, the primary's shared ones: docs/dataplane.md, Workers).
    return [sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(admin_port), "--state-dir", str(keep),
            "--concurrency", str(data_plane_workers(state))]


def start_data_plane(state: Path, admin_port: int, env: dict[str, str] | None = None,
                     pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """`env`/`pass_fds`: what the supervisor hands over (its listening-socket channel and kept sockets)."""
    proc = _spawn(data_plane_argv(state, admin_port), state / "logs" / "dataplane.log", env, pass_fds)
    record_data_plane(state, proc, admin_port)
    return proc


def record_data_plane(state: Path, proc: subprocess.Popen[bytes], admin_port: int) -> None:
    """`dataplane.json` for `proc` (started here, or a warm standby the supervisor activated)."""
    _record(state, DATAPLANE_FILE, proc, admin_port=admin_port, admin_host="127.0.0.1",
            url=f"http://127.0.0.1:{admin_port}", workers=data_plane_workers(state))


def start_control_plane(state: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["GRAYLANE_SERVER"] = f"{host}:{port}"
    env["GRAYLANE_STATE"] = str(state)
    # `graylane down` waits 10 s (stop_daemon) before SIGKILL: drain 5 s, leaving time for the components to stop.
    env.setdefault("GRAYLANE_DRAIN_S", "5")
    proc = _spawn(graylane_argv("server", "--host", host, "--port", str(port)), state / "logs" / "server.log", env)
    _record(state, SERVER_FILE, proc, url=f"http://{host}:{port}", host=host, port=port)
    return proc


def start_supervisor(state: Path, admin_port: int, host: str | None, port: int | None) -> subprocess.Popen[bytes]:
    """The supervisor process; it writes its own record (`supervisor.json`) once it runs."""
    env = {**os.environ, "GRAYLANE_STATE": str(state)}
    if host is not None and port is not None:
        env["GRAYLANE_SERVER"] = f"{host}:{port}"
    argv = [sys.executable, "-m", "graylane.runtime.supervisor", "--state-dir", str(state),
            "--admin-port", str(admin_port)]
    if host is not None and port is not None:
        argv += ["--host", host, "--port", str(port)]
    return _spawn(argv, state / "logs" / "supervisor.log", env)


def probe_http(url: str, timeout_s: float = 1.0) -> int | None:
    """Status code of GET `url`, or None when nothing answers."""
    try:
        return httpx.get(url, timeout=timeout_s, trust_env=False).status_code
    except httpx.HTTPError:
        return None


def stop_daemon(state: Path, daemon: Daemon, grace_s: float = 10.0) -> bool:
    """SIGTERM, wait, SIGKILL; removes the record. True if a process was stopped."""
    stopped = False
    if daemon.running:
        stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while daemon.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if daemon.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGKILL)
            while daemon.running:
                time.sleep(0.02)
    with contextlib.suppress(FileNotFoundError):
        (state / daemon.file).unlink()
    return stopped
