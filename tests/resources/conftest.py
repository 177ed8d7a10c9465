"""Resources fixtures: no stray control plane answers `graylane validate`; a real one when a test asks for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def no_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    """`graylane validate` checks files with the live resources of a control plane when one answers: point it
    at a port nothing listens on, so a control plane someone else runs on this machine is never consulted."""
    monkeypatch.setenv("GRAYLANE_SERVER", f"127.0.0.1:{_free_port()}")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real `graylane server --no-components` with its own state folder; yields the environment to reach it."""
    state = tmp_path_factory.mktemp("state")
    port = _free_port()
    env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}",
           "GRAYLANE_USER": "alice", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("GRAYLANE_DATABASE_URL", None)
    env.pop("GRAYLANE_TOKEN", None)
    log_path = Path(state) / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "server", "--no-components",
                                 "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise AssertionError("graylane server exited:\n" + log_path.read_text())
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError("graylane server did not answer /healthz within 60s") from None
                    time.sleep(0.1)  # polling until the port answers
            yield env
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
