"""The mirror layer: fire-and-forget shadow copies of a replayable request (Istio's `mirror`/`mirrors` with their
percentages; the Host stays unchanged, as current istiod sets it). A mirror's answer and its failures are only
counted; the client never waits for them.

Owns the decisions every mirror shares, HTTP/1.1 or h2 (`h2_mirror.py` sends h2 streams' copies): which mirrors a
request's percentages pick, the endpoint each goes to, and the background sends, at most `MAX_IN_FLIGHT` at once
(beyond that a copy is dropped and counted) and each within `MIRROR_TIMEOUT_S`.

Knows the route table (to find the mirror's cluster), the balancer state, the connector and the stats.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.connect import Connector, request_head
from graylane.mesh.proxy.errors import ProxyError
from graylane.mesh.proxy.listener import Request
from graylane.mesh.proxy.stats import Stats
from graylane.mesh.routing import Cluster, ClusterEndpoint, Mirror, RequestView, RouteTable

MIRROR_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 256  # mirrors sent at once per process (each holds at most REPLAY_LIMIT of body); more are dropped


class Mirrors:
    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, load: LoadState, connector: Connector,
                 stats: Stats) -> None:
        self.loop = loop
        self.rng = rng
        self.load = load
        self.connector = connector
        self.stats = stats
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, table: RouteTable, mirrors: tuple[Mirror, ...], view: RequestView, method: str, path: str,
              authority: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Start the mirrors whose percentage comes up; returns at once."""
        for m in self.choose(mirrors):
            self.start(self.send_h1(table, m, view, method, path, authority, headers, body))

    def choose(self, mirrors: tuple[Mirror, ...]) -> list[Mirror]:
        """The mirrors this request's roll of each `mirrorPercentage` picks."""
        rng = self.rng
        return [m for m in mirrors if m.percent >= 100 or rng.random() * 100 < m.percent]

    def target(self, table: RouteTable, m: Mirror, view: RequestView) -> tuple[Cluster, ClusterEndpoint] | None:
        """The mirror's cluster and an endpoint of it by the cluster's load balancing; None when there is none."""
        _, cluster = table.cluster_for(m.host, m.subset, m.port, view.port)
        if cluster is None:
            return None
        ep, _ = cluster.pick(view, self.rng, self.loop.time(), self.load)
        return None if ep is None else (cluster, ep)

    def start(self, send: Coroutine[Any, Any, bool]) -> None:
        """Run one mirror's send in the background (it returns whether it sent anything), within the timeout;
        beyond MAX_IN_FLIGHT sends already running it is dropped (`graylane_proxy_mirror_overflow_total`)."""
        if len(self.tasks) >= MAX_IN_FLIGHT:
            send.close()
            self.stats.bump("graylane_proxy_mirror_overflow_total")
            return
        task = self.loop.create_task(self._counted(send))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _counted(self, send: Coroutine[Any, Any, bool]) -> None:
        try:
            async with asyncio.timeout(MIRROR_TIMEOUT_S):
                sent = await send
            if sent:
                self.stats.bump("graylane_proxy_mirror_requests_total")
        except (ProxyError, TimeoutError, OSError):
            self.stats.bump("graylane_proxy_mirror_failures_total")

    async def send_h1(self, table: RouteTable, m: Mirror, view: RequestView, method: str, path: str, authority: str,
                      headers: list[tuple[str, str]], body: bytes) -> bool:
        """One copy over HTTP/1.1, its answer read and discarded."""
        to = self.target(table, m, view)
        if to is None:
            return False
        cluster, ep = to
        fake = Request()
        fake.method = method
        fake.content_length = len(body)
        head = request_head(method, path, authority, headers, fake, body)
        up = await self.connector.send(cluster, ep, head, body, fake)
        up.exchange.attach(_discard)
        try:
            await up.exchange.complete()
        except BaseException:
            up.conn.abort()
            raise
        self.connector.pools.release(up.conn, cluster, up.exchange.keep_alive)
        return True


_discard: Callable[[bytes], None] = lambda _chunk: None
