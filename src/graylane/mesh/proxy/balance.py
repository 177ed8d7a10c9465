"""The balancer state the proxy keeps across requests and snapshots: per-host load and health, per-cluster
circuit-breaker gauges and round-robin cursors, and the progress of every weighted split.

Routing (`graylane.mesh.routing`) decides with it and never stores it (`BalancerState`). State is keyed by name
(cluster, address; split key), so it carries across snapshot swaps while the names stay. Knows no sockets.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from functools import lru_cache
from typing import Final

from graylane.mesh.routing import Cluster, ClusterEndpoint, pfair_pick, random_pick


class HostStats:
    """One endpoint of one cluster as Envoy's load balancer and outlier detector see it."""

    __slots__ = ("active", "ejected", "times_ejected", "consecutive_5xx", "consecutive_gateway")

    def __init__(self) -> None:
        self.active = 0  # in-flight requests (LEAST_REQUEST)
        self.ejected = False  # by outlier detection; its interval timer returns the host
        self.times_ejected = 0
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0


class ClusterCounters:
    """Circuit-breaker gauges of one cluster name."""

    __slots__ = ("connections", "pending", "retries", "rr_cursor")

    def __init__(self) -> None:
        self.connections = 0
        self.pending = 0
        self.retries = 0
        self.rr_cursor = 0


SCHEDULE_MAX: Final = 10_000  # a split's whole cycle is computed once when its weights sum to at most this


@lru_cache(maxsize=1024)
def pfair_schedule(weights: tuple[int, ...]) -> tuple[int, ...]:
    """A split's whole cycle of picks (`pfair_pick` from the cycle's start, slot after slot): the same for every
    split with these weights, so computed once and then read one index per request."""
    total = sum(weights)
    counts = [0] * len(weights)
    out = []
    for slot in range(total):
        best = pfair_pick(weights, total, counts, slot)
        counts[best] += 1
        out.append(best)
    return tuple(out)


class WeightedPicker:
    """The progress of one weighted split: `pick` returns the next destination index and records it."""

    __slots__ = ("weights", "total", "counts", "slot", "use_random", "schedule")

    def __init__(self, weights: Iterable[int], use_random: bool = False) -> None:
        self.weights = tuple(weights)
        self.total = sum(self.weights)
        self.counts = [0] * len(self.weights)
        self.slot = 0
        self.use_random = use_random
        self.schedule = pfair_schedule(self.weights) if (
            not use_random and len(self.weights) > 1 and 0 < self.total <= SCHEDULE_MAX) else None

    def pick(self, rng: random.Random) -> int:
        schedule = self.schedule
        if schedule is not None:  # the common case: this split's precomputed cycle (`counts` is not kept)
            slot = self.slot
            self.slot = slot + 1 if slot + 1 < self.total else 0
            return schedule[slot]
        n = len(self.weights)
        if n == 1:
            return 0
        if self.use_random:
            return random_pick(self.weights, self.total, rng)
        best = pfair_pick(self.weights, self.total, self.counts, self.slot)
        self.counts[best] += 1
        self.slot += 1
        if self.slot >= self.total:
            self.slot = 0
            self.counts = [0] * n
        return best


class LoadState:
    """The proxy's `BalancerState`: what routing reads per request, kept here and updated by the layers."""

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str], HostStats] = {}
        self.clusters: dict[str, ClusterCounters] = {}
        self.splits: dict[Hashable, WeightedPicker] = {}

    # -- BalancerState
    def is_healthy(self, ep: ClusterEndpoint, now: float) -> bool:
        if not ep.ready:
            return False
        stats = self.hosts.get(ep.key)
        return stats is None or not stats.ejected

    def active(self, ep: ClusterEndpoint) -> int:
        stats = self.hosts.get(ep.key)
        return stats.active if stats is not None else 0

    def next_round_robin(self, cluster: str) -> int:
        counters = self.counters(cluster)
        counters.rr_cursor += 1
        return counters.rr_cursor

    def pick_weighted(self, key: Hashable, weights: tuple[int, ...], use_random: bool, rng: random.Random) -> int:
        picker = self.splits.get(key)
        if picker is None:
            picker = self.splits[key] = WeightedPicker(weights, use_random)
        return picker.pick(rng)

    # -- the layers' side
    def host(self, ep: ClusterEndpoint) -> HostStats:
        stats = self.hosts.get(ep.key)
        if stats is None:
            stats = self.hosts[ep.key] = HostStats()
        return stats

    def counters(self, cluster: str) -> ClusterCounters:
        counters = self.clusters.get(cluster)
        if counters is None:
            counters = self.clusters[cluster] = ClusterCounters()
        return counters

    def retain(self, clusters: Iterable[Cluster], split_keys: Iterable[Hashable]) -> None:
        """Forget what a new snapshot no longer names (idle hosts, clusters and splits only)."""
        live = list(clusters)
        names = {c.name for c in live}
        keys = {ep.key for c in live for ep in c.endpoints}
        self.hosts = {k: v for k, v in self.hosts.items() if k in keys or v.active}
        self.clusters = {k: v for k, v in self.clusters.items() if k in names or v.connections or v.pending}
        wanted = set(split_keys)
        self.splits = {k: v for k, v in self.splits.items() if k in wanted}
