"""The mirror layer: fire-and-forget shadow copies of a replayable request (Istio's `mirror`/`mirrors` with their
percentages; the Host stays unchanged, as current istiod sets it). A mirror's answer and its failures are only
counted; the client never waits for them.

Knows the route table (to find the mirror's cluster), the balancer state, the connector and the stats.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.connect import Connector, request_head
from graylane.mesh.proxy.errors import ProxyError
from graylane.mesh.proxy.listener import Request
from graylane.mesh.proxy.stats import Stats
from graylane.mesh.routing import Mirror, RequestView, RouteTable

MIRROR_TIMEOUT_S = 30.0


class Mirrors:
    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, load: LoadState, connector: Connector,
                 stats: Stats) -> None:
        self.loop = loop
        self.rng = rng
        self.load = load
        self.connector = connector
        self.stats = stats

    def spawn(self, table: RouteTable, mirrors: tuple[Mirror, ...], view: RequestView, method: str, path: str,
              authority: str, headers: list[tuple[str, str]], body: bytes) -> None:
        """Start the mirrors whose percentage comes up; returns at once."""
        for m in mirrors:
            if m.percent >= 100 or self.rng.random() * 100 < m.percent:
                self.loop.create_task(self._send(table, m, view, method, path, authority, headers, body))

    async def _send(self, table: RouteTable, m: Mirror, view: RequestView, method: str, path: str, authority: str,
                    headers: list[tuple[str, str]], body: bytes) -> None:
        _, cluster = table.cluster_for(m.host, m.subset, m.port, view.port)
        if cluster is None:
            return
        ep, _ = cluster.pick(view, self.rng, self.loop.time(), self.load)
        if ep is None:
            return
        fake = Request()
        fake.method = method
        fake.content_length = len(body)
        head = request_head(method, path, authority, headers, fake, body)
        try:
            async with asyncio.timeout(MIRROR_TIMEOUT_S):
                up = await self.connector.send(cluster, ep, head, body, fake)
                up.exchange.attach(_discard)
                await up.exchange.complete()
            self.connector.pools.release(up.conn, cluster, up.exchange.keep_alive)
            self.stats.bump("graylane_proxy_mirror_requests_total")
        except (ProxyError, TimeoutError, OSError):
            self.stats.bump("graylane_proxy_mirror_failures_total")


_discard: Callable[[bytes], None] = lambda _chunk: None
