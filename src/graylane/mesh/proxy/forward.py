"""The proxy's request path as a stack of small layers, in linkerd2-proxy's order: route -> rate limit -> faults ->
(local answers) -> mirror -> retry (-> timeout -> connect, per try) -> respond, and report at the end.

Each layer lives in its own module and gets only its slice of the data-plane process (a random source, the
balancer state, the pools, the stats); failures are typed `ProxyError`s answered in one place (`Responder.error`).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from graylane.mesh.proxy.connect import Connector, read_body
from graylane.mesh.proxy.errors import ProxyError
from graylane.mesh.proxy.faults import Faults
from graylane.mesh.proxy.h2_downstream import H2Streams
from graylane.mesh.proxy.mirror import Mirrors
from graylane.mesh.proxy.respond import Responder, preflight
from graylane.mesh.proxy.retry import Retries
from graylane.mesh.proxy.route import Router
from graylane.mesh.proxy.telemetry import Ctx, Telemetry
from graylane.mesh.proxy.timeout import Deadline
from graylane.mesh.proxy.websocket import WebSockets
from graylane.mesh.routing import Outcome, RetryPolicy, RouteTable

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.listener import DownstreamProtocol, Request
    from graylane.mesh.proxy.outlier import OutlierDetectors
    from graylane.mesh.proxy.pool import Pools
    from graylane.mesh.proxy.ratelimit import RateLimits
    from graylane.mesh.proxy.stats import Stats
    from graylane.mesh.proxy.tracing import SpanRing

DEFAULT_RETRIES = RetryPolicy.istio_default()


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

    async def handle(self, proto: DownstreamProtocol, req: Request) -> bool:
        """Serve one request; returns whether the downstream connection may be kept alive."""
        table, loop = self.server.table, self.loop
        ctx = Ctx(proto.listener, req.start, req)
        try:
            view = self.route.view(table, proto, req, ctx)
            self.limits.check_listener(proto.listener, loop.time())
            d = self.route.decide(table, view, proto.listener, ctx, loop.time())
            if d.rule is not None and d.rule.fault is not None:
                await self.faults.apply(d.rule.fault, ctx)
            if d.outcome is not Outcome.ROUTED:
                return await self.respond.decision(proto, req, ctx, d, view)
            if (answer := preflight(d, req)) is not None:
                return await self.respond.send(proto, req, ctx, 200, b"", answer)
            assert d.cluster is not None and d.endpoint is not None
            if proto.upgraded is not None:  # a WebSocket upgrade: spliced, not forwarded (websocket.py)
                return await self.websockets.forward(proto, req, ctx, d, self.route.outbound(d, view, req, ctx))
            body = await read_body(proto, req) if req.has_body else b""
            out = self.route.outbound(d, view, req, ctx)
            rule = d.rule
            if rule is not None and rule.mirrors and body is not None:
                self.mirrors.spawn(table, rule.mirrors, view, req.method, out.path, out.authority, out.headers, body)
            policy = rule.retries if rule is not None else DEFAULT_RETRIES
            deadline = Deadline.start(loop.time(), rule.timeout_s if rule is not None else None,
                                      req.hmap.get("x-envoy-upstream-rq-timeout-ms"), policy.per_try_timeout_s)
            up, host = await self.retries.send(ctx, req, view, d.cluster, d.endpoint, policy, deadline, body, out)
        except ProxyError as err:
            return await self.respond.error(proto, req, ctx, err)
        try:
            return await self.respond.stream(proto, req, ctx, d, up, d.cluster)
        finally:
            host.active -= 1
