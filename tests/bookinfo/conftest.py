"""Fixtures for the Bookinfo service tests: real service subprocesses and a tiny recording mesh proxy."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


def _spawn(name: str, log_dir: Path, env: dict[str, str] | None) -> Service:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    full_env.update({"PORT": str(port), "LOG_LEVEL": "warning", "ACCESS_LOG": "false"})
    full_env.update(env or {})
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", f"graylane.demos.bookinfo.services.{name}"],
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)
    return Service(name, port, proc, log)


def _wait_healthy(svc: Service, deadline: float) -> None:
    while True:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited: {svc.log.read_text()}")
        try:
            if httpx.get(f"{svc.url}/health", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            svc.stop()
            raise RuntimeError(f"{svc.name} did not become healthy: {svc.log.read_text()}")
        time.sleep(0.05)


def start_services(specs: dict[str, tuple[str, dict[str, str]]], log_dir: Path) -> dict[str, Service]:
    """Start several services at once (key -> (service name, env)) and wait until all answer /health."""
    started = {key: _spawn(name, log_dir, env) for key, (name, env) in specs.items()}
    deadline = time.monotonic() + 30
    for svc in started.values():
        _wait_healthy(svc, deadline)
    return started


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


class Launcher:
    """Starts Bookinfo service subprocesses and stops them all at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Service] = []

    def __call__(self, name: str, **env: str) -> Service:
        return self.many({name: (name, env)})[name]

    def many(self, specs: dict[str, tuple[str, dict[str, str]]]) -> dict[str, Service]:
        svcs = start_services(specs, self.log_dir)
        self.started.extend(svcs.values())
        return svcs

    def stop_all(self) -> None:
        for svc in self.started:
            svc.stop()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Start a Bookinfo service subprocess: `services("reviews", ENABLE_RATINGS="true")`; all stopped at the end."""
    launcher = Launcher(tmp_path_factory.mktemp("bookinfo-logs"))
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="session")
def mesh() -> Iterator[MeshProxy]:
    """One recording proxy for the session; tests call `mesh.reset()` and set `mesh.routes` as they need."""
    proxy = MeshProxy()
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def bookinfo(services: Launcher, mesh: MeshProxy) -> dict[str, Service]:
    """All six Bookinfo workloads with HTTP_PROXY pointing at the recording mesh (details, ratings, reviews-v1..3,
    productpage); the mesh routes details and ratings to theirs."""
    proxied = {"HTTP_PROXY": mesh.url, "http_proxy": mesh.url, "NO_PROXY": "localhost,127.0.0.1"}
    svcs = services.many({
        "details": ("details", proxied),
        "ratings": ("ratings", proxied),
        "reviews-v1": ("reviews", {"POD_NAME": "reviews-v1-7d9f8c-abcde", **proxied}),
        "reviews-v2": ("reviews", {"ENABLE_RATINGS": "true", "STAR_COLOR": "black", "POD_NAME": "reviews-v2-a",
                                   **proxied}),
        "reviews-v3": ("reviews", {"ENABLE_RATINGS": "true", "STAR_COLOR": "red", "POD_NAME": "reviews-v3-a",
                                   "CLUSTER_NAME": "east", **proxied}),
        "productpage": ("productpage", proxied),
    })
    mesh.routes.update({"details": svcs["details"].port, "ratings": svcs["ratings"].port})
    return svcs


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()
