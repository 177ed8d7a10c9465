"""The connect layer: one try on the wire. Takes a connection from the pools (idle keep-alive first, else a new
one within the cluster's limits), writes the request head and body, and waits for the response headers.

Also owns the request body's two shapes: replayable (read whole, up to `REPLAY_LIMIT`, so retries and mirrors can
send it again) or streamed. Knows the pools and the downstream request; nothing of routing decisions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from graylane.mesh.proxy.errors import ProxyError, UpstreamProtocolError, UpstreamReset
from graylane.mesh.proxy.listener import DownstreamProtocol, Request
from graylane.mesh.proxy.pool import Exchange, Pools, UpstreamConnection
from graylane.mesh.routing import Cluster, ClusterEndpoint

REPLAY_LIMIT: Final = 64 * 1024  # Envoy buffers request bodies up to its per-request limit for retries and mirrors


@dataclass(slots=True)
class Upstream:
    """A try that got response headers: its connection, exchange and (for a streamed body) the sending task."""

    conn: UpstreamConnection
    exchange: Exchange
    sender: asyncio.Task[None] | None


async def read_body(proto: DownstreamProtocol, req: Request) -> bytes | None:
    """The request body if it can be replayed (b"" when there is none), else None: it will be streamed.

    Raises the body's own timeout (408, the client's fault: no upstream is involved).
    """
    if req.has_body and not req.body.done and req.hmap.get("expect", "").lower() == "100-continue":
        # Envoy answers Expect locally (proxy_100_continue off) and does not forward it.
        proto.write_interim(b"HTTP/1.1 100 Continue\r\n\r\n")
    if not req.has_body:
        return b""
    if req.content_length is None or req.content_length > REPLAY_LIMIT:
        return None
    parts = []
    while (chunk := await req.body.read()) is not None:
        parts.append(chunk)
    return b"".join(parts)


def request_head(method: str, path: str, authority: str, headers: list[tuple[str, str]], req: Request,
                 body: bytes | None) -> bytes:
    parts = [f"{method} {path} HTTP/1.1\r\nhost: {authority}\r\n"]
    for k, v in headers:  # the pieces, joined once below: no string built per header line (issue #17)
        parts.append(k)
        parts.append(": ")
        parts.append(v)
        parts.append("\r\n")
    if body is not None:
        if body or req.content_length is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"content-length: {len(body)}\r\n")
    elif req.chunked:
        parts.append("transfer-encoding: chunked\r\n")
    else:
        parts.append(f"content-length: {req.content_length}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


class Connector:
    """Sends one try to one endpoint over the pools."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pools: Pools) -> None:
        self.loop = loop
        self.pools = pools

    async def send(self, cluster: Cluster, ep: ClusterEndpoint, head: bytes, body: bytes | None,
                   req: Request) -> Upstream:
        return await self.resume(cluster, ep, head, body, req, None, None)

    async def resume(self, cluster: Cluster, ep: ClusterEndpoint, head: bytes, body: bytes | None, req: Request,
                     conn: UpstreamConnection | None, ex: Exchange | None) -> Upstream:
        """`send`, when the head may already be on a reused connection (`conn`, `ex`: an inline try)."""
        pools = self.pools
        for _ in range(2):
            sender = None
            if conn is not None and ex is not None:
                reused = True
            else:
                idle = pools.take_idle(ep, cluster.policy.pool.idle_timeout_s)
                if idle is not None:
                    conn, reused = idle, True
                else:
                    conn, reused = await pools.acquire(cluster, ep)
                ex, sender = self.write(conn, head, body, req)
            try:
                await ex.headers_done()
            except UpstreamReset as err:
                conn.abort()
                if reused and body is not None and ex.status == 0 and not isinstance(err, UpstreamProtocolError):
                    conn = ex = None
                    continue  # a stale keep-alive connection: try once on a fresh one
                if sender is not None:
                    sender.cancel()
                raise
            except BaseException:
                conn.abort()
                if sender is not None:
                    sender.cancel()
                raise
            return Upstream(conn, ex, sender)
        raise UpstreamReset("upstream closed the connection")

    def write(self, conn: UpstreamConnection, head: bytes, body: bytes | None,
              req: Request) -> tuple[Exchange, asyncio.Task[None] | None]:
        """Start an exchange on `conn` and write the request: whole, or the head and a task streaming the body."""
        ex = conn.start(no_body=req.method == "HEAD")
        if body is not None:
            conn.write(head + body)
            return ex, None
        conn.write(head)
        return ex, self.loop.create_task(_send_body(conn, req))


async def _send_body(conn: UpstreamConnection, req: Request) -> None:
    """Stream a large or chunked request body upstream (re-chunked when the client sent chunks)."""
    try:
        while (chunk := await req.body.read()) is not None:
            if conn.closed:
                return
            conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if req.chunked else chunk)
            await conn.drain()
    except ProxyError as err:  # the body timed out: end the exchange so the forwarder answers 408
        conn.fail(err)
        return
    if req.chunked:
        conn.write(b"0\r\n\r\n")
