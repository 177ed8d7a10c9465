"""One h2 downstream stream's trip upstream: to an HTTP/2 upstream (the Service port speaks it: `grpc-*`,
`http2-*`, appProtocol `grpc`/`http2`/`kubernetes.io/h2c`) as an h2 stream, else as an HTTP/1.1 request through
the ordinary retry/connect layers; the response streamed back with trailers.

Retries follow the route's policy (status codes, connect failure, reset, and for gRPC the `retryOn` reasons judged
from a trailers-only answer's grpc-status), replaying the request body while it is within the replay limit, as
Envoy buffers it. The route timeout (for gRPC the smaller of it and `grpc-timeout`) bounds the wait for response
headers and, for gRPC, the whole stream (Envoy's max stream duration): past it, a gRPC caller gets
DEADLINE_EXCEEDED if nothing was answered yet, else the stream is reset.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from graylane.mesh.proxy import grpc
from graylane.mesh.proxy.connect import REPLAY_LIMIT
from graylane.mesh.proxy.errors import (
    BadRequest,
    PerTryTimeout,
    ProxyError,
    UpstreamConnectFailure,
    UpstreamReset,
    UpstreamTimeout,
)
from graylane.mesh.proxy.h2_mirror import Copy, H2Mirrors
from graylane.mesh.proxy.h2_upstream import (
    CONNECTION_SPECIFIC,
    Body,
    H2ClientConnection,
    H2Pools,
    Headers,
    UpStream,
)
from graylane.mesh.proxy.listener import RequestBody
from graylane.mesh.proxy.respond import RESPONSE_HOP, route_cookie_values
from graylane.mesh.proxy.timeout import Deadline
from graylane.mesh.routing import Outcome, RetryPolicy

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.faults import Faults
    from graylane.mesh.proxy.listener import DownstreamProtocol, Request
    from graylane.mesh.proxy.mirror import Mirrors
    from graylane.mesh.proxy.outlier import OutlierDetectors
    from graylane.mesh.proxy.ratelimit import RateLimits
    from graylane.mesh.proxy.respond import Responder
    from graylane.mesh.proxy.retry import Retries
    from graylane.mesh.proxy.route import Outbound, Router
    from graylane.mesh.proxy.stats import Stats
    from graylane.mesh.proxy.telemetry import Ctx, Telemetry
    from graylane.mesh.proxy.websocket import WebSockets
    from graylane.mesh.routing import Cluster, ClusterEndpoint, RequestView, RouteDecision, RouteTable

DEFAULT_RETRIES = RetryPolicy.istio_default()
H1_BODY_LIMIT = 1024 * 1024  # an h2 request body sent to an HTTP/1.1 upstream is buffered whole, up to this


class BodyTooLarge(BadRequest):
    """Envoy's buffer filter answer when a body outgrows what may be buffered."""

    status, flag, body = 413, "", "Payload Too Large"


class Stream(Protocol):
    """A downstream h2 stream (`h2_downstream.DStream`)."""

    sid: int
    body: Body
    responded: bool
    copy: Copy | None


class Downstream(Protocol):
    """A downstream h2 connection (`h2_downstream.H2Server`)."""

    proto: DownstreamProtocol
    closed: bool
    streams: dict[int, Stream]

    def send_headers(self, ds: Stream, headers: Headers, end: bool) -> None: ...
    async def send_data(self, sid: int, data: bytes | memoryview, end: bool = False) -> None: ...
    def reset(self, sid: int, code: int = 8) -> None: ...
    def end_stream(self, sid: int, trailers: Headers | None) -> None: ...


class LayerHost(Protocol):
    """The data-plane process as the h2 streams read it (`ProxyServer` provides it)."""

    @property
    def table(self) -> RouteTable: ...
    @property
    def load(self) -> LoadState: ...
    @property
    def outliers(self) -> OutlierDetectors: ...
    @property
    def stats(self) -> Stats: ...


class Layers(Protocol):
    """The forwarder's layers an h2 stream goes through (`forward.Forwarder` provides them)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def server(self) -> LayerHost: ...
    @property
    def route(self) -> Router: ...
    @property
    def limits(self) -> RateLimits: ...
    @property
    def faults(self) -> Faults: ...
    @property
    def retries(self) -> Retries: ...
    @property
    def telemetry(self) -> Telemetry: ...
    @property
    def respond(self) -> Responder: ...
    @property
    def mirrors(self) -> Mirrors: ...
    @property
    def websockets(self) -> WebSockets: ...


class Replay:
    """The request body as read so far, kept for a retry while within REPLAY_LIMIT (Envoy's buffer limit)."""

    __slots__ = ("chunks", "size", "ok")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.ok = True

    def keep(self, data: bytes) -> None:
        if self.ok:
            self.size += len(data)
            if self.size > REPLAY_LIMIT:
                self.ok, self.chunks = False, []
            else:
                self.chunks.append(data)


class Exchanges:
    def __init__(self, fw: Layers, pools: H2Pools) -> None:
        self.fw = fw
        self.loop = fw.loop
        self.pools = pools
        self.mirrors = H2Mirrors(fw.mirrors, pools, self.speaks_h2)

    def speaks_h2(self, cluster: Cluster | None) -> bool:
        """Whether the cluster's Service port speaks HTTP/2 upstream (the current route table says)."""
        return self.fw.server.table.speaks_h2(cluster)

    async def run(self, conn: Downstream, ds: Stream, req: Request, ctx: Ctx, d: RouteDecision, view: RequestView,
                  is_grpc: bool) -> None:
        fw = self.fw
        if d.outcome is not Outcome.ROUTED:
            await self._decision(conn, ds, ctx, d, view)
            return
        assert d.cluster is not None and d.endpoint is not None
        out = fw.route.outbound(d, view, req, ctx)
        rule = d.rule
        if rule is not None and rule.mirrors:
            te = req.hmap.get("te", "").strip().lower() == "trailers"
            self.mirrors.attach(ds, fw.server.table, rule.mirrors, view, out, te)
        policy = rule.retries if rule is not None else DEFAULT_RETRIES
        route_s = rule.timeout_s if rule is not None else None
        if is_grpc:
            route_s = grpc.effective_timeout(route_s, grpc.parse_timeout(req.hmap.get("grpc-timeout")))
        deadline = Deadline.start(self.loop.time, route_s, req.hmap.get("x-envoy-upstream-rq-timeout-ms"),
                                  policy.per_try_timeout_s)
        if self.speaks_h2(d.cluster):
            stream_at = deadline.at if is_grpc else None
            try:
                async with asyncio.timeout_at(stream_at):
                    await self._h2(conn, ds, req, ctx, d, view, out, policy, deadline, is_grpc)
            except TimeoutError:
                if ds.responded:  # the response started: Envoy resets the stream at the max stream duration
                    ctx.flags.append("UT")
                    conn.reset(ds.sid)
                    fw.telemetry.report(ctx)
                    return
                raise UpstreamTimeout(d.cluster.name) from None
        else:
            await self._h1(conn, ds, req, ctx, d, view, out, policy, deadline)

    async def _decision(self, conn: Downstream, ds: Stream, ctx: Ctx, d: RouteDecision, view: RequestView) -> None:
        from graylane.mesh.proxy.respond import _OUTCOME_ERRORS
        from graylane.mesh.routing import redirect_location

        rule = d.rule
        if d.outcome is Outcome.REDIRECT and rule is not None:
            match = rule.matches[d.match_index] if d.match_index is not None else None
            headers = [(b":status", b"%d" % d.status), (b"server", b"istio-envoy"),
                       (b"location", redirect_location(rule, match, view).encode("latin-1"))]
            conn.send_headers(ds, headers, end=True)
            ctx.status = d.status
            self.fw.telemetry.report(ctx)
            return
        if d.outcome is Outcome.DIRECT_RESPONSE and rule is not None and rule.direct_response is not None:
            body = rule.direct_response.body
            headers = [(b":status", b"%d" % d.status), (b"server", b"istio-envoy"), (b"content-type", b"text/plain"),
                       (b"content-length", b"%d" % len(body))]
            headers += [(k.encode(), v.encode()) for k, v in (*rule.headers_response.set, *rule.headers_response.add)]
            conn.send_headers(ds, headers, end=not body)
            if body:
                await conn.send_data(ds.sid, body, end=True)
            ctx.status, ctx.response_bytes = d.status, len(body)
            self.fw.telemetry.report(ctx)
            return
        raise _OUTCOME_ERRORS[d.outcome](d.detail)

    # -- to an HTTP/2 upstream ------------------------------------------------------------------------
    async def _h2(self, conn: Downstream, ds: Stream, req: Request, ctx: Ctx, d: RouteDecision, view: RequestView,
                  out: Outbound, policy: RetryPolicy, deadline: Deadline, is_grpc: bool) -> None:
        fw = self.fw
        cluster, ep = d.cluster, d.endpoint
        assert cluster is not None and ep is not None
        pseudo: Headers = [(b":method", out.method.encode()), (b":scheme", b"http"),
                           (b":authority", out.authority.encode("latin-1")), (b":path", out.path.encode("latin-1"))]
        extra: Headers = [(b"te", b"trailers")] if req.hmap.get("te", "").strip().lower() == "trailers" else []
        if req.content_length is not None:  # kept as Envoy keeps it (route.py drops it for HTTP/1.1's own framing)
            extra.append((b"content-length", b"%d" % req.content_length))
        replay = Replay()
        tried: list[ClusterEndpoint] = []
        retries_left, attempt = policy.attempts, 0
        while True:
            attempt += 1
            ctx.attempts, ctx.endpoint = attempt, ep
            tried.append(ep)
            fw.limits.check_inbound(ep, self.loop.time())
            headers = pseudo + [(name, v.encode("latin-1")) for k, v in out.try_headers(attempt, ctx)
                                if (name := k.lower().encode("latin-1")) not in CONNECTION_SPECIFIC] + extra
            host = fw.server.load.host(ep)
            host.active += 1
            ctx.upstream_start = time.perf_counter()
            us: UpStream | None = None
            pump: asyncio.Task[None] | None = None
            try:
                try:
                    limit, per_try = deadline.limit(self.loop.time())
                    async with asyncio.timeout(limit):
                        uc = await self.pools.connection(ep.address, ep.host, ep.port,
                                                         cluster.policy.pool.connect_timeout_s)
                        ended = ds.body.ended and not ds.body.chunks and not replay.chunks
                        us = uc.request(headers, end_stream=ended and not ds.body.trailers)
                        if not ended or ds.body.trailers:
                            pump = self.loop.create_task(_pump_request(ds.body, replay, uc, us))
                        resp, resp_ended = await us.headers
                except TimeoutError:
                    raise (PerTryTimeout if per_try else UpstreamTimeout)(cluster.name) from None
            except ProxyError as err:
                host.active -= 1
                _cancel(us, pump)
                fw.server.outliers.record(cluster, ep, 504 if isinstance(err, UpstreamTimeout) else 503)
                retry = (isinstance(err, UpstreamConnectFailure) and policy.retries_connect_failure()) or (
                    isinstance(err, UpstreamReset) and policy.retries_reset() and replay.ok) or (
                    isinstance(err, PerTryTimeout) and policy.retries_timeout() and replay.ok)
                if retry and retries_left > 0 and fw.retries._take(cluster):
                    retries_left -= 1
                    nxt = await fw.retries._next(cluster, view, tried, attempt, deadline)
                    if nxt is not None:
                        ep = nxt
                        continue
                if attempt > 1:
                    ctx.flags.append("URX")
                raise
            except BaseException:
                host.active -= 1
                _cancel(us, pump)
                raise
            status = _status(resp)
            gstatus = grpc.status_of(resp) if resp_ended else None
            # Outlier detection sees a gRPC failure as its HTTP equivalent (UNAVAILABLE: 503), as Envoy's does.
            fw.server.outliers.record(cluster, ep, grpc.grpc_to_http(gstatus) if gstatus is not None else status)
            retriable = policy.retries_status(status) or (is_grpc and grpc.retries_status(policy.retry_on, gstatus))
            if retriable and retries_left > 0 and replay.ok and fw.retries._take(cluster):
                retries_left -= 1
                host.active -= 1
                _cancel(us, pump)
                nxt = await fw.retries._next(cluster, view, tried, attempt, deadline)
                if nxt is not None:
                    ep = nxt
                    continue
                raise UpstreamReset("retry target vanished")
            if attempt > 1 and retriable:
                ctx.flags.append("URX")
            try:
                await self._respond_h2(conn, ds, ctx, d, us, resp, resp_ended, gstatus)
            except BaseException:
                us.conn.cancel(us)  # the client went away or timed out: the upstream stops too (RST_STREAM)
                raise
            finally:
                host.active -= 1
                if pump is not None and not pump.done():
                    pump.cancel()
            return

    def _response_headers(self, d: RouteDecision, ctx: Ctx, resp: Headers) -> Headers:
        service_ms = int((time.perf_counter() - ctx.upstream_start) * 1000)
        out: Headers = [(b":status", b"%d" % ctx.status), (b"server", b"istio-envoy"),
                        (b"x-envoy-upstream-service-time", b"%d" % service_ms)]
        rest = [(k, v) for k, v in resp if not k.startswith(b":") and k not in RESPONSE_HOP]
        dest, rule = d.destination, d.rule
        if (dest is not None and not dest.headers_response.is_empty()) or (
                rule is not None and not rule.headers_response.is_empty()):
            text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in rest]
            if dest is not None:
                text = dest.headers_response.apply(text)
            if rule is not None:
                text = rule.headers_response.apply(text)
            rest = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in text if k.lower() != "server"]
        return out + rest + route_cookies(d)

    async def _respond_h2(self, conn: Downstream, ds: Stream, ctx: Ctx, d: RouteDecision, us: UpStream,
                          resp: Headers, resp_ended: bool, gstatus: int | None) -> None:
        ctx.status = _status(resp)
        if gstatus is not None:
            ctx.grpc_status = str(gstatus)
        conn.send_headers(ds, self._response_headers(d, ctx, resp), end=resp_ended)
        if not resp_ended:
            await _pump_response(conn, ds, us.body, ctx)
            if us.body.trailers is not None:
                g = grpc.status_of(us.body.trailers)
                if g is not None:
                    ctx.grpc_status = str(g)
        ctx.request_bytes = ctx.request_bytes or 0
        self.fw.telemetry.report(ctx)

    # -- to an HTTP/1.1 upstream ----------------------------------------------------------------------
    async def _h1(self, conn: Downstream, ds: Stream, req: Request, ctx: Ctx, d: RouteDecision, view: RequestView,
                  out: Outbound, policy: RetryPolicy, deadline: Deadline) -> None:
        fw = self.fw
        cluster, ep = d.cluster, d.endpoint
        assert cluster is not None and ep is not None
        parts: list[bytes] = []
        size = 0
        while (item := await ds.body.read()) is not None:
            data, flow = item
            size += len(data)
            if size > H1_BODY_LIMIT:
                raise BodyTooLarge("request body too large for an HTTP/1.1 upstream")  # bounded: not streamed
            parts.append(data)
            ds.body.ack(flow)
        body = b"".join(parts)
        req.body = RequestBody(conn.proto, done=True)
        req.body.received = len(body)
        req.has_body = bool(body)
        req.content_length = len(body) if body or req.method in ("POST", "PUT", "PATCH") else None
        ctx.request_bytes = len(body)
        up, host = await fw.retries.send(ctx, req, view, cluster, ep, policy, deadline, body, out)
        try:
            ex = up.exchange
            ctx.status = ex.status
            resp = [(k.lower(), v) for k, v in ex.headers if k.lower() not in (b"content-length",)]
            conn.send_headers(ds, self._response_headers(d, ctx, resp), end=False)
            sink = Body(self.loop, lambda n: None)
            transport = up.conn.transport

            def feed(chunk: bytes) -> None:
                sink.feed(chunk, 0)
                if len(sink.chunks) > 16:
                    transport.pause_reading()  # resumed as the client's window takes it

            ex.attach(feed)
            done = self.loop.create_task(_when_complete(ex.complete(), sink))
            while (item := await sink.read()) is not None:
                await conn.send_data(ds.sid, item[0])
                ctx.response_bytes += len(item[0])
                if len(sink.chunks) <= 4 and not up.conn.closed:
                    transport.resume_reading()
            await done
            conn.end_stream(ds.sid, None)
            fw.respond.pools.release(up.conn, cluster, ex.keep_alive and not ex.no_body)
        except BaseException:
            up.conn.abort()
            raise
        finally:
            host.active -= 1
        fw.telemetry.report(ctx)


def route_cookies(d: RouteDecision) -> Headers:
    """The Set-Cookie headers routing asked for (`respond.route_cookie_values`), as h2 header pairs."""
    return [(b"set-cookie", v.encode("latin-1")) for v in route_cookie_values(d, d.cluster)]


async def _when_complete(complete: asyncio.Future[None], sink: Body) -> None:
    try:
        await complete
        sink.end()
    except BaseException as exc:
        sink.fail(UpstreamReset(f"upstream went away mid-response: {exc!r}"))


def _status(headers: Headers) -> int:
    for k, v in headers:
        if k == b":status":
            return int(v) if v.isdigit() else 502
    return 502


def _cancel(us: UpStream | None, pump: asyncio.Task[None] | None) -> None:
    if pump is not None and not pump.done():
        pump.cancel()
    if us is not None:
        us.conn.cancel(us)


async def _pump_request(body: Body, replay: Replay, uc: H2ClientConnection, us: UpStream) -> None:
    """Downstream request data to the upstream stream: what an earlier try read first, then the rest as it comes;
    the client's window is credited only as the upstream takes the data."""
    try:
        for chunk in list(replay.chunks):
            await uc.send_data(us.sid, chunk)
        while (item := await body.read()) is not None:
            data, flow = item
            replay.keep(data)
            await uc.send_data(us.sid, data)
            body.ack(flow)
        if not uc.closed and us.sid in uc.streams:
            uc.end_stream(us.sid, body.trailers)
    except (ProxyError, ConnectionResetError):
        uc.cancel(us)


async def _pump_response(conn: Downstream, ds: Stream, body: Body, ctx: Ctx) -> None:
    """Upstream response data to the client as its window allows, crediting the upstream as it goes; then the
    trailers (or the end of the stream)."""
    try:
        while (item := await body.read()) is not None:
            data, flow = item
            await conn.send_data(ds.sid, data)
            ctx.response_bytes += len(data)
            body.ack(flow)
    except UpstreamReset:
        ctx.flags.append("UC")
        conn.reset(ds.sid, 2)  # INTERNAL_ERROR: the client sees the stream fail, not a truncated success
        return
    if not conn.closed and ds.sid in conn.streams:
        conn.end_stream(ds.sid, body.trailers)
