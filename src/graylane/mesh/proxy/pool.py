"""Keep-alive upstream HTTP/1.1 connections per endpoint, with the cluster's circuit-breaker limits.

`UpstreamConnection` is an asyncio Protocol parsing responses with httptools; no `await` in callbacks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

import httptools

from graylane.mesh.proxy.balance import ClusterCounters, LoadState
from graylane.mesh.proxy.errors import UpstreamConnectFailure, UpstreamOverflow, UpstreamProtocolError, UpstreamReset
from graylane.mesh.routing import Cluster, ClusterEndpoint

# Upstream response headers not passed on: hop-by-hop ones, and the two Envoy sets itself (the HCM overwrites
# `server` with Istio's server_name; the router adds `x-envoy-upstream-service-time`).
RESPONSE_HOP: Final = frozenset((b"connection", b"keep-alive", b"transfer-encoding", b"proxy-connection", b"trailer",
                                 b"upgrade", b"server", b"x-envoy-upstream-service-time"))
# What `on_header` does with a response header, by its name as it came (bytes): upstreams send the same few names
# again and again, so the kind is cached per spelling (bounded: names up to 64 bytes, 512 of them; no upstream can
# grow it), which spares a `lower()` and two set look-ups per header (issue #17).
PASS: Final = 0  # passed on as it came
LENGTH: Final = 1  # content-length: passed on, and the body has a length
CHUNKED: Final = 2  # transfer-encoding: dropped (hop-by-hop), and the body has a length
HOP: Final = 3  # other hop-by-hop headers and the two Envoy sets itself: dropped
_KINDS: Final[dict[bytes, int]] = {}
MAX_KINDS_CACHED: Final = 512


def header_kind(name: bytes) -> int:
    """PASS, LENGTH, CHUNKED or HOP for a response header's name (cached per spelling)."""
    kind = _KINDS.get(name)
    if kind is None:
        lname = name.lower()
        kind = (LENGTH if lname == b"content-length" else CHUNKED if lname == b"transfer-encoding"
                else HOP if lname in RESPONSE_HOP else PASS)
        if len(_KINDS) < MAX_KINDS_CACHED and len(name) <= 64:
            _KINDS[name] = kind
    return kind
# Envoy's limits on an upstream's response head, as on requests (max_headers_count, 60 KiB): beyond them the
# response is a protocol error (502 UPE), and a hostile upstream cannot grow the proxy's memory with headers.
MAX_RESPONSE_HEADERS: Final = 100
MAX_RESPONSE_HEAD: Final = 60 * 1024


class Exchange:
    """One request/response on an upstream connection. Body chunks go to `sink` once attached, else are held.

    `got_headers` / `finished` / `error` are its state; the futures an `await` needs (`headers_done()`,
    `complete()`) are made only when asked for: an inline try (inline.py) never awaits.
    """

    __slots__ = ("status", "got_headers", "finished", "_headers_done", "_complete", "loop", "keep_alive",
                 "sink", "held", "response_bytes", "error", "has_length", "no_body", "passed", "content_length",
                 "watcher", "dropped", "dropped_size", "head_size")

    def __init__(self, loop: asyncio.AbstractEventLoop, no_body: bool) -> None:
        self.status = 0
        self.loop = loop
        self.got_headers = False  # the final response's headers are parsed
        self.finished = False  # the response is complete
        self._headers_done: asyncio.Future[None] | None = None
        self._complete: asyncio.Future[None] | None = None
        self.keep_alive = True
        self.sink: Callable[[bytes], None] | None = None
        self.held: list[bytes] = []
        self.response_bytes = 0
        self.error: BaseException | None = None
        self.has_length = False  # content-length or transfer-encoding: the body does not end with the connection
        self.no_body = no_body
        # Built while parsing (one pass over the headers): the lines passed on as they came, minus RESPONSE_HOP ones.
        self.passed: list[bytes] = []
        # Header lines not passed on (hop-by-hop), and their bytes: with `passed`, what Envoy's limits count.
        self.dropped = self.dropped_size = 0
        self.head_size = 0  # bytes received until the head was complete (an upper bound of the head's size)
        self.content_length = False
        # Called once when the final response's headers are parsed or the exchange fails (an inline try's).
        self.watcher: Callable[[], None] | None = None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response's headers as (name, value), hop-by-hop ones left out (made from `passed` when asked)."""
        out = []
        for line in self.passed:
            name, _, value = line[:-2].partition(b": ")
            out.append((name, value))
        return out

    @property
    def ended(self) -> bool:
        """Complete, or failed."""
        return self.finished or self.error is not None

    def headers_done(self) -> asyncio.Future[None]:
        """Resolves when the final response's headers are parsed; raises the exchange's error if it failed first."""
        if self._headers_done is None:
            self._headers_done = self._future(self.got_headers)
        return self._headers_done

    def complete(self) -> asyncio.Future[None]:
        """Resolves when the response is complete; raises the exchange's error if it failed first."""
        if self._complete is None:
            self._complete = self._future(self.finished)
        return self._complete

    def _future(self, ready: bool) -> asyncio.Future[None]:
        fut = self.loop.create_future()
        if ready:
            fut.set_result(None)
        elif self.error is not None:
            fut.set_exception(self.error)
        return fut

    def attach(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        for chunk in self.held:
            sink(chunk)
        self.held.clear()


class UpstreamConnection(asyncio.Protocol):
    # -- connection state
    transport: asyncio.Transport
    # -- request state
    exchange: Exchange | None

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.parser = httptools.HttpResponseParser(self)
        self.exchange = None
        self.closed = False
        self.requests = 0
        self.paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # unsolicited bytes on an idle connection: it cannot be reused
            self.close()
            return
        if not ex.got_headers:
            ex.head_size += len(data)  # the bytes since the response began: at least its head so far
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"bad upstream response: {exc}"))
            self.close()
        except httptools.HttpParserUpgrade:  # 101 to a request that asked for no upgrade (WebSockets: websocket.py)
            self._fail(UpstreamProtocolError("upstream switched protocols unasked"))
            self.close()
        if not ex.got_headers and ex.head_size > MAX_RESPONSE_HEAD and ex.error is None:
            # A head still incomplete after 60 KiB (trickled, or never ending): refused as it comes.
            self._fail(UpstreamProtocolError("upstream response headers over 60 KiB"))
            self.close()
        if ex.watcher is not None and (ex.status or ex.error is not None):
            watcher, ex.watcher = ex.watcher, None
            watcher()  # outside the parser: it may answer, release this connection and send the next request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        ex = self.exchange
        if ex is not None and not ex.ended:
            if ex.got_headers and not ex.has_length and not ex.no_body:
                ex.keep_alive = False
                self._finish(ex)  # close-delimited body ends here
            else:
                self._fail(UpstreamReset("upstream closed the connection"))
        self.pool.forget(self)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        if ex is not None and ex.watcher is not None:
            watcher, ex.watcher = ex.watcher, None
            watcher()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    async def drain(self) -> None:
        if self.paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        ex: Exchange = self.exchange  # type: ignore[assignment]  # parsing only happens during an exchange
        if ex.got_headers:
            self._trailer(ex, name, value)
            return
        kind = header_kind(name)
        if kind == PASS:  # the common header: passed on as it came
            ex.passed.append(b"%s: %s\r\n" % (name, value))
            return
        if kind == LENGTH:
            ex.content_length = ex.has_length = True
            ex.passed.append(b"%s: %s\r\n" % (name, value))
            return
        if kind == CHUNKED:
            ex.has_length = True
        ex.dropped += 1
        ex.dropped_size += len(name) + len(value)

    def on_headers_complete(self) -> None:
        ex = self.exchange
        assert ex is not None
        # The head's bytes are summed only when what arrived so far (body included) could hold over 60 KiB of it.
        if len(ex.passed) + ex.dropped > MAX_RESPONSE_HEADERS or (
                ex.head_size > MAX_RESPONSE_HEAD and sum(map(len, ex.passed)) + ex.dropped_size > MAX_RESPONSE_HEAD):
            self._over_limits("headers")
        ex.dropped = ex.dropped_size = 0  # from here on: the trailers' count (`_trailer`)
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim response (100 Continue): drop it
            ex.passed = []
            ex.has_length = ex.content_length = False
            return
        ex.status = status
        ex.keep_alive = self.parser.should_keep_alive()
        if status in (204, 304):
            ex.no_body = True
        if not ex.got_headers:
            ex.got_headers = True
            if ex._headers_done is not None and not ex._headers_done.done():
                ex._headers_done.set_result(None)
        if ex.no_body:
            # HEAD responses carry a length but no body; httptools cannot be told, so never reuse.
            ex.keep_alive = ex.keep_alive and status in (204, 304)
            self._finish(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is None or ex.finished or ex.error is not None:  # `ex.ended`, without a property call per chunk
            return
        ex.response_bytes += len(body)
        if ex.sink is not None:
            ex.sink(body)
        else:
            ex.held.append(body)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None or ex.status == 0:  # end of an interim response
            return
        self._finish(ex)

    def _trailer(self, ex: Exchange, name: bytes, value: bytes) -> None:
        """A chunked response's trailer field: dropped, as Envoy's HTTP/1 codec does without `enable_trailers`,
        but within the same limits as the headers."""
        ex.dropped += 1
        ex.dropped_size += len(name) + len(value)
        if ex.dropped > MAX_RESPONSE_HEADERS or ex.dropped_size > MAX_RESPONSE_HEAD:
            self._over_limits("trailers")

    def _over_limits(self, what: str) -> None:
        self._fail(UpstreamProtocolError(f"upstream response {what} over Envoy's limits (100, 60 KiB)"))
        raise httptools.HttpParserError(f"{what} over limits")  # stops `feed_data`; `data_received` closes

    # -- internals
    def _finish(self, ex: Exchange) -> None:
        if not ex.finished and ex.error is None:  # not `ex.ended`: the property call costs more than the test
            ex.finished = True
            if ex._complete is not None and not ex._complete.done():
                ex._complete.set_result(None)

    def _fail(self, err: BaseException) -> None:
        ex = self.exchange
        if ex is None:
            return
        if ex.error is None:
            ex.error = err
        for fut in (ex._headers_done, ex._complete):
            if fut is not None and not fut.done():
                fut.set_exception(err)
                fut.exception()  # mark retrieved: the waiter may have given up already

    def fail(self, err: BaseException) -> None:
        """End the current exchange with `err` (its waiters raise it) and drop the connection."""
        self._fail(err)
        self.abort()

    def start(self, no_body: bool) -> Exchange:
        self.exchange = Exchange(self.loop, no_body)
        self.requests += 1
        return self.exchange

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()


class EndpointPool:
    """Idle keep-alive connections to one endpoint, counting towards its cluster's maxConnections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: str, host: str, port: int) -> None:
        self.loop = loop
        self.address = address
        self.host = host
        self.port = port
        self.idle: deque[UpstreamConnection] = deque()
        self.open: set[UpstreamConnection] = set()
        self.owners: dict[UpstreamConnection, ClusterCounters] = {}
        self.on_release: Callable[[], None] | None = None

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            counters = self.owners.pop(conn, None)
            if counters is not None:
                counters.connections -= 1
        with_idle = conn in self.idle
        if with_idle:
            self.idle.remove(conn)
        if self.on_release is not None:
            self.on_release()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


class Pools:
    """All endpoint pools plus per-cluster pending queues (http1MaxPendingRequests)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, load: LoadState) -> None:
        self.loop = loop
        self.load = load  # the clusters' circuit-breaker gauges
        self.pools: dict[str, EndpointPool] = {}
        self.waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def pool(self, ep: ClusterEndpoint) -> EndpointPool:
        p = self.pools.get(ep.address)
        if p is None:
            p = self.pools[ep.address] = EndpointPool(self.loop, ep.address, ep.host, ep.port)
            p.on_release = self._wake_all
        return p

    def _wake_all(self) -> None:
        for q in self.waiters.values():
            while q:
                fut = q.popleft()
                if not fut.done():
                    fut.set_result(None)
                    break

    def take_idle(self, ep: ClusterEndpoint, idle_s: float) -> UpstreamConnection | None:
        """An idle keep-alive connection to `ep`, without awaiting (the common case)."""
        pool = self.pools.get(ep.address)
        if pool is None:
            return None
        while pool.idle:
            conn = pool.idle.pop()
            if conn.closed:
                continue
            if idle_s and self.loop.time() - conn.idle_since > idle_s:
                conn.close()
                continue
            return conn
        return None

    async def acquire(self, cluster: Cluster, ep: ClusterEndpoint) -> tuple[UpstreamConnection, bool]:
        """A connection to `ep` (reused when idle), honouring maxConnections / pending limits: (conn, reused).

        As in Envoy's HTTP/1 pool, a request without a ready connection is pending until it has one, connecting
        included; when http1MaxPendingRequests are already pending it overflows at once (503 UO).
        """
        pool = self.pool(ep)
        limits = cluster.policy.pool
        counters = self.load.counters(cluster.name)
        conn = self._take_idle(pool, limits.idle_timeout_s)
        if conn is not None:
            return conn, True
        if counters.pending >= limits.max_pending:
            raise UpstreamOverflow(f"cluster {cluster.name} overflow")
        counters.pending += 1
        try:
            while True:
                conn = self._take_idle(pool, limits.idle_timeout_s)
                if conn is not None:
                    return conn, True
                if counters.connections < limits.max_connections:
                    break
                # At maxConnections: free an idle connection of another endpoint, or wait for one to close.
                if self._evict_idle(cluster):
                    continue
                fut: asyncio.Future[None] = self.loop.create_future()
                self.waiters.setdefault(cluster.name, deque()).append(fut)
                await fut
            counters.connections += 1
            conn = UpstreamConnection(pool)
            pool.open.add(conn)
            pool.owners[conn] = counters
            try:
                await asyncio.wait_for(self.loop.create_connection(lambda: conn, ep.host, ep.port),
                                       limits.connect_timeout_s)
            except (TimeoutError, OSError) as exc:
                pool.forget(conn)
                raise UpstreamConnectFailure(f"connect to {ep.address}: {exc}") from None
            except BaseException:
                pool.forget(conn)
                raise
            return conn, False
        finally:
            counters.pending -= 1

    def _take_idle(self, pool: EndpointPool, idle_s: float) -> UpstreamConnection | None:
        while pool.idle:
            conn = pool.idle.pop()
            if conn.closed:
                continue
            if idle_s and self.loop.time() - conn.idle_since > idle_s:
                conn.close()  # idle too long (checked on reuse: no timer per request)
                continue
            return conn
        return None

    def _evict_idle(self, cluster: Cluster) -> bool:
        for ep in cluster.endpoints:
            p = self.pools.get(ep.address)
            if p is not None and p.idle:
                p.idle.popleft().close()
                return True
        return False

    def release(self, conn: UpstreamConnection, cluster: Cluster, reusable: bool) -> None:
        pool = conn.pool
        conn.exchange = None
        limit = cluster.policy.pool.max_requests_per_connection
        if not reusable or conn.closed or (limit and conn.requests >= limit):
            conn.close()
            return
        conn.idle_since = self.loop.time()
        pool.idle.append(conn)
        waiters = self.waiters.get(cluster.name)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def retain_only(self, addresses: set[str]) -> None:
        for addr in list(self.pools):
            if addr not in addresses:
                p = self.pools.pop(addr)
                p.close_idle()

    def close_all(self) -> None:
        for p in self.pools.values():
            p.close_idle()
            for c in list(p.open):
                c.close()
