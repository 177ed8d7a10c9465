"""Fixtures shared by every test area: a private state folder and free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh `$GRAYLANE_STATE` (SQLite store, logs, pid files) for one test."""
    path = tmp_path / "state"
    path.mkdir()
    monkeypatch.setenv("GRAYLANE_STATE", str(path))
    monkeypatch.delenv("GRAYLANE_DATABASE_URL", raising=False)
    yield path


@pytest.fixture
def port() -> int:
    return free_port()


def _processes_under(root: str) -> list[int]:
    """Processes whose GRAYLANE_STATE lies under `root` (control planes, data planes, workloads)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"GRAYLANE_STATE=") and item[15:].decode(errors="replace").startswith(root):
                pids.append(int(entry.name))
                break
    return pids


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Safety net: no process started for this session's tests outlives it, even when a test was killed
    by its timeout before its own `graylane down` ran."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    root = str(factory.getbasetemp())
    pids = _processes_under(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM and pids:
            time.sleep(1.0)
        pids = _processes_under(root)
