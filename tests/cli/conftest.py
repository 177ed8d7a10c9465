"""CLI fixtures: one real `graylane server` subprocess per module, and a runner for the real CLI."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class Cli:
    """`graylane ARGS` in a child process, exactly as a user runs it."""

    env: dict[str, str]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=120)


@dataclass
class InProcessCli:
    """`graylane.cli.main.main()` with argv, env and std streams swapped: the same entry point and error
    handling as the installed command, without paying a Python start-up per call on this 2-core machine."""

    env: dict[str, str]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        from graylane.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        saved_env, saved_argv, saved_stdin = dict(os.environ), sys.argv, sys.stdin
        os.environ.clear()
        os.environ.update(self.env)
        sys.argv = ["graylane", *args]
        sys.stdin = io.StringIO(stdin or "")
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            sys.argv, sys.stdin = saved_argv, saved_stdin
        return subprocess.CompletedProcess(["graylane", *args], code, out.getvalue(), err.getvalue())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("state")
    port = _free_port()
    env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}",
           "GRAYLANE_USER": "alice", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("GRAYLANE_DATABASE_URL", None)
    env.pop("GRAYLANE_TOKEN", None)
    log = (state / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "server", "--no-components",
                             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError("graylane server exited:\n" + Path(log.name).read_text())
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
        log.close()


@pytest.fixture
def cli(server_env: dict[str, str]) -> InProcessCli:
    return InProcessCli(server_env)


@pytest.fixture
def cli_process(server_env: dict[str, str]) -> Cli:
    return Cli(server_env)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write
