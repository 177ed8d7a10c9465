"""Fixtures shared by every test area: a private state folder and free loopback ports."""

from __future__ import annotations

import socket
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
