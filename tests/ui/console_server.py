"""A real control plane for browser tests: `graylane server` in its own process and state folder, and
Chromium signed in to it the way an operator is (the one-time link asked for with the CLI token).

Lighter than the article's whole mesh (tests/e2e/test_article.py): no data plane, no workloads, so
pipelines here are made of manual judgments, waits and variables. Shared per test module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tests import system
from tests.ui.signin import login_link

from graylane.settings import read_cli_token

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConsoleServer:
    """One `graylane server` process; `api` is an httpx client carrying the operator's CLI token."""

    def __init__(self, state: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.state = state
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_USER": "alice", "NO_COLOR": "1",
                    **(env or {})}
        for var in ("GRAYLANE_DATABASE_URL", "GRAYLANE_SERVER", "HTTP_PROXY", "http_proxy"):
            self.env.pop(var, None)
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.api = httpx.Client(base_url=self.base, trust_env=False, timeout=30)

    def start(self, *, components: bool = True, timeout: float = 60) -> None:
        args = [sys.executable, "-m", "graylane.cli.main", "server", "--port", str(self.port)]
        if not components:
            args.append("--no-components")
        log = (self.state / "server-test.log").open("w")
        self.proc = subprocess.Popen(args, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                     text=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"graylane server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.api.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"graylane server did not answer in {timeout}s:\n{self.log()}"
            time.sleep(0.1)
        token = read_cli_token(self.state)
        assert token, "the control plane wrote no CLI token to the state folder"
        self.api.headers["Authorization"] = f"Bearer {token}"

    def log(self) -> str:
        path = self.state / "server-test.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.api.close()

    def login_url(self) -> str:
        return login_link(self.api, self.api.headers["Authorization"].split(" ", 1)[1])

    # -- pipelines ---------------------------------------------------------------------------------
    def import_pipeline(self, pipeline: dict[str, Any]) -> str:
        resp = self.api.post("/api/v1/pipelines", json=pipeline)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["results"][0]["id"])

    def start_pipeline(self, ref: str, **parameters: str) -> str:
        resp = self.api.post(f"/api/v1/pipelines/{ref}/start", json={"parameters": parameters})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])

    def execution(self, execution_id: str) -> dict[str, Any]:
        return dict(self.api.get(f"/api/v1/executions/{execution_id}").json())

    def stage(self, execution_id: str, name: str) -> dict[str, Any]:
        return next(s for s in self.execution(execution_id)["stages"] if s["name"] == name)

    def wait_stage(self, execution_id: str, name: str, status: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (stage := self.stage(execution_id, name))["status"] != status:
            assert time.monotonic() < deadline, f"{name} is {stage['status']}, not {status}"
            time.sleep(0.1)
        return stage

    def judge(self, execution_id: str, name: str, **body: Any) -> None:
        sid = self.stage(execution_id, name)["id"]
        resp = self.api.patch(f"/api/v1/executions/{execution_id}/stages/{sid}",
                              json={"judgmentStatus": "continue", **body})
        assert resp.status_code == 200, resp.text


@contextmanager
def running_server(state: Path, **kw: Any) -> Iterator[ConsoleServer]:
    server = ConsoleServer(state, **kw)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Browser:
    """Fresh browser contexts, each signed in with a new one-time link."""

    def __init__(self, chromium: Any, server: ConsoleServer) -> None:
        self.chromium, self.server = chromium, server

    def new_page(self, width: int = 1280, height: int = 900) -> Any:
        page = self.chromium.new_context(viewport={"width": width, "height": height}).new_page()
        page.set_default_timeout(20_000)
        page.goto(self.server.login_url())
        return page


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright import sync_api

    executable = system.require_program("chromium", "chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
