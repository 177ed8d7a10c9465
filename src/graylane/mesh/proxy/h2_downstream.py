"""Downstream HTTP/2 cleartext (h2c, prior knowledge) on sidecar and gateway listeners: the listener sees the client
preface (`PRI * HTTP/2.0`) on a connection's first bytes and hands the transport to `H2Server`; each stream is then
served by `H2Streams` with the proxy's own layers (route, rate limit, faults, retries, timeouts, telemetry); an
RFC 8441 extended CONNECT (`:protocol websocket`) stream is routed as an HTTP/1.1 upgrade and spliced by
`h2_websocket.py`.

Bounds against hostile peers: 100 concurrent streams, a 60 KiB header list, 64 KiB flow-control windows (request
data is acknowledged only once the upstream took it), a write buffer cap (unread SETTINGS/PING acks), a cap on
streams a client resets (rapid reset), and the idle timeout when no stream is open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h2.config
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from graylane.mesh.proxy import grpc
from graylane.mesh.proxy.errors import BadRequest, FaultAbort, ProxyError, StreamIdleTimeout
from graylane.mesh.proxy.h2_exchange import Exchanges, Layers
from graylane.mesh.proxy.h2_from_h1 import forward_h1_to_h2
from graylane.mesh.proxy.h2_mirror import Copy
from graylane.mesh.proxy.h2_upstream import CONNECTION_WINDOW, STREAM_WINDOW, Body, H2Peer, H2Pools, Headers
from graylane.mesh.proxy.h2_websocket import H2WebSockets, as_upgrade, is_extended_connect
from graylane.mesh.proxy.listener import H2_PREFACE as PREFACE
from graylane.mesh.proxy.listener import Request
from graylane.mesh.proxy.telemetry import Ctx
from graylane.mesh.routing import Outcome

if TYPE_CHECKING:
    from graylane.mesh.proxy.listener import DownstreamProtocol
    from graylane.mesh.routing import Cluster, RequestView, RouteDecision

log = logging.getLogger(__name__)
MAX_STREAMS = 100
MAX_HEADER_LIST = 60 * 1024  # as HTTP/1's MAX_HEADERS (Envoy's max_request_headers_kb)
MAX_RESETS = 1000  # streams a client may cancel on one connection before it is told to calm down (CVE-2023-44487)
MAX_CONTROL = 1000  # SETTINGS and PING frames a client may send per 10 s (each costs us an ACK to write)


class DStream:
    """One downstream request stream: its head and body as they arrive."""

    __slots__ = ("sid", "headers", "body", "task", "responded", "last", "timed_out", "copy")

    def __init__(self, server: H2Server, sid: int, headers: Headers, ended: bool) -> None:
        self.sid = sid
        self.headers = headers
        self.body = Body(server.loop, lambda n: server.ack(sid, n))
        if ended:
            self.body.ended = True
        self.task: asyncio.Task[None] | None = None
        self.responded = False
        self.last = server.loop.time()  # the last bytes either way (the stream idle timeout)
        self.timed_out = False
        self.copy: Copy | None = None  # the body as it arrives, for the route's mirrors (h2_mirror.py)


class H2Server(H2Peer):
    """The server side of one h2c connection (takes the transport over from the HTTP/1.1 listener protocol)."""

    def __init__(self, streams: H2Streams, proto: DownstreamProtocol) -> None:
        super().__init__(proto.loop, h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.streams_owner = streams
        self.proto = proto
        self.listener = proto.listener
        self.peer = proto.peer
        self.streams: dict[int, DStream] = {}
        self.resets = 0
        self.control = 0
        self.control_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    def start(self, data: bytes) -> None:
        proto = self.proto
        assert proto.transport is not None
        self.transport = proto.transport
        proto.parsing = None
        proto.pipeline.clear()
        proto.paused = 0
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})  # RFC 8441 WebSockets (h2_websocket.py)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)  # bounded by the streams'
        self.flush()
        self.transport.set_protocol(self)
        self._idle()
        self.data_received(data)

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error:  # incl. streams beyond MAX_CONCURRENT_STREAMS: h2 ends the connection
            self.flush()  # h2 queued its GOAWAY
            self.close()
            return
        for ev in events:
            self._event(ev)
        self.flush()
        if not self.streams:
            self._idle()  # a client still sending (the rest of a refused body) is not idle

    def _event(self, ev: Any) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            ds = DStream(self, ev.stream_id, list(ev.headers), ev.stream_ended is not None)
            self.streams[ev.stream_id] = ds
            ds.task = self.loop.create_task(self.streams_owner.serve(self, ds))
            self.proto.deadline = float("inf")
            if self.idle_timer is None and self.proto.server.stream_idle_timeout_s > 0:
                self.idle_timer = self.loop.call_later(self.proto.server.stream_idle_timeout_s, self._check_streams)
            return
        ds = self.streams.get(getattr(ev, "stream_id", 0) or 0)
        if isinstance(ev, h2.events.DataReceived):
            if ds is not None and not ds.body.ended:
                ds.last = self.loop.time()
                ds.body.feed(ev.data, ev.flow_controlled_length)
                if ds.copy is not None:
                    ds.copy.keep(ev.data)
            else:
                self.ack(ev.stream_id, ev.flow_controlled_length)
        elif isinstance(ev, h2.events.TrailersReceived) and ds is not None:
            ds.body.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded) and ds is not None:
            ds.body.end()
            if ds.copy is not None:
                ds.copy.end(ds.body.trailers)
        elif isinstance(ev, h2.events.StreamReset):
            if ds is not None:
                self.resets += 1
                ds.body.fail(ConnectionResetError("client reset the stream"))
                if ds.task is not None:
                    ds.task.cancel()
                self.done(ds)
            if self.resets > MAX_RESETS:
                self.conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                self.flush()
                self.close()
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.wake_windows()
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self._control()
        elif isinstance(ev, h2.events.PingReceived):
            self._control()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.close()

    def _control(self) -> None:
        now = self.loop.time()
        if now - self.control_since > 10:
            self.control, self.control_since = 0, now
        self.control += 1
        if self.control > MAX_CONTROL and not self.closed:
            self.conn.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            self.flush()
            self.close()

    def _check_streams(self) -> None:
        """Envoy's stream_idle_timeout per stream: nothing either way for that long ends it (flag SI)."""
        self.idle_timer = None
        idle = self.proto.server.stream_idle_timeout_s
        now = self.loop.time()
        for ds in list(self.streams.values()):
            if now - ds.last >= idle and ds.task is not None and not ds.timed_out:
                ds.timed_out = True
                ds.task.cancel()
        if self.streams and not self.closed:
            due = min(ds.last for ds in self.streams.values()) + idle
            self.idle_timer = self.loop.call_at(max(due, now + 0.01), self._check_streams)

    async def send_data(self, sid: int, data: bytes | memoryview, end: bool = False) -> None:
        await super().send_data(sid, data, end)
        ds = self.streams.get(sid)
        if ds is not None:
            ds.last = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        for ds in list(self.streams.values()):
            ds.body.fail(ConnectionResetError("client went away"))
            if ds.task is not None:
                ds.task.cancel()
        self.streams.clear()
        self.wake_windows()
        self.proto.connection_lost(exc)

    # -- helpers for the stream tasks
    def ack(self, sid: int, n: int) -> None:
        if n and not self.closed:
            try:
                self.conn.acknowledge_received_data(n, sid)
            except h2.exceptions.H2Error:
                self.conn.increment_flow_control_window(n)
            self.flush()

    def send_headers(self, ds: DStream, headers: Headers, end: bool) -> None:
        if not self.closed and ds.sid in self.streams:
            ds.responded = True
            self.conn.send_headers(ds.sid, headers, end_stream=end)
            self.flush()

    def done(self, ds: DStream) -> None:
        if self.streams.pop(ds.sid, None) is None:
            return
        unread = sum(flow for _, flow in ds.body.chunks)  # body the answer did not need: credit it back
        ds.body.chunks.clear()
        self.ack(ds.sid, unread)
        if not self.streams:
            self._idle()

    def _idle(self) -> None:
        idle = self.proto.server.idle_timeout_s
        self.proto.deadline = self.loop.time() + idle if idle > 0 else float("inf")

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


class H2Streams:
    """Serves h2 streams with the forwarder's layers; owns the upstream h2 connection pools."""

    def __init__(self, fw: Layers) -> None:
        self.fw = fw
        self.loop = fw.loop
        self.pools = H2Pools(fw.loop)
        self.exchanges = Exchanges(fw, self.pools)
        # Whether a routed request to a cluster goes upstream as HTTP/2 (its Service port speaks it): asked for
        # every HTTP/1.1 request, so the exchanges' own method, not a method calling it.
        self.speaks_h2: Callable[[Cluster | None], bool] = self.exchanges.speaks_h2
        self.websockets = H2WebSockets(fw.websockets)

    def take_over(self, proto: DownstreamProtocol, data: bytes) -> bool:
        """Called by the listener when a connection's first bytes are the h2 preface."""
        if proto.transport is None or proto.closed or not data.startswith(PREFACE[:14]) or proto.listener is None:
            return False
        H2Server(self, proto).start(data)
        return True

    async def from_h1(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
                      d: RouteDecision) -> bool:
        """A routed HTTP/1.1 request to such a cluster, over h2 (h2_from_h1.py)."""
        fw = self.fw
        return await forward_h1_to_h2(self.exchanges, fw.respond, fw.telemetry, proto, req, ctx, view, d)

    async def serve(self, conn: H2Server, ds: DStream) -> None:
        fw = self.fw
        table, loop = fw.server.table, self.loop
        conn.listener = conn.proto.server.listener_at(conn.proto.listener_key) or conn.listener
        req = request_of(ds)
        protocol = is_extended_connect(ds.headers)
        if protocol is not None:
            as_upgrade(req, protocol.decode("latin-1"))
        ctx = Ctx(conn.listener, req.start, req)
        is_grpc = protocol is None and grpc.is_grpc(req.hmap.get("content-type"))
        if is_grpc:
            ctx.grpc_status = "-"  # until an answer carries one
        try:
            try:
                view = fw.route.view(table, conn, req, ctx)
                fw.limits.check_listener(conn.listener, loop.time())
                d = fw.route.decide(table, view, conn.listener, ctx, loop.time())
                if d.rule is not None and d.rule.fault is not None:
                    await fw.faults.apply(d.rule.fault, ctx)
                if protocol is not None and d.outcome is Outcome.ROUTED:
                    if protocol.lower() != b"websocket":
                        raise BadRequest(f"upgrade {protocol!r} not supported")  # as HTTP/1.1's other upgrades
                    await self.websockets.forward(conn, ds, req, ctx, d, fw.route.outbound(d, view, req, ctx))
                    return
                await self.exchanges.run(conn, ds, req, ctx, d, view, is_grpc)
            except ProxyError as err:
                self.local_reply(conn, ds, ctx, err, is_grpc)
        except (asyncio.CancelledError, ConnectionResetError):
            if ds.timed_out and not conn.closed:
                fw.server.stats.bump("graylane_proxy_downstream_rq_idle_timeout_total")
                self.local_reply(conn, ds, ctx, StreamIdleTimeout("stream timeout"), is_grpc)  # resets if answered
                return
            ctx.flags.append("DC")  # the client reset the stream or went away
            fw.telemetry.report(ctx)
        except Exception:  # boundary: one stream's bug must not take down the connection
            log.exception("h2 stream failed")
            conn.reset(ds.sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        finally:
            conn.done(ds)

    def local_reply(self, conn: H2Server, ds: DStream, ctx: Ctx, err: ProxyError, is_grpc: bool) -> None:
        """Envoy's local reply on h2; for a gRPC request a trailers-only answer carrying the grpc-status."""
        if err.flag:
            ctx.flags.append(err.flag)
        status = err.abort_status if isinstance(err, FaultAbort) else err.status
        body = err.body.encode()
        if ds.responded:  # the client saw the answer's status (a WebSocket tunnel's 200): it stays the count's
            conn.reset(ds.sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif is_grpc:  # trailers-only; counted as Envoy counts it: response_code 200 with the grpc-status
            code = grpc.local_reply_status(err)
            ctx.status, ctx.grpc_status = 200, str(code)
            headers = [*grpc.trailers_only(code, err.body), (b"server", b"istio-envoy")]
            headers += [(k.encode(), v.encode()) for k, v in err.headers]
            conn.send_headers(ds, headers, end=True)
        else:
            ctx.status = status
            headers = [(b":status", b"%d" % status), (b"server", b"istio-envoy")]
            headers += [(k.encode(), v.encode()) for k, v in err.headers]
            if body:
                headers += [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
            conn.send_headers(ds, headers, end=not body)
            if body and not conn.closed:
                conn.conn.send_data(ds.sid, body, end_stream=True)
                conn.flush()
            ctx.response_bytes = len(body)
        self.fw.telemetry.report(ctx)


def request_of(ds: DStream) -> Request:
    """The stream's head as the HTTP/1 layers read it (method, target, headers with `host` from :authority)."""
    req = Request()
    req.start = time.perf_counter()
    req.version = "2"
    pseudo: dict[bytes, bytes] = {}
    for k, v in ds.headers:
        if k.startswith(b":"):
            pseudo[k] = v
            continue
        name, val = k.decode("latin-1"), v.decode("latin-1")
        req.headers.append((name, val))
        old = req.hmap.get(name)
        req.hmap[name] = val if old is None else f"{old},{val}"
    req.method = pseudo.get(b":method", b"").decode("latin-1")
    req.target = pseudo.get(b":path", b"").decode("latin-1")
    authority = pseudo.get(b":authority")
    if authority is not None:
        req.hmap["host"] = authority.decode("latin-1")
    cl = req.hmap.get("content-length")
    req.content_length = int(cl) if cl is not None and cl.isdigit() else None
    req.has_body = not ds.body.ended
    return req
