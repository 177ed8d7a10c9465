"""Fixtures for the Bookinfo service tests: real service subprocesses and a tiny recording mesh proxy."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

_PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
               "no_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_service(name: str, log_dir: Path, env: dict[str, str] | None = None) -> Service:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    full_env.update({"PORT": str(port), "LOG_LEVEL": "warning", "ACCESS_LOG": "false"})
    full_env.update(env or {})
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", f"graylane.demos.bookinfo.services.{name}"],
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)
    svc = Service(name, port, proc, log)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()}")
        try:
            if httpx.get(f"{svc.url}/health", timeout=1, trust_env=False).status_code == 200:
                return svc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            svc.stop()
            raise RuntimeError(f"{name} did not become healthy: {log.read_text()}")
        time.sleep(0.05)


@dataclass
class Seen:
    host: str
    path: str
    target: str
    headers: dict[str, str]


@dataclass
class MeshProxy:
    """An HTTP forward proxy standing in for the sidecar: maps `name:9080` to a local port and records requests."""

    routes: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    aborts: dict[str, int] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        self.delays.clear()
        self.aborts.clear()
        self.seen.clear()

    def requests_to(self, host: str) -> list[Seen]:
        return [s for s in self.seen if s.host == host]

    def start(self) -> None:
        mesh = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                host = (parts.hostname or "").lower()
                headers = {k.lower(): v for k, v in self.headers.items()}
                mesh.seen.append(Seen(host, parts.path, self.path, headers))
                if host in mesh.delays:
                    time.sleep(mesh.delays[host])
                if host in mesh.aborts or host not in mesh.routes:
                    body = b"fault filter abort" if host in mesh.aborts else b"no healthy upstream"
                    self.send_response(mesh.aborts.get(host, 503))
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", mesh.routes[host], timeout=30)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=fwd)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Service]]:
    """Start a Bookinfo service subprocess: `services("reviews", ENABLE_RATINGS="true")`; all stopped at the end."""
    log_dir = tmp_path_factory.mktemp("bookinfo-logs")
    started: list[Service] = []

    def start(name: str, **env: str) -> Service:
        svc = start_service(name, log_dir, env)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="module")
def mesh() -> Iterator[MeshProxy]:
    """One recording proxy per module; tests call `mesh.reset()` and set `mesh.routes` as they need."""
    proxy = MeshProxy()
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()
