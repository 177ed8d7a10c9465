"""The proxy's request path as a stack of small layers, in linkerd2-proxy's order: route -> rate limit -> faults ->
(local answers) -> mirror -> retry (-> timeout -> connect, per try) -> respond, and report at the end.

`serve` is called from the downstream parser's callback. The common request (no body, a route without faults,
mirrors or timeouts, an idle upstream connection) is forwarded from there and answered from the upstream's
callback (`inline.py`): no task, no future awaited. Anything else, or an inline try whose answer is not a plain
final response (an error, a status the route retries, a body still arriving), continues in a task through the
same layers (`handle`, `finish`, `exchange`), so the rules live in one place.

Each layer lives in its own module and gets only its slice of the data-plane process (a random source, the
balancer state, the pools, the stats); failures are typed `ProxyError`s answered in one place (`Responder.error`).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

from graylane.mesh.proxy.connect import Connector, read_body
from graylane.mesh.proxy.errors import ProxyError
from graylane.mesh.proxy.faults import Faults
from graylane.mesh.proxy.h2_downstream import H2Streams
from graylane.mesh.proxy.inline import inline_try
from graylane.mesh.proxy.mirror import Mirrors
from graylane.mesh.proxy.respond import Responder, preflight
from graylane.mesh.proxy.retry import Retries, Sent
from graylane.mesh.proxy.route import Outbound, Router
from graylane.mesh.proxy.telemetry import Ctx, Telemetry
from graylane.mesh.proxy.timeout import NO_DEADLINE, Deadline
from graylane.mesh.proxy.websocket import WebSockets
from graylane.mesh.routing import ROUTED, RequestView, RetryPolicy, RouteDecision, RouteTable

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.listener import DownstreamProtocol, Request
    from graylane.mesh.proxy.outlier import OutlierDetectors
    from graylane.mesh.proxy.pool import Pools
    from graylane.mesh.proxy.ratelimit import RateLimits
    from graylane.mesh.proxy.stats import Stats
    from graylane.mesh.proxy.tracing import SpanRing

DEFAULT_RETRIES: Final = RetryPolicy.istio_default()


class ForwardHost(Protocol):
    """The parts of the data-plane process the stack is built from (`ProxyServer` provides them)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def table(self) -> RouteTable: ...
    @property
    def load(self) -> LoadState: ...
    @property
    def pools(self) -> Pools: ...
    @property
    def outliers(self) -> OutlierDetectors: ...
    @property
    def limits(self) -> RateLimits: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def spans(self) -> SpanRing: ...
    @property
    def access_log(self) -> deque[dict[str, Any]] | None: ...
    @property
    def access_log_format(self) -> str: ...


class Forwarder:
    def __init__(self, server: ForwardHost) -> None:
        self.server = server  # read for the current route table only
        self.loop = loop = server.loop
        self.rng = rng = random.Random()
        self.limits = server.limits
        self.telemetry = Telemetry(server)
        self.route = Router(rng, server.load)
        self.faults = Faults(rng)
        connector = Connector(loop, server.pools)
        self.mirrors = Mirrors(loop, rng, server.load, connector, server.stats)
        self.retries = Retries(loop, rng, server.load, server.outliers, server.limits, connector)
        self.respond = Responder(self.telemetry, server.pools)
        self.websockets = WebSockets(loop, server.load, server.outliers, self.telemetry)
        self.h2 = H2Streams(self)

    def take_over_h2(self, proto: DownstreamProtocol, data: bytes) -> bool:
        return self.h2.take_over(proto, data)

    def serve(self, proto: DownstreamProtocol, req: Request) -> None:
        """Serve one request, from the parser's callback: local answers at once; a bodyless request on a route
        without faults, mirrors or timeouts goes out from here over an idle connection (`inline.py`); anything
        else runs the layers in a task. Each way ends with `proto.finished(keep)`."""
        if req.has_body or proto.upgraded is not None or req.method == "CONNECT":
            proto.spawn(self.handle(proto, req))
            return
        step = self.begin(proto, req)
        if step is True or step is False:
            proto.finished(step)
            return
        ctx, view, d = step
        rule = d.rule
        if rule is not None and (rule.fault is not None or rule.mirrors):
            proto.spawn(self.finish(proto, req, ctx, view, d))
            return
        if self.server.table.speaks_h2(d.cluster):  # asked once: `finish` would ask again
            proto.spawn(self.h2.from_h1(proto, req, ctx, view, d))
            return
        try:
            out, policy, deadline = self.plan(req, ctx, view, d)
            if deadline is not NO_DEADLINE or not inline_try(self, proto, req, ctx, view, d, out, policy):
                proto.spawn(self.exchange(proto, req, ctx, view, d, out, policy, deadline, b""))
        except ProxyError as err:
            proto.finished(self.respond.error(proto, req, ctx, err))

    async def handle(self, proto: DownstreamProtocol, req: Request) -> bool:
        """Serve one request through every layer; returns whether the downstream connection may be kept alive."""
        step = self.begin(proto, req)
        if step is True or step is False:
            return step
        return await self.finish(proto, req, *step)

    def begin(self, proto: DownstreamProtocol, req: Request) -> bool | tuple[Ctx, RequestView, RouteDecision]:
        """Route the request: (ctx, view, decision) to forward it, or whether the connection may be kept alive
        when it was answered here (a local reply)."""
        table, loop, listener = self.server.table, self.loop, proto.listener
        assert listener is not None  # set when the connection was accepted, before any request
        ctx = Ctx(listener, req.start, req)
        try:
            view = self.route.view(table, proto, req, ctx)
            if listener.rate_limit is not None:  # (tested here: no call per request without a local rate limit)
                self.limits.check_listener(listener, loop.time())
            d = self.route.decide(table, view, listener, ctx, loop.time())
            if d.rule is not None and d.rule.fault is not None:
                return ctx, view, d  # the fault filter comes before any answer (`finish`)
            answered = self.answer(proto, req, ctx, d, view)
        except ProxyError as err:
            return self.respond.error(proto, req, ctx, err)
        return (ctx, view, d) if answered is None else answered

    def answer(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
               view: RequestView) -> bool | None:
        """What the route answers itself (redirect, direct response, no route, a CORS preflight), or None."""
        if d.outcome is not ROUTED:
            return self.respond.decision(proto, req, ctx, d, view)
        # A CORS preflight needs the rule's CORS policy: tested here, no call per request without one.
        if d.rule is not None and d.rule.cors is not None and (headers := preflight(d, req)) is not None:
            return self.respond.send(proto, req, ctx, 200, b"", headers)
        return None

    async def finish(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
                     d: RouteDecision) -> bool:
        """A routed request's faults, body, mirrors and timeouts, then the exchange."""
        table = self.server.table
        try:
            rule = d.rule
            if rule is not None and rule.fault is not None:
                await self.faults.apply(rule.fault, ctx)
                if (answered := self.answer(proto, req, ctx, d, view)) is not None:
                    return answered
            if proto.upgraded is not None:  # a WebSocket upgrade: spliced, not forwarded (websocket.py)
                return await self.websockets.forward(proto, req, ctx, d, self.route.outbound(d, view, req, ctx))
            if table.speaks_h2(d.cluster):  # the Service port speaks HTTP/2: sent as an h2 stream (h2_from_h1.py)
                return await self.h2.from_h1(proto, req, ctx, view, d)
            body = await read_body(proto, req) if req.has_body else b""
            out, policy, deadline = self.plan(req, ctx, view, d)
            if rule is not None and rule.mirrors and body is not None:
                self.mirrors.spawn(table, rule.mirrors, view, req.method, out.path, out.authority, out.headers, body)
        except ProxyError as err:
            return self.respond.error(proto, req, ctx, err)
        return await self.exchange(proto, req, ctx, view, d, out, policy, deadline, body)

    def plan(self, req: Request, ctx: Ctx, view: RequestView,
             d: RouteDecision) -> tuple[Outbound, RetryPolicy, Deadline]:
        """How a routed request goes out: its outbound head, the route's retry policy and its deadline."""
        rule = d.rule
        out = self.route.outbound(d, view, req, ctx)
        policy = rule.retries if rule is not None else DEFAULT_RETRIES
        deadline = Deadline.start(self.loop.time, rule.timeout_s if rule is not None else None,
                                  req.hmap.get("x-envoy-upstream-rq-timeout-ms"), policy.per_try_timeout_s)
        return out, policy, deadline

    async def exchange(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
                       d: RouteDecision, out: Outbound, policy: RetryPolicy, deadline: Deadline, body: bytes | None,
                       sent: Sent | None = None) -> bool:
        """Tries (retries, timeouts, connect), then the response streamed back. `sent`: the first try, already
        on the wire (an inline try handed over)."""
        assert d.cluster is not None and d.endpoint is not None
        try:
            up, host = await self.retries.send(ctx, req, view, d.cluster, d.endpoint, policy, deadline, body, out,
                                               sent)
        except ProxyError as err:
            return self.respond.error(proto, req, ctx, err)
        try:
            return await self.respond.stream(proto, req, ctx, d, up, d.cluster)
        finally:
            host.active -= 1
