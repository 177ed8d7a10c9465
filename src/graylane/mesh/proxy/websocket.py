"""WebSocket (HTTP/1.1 `Upgrade: websocket`) through the proxy: the upgrade request goes to the endpoint the route
chose, and on `101 Switching Protocols` the two sockets are spliced byte for byte both ways.

As in Envoy (Istio enables the websocket upgrade on every route): the route timeout covers only the wait for the
upgrade response; once upgraded, only the stream idle timeout ends a quiet tunnel (flag SI). The tunnel counts once
in the metrics (response_code 101), reported when it closes, with the bytes each way. A non-101 answer is passed on
as an ordinary response and the connection closed. The listener hands over an upgrade request with the bytes
after its head (`DownstreamProtocol.upgraded`); this module takes over both transports (`set_protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

import httptools

from graylane.mesh.proxy.errors import UpstreamConnectFailure, UpstreamOverflow, UpstreamProtocolError, UpstreamReset
from graylane.mesh.proxy.framing import MAX_HEADERS
from graylane.mesh.proxy.listener import SERVER_HEADER, DownstreamProtocol, Request, status_line
from graylane.mesh.proxy.timeout import Deadline, within

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.outlier import OutlierDetectors
    from graylane.mesh.proxy.route import Outbound
    from graylane.mesh.proxy.telemetry import Ctx, Telemetry
    from graylane.mesh.routing import RouteDecision

# Response headers not passed on for a non-101 answer (the connection closes after it).
_DROP = frozenset((b"server", b"connection", b"keep-alive", b"proxy-connection"))


class UpstreamSide(asyncio.Protocol):
    """The upstream connection: parses the upgrade response head, then relays bytes to the tunnel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.buf = bytearray()  # the response head while it arrives
        self.head: asyncio.Future[bytes] = loop.create_future()  # the bytes after the head, once it is read
        self.body_done = False
        self.tunnel: Tunnel | None = None
        self.pending = bytearray()  # bytes after the head, before the tunnel attaches

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_upstream(data)
            return
        if self.head.done():
            self.pending += data
            return
        self.buf += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"bad upstream response: {exc}"))
            return
        if self.status:
            end = self.buf.find(b"\r\n\r\n")
            self.head.set_result(bytes(self.buf[end + 4:]) if end >= 0 else b"")
            self.buf = bytearray()
        elif len(self.buf) > MAX_HEADERS:
            self._fail(UpstreamProtocolError("upstream response head too large"))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
        else:
            self._fail(UpstreamReset("upstream closed the connection"))

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.down.pause_reading()

    def resume_writing(self) -> None:
        if self.tunnel is not None and not self.tunnel.closed:
            self.tunnel.down.resume_reading()

    # -- httptools callbacks (the upgrade response head; a non-101 answer's body end)
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101 or status >= 200:  # interim answers (100 Continue) are dropped
            self.status = status
        else:
            self.headers = []

    def on_message_complete(self) -> None:
        self.body_done = True

    def _fail(self, err: Exception) -> None:
        if not self.head.done():
            self.head.set_exception(err)
            self.head.exception()
        if self.transport is not None:
            self.transport.abort()


class _DownstreamSide(asyncio.Protocol):
    """The client connection once upgraded (it replaces the listener's protocol on the transport)."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def data_received(self, data: bytes) -> None:
        self.tunnel.from_downstream(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.close()
        self.tunnel.proto.connection_lost(exc)  # the listener's own bookkeeping (connection set, its task)

    def pause_writing(self) -> None:
        self.tunnel.up.pause_reading()

    def resume_writing(self) -> None:
        if not self.tunnel.closed:
            self.tunnel.up.resume_reading()


class Tunnel:
    """Both sides of one upgraded connection; reports the request once when either side closes."""

    def __init__(self, proto: DownstreamProtocol, up: asyncio.Transport, ctx: Ctx, report: Telemetry,
                 idle_s: float, done: asyncio.Future[None]) -> None:
        assert proto.transport is not None
        self.proto = proto
        self.loop = proto.loop
        self.down: asyncio.Transport = proto.transport
        self.up = up
        self.ctx = ctx
        self.report = report
        self.closed = False
        self.sent = 0  # client -> upstream
        self.received = 0  # upstream -> client
        self.idle_s = idle_s
        self.last = self.loop.time()
        self.timer = self.loop.call_later(idle_s, self._check_idle) if idle_s > 0 else None
        self.done = done

    def from_downstream(self, data: bytes) -> None:
        if not self.closed:
            self.sent += len(data)
            self.last = self.loop.time()
            self.up.write(data)

    def from_upstream(self, data: bytes) -> None:
        if not self.closed:
            self.received += len(data)
            self.last = self.loop.time()
            self.down.write(data)

    def _check_idle(self) -> None:
        left = self.last + self.idle_s - self.loop.time()
        if left > 0:
            self.timer = self.loop.call_later(left, self._check_idle)
            return
        self.timer = None
        self.ctx.flags.append("SI")  # Envoy's stream idle timeout ends an upgraded stream
        self.proto.server.stats.bump("graylane_proxy_downstream_rq_idle_timeout_total")
        self.close()

    def close(self) -> None:
        """Either side went away (or the tunnel idled out): close the other, report once."""
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.up.close()
        self.down.close()
        self.proto.closed = True
        self.ctx.request_bytes += self.sent
        self.ctx.response_bytes += self.received
        self.report.report(self.ctx)
        if not self.done.done():
            self.done.set_result(None)


class WebSockets:
    """Forwards upgrade requests and splices the upgraded connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, load: LoadState, outliers: OutlierDetectors,
                 report: Telemetry) -> None:
        self.loop = loop
        self.load = load
        self.outliers = outliers
        self.report = report

    async def forward(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
                      out: Outbound) -> bool:
        """Send the upgrade request to the decision's endpoint; splice on 101. Returns False (the connection is
        the tunnel's, or closes after a refused upgrade). Raises `ProxyError` before anything was answered."""
        async with self.upstream(req, ctx, d, out) as (side, rest):
            if side.status != 101:
                return await self._refused(proto, ctx, d, side, rest)
            return await self._splice(proto, ctx, d, side, rest)

    @contextlib.asynccontextmanager
    async def upstream(self, req: Request, ctx: Ctx, d: RouteDecision, out: Outbound,
                       extra_head: bytes = b"") -> AsyncIterator[tuple[UpstreamSide, bytes]]:
        """The upgrade handshake with the decision's endpoint (HTTP/1.1 and h2 clients alike): yields the upstream
        side, its answer read, and the bytes after the answer's head. The connection counts against the cluster's
        pool until the block ends; a failure in it aborts the upstream connection."""
        cluster, ep, rule = d.cluster, d.endpoint, d.rule
        assert cluster is not None and ep is not None
        counters = self.load.counters(cluster.name)
        if counters.connections >= cluster.policy.pool.max_connections:
            raise UpstreamOverflow(f"cluster {cluster.name} overflow")
        ctx.endpoint = ep
        ctx.attempts = 1
        head = out.head(1, ctx, req, b"")
        head = head[:-2] + b"connection: upgrade\r\nupgrade: websocket\r\n" + extra_head + b"\r\n"
        deadline = Deadline.start(self.loop.time, rule.timeout_s if rule is not None else None,
                                  req.hmap.get("x-envoy-upstream-rq-timeout-ms"), None)
        side = UpstreamSide(self.loop)
        host = self.load.host(ep)
        host.active += 1
        counters.connections += 1
        ctx.upstream_start = time.perf_counter()
        try:
            rest = await within(deadline, self.loop.time(), cluster.name,
                                partial(self.handshake, side, ep.host, ep.port,
                                        cluster.policy.pool.connect_timeout_s, head))
            self.outliers.record(cluster, ep, side.status)
            yield side, rest
        except BaseException:
            if side.transport is not None:
                side.transport.abort()
            raise
        finally:
            host.active -= 1
            counters.connections -= 1

    async def handshake(self, side: UpstreamSide, host: str, port: int, connect_s: float, head: bytes) -> bytes:
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: side, host, port), connect_s)
        except (TimeoutError, OSError) as exc:
            raise UpstreamConnectFailure(f"connect to {host}:{port}: {exc}") from None
        assert side.transport is not None
        side.transport.write(head)
        rest: bytes = await side.head
        return rest

    def _response_head(self, d: RouteDecision, side: UpstreamSide, upgraded: bool) -> bytes:
        headers = answer_headers(d, side, _DROP)
        lines = [status_line(side.status), SERVER_HEADER]
        lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers if k != "server"]
        lines.append(b"connection: upgrade\r\n" if upgraded else b"connection: close\r\n")
        return b"".join(lines) + b"\r\n"

    async def _refused(self, proto: DownstreamProtocol, ctx: Ctx, d: RouteDecision, side: UpstreamSide,
                       rest: bytes) -> bool:
        """The upstream answered the upgrade with an ordinary response: pass it on, then close."""
        assert side.transport is not None
        ctx.status = side.status
        proto.write(self._response_head(d, side, upgraded=False))
        done: asyncio.Future[None] = self.loop.create_future()

        class Relay(asyncio.Protocol):  # the rest of the response, as it came, to the client
            def data_received(self, data: bytes) -> None:
                relay(data)

            def connection_lost(self, exc: Exception | None) -> None:
                if not done.done():
                    done.set_result(None)

        def relay(data: bytes) -> None:
            ctx.response_bytes += len(data)
            proto.write(data)
            try:
                side.parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                side.body_done = True
            if side.body_done and not done.done():
                done.set_result(None)

        side.transport.set_protocol(Relay())
        ctx.response_bytes = len(rest)
        proto.write(rest)  # already parsed with the head
        if side.pending:
            relay(bytes(side.pending))
        if not side.body_done and not side.transport.is_closing():
            await done
        side.transport.close()
        ctx.request_bytes = req_bytes(proto)
        self.report.report(ctx)
        return False

    async def _splice(self, proto: DownstreamProtocol, ctx: Ctx, d: RouteDecision, side: UpstreamSide,
                      rest: bytes) -> bool:
        assert side.transport is not None and proto.transport is not None
        ctx.status = 101
        proto.write(self._response_head(d, side, upgraded=True))
        done: asyncio.Future[None] = self.loop.create_future()
        tunnel = Tunnel(proto, side.transport, ctx, self.report, proto.server.stream_idle_timeout_s, done)
        side.tunnel = tunnel
        early, proto.upgraded = proto.upgraded or b"", None
        proto.transport.set_protocol(_DownstreamSide(tunnel))
        if side.pending or rest:
            tunnel.from_upstream(rest + bytes(side.pending))
            side.pending.clear()
        if early:
            tunnel.from_downstream(early)
        if proto.closed or side.transport.is_closing():
            tunnel.close()
        proto.unparsed = b""
        proto.paused = 0
        proto.transport.resume_reading()  # the listener paused it when the upgrade request was parsed
        try:
            await done
        finally:
            tunnel.close()
        return False


def req_bytes(proto: DownstreamProtocol) -> int:
    req = proto.pipeline[0] if proto.pipeline else None
    return req.body.received if req is not None else 0


def answer_headers(d: RouteDecision, side: UpstreamSide, drop: frozenset[bytes]) -> list[tuple[str, str]]:
    """The upstream's answer to the upgrade as the client gets it: without the `drop` names, with the
    destination's and the route's response header operations."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in side.headers if k.lower() not in drop]
    if d.destination is not None:
        headers = d.destination.headers_response.apply(headers)
    if d.rule is not None:
        headers = d.rule.headers_response.apply(headers)
    return headers
