"""The inline try: the common request forwarded from the downstream parser's callback and answered from the
upstream's, with no task and no future awaited (issue #17: the two task wake-ups and four coroutine frames per
request were the largest Python cost left on the hot path).

It covers the first try of a bodyless request on a route without faults, mirrors or timeouts, over an idle
keep-alive connection, whose answer is a final response that is complete when its headers are and that the
route does not retry. Anything else hands the try, as it stands, to the async layers (`Forwarder.exchange`
with `Sent`): a stale connection, a reset, a retried status, a body still arriving. The rules (retries,
outlier reports, headers, telemetry) stay in their layers; this module only decides when to call them.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from graylane.mesh.proxy.retry import Sent
from graylane.mesh.proxy.timeout import NO_DEADLINE, Deadline

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import HostStats
    from graylane.mesh.proxy.listener import DownstreamProtocol, Request
    from graylane.mesh.proxy.pool import Exchange, UpstreamConnection
    from graylane.mesh.proxy.respond import Responder
    from graylane.mesh.proxy.retry import Retries
    from graylane.mesh.proxy.route import Outbound
    from graylane.mesh.proxy.telemetry import Ctx
    from graylane.mesh.routing import RequestView, RetryPolicy, RouteDecision

log = logging.getLogger(__name__)


class Forwarder(Protocol):
    """The layers an inline try calls (`forward.Forwarder` provides them)."""

    @property
    def retries(self) -> Retries: ...
    @property
    def respond(self) -> Responder: ...

    def exchange(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView, d: RouteDecision,
                 out: Outbound, policy: RetryPolicy, deadline: Deadline, body: bytes | None,
                 sent: Sent | None = None) -> Coroutine[Any, Any, bool]: ...


class InlineTry:
    """One try on the wire, waiting for the upstream's callback (`Exchange.watcher`)."""

    __slots__ = ("fw", "proto", "req", "ctx", "view", "d", "out", "policy", "head", "host", "conn", "ex")

    def __init__(self, fw: Forwarder, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
                 d: RouteDecision, out: Outbound, policy: RetryPolicy, head: bytes, host: HostStats,
                 conn: UpstreamConnection, ex: Exchange) -> None:
        self.fw, self.proto, self.req, self.ctx, self.view, self.d = fw, proto, req, ctx, view, d
        self.out, self.policy, self.head, self.host, self.conn, self.ex = out, policy, head, host, conn, ex

    def on_upstream(self) -> None:
        """The response headers are here, or the exchange ended: answer now, or hand over to the layers."""
        ex, d, proto = self.ex, self.d, self.proto
        fw = self.fw
        try:
            if ex.error is None and ex.finished and ex.status not in self.policy.statuses:  # (retries_status, no call)
                cluster = d.cluster
                assert cluster is not None and d.endpoint is not None
                fw.retries.outliers.record(cluster, d.endpoint, ex.status)
                try:
                    keep = fw.respond.whole(proto, self.req, self.ctx, d, self.conn, ex, cluster)
                finally:
                    self.host.active -= 1
                proto.finished(keep)
            else:
                proto.spawn(fw.exchange(proto, self.req, self.ctx, self.view, d, self.out, self.policy,
                                        NO_DEADLINE, b"", Sent(self.head, self.host, self.conn, ex)))
        except Exception:  # boundary, as the downstream connection's own
            log.exception("downstream connection failed")
            proto.busy = False
            proto.inflight = None
            proto.close()

    def cancel(self) -> None:
        """The client went away: drop the try (its connection cannot be reused mid-exchange)."""
        self.ex.watcher = None
        self.conn.abort()
        self.host.active -= 1


def inline_try(fw: Forwarder, proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
               d: RouteDecision, out: Outbound, policy: RetryPolicy) -> bool:
    """Send the first try from here when an idle connection to the chosen endpoint is ready; False: it is not
    (nothing was done, the layers send it). Raises the destination's `RateLimited`."""
    cluster, ep = d.cluster, d.endpoint
    assert cluster is not None and ep is not None
    pools = fw.respond.pools
    conn = pools.take_idle(ep, cluster.policy.pool.idle_timeout_s)
    if conn is None:
        return False
    try:
        head, host = fw.retries.begin(ctx, req, ep, 1, b"", out)
    except BaseException:
        conn.pool.idle.append(conn)  # untouched: back where it was
        raise
    ex = conn.start(no_body=req.method == "HEAD")
    conn.write(head)
    t = InlineTry(fw, proto, req, ctx, view, d, out, policy, head, host, conn, ex)
    ex.watcher = t.on_upstream
    proto.inflight = t
    return True
