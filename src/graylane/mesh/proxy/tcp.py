"""Layer-4 proxying: TCP (VirtualService `tcp` routes) and unterminated TLS routed by SNI (`tls` routes).

One `TcpProxy` per accepted connection on a `tcp` or `tls` listener (Envoy's tcp_proxy filter): route once
(`RouteTable.route_l4`, the same weighted pick as HTTP), honour the cluster's `connectionPool.tcp.maxConnections`
(overflow closes the connection, flag UO), connect, then copy bytes both ways with back-pressure and half-close.
A passthrough connection first reads the ClientHello (bounded: one TLS record, within the header timeout) for its
SNI, then forwards it untouched. A connection without a byte either way for the cluster's connectionPool idleTimeout
(1 h by default, Envoy's tcp_proxy) is closed. Reports istio_tcp_* counters with Istio's labels from both reporters.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, Protocol

from graylane.mesh.proxy.tls import MAX_HELLO, HelloError, client_hello_sni
from graylane.mesh.routing import ClusterEndpoint, Listener, Outcome, RouteDecision, RouteTable
from graylane.mesh.routing.l4 import TCP, TLS_PASSTHROUGH

if TYPE_CHECKING:
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.stats import Stats

log = logging.getLogger(__name__)

HIGH = 256 * 1024  # bytes buffered toward one side before the other side's reading pauses
OPENED, CLOSED = "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total"
RECEIVED, SENT = "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total"


class TcpHost(Protocol):
    """What a TCP connection reads from the data-plane process (`ProxyServer` provides it)."""

    loop: asyncio.AbstractEventLoop
    header_timeout_s: float
    tunnels: set[TcpProxy]  # open layer-4 connections (closed with the server)

    @property
    def table(self) -> RouteTable: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def load(self) -> LoadState: ...

    def listener_at(self, key: tuple[str, int]) -> Listener | None: ...


L4_PROTOCOLS = (TCP, TLS_PASSTHROUGH)  # listener protocols served here (the server picks the protocol object)
CONNECT_OK = b"HTTP/1.1 200 Connection established\r\n\r\n"
CONNECT_REFUSED = {"NR": b"HTTP/1.1 404 Not Found\r\n", "UO": b"HTTP/1.1 503 Service Unavailable\r\n"}


def take_over_connect(server: TcpHost, addr: tuple[str, int], transport: asyncio.Transport, target: str,
                      rest: bytes) -> None:
    """`CONNECT host:port` on a sidecar listener (what HTTP_PROXY clients send for raw TCP and for https://): the
    connection becomes a tunnel routed by the mesh's `tcp` routes for that Service and port (else the whole Service,
    else the PassthroughCluster); `200 Connection established` once the upstream is connected, otherwise 404
    (no route) or 503 and close. `rest`: bytes the client sent after the CONNECT head."""
    host, sep, port = target.rpartition(":")
    tunnel = TcpProxy(server, addr, TCP, connect=(host.strip("[]").lower(), int(port)) if sep and port.isdigit()
                      and 0 < int(port) < 65536 else ("", 0))
    transport.set_protocol(tunnel)
    tunnel.pending += rest
    tunnel.connection_made(transport)
    transport.resume_reading()


def tcp_labels(table: RouteTable, listener: Listener, decision: RouteDecision | None, ep: ClusterEndpoint | None,
               flags: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Istio's TCP metric labels (stats.TCP_LABELS order) for the source and destination reporters."""
    src = listener.source
    host = decision.host if decision is not None and decision.cluster is not None else ""
    svc = table.services.get(host)
    if ep is not None:
        dw, dns, dapp = ep.workload or "unknown", ep.namespace or "unknown", ep.labels.get("app", "unknown")
        dver = ep.labels.get("version", "unknown")
    else:
        dw = dns = dapp = dver = "unknown"
    common_src = (src.workload, src.namespace, "unknown", src.app, src.labels.get("version", "unknown") or "unknown",
                  src.app, src.labels.get("version", "latest") or "latest", "Kubernetes")
    common_dst = (dw, dns, "unknown", dapp, dver, host or "unknown", svc.name if svc else (host or "unknown"),
                  svc.namespace if svc else "unknown", dapp, dver if ep else "latest", "Kubernetes", "tcp", flags)
    return ("source", *common_src, *common_dst, "unknown"), ("destination", *common_src, *common_dst, "none")


class _Upstream(asyncio.Protocol):
    def __init__(self, down: TcpProxy) -> None:
        self.down = down
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.down.from_upstream(data)

    def eof_received(self) -> bool:
        self.down.upstream_eof()
        return True  # keep writing what the client still sends (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.down.close()

    def pause_writing(self) -> None:
        self.down.pause_reading()

    def resume_writing(self) -> None:
        self.down.resume_reading()


class TcpProxy(asyncio.Protocol):
    """One downstream TCP (or passthrough TLS) connection and its upstream."""

    def __init__(self, server: TcpHost, addr: tuple[str, int], protocol: str,
                 connect: tuple[str, int] | None = None) -> None:
        self.server = server
        self.connect = connect  # a sidecar's CONNECT target (host, port); ("", 0) when malformed
        self.addr = addr
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.pending = bytearray()  # bytes before the upstream is connected (a ClientHello, early data)
        self.closed = False
        self.reading = True
        self.labels: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.reached = False
        self.counted: Any = None  # the cluster counters holding one of its maxConnections
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.half_closed = False  # the client sent FIN
        self.idle_s = 0.0  # connectionPool idleTimeout (tcp or http; Envoy's tcp_proxy idle_timeout, 1 h by default)
        self.last = 0.0  # loop time of the last byte either way
        self.upstream_done = False  # the upstream sent FIN

    # -- downstream
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.tunnels.add(self)
        if self.protocol == TLS_PASSTHROUGH:
            if self.server.header_timeout_s > 0:  # a client that never completes its ClientHello
                self.timer = self.server.loop.call_later(self.server.header_timeout_s, self.close)
        else:
            self.task = self.server.loop.create_task(self._open(""))

    def data_received(self, data: bytes) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            self.last = self.server.loop.time()
            self._count(RECEIVED, len(data))
            up.transport.write(data)
            return
        self.pending += data
        if len(self.pending) > HIGH:
            self.pause_reading()
        if self.protocol == TLS_PASSTHROUGH and self.task is None:
            try:
                sni = client_hello_sni(bytes(self.pending[:MAX_HELLO]))
            except HelloError as exc:
                log.debug("tls passthrough on %s: %s", self.addr, exc)
                self._refuse(None, "NR")
                return
            if sni is not None:
                if self.timer is not None:
                    self.timer.cancel()
                self.task = self.server.loop.create_task(self._open(sni))

    def eof_received(self) -> bool:
        self.half_closed = True
        up = self.upstream
        if self.upstream_done:  # both directions ended
            self.close()
            return False
        if up is not None and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()
            return True
        return self.upstream is not None or self.task is not None  # deliver what is pending first

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None and up.transport is not None and not up.transport.is_closing():
            up.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    # -- upstream
    async def _open(self, sni: str) -> None:
        server = self.server
        listener = server.listener_at(self.addr)
        if listener is None:
            self.close()
            return
        table = server.table
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        host, port = self.connect or ("", listener.server_port or listener.port)
        if self.connect is not None and not host:
            self._refuse(None, "NR")
            return
        decision = table.route_l4(listener, port, sni, str(peer[0]) if peer else "127.0.0.1", random.Random(),
                                  server.load, server.loop.time(), host)
        ep, cluster = decision.endpoint, decision.cluster
        if decision.outcome is not Outcome.ROUTED or ep is None or cluster is None:
            self._refuse((table, listener, decision), decision.flags or "UH")
            return
        counters = server.load.counters(cluster.name)
        if counters.connections >= cluster.policy.pool.max_connections:
            self._refuse((table, listener, decision), "UO")  # Envoy's tcp_proxy: upstream_cx_overflow
            return
        counters.connections += 1
        self.counted = counters
        up = _Upstream(self)
        try:
            await asyncio.wait_for(server.loop.create_connection(lambda: up, ep.host, ep.port),
                                   cluster.policy.pool.connect_timeout_s)
        except (OSError, TimeoutError):
            self._refuse((table, listener, decision), "UF", ep)
            return
        self.labels = tcp_labels(table, listener, decision, ep, "-")
        server.stats.tcp_add(OPENED, self.labels[0])
        if self.closed:  # the client left while we connected
            server.stats.tcp_add(CLOSED, self.labels[0])
            if up.transport is not None:
                up.transport.close()
            return
        self.upstream = up
        self.reached = True
        server.stats.tcp_add(OPENED, self.labels[1])
        if self.connect is not None and self.transport is not None:
            self.transport.write(CONNECT_OK)
        self.idle_s, self.last = cluster.policy.pool.idle_timeout_s, server.loop.time()
        if self.idle_s > 0:
            self.timer = server.loop.call_later(self.idle_s, self._idle)
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self._count(RECEIVED, len(data))
            assert up.transport is not None
            up.transport.write(data)
            self.resume_reading()
        if self.half_closed and up.transport is not None and up.transport.can_write_eof():
            up.transport.write_eof()

    def _idle(self) -> None:
        """Close after `idle_s` without a byte either way; re-armed for the rest of the window otherwise."""
        left = self.last + self.idle_s - self.server.loop.time()
        if left > 0:
            self.timer = self.server.loop.call_later(left, self._idle)
        else:
            self.close()

    def from_upstream(self, data: bytes) -> None:
        self.last = self.server.loop.time()
        if self.transport is not None and not self.transport.is_closing():
            self._count(SENT, len(data))
            self.transport.write(data)

    def upstream_eof(self) -> None:
        self.upstream_done = True
        if self.half_closed:  # both directions ended
            self.close()
            return
        if self.transport is not None and not self.transport.is_closing() and self.transport.can_write_eof():
            self.transport.write_eof()

    def _count(self, name: str, n: int) -> None:
        if self.labels is not None:
            stats = self.server.stats
            stats.tcp_add(name, self.labels[0], n)
            if self.reached:
                stats.tcp_add(name, self.labels[1], n)

    def _refuse(self, routed: tuple[RouteTable, Listener, RouteDecision] | None, flags: str,
                ep: ClusterEndpoint | None = None) -> None:
        """No route, no healthy upstream, overflow: the connection is opened and closed in the metrics, then closed."""
        listener = routed[1] if routed else self.server.listener_at(self.addr)
        if self.connect is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(CONNECT_REFUSED.get(flags, CONNECT_REFUSED["UO"]) + b"server: istio-envoy\r\n"
                                 b"content-length: 0\r\nconnection: close\r\n\r\n")
        if listener is not None:
            table = routed[0] if routed else self.server.table
            self.labels = tcp_labels(table, listener, routed[2] if routed else None, ep, flags)
            self.server.stats.tcp_add(OPENED, self.labels[0])
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.server.tunnels.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.counted is not None:
            self.counted.connections -= 1
            self.counted = None
        if self.labels is not None:
            self.server.stats.tcp_add(CLOSED, self.labels[0])
            if self.reached:
                self.server.stats.tcp_add(CLOSED, self.labels[1])
        up = self.upstream
        if up is not None and up.transport is not None and not up.transport.is_closing():
            up.transport.close()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
