"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) from h2 clients, as Envoy serves it: the downstream connection
advertises SETTINGS_ENABLE_CONNECT_PROTOCOL=1; a stream `:method CONNECT` + `:protocol websocket` is turned into
an HTTP/1.1 upgrade request (`GET`, `Upgrade: websocket`, `Connection: upgrade`, as Envoy's
transformUpgradeRequestFromH2toH1) before routing, sent to the chosen endpoint on a connection of its own, and on
`101` answered `:status 200`; then the stream's DATA frames and the upstream socket's bytes are spliced both ways.

Flow control: the client's DATA is acknowledged (WINDOW_UPDATE) only once written upstream and only while the
upstream socket takes it (its write buffer below the high-water mark); upstream bytes go out as the client's
window allows, the upstream socket paused while more than a few chunks wait. The route timeout covers the
handshake only; a live tunnel ends when either side ends it (END_STREAM half-closes the upstream socket, an
upstream close ends the stream) or by the stream idle timeout (h2_downstream.py). Counted once, when it ends
(`response_code="200"`, the status the client saw, with the bytes each way).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections import deque
from typing import TYPE_CHECKING, Protocol

from graylane.mesh.proxy.h2_exchange import Downstream, Stream, route_cookies
from graylane.mesh.proxy.websocket import UpstreamSide, WebSockets, answer_headers

if TYPE_CHECKING:
    from graylane.mesh.proxy.h2_upstream import Headers
    from graylane.mesh.proxy.listener import Request
    from graylane.mesh.proxy.route import Outbound
    from graylane.mesh.proxy.telemetry import Ctx
    from graylane.mesh.routing import RouteDecision

# Upstream response headers not passed to an h2 client (connection-specific in HTTP/2, or the HTTP/1.1
# handshake's own).
_DROP = frozenset((b"server", b"connection", b"keep-alive", b"proxy-connection", b"upgrade", b"transfer-encoding",
                   b"sec-websocket-accept"))
HELD_CHUNKS = 16  # upstream chunks waiting for the client's window before the upstream socket is paused


def is_extended_connect(headers: Headers) -> bytes | None:
    """The `:protocol` of an RFC 8441 extended CONNECT stream, else None."""
    method = protocol = None
    for k, v in headers:
        if k == b":method":
            method = v
        elif k == b":protocol":
            protocol = v
        elif not k.startswith(b":"):
            break
    return protocol if method == b"CONNECT" and protocol else None


def as_upgrade(req: Request, protocol: str) -> None:
    """The request as Envoy's HCM sees it after transformUpgradeRequestFromH2toH1: GET with Upgrade/Connection."""
    req.method = "GET"
    req.headers += [("upgrade", protocol), ("connection", "upgrade")]
    req.hmap["upgrade"], req.hmap["connection"] = protocol, "upgrade"
    req.has_body = False
    req.content_length = None



class DStream(Stream, Protocol):
    """A downstream h2 stream as a tunnel reads it (`h2_downstream.DStream`)."""

    last: float  # the last bytes either way (the stream idle timeout)


class H2Server(Downstream, Protocol):
    """A downstream h2 connection as a tunnel reads it (`h2_downstream.H2Server`)."""

    loop: asyncio.AbstractEventLoop

class H2Tunnel:
    """One h2 stream spliced to one upstream socket (the `Tunnel` `UpstreamSide` relays to)."""

    def __init__(self, conn: H2Server, ds: DStream, side: UpstreamSide, ctx: Ctx) -> None:
        assert side.transport is not None
        self.conn, self.ds, self.ctx = conn, ds, ctx
        self.loop = conn.loop
        self.up = side.transport
        self.down = self  # UpstreamSide pauses "the downstream" while the upstream socket is full
        self.closed = False
        self.out: deque[bytes] = deque()  # upstream bytes waiting for the client's window
        self.wake: asyncio.Future[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent = 0
        self.received = 0
        self.got = 0  # bytes taken from upstream
        self.limit: int | None = None  # a refused upgrade's content-length: the stream ends once it arrived

    # -- what UpstreamSide calls
    def from_upstream(self, data: bytes) -> None:
        if not self.closed:
            self.out.append(data)
            self.got += len(data)
            if len(self.out) > HELD_CHUNKS:
                self.up.pause_reading()
            if self.limit is not None and self.got >= self.limit:
                self.closed = True
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def pause_reading(self) -> None:
        self.writable.clear()

    def resume_reading(self) -> None:
        self.writable.set()

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    # -- the two pumps
    async def to_client(self) -> None:
        """Upstream bytes onto the stream as the client's window allows; END_STREAM once the upstream closed."""
        while True:
            while self.out:
                data = self.out.popleft()
                if len(self.out) <= HELD_CHUNKS // 4 and not self.up.is_closing():
                    self.up.resume_reading()
                await self.conn.send_data(self.ds.sid, data)
                self.received += len(data)
            if self.closed:
                break
            self.wake = self.loop.create_future()
            await self.wake
        if not self.conn.closed and self.ds.sid in self.conn.streams:
            self.conn.end_stream(self.ds.sid, None)

    async def to_upstream(self) -> None:
        """The stream's DATA to the upstream socket, credited to the client only as the socket takes it; the
        client's END_STREAM half-closes the socket."""
        body = self.ds.body
        while (item := await body.read()) is not None:
            data, flow = item
            if self.up.is_closing():
                break
            self.up.write(data)
            self.sent += len(data)
            self.ds.last = self.loop.time()
            await self.writable.wait()
            body.ack(flow)
        if not self.up.is_closing() and self.up.can_write_eof():
            self.up.write_eof()


class H2WebSockets:
    """Forwards extended CONNECT streams as HTTP/1.1 upgrades (the handshake is websocket.py's)."""

    def __init__(self, ws: WebSockets) -> None:
        self.ws = ws
        self.loop = ws.loop

    async def forward(self, conn: H2Server, ds: DStream, req: Request, ctx: Ctx, d: RouteDecision,
                      out: Outbound) -> None:
        """Handshake with the chosen endpoint; on 101 answer 200 and splice, else pass the answer on. Raises
        `ProxyError` before anything was answered (the caller's local reply)."""
        # RFC 8441 clients send no Sec-WebSocket-Key; an HTTP/1.1 server requires one.
        key = b"" if "sec-websocket-key" in req.hmap else b"sec-websocket-key: %s\r\n" % base64.b64encode(
            os.urandom(16))
        async with self.ws.upstream(req, ctx, d, out, key) as (side, rest):
            try:
                if side.status != 101:
                    await self._refused(conn, ds, ctx, d, side, rest)
                else:
                    await self._splice(conn, ds, ctx, d, side, rest)
            finally:
                if side.transport is not None:
                    side.transport.close()

    def _headers(self, d: RouteDecision, side: UpstreamSide, status: int) -> Headers:
        headers = answer_headers(d, side, _DROP)
        out: Headers = [(b":status", b"%d" % status), (b"server", b"istio-envoy")]
        out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
                if k.lower() not in ("server", "content-length") or status != 200]
        return out + route_cookies(d)

    async def _splice(self, conn: H2Server, ds: DStream, ctx: Ctx, d: RouteDecision, side: UpstreamSide,
                      rest: bytes) -> None:
        ctx.status = 200  # what the client sees (Envoy's transformUpgradeResponseFromH1toH2: 101 -> 200)
        conn.send_headers(ds, self._headers(d, side, 200), end=False)
        tunnel = H2Tunnel(conn, ds, side, ctx)
        side.tunnel = tunnel  # type: ignore[assignment]  # duck-typed: from_upstream, close, down
        if rest or side.pending:
            tunnel.from_upstream(rest + bytes(side.pending))
            side.pending.clear()
        if side.transport is None or side.transport.is_closing():
            tunnel.close()
        up = self.loop.create_task(tunnel.to_upstream())
        try:
            await tunnel.to_client()
        finally:
            if not up.done():
                up.cancel()
            await asyncio.gather(up, return_exceptions=True)
            ctx.request_bytes += tunnel.sent
            ctx.response_bytes += tunnel.received
        self.ws.report.report(ctx)

    async def _refused(self, conn: H2Server, ds: DStream, ctx: Ctx, d: RouteDecision, side: UpstreamSide,
                       rest: bytes) -> None:
        """An ordinary answer to the upgrade: its head and the body that came with it (until the upstream closes
        or the body ends), then the end of the stream."""
        ctx.status = side.status
        conn.send_headers(ds, self._headers(d, side, side.status), end=False)
        tunnel = H2Tunnel(conn, ds, side, ctx)
        side.tunnel = tunnel  # type: ignore[assignment]
        tunnel.limit = next((int(v) for k, v in side.headers if k.lower() == b"content-length" and v.isdigit()),
                            None)
        body = rest + bytes(side.pending)
        side.pending.clear()
        if body:
            tunnel.from_upstream(body)
        if side.body_done or tunnel.limit == 0:
            tunnel.close()
        await tunnel.to_client()
        ctx.response_bytes += tunnel.received
        self.ws.report.report(ctx)

