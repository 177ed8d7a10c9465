"""The data-plane process: listeners from the current snapshot, upstream pools, stats, spans, snapshot swaps.

Imports `mesh.routing` and `mesh.proxy` only; never the store or the server. Keeps serving the last snapshot it
ACKed when the control plane goes away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections import deque
from pathlib import Path
from typing import Any

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.forward import Forwarder
from graylane.mesh.proxy.handoff import Handoff
from graylane.mesh.proxy.lastgood import LastGood
from graylane.mesh.proxy.listener import DownstreamProtocol
from graylane.mesh.proxy.outlier import OutlierDetectors
from graylane.mesh.proxy.pool import Pools
from graylane.mesh.proxy.ratelimit import RateLimits
from graylane.mesh.proxy.stats import Stats
from graylane.mesh.proxy.tcp import L4_PROTOCOLS, TcpProxy
from graylane.mesh.proxy.tls import TlsListeners
from graylane.mesh.proxy.tracing import SpanRing
from graylane.mesh.routing import Listener, RouteTable
from graylane.mesh.snapshot import EMPTY, Snapshot, SnapshotError, decode_snapshot
from graylane.mesh.snapshot_delta import decode_delta, is_delta

log = logging.getLogger(__name__)
# Services from which a whole document's objects are frozen out of the collector's full scans (apply).
BIG_MESH = 500


class ProxyServer:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, idle_timeout_s: float = 300.0,
                 header_timeout_s: float = 10.0, request_timeout_s: float = 60.0,
                 stream_idle_timeout_s: float = 300.0, state_dir: str | Path | None = None,
                 handoff: Handoff | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        # Downstream timeouts (0 disables one). idle: keep-alive connection without a request (Envoy's HCM
        # idle_timeout); header: the request head; request: the whole request, head and body (Envoy's
        # request_timeout, off in Envoy, bounded here); stream idle: no request bytes while the body is incomplete
        # (Envoy's stream_idle_timeout, 300 s).
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s
        self.request_timeout_s = request_timeout_s
        self.stream_idle_timeout_s = stream_idle_timeout_s
        self.state_dir = Path(state_dir) if state_dir else None
        self.last_good = LastGood(self.state_dir) if self.state_dir else None
        self.handoff = handoff  # listening sockets kept by the supervisor across restarts
        self.reuse_port = False  # workers (workers.py): what the primary could not open is bound with SO_REUSEPORT
        self.snapshot = EMPTY
        self._whole: Snapshot | None = None  # the last snapshot decoded from a whole document
        self.table = RouteTable(EMPTY)
        self.acked = False
        self.stats = Stats()
        self.spans = SpanRing()
        self.load = LoadState()
        self.pools = Pools(self.loop, self.load)
        self.outliers = OutlierDetectors(self.loop, self.load)
        self.limits = RateLimits(random.Random())
        self.access_log: deque[dict[str, Any]] | None = None
        self.access_log_format = ""  # "text" (Istio's default TEXT format) or "json"
        self.forwarder = Forwarder(self)
        self.connections: set[DownstreamProtocol] = set()
        self.tunnels: set[TcpProxy] = set()  # layer-4 connections (tcp.py), closed with the server
        self.servers: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.served_as: dict[tuple[str, int], tuple[str, bool]] = {}  # (protocol, terminates TLS) per bound address
        self.tls = TlsListeners()  # server contexts of TLS listeners, chosen by SNI (tls.py)
        self.listeners_by_addr: dict[tuple[str, int], Listener] = {}
        self.draining_addrs: set[tuple[str, int]] = set()
        self.lock = asyncio.Lock()
        self.last_nack: str = ""
        self.sweeper: asyncio.Task[None] | None = None

    async def _sweep(self) -> None:
        """Close connections whose idle or header deadline passed (one task instead of a timer per request)."""
        timeouts = [t / 4 for t in (self.header_timeout_s, self.idle_timeout_s, self.request_timeout_s,
                                    self.stream_idle_timeout_s) if t > 0]
        period = max(0.05, min([1.0, *timeouts]))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for conn in [c for c in self.connections if c.deadline <= now]:
                conn.timeout()

    # -- lookups used per request ----------------------------------------------------------------------
    def listener_at(self, key: tuple[str, int]) -> Listener | None:
        return self.listeners_by_addr.get(key)

    def _accept(self, addr: tuple[str, int], protocol: str) -> asyncio.Protocol:
        """The protocol object of a connection accepted on `addr`: HTTP/1.1, or layer 4 (tcp.py) on tcp/tls."""
        return TcpProxy(self, addr, protocol) if protocol in L4_PROTOCOLS else DownstreamProtocol(self, addr)

    # -- snapshots -------------------------------------------------------------------------------------
    async def apply(self, snapshot: Snapshot, *, keep: bool = True) -> tuple[bool, str]:
        """Swap to `snapshot` (ACK) or keep the current one and say why (NACK); `keep`: persist it once ACKed."""
        async with self.lock:
            table = RouteTable(snapshot, previous=self.table)  # incremental: unchanged rules are taken over
            wanted = {lst.address: lst for lst in table.listeners.values()}
            if reason := self.tls.follow(wanted.values(), snapshot.tls_credentials):
                return self._nack(reason)
            rebound: list[tuple[str, int]] = []  # protocol or TLS changed: bound anew (back as they were on a NACK)
            for addr in [a for a in wanted if a in self.servers and self.served_as.get(a) != (
                    wanted[a].protocol, bool(wanted[a].tls_servers))]:
                self.servers.pop(addr).close()
                rebound.append(addr)
                if self.handoff is not None:
                    self.handoff.release(addr)
            opened: dict[tuple[str, int], asyncio.AbstractServer] = {}
            for addr in wanted:
                if addr in self.servers:
                    continue
                kept = self.handoff.take(addr) if self.handoff is not None else None
                try:
                    if kept is not None:  # the previous run's socket: its queued connections are served now
                        opened[addr] = await self.loop.create_server(
                            lambda a=addr, p=wanted[addr].protocol: self._accept(a, p), sock=kept,
                            backlog=2048, **self.tls.server_kwargs(addr, self.header_timeout_s))
                    else:
                        opened[addr] = await self.loop.create_server(
                            lambda a=addr, p=wanted[addr].protocol: self._accept(a, p), addr[0], addr[1],
                            reuse_address=True, reuse_port=self.reuse_port, backlog=2048,
                            **self.tls.server_kwargs(addr, self.header_timeout_s))
                except OSError as exc:
                    for srv in opened.values():
                        srv.close()
                    if kept is not None:
                        kept.close()
                    if self.handoff is not None:  # the supervisor must not keep ports no listener wants
                        for a in [*opened, *([addr] if kept is not None else [])]:
                            self.handoff.release(a)
                    self.tls.rollback()  # keep serving the current snapshot's certificates
                    lost = await self._restore_listeners(rebound)
                    return self._nack(f"listener {wanted[addr].name} cannot bind {addr[0]}:{addr[1]}: {exc}{lost}")
            if self.sweeper is None:
                self.sweeper = self.loop.create_task(self._sweep())
            # Commit: new requests see the new table; in-flight ones finish on the objects they hold.
            same_clusters = table.clusters is self.table.clusters  # a delta that left every cluster as it was
            self.snapshot = snapshot
            self.table = table
            self.load.retain(table.clusters.values(), [live.key for live in table.rule_live.values()])
            if not same_clusters:
                self.outliers.follow(table.clusters)  # an ejection never outlives the outlierDetection that made it
            self.listeners_by_addr = wanted
            self.servers.update(opened)
            self.served_as.update({a: (wanted[a].protocol, bool(wanted[a].tls_servers)) for a in opened})
            if self.handoff is not None:
                for addr, srv in opened.items():
                    self.handoff.hold(addr, list(srv.sockets))
            self.draining_addrs -= set(wanted)
            self.limits.follow(table.listeners.values(), table.inbound_rate_limits)
            self.forwarder.telemetry.labels.clear()
            for addr in [a for a in self.servers if a not in wanted]:
                self.servers.pop(addr).close()
                self.draining_addrs.add(addr)
                if self.handoff is not None:
                    self.handoff.release(addr)
                for conn in list(self.connections):
                    if conn.listener_key == addr and not conn.busy:
                        conn.close()
            if not same_clusters:
                self.pools.retain_only({ep.address for c in table.clusters.values() for ep in c.endpoints})
            log_format = snapshot.options.access_log
            self.access_log = deque(maxlen=10_000) if log_format else None
            self.access_log_format = log_format
            self.acked = True
            if snapshot is self._whole and len(snapshot.services) >= BIG_MESH:
                # A big mesh lives until the next whole document: a full collection of it took ~350 ms at 5,000
                # services, in the middle of canary steps. Frozen, the collector scans only what came after;
                # deltas still free the parts they replace (snapshots hold no reference cycles). What was frozen
                # alive and died in a cycle since (this admin request, connections) is collected here, next time.
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            self._whole = None
            self.last_nack = ""
            self.stats.bump("graylane_proxy_config_ack_total")
            if self.last_good is not None and keep:
                self.last_good.save_soon(dict(snapshot.document), lambda fn: self.loop.run_in_executor(None, fn))
            return True, ""

    async def _restore_listeners(self, addrs: list[tuple[str, int]]) -> str:
        """After a NACK: listen again on the addresses closed to be bound with another protocol, as they were
        served; what cannot be (someone took the port meanwhile) is named for the NACK's reason."""
        lost = []
        for addr in addrs:
            protocol = self.served_as[addr][0]
            kept = self.handoff.take(addr) if self.handoff is not None else None
            try:
                if kept is not None:  # a worker's shared socket (shared_sockets.py)
                    self.servers[addr] = await self.loop.create_server(
                        lambda a=addr, p=protocol: self._accept(a, p), sock=kept, backlog=2048,
                        **self.tls.server_kwargs(addr, self.header_timeout_s))
                else:
                    self.servers[addr] = await self.loop.create_server(
                        lambda a=addr, p=protocol: self._accept(a, p), addr[0], addr[1], reuse_address=True,
                        reuse_port=self.reuse_port, backlog=2048,
                        **self.tls.server_kwargs(addr, self.header_timeout_s))
            except OSError as exc:
                self.served_as.pop(addr, None)
                lost.append(f"{addr[0]}:{addr[1]} ({exc})")
                continue
            if self.handoff is not None:
                self.handoff.hold(addr, list(self.servers[addr].sockets))
        return f"; no longer listening on {', '.join(lost)}" if lost else ""

    def decode(self, document: object) -> Snapshot:
        """The wire form decoded against the current snapshot (unchanged parts reused); raises `SnapshotError`."""
        try:
            if is_delta(document):  # an incremental push: the entries changed since the version we serve
                return decode_delta(document, self.snapshot)
            self._whole = decode_snapshot(document, previous=self.snapshot)
            return self._whole
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a decoder bug: still a NACK, not a crash
            log.warning("snapshot decoder failed", exc_info=True)
            raise SnapshotError(f"malformed snapshot: {type(exc).__name__}: {exc}") from None

    def reject(self, reason: str) -> tuple[bool, str]:
        """NACK: keep serving the current snapshot and remember why."""
        return self._nack(reason)

    def _nack(self, reason: str) -> tuple[bool, str]:
        self.last_nack = reason
        self.stats.bump("graylane_proxy_config_nack_total")
        log.warning("snapshot rejected: %s", reason)
        return False, reason

    async def restore(self) -> None:
        """Serve the last ACKed snapshot from the state folder until the control plane pushes again."""
        if self.last_good is not None and (document := self.last_good.load()) is not None:
            # Listeners: the previous run's sockets passed on by the supervisor, else bound now (SO_REUSEADDR).
            try:
                snapshot = self.decode(document)
            except SnapshotError as exc:
                ok, reason, version = False, str(exc), document.get("version")
            else:
                version = snapshot.version
                ok, reason = await self.apply(snapshot, keep=False)
            log.info("restored snapshot version %s from %s: %s", version, self.last_good.path,
                     "serving it" if ok else reason)
        if self.handoff is not None:
            self.handoff.release_unclaimed()

    # -- views for the admin port ----------------------------------------------------------------------
    def clusters_view(self) -> dict[str, Any]:
        now = self.loop.time()
        out = []
        for c in self.table.clusters.values():
            out.append({
                "name": c.name, "service": c.service, "port": c.port, "subset": c.subset,
                "lb": c.policy.lb.simple, "connections": self.load.counters(c.name).connections,
                "pending": self.load.counters(c.name).pending,
                "endpoints": [{"address": ep.address, "pod": ep.pod, "namespace": ep.namespace,
                               "labels": dict(ep.labels), "ready": ep.ready, "healthy": self.load.is_healthy(ep, now),
                               "ejected": self.load.host(ep).ejected, "times_ejected": self.load.host(ep).times_ejected,
                               "ejected_for_s": round(self.outliers.remaining_s(c, ep), 3),
                               "active": self.load.active(ep)}
                              for ep in c.endpoints]})
        return {"version": self.table.version, "clusters": out}

    def listeners_view(self) -> list[dict[str, Any]]:
        return [{"name": lst.name, "kind": lst.kind, "address": f"{lst.bind}:{lst.port}",
                 "source": {"namespace": lst.source.namespace, "pod": lst.source.pod,
                            "workload": lst.source.workload}} for lst in self.table.listeners.values()]

    # -- lifecycle -------------------------------------------------------------------------------------
    async def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        self.outliers.close()
        for srv in self.servers.values():
            srv.close()
        self.servers.clear()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        for _ in range(50):  # let in-flight requests finish (up to 5 s)
            if not self.connections:
                break
            await asyncio.sleep(0.1)
        for conn in list(self.connections):
            conn.close()
        for tunnel in list(self.tunnels):  # a TCP tunnel has no request to finish: closed at once
            tunnel.close()
        self.pools.close_all()
        self.forwarder.h2.pools.close_all()  # HTTP/2 upstream connections (h2_upstream.py)
