"""WebSocket through the real proxy: a `websockets` echo server behind a sidecar, a `websockets` client in front.

The route picks the server as for any request; the route timeout does not cut a live tunnel; the stream idle
timeout ends a quiet one; the tunnel counts once (response_code 101) when it closes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from ..helpers import dr, free_port, running_mesh, series, sidecar, svc, vs
from .support import to


class WsServer:
    """A real WebSocket echo server: answers each message with `<name>:<message>` (binary echoed as is)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.server: Any = None
        self.refuse = False
        self.paths: list[str] = []

    async def start(self) -> None:
        async def handler(ws: Any) -> None:
            self.paths.append(ws.request.path)
            async for msg in ws:
                await ws.send(msg if isinstance(msg, bytes) else f"{self.name}:{msg}")

        def process_request(conn: Any, request: Any) -> Any:
            if self.refuse:
                return conn.respond(403, "not here\n")
            return None

        self.server = await serve(handler, "127.0.0.1", 0, process_request=process_request, max_size=4 * 2**20)
        self.port = self.server.sockets[0].getsockname()[1]


class FloodServer(WsServer):
    """A WebSocket server that sends 64 messages of 1 MiB as fast as they are taken; `sent` counts what left it."""

    sent = 0

    async def start(self) -> None:
        async def handler(ws: Any) -> None:
            chunk = b"z" * 2**20
            for _ in range(64):  # 64 MiB if nothing held it back
                await ws.send(chunk)
                self.sent += len(chunk)

        self.server = await serve(handler, "127.0.0.1", 0, max_size=None, write_limit=2**16)
        self.port = self.server.sockets[0].getsockname()[1]

    def stalled(self) -> int:
        """What it had sent once it stopped: no progress over 5 looks 0.1 s apart."""
        last, still = -1, 0
        while still < 5:
            time.sleep(0.1)
            still = still + 1 if self.sent == last else 0
            last = self.sent
        return self.sent


def flooded_chat(mesh: Any) -> tuple[int, FloodServer]:
    """A sidecar port whose `chat` service is one FloodServer."""
    port = free_port()
    flood = FloodServer("flood")
    mesh.lt.run(flood.start())
    mesh.push([svc("chat"), dr("chat", ["v1"]), vs("chat", ["chat"], [{"route": [to("v1", host="chat")]}])],
              [mesh.endpoint(flood, "chat", "v1")], [sidecar(port)])
    return port, flood


def ws_upstreams(mesh: Any, port: int, http: list[dict], idle: float | None = None) -> dict[str, WsServer]:
    ups = {v: WsServer(f"chat-{v}") for v in ("v1", "v2")}
    for up in ups.values():
        mesh.lt.run(up.start())
    eps = [mesh.endpoint(up, "chat", v) for v, up in ups.items()]
    mesh.push([svc("chat"), dr("chat", ["v1", "v2"]), vs("chat", ["chat"], http)], eps, [sidecar(port)])
    return ups


async def wait_for_series(mesh: Any, want: float, **labels: str) -> float:
    """The tunnel is reported when it closes: wait (bounded) for the count to reach `want`."""
    end = time.monotonic() + 5
    while True:
        got = await asyncio.to_thread(series, mesh, **labels)
        if got >= want or time.monotonic() > end:
            return got
        await asyncio.sleep(0.02)


def ws_connect(port: int, path: str = "/chat", **kw: Any) -> Any:
    return connect(f"ws://chat:9080{path}", host="127.0.0.1", port=port, proxy=None, open_timeout=5, **kw)


def test_echo_through_the_route_with_timeout_not_cutting_the_tunnel_counted_once(mesh):
    port = free_port()
    ups = ws_upstreams(mesh, port, [
        {"match": [{"uri": {"prefix": "/v2"}}], "route": [to("v2", host="chat")], "timeout": "0.3s"},
        {"route": [to("v1", host="chat")], "timeout": "0.3s"}])
    labels = {"reporter": "source", "destination_service_name": "chat", "response_code": "101"}
    before = series(mesh, **labels)

    async def run() -> None:
        async with ws_connect(port, max_size=4 * 2**20) as ws:
            for i in range(20):
                await ws.send(f"hello {i}")
                assert await ws.recv() == f"chat-v1:hello {i}"
            big = bytes(range(256)) * 8192  # 2 MiB one way and back: flow control both ways
            await ws.send(big)
            assert await ws.recv() == big
            await asyncio.sleep(0.6)  # twice the route timeout, quiet: the tunnel stays up
            await ws.send("still there")
            assert await ws.recv() == "chat-v1:still there"
        async with ws_connect(port, "/v2/room?x=1") as ws:
            await ws.send("hi")
            assert await ws.recv() == "chat-v2:hi"
        assert await wait_for_series(mesh, before + 2, **labels) == before + 2

    asyncio.run(run())
    assert ups["v1"].paths == ["/chat"] and ups["v2"].paths == ["/v2/room?x=1"]
    assert series(mesh, **labels) == before + 2  # once per tunnel, not per message


def test_stream_idle_timeout_ends_a_quiet_tunnel():
    with running_mesh(stream_idle_timeout_s=0.3) as mesh:
        port = free_port()
        ws_upstreams(mesh, port, [{"route": [to("v1", host="chat")]}])

        async def run() -> None:
            async with ws_connect(port) as ws:
                await ws.send("a")
                assert await ws.recv() == "chat-v1:a"
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)  # nothing moves: the proxy closes the tunnel
            assert await wait_for_series(mesh, 1, response_code="101", response_flags="SI",
                                         reporter="source") == 1

        asyncio.run(run())


def test_refused_upgrade_is_passed_on_and_a_dead_upstream_is_503(mesh):
    port = free_port()
    ups = ws_upstreams(mesh, port, [{"route": [to("v1", host="chat")]}])
    ups["v1"].refuse = True
    refused = series(mesh, reporter="source", destination_service_name="chat", response_code="403")
    dead = series(mesh, reporter="source", destination_service_name="chat", response_code="503", response_flags="UF")

    async def run() -> None:
        with pytest.raises(websockets.InvalidStatus) as err:
            async with ws_connect(port):
                pass
        assert err.value.response.status_code == 403
        assert err.value.response.body == b"not here\n"
        ups["v1"].server.close()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ups["v1"].server.wait_closed(), mesh.lt.loop))
        with pytest.raises(websockets.InvalidStatus) as err:
            async with ws_connect(port):
                pass
        assert err.value.response.status_code == 503

    asyncio.run(run())
    assert series(mesh, reporter="source", destination_service_name="chat", response_code="403") - refused == 1
    assert series(mesh, reporter="source", destination_service_name="chat", response_code="503",
                  response_flags="UF") - dead == 1


def test_a_client_that_does_not_read_stalls_the_upstream_not_the_proxy_memory(mesh):
    """Back-pressure through the splice: the upstream's sends block once the socket buffers on the way are full."""
    port, flood = flooded_chat(mesh)

    def run() -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(b"GET /chat HTTP/1.1\r\nHost: chat:9080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(1)  # byte by byte: nothing past the head is read yet
            assert data.startswith(b"HTTP/1.1 101")
            stalled_at = flood.stalled()
            want, got = 64 * (2**20 + 10), 0  # 64 frames, each a 10-byte head and 1 MiB
            while got < want:
                chunk = s.recv(2**20)
                assert chunk
                got += len(chunk)
            return stalled_at

    stalled_at = run()
    assert stalled_at < 32 * 2**20  # held back: kernel buffers and the transports' limits, not 64 MiB in memory
    assert flood.sent == 64 * 2**20  # and everything flows once the client reads
