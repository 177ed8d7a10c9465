"""One request through the layers linkerd keeps: route -> faults -> balance -> retry -> timeout -> connect.

Failures are typed (`errors.py`) and turned into a response, a flag and telemetry in one place, `_local_reply`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

from graylane.mesh.proxy.errors import (
    BadRequest,
    PerTryTimeout,
    ProxyError,
    RateLimited,
    UpstreamConnectFailure,
    UpstreamOverflow,
    UpstreamReset,
    UpstreamTimeout,
)
from graylane.mesh.proxy.faults import ABORT_BODY, roll
from graylane.mesh.proxy.listener import SERVER_HEADER, DownstreamProtocol, Request, status_line
from graylane.mesh.proxy.pool import Exchange, UpstreamConnection
from graylane.mesh.proxy.telemetry import Ctx, Telemetry, TelemetryHost
from graylane.mesh.proxy.tracing import TraceContext, new_id
from graylane.mesh.routing import (
    PASSTHROUGH,
    Cluster,
    ClusterEndpoint,
    Destination,
    Listener,
    Outcome,
    RequestView,
    RetryPolicy,
    RouteDecision,
    Rule,
    redirect_location,
    rewritten_path,
    split_host_port,
)

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.outlier import OutlierDetectors
    from graylane.mesh.proxy.pool import Pools
    from graylane.mesh.proxy.ratelimit import TokenBucket

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade", "proxy-authorization", "content-length", "host",
                        "x-envoy-upstream-rq-timeout-ms", "expect"))
# Upstream response headers not passed on: hop-by-hop ones, and the two Envoy sets itself (the HCM overwrites
# `server` with Istio's server_name; the router adds `x-envoy-upstream-service-time`).
RESPONSE_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"trailer",
                          b"upgrade", b"server", b"x-envoy-upstream-service-time"))
DEFAULT_RETRIES = RetryPolicy.istio_default()
REPLAY_LIMIT = 64 * 1024  # Envoy buffers request bodies up to its per-request limit for retries and mirrors


class ForwardHost(TelemetryHost, Protocol):
    """What forwarding reads from the data-plane process (`ProxyServer` provides it), besides telemetry's part."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def pools(self) -> Pools: ...
    @property
    def outliers(self) -> OutlierDetectors: ...
    @property
    def load(self) -> LoadState: ...
    def listener_bucket(self, listener: Listener) -> TokenBucket | None: ...
    def inbound_bucket(self, ep: ClusterEndpoint) -> TokenBucket | None: ...


class Forwarder:
    def __init__(self, server: ForwardHost) -> None:
        self.server = server
        self.loop = server.loop
        self.rng = random.Random()
        self.telemetry = Telemetry(server)

    # ------------------------------------------------------------------------------------------- entry
    async def handle(self, proto: DownstreamProtocol, req: Request) -> bool:
        """Serve one request; returns whether the downstream connection may be kept alive."""
        server = self.server
        table = server.table
        listener = proto.listener
        ctx = Ctx(listener, req.start, req)
        target = req.target
        if target.startswith("/"):
            scheme, authority, path = "http", req.hmap.get("host", ""), target
        elif target.startswith(("http://", "https://")):
            scheme, _, rest = target.partition("://")
            slash = rest.find("/")
            authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        else:
            return await self._local_reply(proto, req, ctx, BadRequest("unsupported request target"))
        if not authority:
            return await self._local_reply(proto, req, ctx, BadRequest("missing Host header"))
        ctx.authority, ctx.path = authority, path
        port = listener.server_port if listener.kind == "gateway" else split_host_port(authority, 80)[1]
        hmap = req.hmap
        rid = hmap.get("x-request-id")
        if not rid:
            h = new_id(128)
            rid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
            hmap["x-request-id"] = rid
        ctx.rid = rid
        ctx.trace = TraceContext.extract(hmap, table.trace_sampling, self.rng)
        ctx.client_span = new_id()
        view = RequestView(req.method, path, authority, hmap, scheme, port, proto.peer[0])
        now = self.loop.time()

        bucket = server.listener_bucket(listener)
        if bucket is not None and bucket.is_limited(now, self.rng):
            return await self._local_reply(proto, req, ctx, RateLimited(), extra=bucket.headers)

        decision = table.route(view, listener, self.rng, server.load, now)
        ctx.decision = decision
        # Istio labels traffic to hosts outside the registry with the PassthroughCluster as its service.
        ctx.service = decision.host if decision.cluster_name != PASSTHROUGH else PASSTHROUGH
        rule = decision.rule
        if rule is not None and rule.fault is not None:
            fault = roll(rule.fault, self.rng)
            if fault.delay_s:
                ctx.flags.append("DI")
                await asyncio.sleep(fault.delay_s)
            if fault.abort_status:
                ctx.flags.append("FI")
                return await self._respond(proto, req, ctx, fault.abort_status, ABORT_BODY,
                                           [("content-type", "text/plain")])
        outcome = decision.outcome
        if outcome is not Outcome.ROUTED:
            return await self._decision_reply(proto, req, ctx, decision, view)
        # CORS preflight (Envoy's cors filter answers it locally when the origin is allowed).
        cors = rule.cors if rule is not None else None
        origin = hmap.get("origin")
        if cors is not None and origin and req.method == "OPTIONS" and "access-control-request-method" in hmap:
            if cors.is_allowed(origin):
                extra = self._cors_headers(cors, origin, preflight=True)
                return await self._respond(proto, req, ctx, 200, b"", extra)
            if not cors.forward_unmatched:
                return await self._respond(proto, req, ctx, 200, b"", [])
        assert decision.destination is not None and decision.cluster is not None and decision.endpoint is not None
        return await self._forward(proto, req, ctx, decision, view, rule)

    # ------------------------------------------------------------------------------------------- local replies
    async def _decision_reply(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
                              view: RequestView) -> bool:
        rule = d.rule
        if d.outcome is Outcome.REDIRECT and rule is not None:
            match = rule.matches[d.match_index] if d.match_index is not None else None
            return await self._respond(proto, req, ctx, d.status, b"",
                                       [("location", redirect_location(rule, match, view))])
        if d.outcome is Outcome.DIRECT_RESPONSE and rule is not None and rule.direct_response is not None:
            data = rule.direct_response.body
            extra = list(rule.headers_response.set) + list(rule.headers_response.add)
            return await self._respond(proto, req, ctx, d.status, data, [("content-type", "text/plain"), *extra])
        from graylane.mesh.proxy.errors import ClusterNotFound, NoHealthyUpstream, NoRoute

        err = {Outcome.NO_ROUTE: NoRoute, Outcome.CLUSTER_NOT_FOUND: ClusterNotFound,
               Outcome.NO_HEALTHY_UPSTREAM: NoHealthyUpstream}[d.outcome](d.detail)
        return await self._local_reply(proto, req, ctx, err)

    async def _local_reply(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, err: ProxyError,
                           extra: list[tuple[str, str]] | None = None) -> bool:
        if err.flag:
            ctx.flags.append(err.flag)
        headers = [("content-type", "text/plain")] if err.body else []
        if extra:
            headers += extra
        return await self._respond(proto, req, ctx, err.status, err.body.encode(), headers)

    async def _respond(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, status: int, body: bytes,
                       headers: list[tuple[str, str]]) -> bool:
        keep = req.keep_alive and req.body.done
        head = [status_line(status), SERVER_HEADER]
        for k, v in headers:
            if k != "server":  # Envoy's HCM overwrites it on every response (server_header_transformation)
                head.append(f"{k}: {v}\r\n".encode("latin-1"))
        head.append(b"content-length: %d\r\n" % len(body))
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        proto.write(b"".join(head) + (b"" if req.method == "HEAD" else body))
        ctx.status = status
        ctx.response_bytes = len(body)
        ctx.request_bytes = req.body.received
        self.telemetry.report(ctx)
        return keep

    # ------------------------------------------------------------------------------------------- forwarding
    async def _forward(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
                       view: RequestView, rule: Rule | None) -> bool:
        server = self.server
        dest = d.destination
        cluster = d.cluster
        ep = d.endpoint
        assert dest is not None and cluster is not None and ep is not None
        # Request body: small bodies are read whole so retries and mirrors can replay them.
        body: bytes | None = b""
        if req.has_body and not req.body.done and req.hmap.get("expect", "").lower() == "100-continue":
            # Envoy answers Expect locally (proxy_100_continue off) and does not forward it.
            proto.write_interim(b"HTTP/1.1 100 Continue\r\n\r\n")
        if req.has_body:
            if req.content_length is not None and req.content_length <= REPLAY_LIMIT:
                parts = []
                try:
                    while (chunk := await req.body.read()) is not None:
                        parts.append(chunk)
                except ProxyError as err:  # the body timed out (408): the client's fault, no upstream involved
                    return await self._local_reply(proto, req, ctx, err)
                body = b"".join(parts)
            else:
                body = None  # streamed
        match = rule.matches[d.match_index] if rule is not None and d.match_index is not None else None
        rw = rule.rewrite if rule is not None else None
        path = rewritten_path(rule, match, view.path) if rule is not None and rw is not None else view.path
        authority = rw.authority if rw is not None and rw.authority else view.authority
        base_headers = [(k, v) for k, v in req.headers if k not in HOP_BY_HOP and k != "x-request-id"]
        base_headers.append(("x-request-id", ctx.rid))
        if "x-forwarded-proto" not in req.hmap:
            base_headers.append(("x-forwarded-proto", view.scheme))
        if rule is not None:
            base_headers = rule.headers_request.apply(base_headers)
        base_headers = dest.headers_request.apply(base_headers)
        policy: RetryPolicy = rule.retries if rule is not None else DEFAULT_RETRIES
        timeout_s = rule.timeout_s if rule is not None else None
        override = req.hmap.get("x-envoy-upstream-rq-timeout-ms")
        if override and override.isdigit():
            timeout_s = int(override) / 1000 or None
        deadline = self.loop.time() + timeout_s if timeout_s else None
        if rule is not None and rule.mirrors and body is not None:
            for m in rule.mirrors:
                if m.percent >= 100 or self.rng.random() * 100 < m.percent:
                    self.loop.create_task(self._mirror(m.host, m.subset, m.port, view, req.method, path, authority,
                                                       base_headers, body))
        # Inbound local rate limit, as the destination's sidecar would apply it.
        tried: list[ClusterEndpoint] = []
        retries_left = policy.attempts
        attempt = 0
        while True:
            attempt += 1
            ctx.attempts = attempt
            tried.append(ep)
            ctx.endpoint = ep
            bucket = server.inbound_bucket(ep)
            if bucket is not None and bucket.is_limited(self.loop.time(), self.rng):
                return await self._local_reply(proto, req, ctx, RateLimited(), extra=bucket.headers)
            ctx.server_span = new_id()
            headers = ctx.trace.inject(base_headers, ctx.server_span, ctx.client_span) if ctx.trace else base_headers
            if attempt > 1:
                headers = [*headers, ("x-envoy-attempt-count", str(attempt))]
            head = _request_head(req.method, path, authority, headers, req, body)
            per_try = policy.per_try_timeout_s
            limit = None
            if deadline is not None:
                limit = deadline - self.loop.time()
            if per_try is not None and (limit is None or per_try < limit):
                limit, is_per_try = per_try, True
            else:
                is_per_try = False
            host = server.load.host(ep)
            host.active += 1
            ctx.upstream_start = time.perf_counter()
            conn: UpstreamConnection | None = None
            try:
                try:
                    if limit is None:
                        conn, ex, sender = await self._attempt(cluster, ep, head, body, req)
                    else:
                        async with asyncio.timeout(limit):
                            conn, ex, sender = await self._attempt(cluster, ep, head, body, req)
                except TimeoutError:
                    if conn is not None:
                        conn.abort()
                    raise (PerTryTimeout if is_per_try else UpstreamTimeout)(f"{cluster.name}") from None
            except asyncio.CancelledError:
                host.active -= 1
                raise
            except ProxyError as err:
                host.active -= 1
                if isinstance(err, BadRequest):  # the request body timed out: not the host's fault
                    ctx.upstream_start = 0.0  # the destination never got a whole request: no destination report
                    return await self._local_reply(proto, req, ctx, err)
                status = 504 if isinstance(err, UpstreamTimeout) else 503
                # Overflow (UO) never reached the host: Envoy's outlier detector never sees it.
                if not isinstance(err, (UpstreamTimeout, UpstreamOverflow)) or isinstance(err, PerTryTimeout):
                    server.outliers.record(cluster, ep, status)
                retriable = (isinstance(err, UpstreamConnectFailure) and policy.retries_connect_failure()) or (
                    isinstance(err, UpstreamReset) and policy.retries_reset() and body is not None) or (
                    isinstance(err, PerTryTimeout) and policy.retries_timeout() and body is not None)
                if isinstance(err, UpstreamTimeout) and not isinstance(err, PerTryTimeout):
                    retriable = False
                if retriable and retries_left > 0 and self._take_retry(cluster):
                    retries_left -= 1
                    nxt = await self._next_endpoint(cluster, view, tried, attempt, deadline)
                    server.load.counters(cluster.name).retries -= 1
                    if nxt is not None:
                        ep = nxt
                        continue
                if attempt > 1:
                    ctx.flags.append("URX")
                return await self._local_reply(proto, req, ctx, err)
            # Response headers are in: retry on status, or stream the response back.
            status = ex.status
            server.outliers.record(cluster, ep, status)
            if policy.retries_status(status) and retries_left > 0 and body is not None and self._take_retry(cluster):
                retries_left -= 1
                conn.abort()
                host.active -= 1
                nxt = await self._next_endpoint(cluster, view, tried, attempt, deadline)
                server.load.counters(cluster.name).retries -= 1
                if nxt is not None:
                    ep = nxt
                    continue
                return await self._local_reply(proto, req, ctx, UpstreamReset("retry target vanished"))
            if attempt > 1 and policy.retries_status(status):
                ctx.flags.append("URX")
            try:
                return await self._stream_response(proto, req, ctx, d, rule, conn, ex, sender, cluster)
            finally:
                host.active -= 1

    def _take_retry(self, cluster: Cluster) -> bool:
        counters = self.server.load.counters(cluster.name)
        if counters.retries >= cluster.policy.pool.max_retries:
            return False
        counters.retries += 1
        return True

    async def _next_endpoint(self, cluster: Cluster, view: RequestView, tried: list[ClusterEndpoint], attempt: int,
                             deadline: float | None) -> ClusterEndpoint | None:
        # Envoy backoff: random in [0, base * 2^(n-1)], base 25 ms; retry another host (previous_hosts predicate).
        backoff = self.rng.random() * 0.025 * (2 ** (attempt - 1))
        if deadline is not None:
            backoff = max(0.0, min(backoff, deadline - self.loop.time() - 0.001))
        await asyncio.sleep(backoff)
        ep, _ = cluster.pick(view, self.rng, self.loop.time(), self.server.load, exclude=lambda e: e in tried)
        return ep

    async def _attempt(self, cluster: Cluster, ep: ClusterEndpoint, head: bytes, body: bytes | None,
                       req: Request) -> tuple[UpstreamConnection, Exchange, asyncio.Task[None] | None]:
        pools = self.server.pools
        for _ in range(2):
            idle = pools.take_idle(ep, cluster.policy.pool.idle_timeout_s)
            if idle is not None:
                conn, reused = idle, True
            else:
                conn, reused = await pools.acquire(cluster, ep)
            ex = conn.start(no_body=req.method == "HEAD")
            sender = None
            if body is not None:
                conn.write(head + body)
            else:
                conn.write(head)
                sender = self.loop.create_task(_send_body(conn, req))
            try:
                await ex.headers_done
            except UpstreamReset:
                conn.abort()
                if reused and body is not None and ex.status == 0:
                    continue  # a stale keep-alive connection: try once on a fresh one
                if sender is not None:
                    sender.cancel()
                raise
            except BaseException:
                conn.abort()
                if sender is not None:
                    sender.cancel()
                raise
            return conn, ex, sender
        raise UpstreamReset("upstream closed the connection")

    async def _stream_response(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
                               rule: Rule | None, conn: UpstreamConnection, ex: Exchange,
                               sender: asyncio.Task[None] | None, cluster: Cluster) -> bool:
        dest: Destination | None = d.destination
        status = ex.status
        origin = req.hmap.get("origin")
        rewrite = (dest is not None and not dest.headers_response.is_empty()) or (rule is not None and (
            not rule.headers_response.is_empty() or (rule.cors is not None and origin is not None))) or bool(
            d.set_cookie and cluster.policy.lb.hash_cookie)
        no_body = req.method == "HEAD" or status in (204, 304) or status < 200
        keep = req.keep_alive
        service_ms = int((time.perf_counter() - ctx.upstream_start) * 1000)
        head = [status_line(status), SERVER_HEADER, b"x-envoy-upstream-service-time: %d\r\n" % service_ms]
        if not rewrite:
            # Fast path: pass the upstream's header bytes through, minus hop-by-hop ones.
            has_length = False
            for k, v in ex.headers:
                lk = k.lower()
                if lk in RESPONSE_HOP:
                    continue
                if lk == b"content-length":
                    has_length = True
                head.append(b"%s: %s\r\n" % (k, v))
            headers: list[tuple[str, str]] = []
        else:
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in ex.headers
                       if k.lower() not in RESPONSE_HOP]
            has_length = any(k == "content-length" for k, _ in headers)
            if dest is not None:
                headers = dest.headers_response.apply(headers)
            if rule is not None:
                headers = rule.headers_response.apply(headers)
                if rule.cors is not None and origin and rule.cors.is_allowed(origin):
                    headers += self._cors_headers(rule.cors, origin, preflight=False)
            if d.set_cookie and cluster.policy.lb.hash_cookie:
                c = cluster.policy.lb.hash_cookie
                cookie = f"{c.name}=\"{d.set_cookie}\"; Max-Age={int(c.ttl_s)}"
                if c.path:
                    cookie += f"; Path={c.path}"
                headers.append(("set-cookie", cookie + "; HttpOnly"))
            headers = [(k, v) for k, v in headers if k != "server"]
        chunked = False
        if not no_body and not has_length:
            if req.version == "1.1":
                chunked = True
                headers.append(("transfer-encoding", "chunked"))
            else:
                keep = False
        head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers]
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        ctx.status = status
        transport = conn.transport
        whole = ex.complete.done() and ex.error is None and not chunked
        if whole:
            # The whole response is already here (the common small-JSON case): one write, one syscall.
            proto.write(b"".join(head) + b"".join(ex.held))
            ex.held.clear()
        else:
            proto.write(b"".join(head))

        def sink(chunk: bytes) -> None:
            if chunked:
                proto.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                proto.write(chunk)
            if proto.writing_paused and transport not in proto.on_resume:
                transport.pause_reading()
                proto.on_resume.append(transport)

        if not whole:
            ex.attach(sink)
        try:
            await ex.complete
        except asyncio.CancelledError:
            conn.abort()
            raise
        except ProxyError:
            # The upstream went away mid-body: the client sees a truncated response and a closed connection.
            ctx.flags.append("UC")
            ctx.response_bytes = ex.response_bytes
            conn.abort()
            self.telemetry.report(ctx)
            return False
        if chunked:
            proto.write(b"0\r\n\r\n")
        ctx.response_bytes = ex.response_bytes
        ctx.request_bytes = req.body.received
        sent_all = sender is None or sender.done()
        if sender is not None and not sender.done():
            sender.cancel()
        self.server.pools.release(conn, cluster, ex.keep_alive and sent_all and not ex.no_body or
                                  (ex.keep_alive and sent_all and status in (204, 304)))
        self.telemetry.report(ctx)
        return keep and req.body.done

    async def _mirror(self, host: str, subset: str, port: int | None, view: RequestView, method: str, path: str,
                      authority: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Fire-and-forget shadow copy (Istio's current default keeps the Host unchanged)."""
        table = self.server.table
        name, cluster = table.cluster_for(host, subset, port, view.port)
        if cluster is None:
            return
        ep, _ = cluster.pick(view, self.rng, self.loop.time(), self.server.load)
        if ep is None:
            return
        fake = Request()
        fake.method = method
        fake.content_length = len(body)
        head = _request_head(method, path, authority, headers, fake, body)
        try:
            async with asyncio.timeout(30):
                conn, ex, _ = await self._attempt(cluster, ep, head, body, fake)
                ex.attach(lambda _chunk: None)
                await ex.complete
            self.server.pools.release(conn, cluster, ex.keep_alive)
            self.server.stats.bump("graylane_proxy_mirror_requests_total")
        except (ProxyError, TimeoutError, OSError):
            self.server.stats.bump("graylane_proxy_mirror_failures_total")

    @staticmethod
    def _cors_headers(cors: Any, origin: str, preflight: bool) -> list[tuple[str, str]]:
        out = [("access-control-allow-origin", origin)]
        if cors.allow_credentials:
            out.append(("access-control-allow-credentials", "true"))
        if preflight:
            if cors.allow_methods:
                out.append(("access-control-allow-methods", cors.allow_methods))
            if cors.allow_headers:
                out.append(("access-control-allow-headers", cors.allow_headers))
            if cors.max_age:
                out.append(("access-control-max-age", cors.max_age))
        elif cors.expose_headers:
            out.append(("access-control-expose-headers", cors.expose_headers))
        return out

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


def _request_head(method: str, path: str, authority: str, headers: list[tuple[str, str]], req: Request,
                  body: bytes | None) -> bytes:
    parts = [f"{method} {path} HTTP/1.1\r\nhost: {authority}\r\n"]
    parts += [f"{k}: {v}\r\n" for k, v in headers]
    if body is not None:
        if body or req.content_length is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"content-length: {len(body)}\r\n")
    elif req.chunked:
        parts.append("transfer-encoding: chunked\r\n")
    else:
        parts.append(f"content-length: {req.content_length}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")
