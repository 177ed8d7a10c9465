"""Outlier detection as Envoy runs it for Istio's `outlierDetection`.

A host reaching consecutive5xxErrors / consecutiveGatewayErrors is ejected at once, while the ejected share of
its cluster is below maxEjectionPercent (at least one host can always be ejected). A timer per cluster fires
every `interval`: it returns the hosts whose ejection time is over (baseEjectionTime x the ejection multiplier,
at most max(300 s, baseEjectionTime), Envoy's max_ejection_time default) and lowers the multiplier of hosts that
stayed in service. Only results from a host count: local overflow (UO) never reaches a host and never counts.
Detectors follow the snapshots: a cluster whose outlierDetection is gone or changed starts over, as Envoy's
rebuilt cluster does. Knows clusters and endpoints (`mesh.routing`) and writes the hosts' health into the
balancer state (`balance.LoadState`); knows no sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final, Protocol

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.routing import Cluster, ClusterEndpoint, OutlierPolicy

GATEWAY_ERRORS: Final = frozenset((502, 503, 504))
MAX_EJECTION_S: Final = 300.0  # Envoy's max_ejection_time default; Istio does not set it


class Clock(Protocol):
    """The two loop methods the detectors use (tests pass a hand-driven clock)."""

    def time(self) -> float: ...
    def call_later(self, delay: float, callback: object) -> asyncio.TimerHandle: ...


class HostMonitor:
    __slots__ = ("ejected_at", "multiplier")

    def __init__(self) -> None:
        self.ejected_at: float | None = None
        self.multiplier = 0  # Envoy's ejection time backoff


class ClusterDetector:
    """One cluster's detector: its policy, a monitor per host that failed once, and its interval timer."""

    def __init__(self, loop: Clock, cluster: Cluster, policy: OutlierPolicy, load: LoadState) -> None:
        self.loop = loop
        self.cluster = cluster
        self.policy = policy
        self.load = load
        self.monitors: dict[tuple[str, str], HostMonitor] = {}
        self.timer = loop.call_later(max(policy.interval_s, 0.001), self.tick)

    def record(self, endpoint: ClusterEndpoint, status: int) -> bool:
        """Count one response (locally originated failures come as 503/504). True when `ep` got ejected."""
        policy = self.policy
        ep = self.load.host(endpoint)
        if status < 500:
            ep.consecutive_5xx = ep.consecutive_gateway = 0
            return False
        ep.consecutive_5xx += 1
        ep.consecutive_gateway = ep.consecutive_gateway + 1 if status in GATEWAY_ERRORS else 0
        tripped = (policy.consecutive_5xx > 0 and ep.consecutive_5xx >= policy.consecutive_5xx) or (
            policy.consecutive_gateway > 0 and ep.consecutive_gateway >= policy.consecutive_gateway)
        monitor = self.monitors.get(endpoint.key)
        if not tripped or (monitor is not None and monitor.ejected_at is not None):
            return False
        eps = self.cluster.endpoints
        ejected = sum(1 for m in self.monitors.values() if m.ejected_at is not None)
        if eps and 100.0 * ejected / len(eps) >= policy.max_ejection_percent:
            return False
        if monitor is None:
            monitor = self.monitors[endpoint.key] = HostMonitor()
        if policy.base_ejection_s * monitor.multiplier < self.max_ejection_s:
            monitor.multiplier += 1
        monitor.ejected_at = self.loop.time()
        ep.times_ejected += 1
        ep.ejected = True
        ep.consecutive_5xx = ep.consecutive_gateway = 0
        return True

    @property
    def max_ejection_s(self) -> float:
        return max(MAX_EJECTION_S, self.policy.base_ejection_s)

    def ejection_s(self, monitor: HostMonitor) -> float:
        return min(self.policy.base_ejection_s * monitor.multiplier, self.max_ejection_s)

    def remaining_s(self, ep: ClusterEndpoint) -> float:
        """Seconds until `ep` may return (it returns at the first interval tick after that)."""
        monitor = self.monitors.get(ep.key)
        if monitor is None or monitor.ejected_at is None:
            return 0.0
        return max(0.0, monitor.ejected_at + self.ejection_s(monitor) - self.loop.time())

    def tick(self) -> None:
        """Envoy's interval sweep: un-eject hosts whose time is over, lower the multiplier of healthy ones."""
        now = self.loop.time()
        for key, monitor in list(self.monitors.items()):
            if monitor.ejected_at is None:
                monitor.multiplier = max(0, monitor.multiplier - 1)
                if not monitor.multiplier:
                    del self.monitors[key]
            elif now - monitor.ejected_at >= self.ejection_s(monitor):
                monitor.ejected_at = None
                ep = self.load.hosts.get(key)
                if ep is None:
                    continue
                ep.ejected = False
                ep.consecutive_5xx = ep.consecutive_gateway = 0
        self.timer = self.loop.call_later(max(self.policy.interval_s, 0.001), self.tick)

    def stop(self) -> None:
        """The policy is gone or changed: cancel the timer and return every host with a clean record."""
        self.timer.cancel()
        for key in {*self.monitors, *(ep.key for ep in self.cluster.endpoints)}:
            ep = self.load.hosts.get(key)
            if ep is None:
                continue
            ep.ejected = False
            ep.times_ejected = ep.consecutive_5xx = ep.consecutive_gateway = 0
        self.monitors.clear()


class OutlierDetectors:
    """Every cluster's detector, kept in step with the snapshots."""

    def __init__(self, loop: Clock, load: LoadState) -> None:
        self.loop = loop
        self.load = load
        self.by_cluster: dict[str, ClusterDetector] = {}

    def record(self, cluster: Cluster, ep: ClusterEndpoint, status: int) -> bool:
        detector = self.by_cluster.get(cluster.name)
        return detector.record(ep, status) if detector is not None else False

    def remaining_s(self, cluster: Cluster, ep: ClusterEndpoint) -> float:
        detector = self.by_cluster.get(cluster.name)
        return detector.remaining_s(ep) if detector is not None else 0.0

    def follow(self, clusters: Mapping[str, Cluster]) -> None:
        """Adopt a new snapshot's clusters (called when it is committed)."""
        for name in [n for n in self.by_cluster if n not in clusters]:
            self.by_cluster.pop(name).stop()
        for name, cluster in clusters.items():
            policy = cluster.policy.outlier
            detector = self.by_cluster.get(name)
            if detector is not None and detector.policy == policy:
                detector.cluster = cluster  # same policy, new endpoints list: ejections carry over
                continue
            if detector is not None:
                self.by_cluster.pop(name).stop()
            if policy is not None and (policy.consecutive_5xx > 0 or policy.consecutive_gateway > 0):
                self.by_cluster[name] = ClusterDetector(self.loop, cluster, policy, self.load)

    def close(self) -> None:
        for detector in self.by_cluster.values():
            detector.timer.cancel()
        self.by_cluster.clear()
