"""The retry layer: tries, and tries again on another host when the route's `retries` allow it (Envoy's
retry_on conditions, `attempts`, backoff random in [0, 25 ms x 2^n], the previous-hosts predicate and the
cluster's `maxRetries` budget). Each try runs under the timeout layer and goes out through the connect layer.

Reports every host's result to outlier detection. Knows its policy, the balancer state, the inbound rate limits,
outlier detection and the connector; not the downstream connection.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Final

from graylane.mesh.proxy.balance import HostStats, LoadState
from graylane.mesh.proxy.connect import Connector, Upstream
from graylane.mesh.proxy.errors import (
    BadRequest,
    PerTryTimeout,
    ProxyError,
    UpstreamConnectFailure,
    UpstreamOverflow,
    UpstreamReset,
    UpstreamTimeout,
)
from graylane.mesh.proxy.listener import Request
from graylane.mesh.proxy.outlier import OutlierDetectors
from graylane.mesh.proxy.pool import Exchange, UpstreamConnection
from graylane.mesh.proxy.ratelimit import RateLimits
from graylane.mesh.proxy.route import Outbound
from graylane.mesh.proxy.telemetry import Ctx
from graylane.mesh.proxy.timeout import Deadline, within
from graylane.mesh.routing import Cluster, ClusterEndpoint, RequestView, RetryPolicy

BACKOFF_BASE_S: Final = 0.025


@dataclass(slots=True)
class Sent:
    """A first try already on the wire (an inline try handed over): its head, host stats and exchange."""

    head: bytes
    host: HostStats
    conn: UpstreamConnection
    exchange: Exchange


class Retries:
    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, load: LoadState,
                 outliers: OutlierDetectors, limits: RateLimits, connector: Connector) -> None:
        self.loop = loop
        self.rng = rng
        self.load = load
        self.outliers = outliers
        self.limits = limits
        self.connector = connector

    def begin(self, ctx: Ctx, req: Request, ep: ClusterEndpoint, attempt: int, body: bytes | None,
              out: Outbound) -> tuple[bytes, HostStats]:
        """One try's start: the destination's inbound rate limit (raises `RateLimited`), the head to send (with
        this try's span id when traced), and the host's stats with the try counted as active."""
        ctx.attempts = attempt
        ctx.endpoint = ep
        if self.limits.inbound_limits:  # (tested here: no call per try when no inbound limit is configured)
            self.limits.check_inbound(ep, self.loop.time())  # as the destination's sidecar would apply it
        head = out.head(attempt, ctx, req, body)
        host = self.load.host(ep)
        host.active += 1
        ctx.upstream_start = time.perf_counter()
        return head, host

    async def send(self, ctx: Ctx, req: Request, view: RequestView, cluster: Cluster, ep: ClusterEndpoint,
                   policy: RetryPolicy, deadline: Deadline, body: bytes | None,
                   out: Outbound, sent: Sent | None = None) -> tuple[Upstream, HostStats]:
        """The try whose response is passed on, and its host's stats (`active` still counts it). `sent`: the
        first try, begun and written already (to `ep`, without a deadline).

        Raises the last try's `ProxyError` (flag `URX` when retries were spent), or `RateLimited` from the
        destination's inbound limit.
        """
        tried: list[ClusterEndpoint] = []
        retries_left = policy.attempts
        attempt = 0
        while True:
            attempt += 1
            tried.append(ep)
            if sent is None:
                head, host = self.begin(ctx, req, ep, attempt, body, out)
            else:
                head, host = sent.head, sent.host
            try:
                if sent is not None:
                    written, sent = sent, None
                    up = await self.connector.resume(cluster, ep, written.head, body, req, written.conn,
                                                     written.exchange)
                elif deadline.at is None and deadline.per_try_s is None:
                    up = await self.connector.send(cluster, ep, head, body, req)
                else:
                    up = await within(deadline, self.loop.time(), cluster.name,
                                      partial(self.connector.send, cluster, ep, head, body, req))
            except asyncio.CancelledError:
                host.active -= 1
                raise
            except ProxyError as err:
                host.active -= 1
                if isinstance(err, BadRequest):  # the request body timed out: not the host's fault
                    ctx.upstream_start = 0.0  # the destination never got a whole request: no destination report
                    raise
                # Overflow (UO) never reached the host: Envoy's outlier detector never sees it.
                if not isinstance(err, UpstreamTimeout | UpstreamOverflow) or isinstance(err, PerTryTimeout):
                    self.outliers.record(cluster, ep, 504 if isinstance(err, UpstreamTimeout) else 503)
                if self._retries_error(err, policy, body) and retries_left > 0 and self._take(cluster):
                    retries_left -= 1
                    nxt = await self._next(cluster, view, tried, attempt, deadline)
                    if nxt is not None:
                        ep = nxt
                        continue
                if attempt > 1:
                    ctx.flags.append("URX")
                raise
            status = up.exchange.status
            self.outliers.record(cluster, ep, status)
            if policy.retries_status(status) and retries_left > 0 and body is not None and self._take(cluster):
                retries_left -= 1
                up.conn.abort()
                host.active -= 1
                nxt = await self._next(cluster, view, tried, attempt, deadline)
                if nxt is not None:
                    ep = nxt
                    continue
                raise UpstreamReset("retry target vanished")
            if attempt > 1 and policy.retries_status(status):
                ctx.flags.append("URX")
            return up, host

    @staticmethod
    def _retries_error(err: ProxyError, policy: RetryPolicy, body: bytes | None) -> bool:
        if isinstance(err, UpstreamTimeout) and not isinstance(err, PerTryTimeout):
            return False  # the route's own timeout ends the request
        return (isinstance(err, UpstreamConnectFailure) and policy.retries_connect_failure()) or (
            isinstance(err, UpstreamReset) and policy.retries_reset() and body is not None) or (
            isinstance(err, PerTryTimeout) and policy.retries_timeout() and body is not None)

    def _take(self, cluster: Cluster) -> bool:
        """One retry from the cluster's budget (connectionPool.http.maxRetries), given back after the backoff."""
        counters = self.load.counters(cluster.name)
        if counters.retries >= cluster.policy.pool.max_retries:
            return False
        counters.retries += 1
        return True

    async def _next(self, cluster: Cluster, view: RequestView, tried: list[ClusterEndpoint], attempt: int,
                    deadline: Deadline) -> ClusterEndpoint | None:
        # Envoy backoff: random in [0, base * 2^(n-1)], base 25 ms; retry another host (previous_hosts predicate).
        backoff = deadline.clamp(self.rng.random() * BACKOFF_BASE_S * (2 ** (attempt - 1)), self.loop.time())
        try:
            await asyncio.sleep(backoff)
            ep, _ = cluster.pick(view, self.rng, self.loop.time(), self.load, exclude=lambda e: e in tried)
        finally:
            self.load.counters(cluster.name).retries -= 1
        return ep
