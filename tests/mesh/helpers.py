"""Data-plane test helpers: real upstream HTTP/1.1 servers, a proxy driven through its admin port, resource builders."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools
import httpx

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar


class UpstreamProtocol(asyncio.Protocol):
    """Answers JSON describing the request. Paths: /status/N, /delay/S, /chunks/N, /close, /echo."""

    def __init__(self, app: Upstream) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, bytearray()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        keep = self.parser.should_keep_alive()
        asyncio.get_running_loop().create_task(self.respond(method, self.url.decode(), dict(self.headers),
                                                            bytes(self.body), keep))

    async def respond(self, method: str, url: str, headers: dict[str, str], body: bytes, keep: bool) -> None:
        app = self.app
        app.requests.append({"method": method, "url": url, "headers": headers, "body_len": len(body)})
        parts = urlsplit(url)
        path = parts.path
        status = app.status
        extra = ""
        if path.startswith("/status/"):
            status = int(path.split("/")[2])
        if path.startswith("/delay/"):
            await asyncio.sleep(float(path.split("/")[2]))
        if path == "/close" or app.reset:
            self.transport.close()
            return
        if path.startswith("/chunks/"):
            n = int(path.split("/")[2])
            self.transport.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-upstream: %s\r\n\r\n"
                                 % app.name.encode())
            for i in range(n):
                chunk = b"x" * 1024
                self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if i % 64 == 0:
                    await asyncio.sleep(0)
            self.transport.write(b"0\r\n\r\n")
            return
        if path == "/echo":
            payload = body
        else:
            payload = json.dumps({"name": app.name, "method": method, "path": path, "query": parse_qs(parts.query),
                                  "headers": headers, "body_len": len(body)}).encode()
        if status == 204:
            payload = b""
        head = (f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nx-upstream: {app.name}\r\n{extra}"
                f"content-length: {len(payload)}\r\n" + ("" if keep else "connection: close\r\n") + "\r\n")
        self.transport.write(head.encode() + (b"" if method == "HEAD" else payload))
        if not keep:
            self.transport.close()


class Upstream:
    def __init__(self, name: str, status: int = 200) -> None:
        self.name = name
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.reset = False  # close every connection instead of answering
        self.connections = 0
        self.port = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(lambda: UpstreamProtocol(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]


class LoopThread:
    """A uvloop event loop in a background thread, for running proxy and upstreams under sync tests."""

    def __init__(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@contextmanager
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.stop()


def svc(name: str, port: int = 9080, ns: str = "default", target: Any = None, app: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": app or name}, "ports": [{"port": port, "name": "http",
                                                                  "targetPort": target or 9080}]}}


def dr(host: str, subsets: list[str], ns: str = "default", policy: dict | None = None,
       subset_policies: dict | None = None) -> dict:
    spec: dict[str, Any] = {"host": host, "subsets": [
        {"name": s, "labels": {"version": s}, **({"trafficPolicy": subset_policies[s]}
                                                  if subset_policies and s in subset_policies else {})}
        for s in subsets]}
    if policy:
        spec["trafficPolicy"] = policy
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": host.split(".")[0], "namespace": ns}, "spec": spec}


def vs(name: str, hosts: list[str], http: list[dict], ns: str = "default", gateways: list[str] | None = None) -> dict:
    spec: dict[str, Any] = {"hosts": hosts, "http": http}
    if gateways:
        spec["gateways"] = gateways
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


class Mesh:
    """Drives a real data plane through its admin port: a ProxyServer in a background uvloop thread, or (with
    GRAYLANE_TEST_PROXY_WORKERS=N, N > 1) a `python -m graylane.mesh.proxy --concurrency N` process. Upstreams
    always run in the loop thread `lt`."""

    def __init__(self, lt: Any, admin_port: int, server: Any, log: Path | None = None) -> None:
        self.lt = lt
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.admin_port = admin_port
        self.server = server  # None when the proxy is a separate process: read it through the admin port
        self.log = log  # that process's output
        self.version = itertools.count(1)
        self.upstreams: dict[str, Any] = {}

    def connections(self, port: int) -> int:
        """Downstream connections the proxy holds open on listener `port` (all workers)."""
        return int(self.get("/connections").json()["connections"].get(str(port), 0))

    def log_mark(self) -> int:
        return self.log.stat().st_size if self.log is not None else 0

    def proxy_errors(self, since: int = 0) -> list[str]:
        """ERROR lines and tracebacks the proxy process logged after `since` (`log_mark()`); [] in-process (the
        test's own log capture sees those)."""
        if self.log is None:
            return []
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback")]

    def upstream(self, name: str, status: int = 200) -> Any:
        up = Upstream(name, status)
        self.lt.run(up.start())
        self.upstreams[name] = up
        return up

    def endpoint(self, up: Any, app: str, version: str = "v1", ns: str = "default", ready: bool = True) -> Endpoint:
        return Endpoint(ns, f"{app}-{version}-{up.name}", {"app": app, "version": version}, "127.0.0.1", up.port,
                        9080, ready, f"{app}-{version}", f"bookinfo-{app}")

    def push(self, resources: list[dict], endpoints: list[Endpoint], sidecars: list[Sidecar],
             options: MeshOptions | None = None) -> dict:
        snap = compile_snapshot(resources, endpoints, sidecars, options or MeshOptions(), next(self.version))
        return self.put(snap)

    def put(self, snap: dict) -> dict:
        r = httpx.put(f"{self.admin}/config", json=snap, timeout=10)
        body = r.json()
        assert r.status_code == 200, body
        return body

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.admin}{path}", timeout=10)


WORKERS_ENV = "GRAYLANE_TEST_PROXY_WORKERS"


def proxy_workers() -> int:
    """GRAYLANE_TEST_PROXY_WORKERS: the worker count the proxy tests run against (1, the default: in-process)."""
    raw = os.environ.get(WORKERS_ENV, "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {raw!r}")
    return int(raw)




@contextmanager
def proxy_process(workers: int, **timeouts: float) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`python -m graylane.mesh.proxy --concurrency workers` on a free admin port, ready; its output in a file."""
    flags = {"idle_timeout_s": "--idle-timeout", "header_timeout_s": "--header-timeout",
             "request_timeout_s": "--request-timeout", "stream_idle_timeout_s": "--stream-idle-timeout"}
    with tempfile.TemporaryDirectory(prefix="graylane-proxy-") as tmp:
        log = Path(tmp) / "proxy.log"
        for _attempt in range(5):  # the free port can be taken meanwhile: try another
            port = free_port()
            argv = [sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(port),
                    "--concurrency", str(workers)]
            for key, value in timeouts.items():
                argv += [flags[key], str(value)]
            with open(log, "ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.05)
            if proc.poll() is None:
                break
        else:
            raise AssertionError(f"the proxy process did not start: {log.read_text()[-2000:]}")
        try:
            yield proc, port, log
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running_mesh(**timeouts: float) -> Iterator[Mesh]:
    """A real ProxyServer (with `timeouts`, e.g. header_timeout_s=1.0) and its admin port, in a loop thread; with
    GRAYLANE_TEST_PROXY_WORKERS=N (N > 1) a proxy process of N workers instead."""
    from graylane.mesh.proxy.admin import serve_admin
    from graylane.mesh.proxy.server import ProxyServer

    if (workers := proxy_workers()) > 1:
        with loop_thread() as lt, proxy_process(workers, **timeouts) as (_proc, admin_port, log):
            yield Mesh(lt, admin_port, None, log)
        return
    with loop_thread() as lt:
        async def start() -> tuple[Any, int]:
            server = ProxyServer(**timeouts)
            admin = await serve_admin(server, "127.0.0.1", 0)
            return server, admin.sockets[0].getsockname()[1]

        server, admin_port = lt.run(start())
        try:
            yield Mesh(lt, admin_port, server)
        finally:
            lt.run(server.close())


def series(mesh: Mesh, **labels: str) -> float:
    """Sum of istio_requests_total samples whose labels include `labels` (cumulative: compare before/after)."""
    total = 0.0
    for line in mesh.get("/stats/prometheus").text.splitlines():
        if not line.startswith("istio_requests_total{"):
            continue
        body, value = line[len("istio_requests_total{"):].rsplit("} ", 1)
        pairs = dict(p.split("=", 1) for p in body.split('",') if "=" in p)
        pairs = {k: v.strip('"') for k, v in pairs.items()}
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def counter(mesh: Mesh, name: str) -> float:
    """A graylane_proxy_* counter from the admin port (0 when not yet bumped)."""
    for line in mesh.get("/stats/prometheus").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def sidecar(port: int, app: str = "productpage", version: str = "v1", ns: str = "default", **labels: str) -> Sidecar:
    return Sidecar(ns, f"{app}-{version}-0", {"app": app, "version": version, **labels}, port, f"{app}-{version}",
                   f"bookinfo-{app}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
