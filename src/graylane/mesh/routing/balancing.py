"""Choosing among destinations and endpoints as pure decisions: the deterministic weighted pick (Pfair), least
request, round robin, random, and the consistent-hash ring.

Holds no counters. Endpoint health, in-flight requests, round-robin cursors and weighted-pick progress belong to
the caller (the proxy's balance layer, or `graylane route`), which passes them in as a `BalancerState`.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from graylane.mesh.routing.matching import RequestView, split_path
from graylane.mesh.routing.policies import ClusterPolicy

# --------------------------------------------------------------------------------------------- weights


def pfair_pick(weights: Sequence[int], total: int, counts: Sequence[int], slot: int) -> int:
    """The next destination of a deterministic weighted split, given the picks so far in this cycle.

    Each destination's k-th pick is a Pfair subtask released at floor((k-1)*T/w) and due at ceil(k*T/w); picking
    the eligible subtask with the earliest deadline keeps the lag strictly inside (-1, 1) (Baruah et al., Pfair
    scheduling), i.e. an exact 1% canary. `counts[i]` is how often i was picked since the cycle began at slot 0.

    >>> pfair_pick([90, 10], 100, [0, 0], 0)
    0
    """
    best, best_deadline = -1, 0
    for i, w in enumerate(weights):
        c = counts[i]
        if w == 0 or c >= w or (c * total) // w > slot:
            continue
        deadline = -(-(c + 1) * total // w)
        if best < 0 or deadline < best_deadline or (deadline == best_deadline and w > weights[best]):
            best, best_deadline = i, deadline
    if best < 0:  # cannot happen with exact arithmetic; stay safe
        best = max(range(len(weights)), key=lambda i: (slot + 1) * weights[i] - counts[i] * total)
    return best


def random_pick(weights: Sequence[int], total: int, rng: random.Random) -> int:
    """Envoy's weighted_clusters: each request independently, in proportion to the weights."""
    x = rng.random() * total
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            return i
    return len(weights) - 1


# --------------------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True, eq=False)
class ClusterEndpoint:
    """One host of a cluster as the snapshot describes it. `key` (cluster, address) names its state elsewhere."""

    key: tuple[str, str]
    address: str
    host: str
    port: int
    pod: str
    namespace: str
    labels: Mapping[str, str]
    workload: str
    service_account: str
    ready: bool = True


class BalancerState(Protocol):
    """What the caller keeps across requests and snapshots; routing reads it and never stores it."""

    def is_healthy(self, ep: ClusterEndpoint, now: float) -> bool:
        """Ready and not ejected by outlier detection."""
        ...

    def active(self, ep: ClusterEndpoint) -> int:
        """Requests in flight to `ep` (least request)."""
        ...

    def next_round_robin(self, cluster: str) -> int:
        """The cluster's round-robin cursor, advanced by one."""
        ...

    def pick_weighted(self, key: Hashable, weights: tuple[int, ...], use_random: bool, rng: random.Random) -> int:
        """The next index of the weighted split named `key` (`pfair_pick` or `random_pick` on the caller's counts)."""
        ...


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def hash_ring(endpoints: Sequence[ClusterEndpoint], ring_size: int) -> tuple[tuple[int, int], ...]:
    """(hash, endpoint index) points of a ring of at least `ring_size` entries (Envoy's ring_hash)."""
    if not endpoints:
        return ()
    per = max(1, -(-ring_size // len(endpoints)))
    return tuple(sorted((_hash64(f"{ep.address}_{i}"), idx) for idx, ep in enumerate(endpoints) for i in range(per)))


@dataclass(frozen=True, slots=True, eq=False)
class Cluster:
    """An Envoy cluster `outbound|port|subset|fqdn`: its endpoints, policy and hash ring."""

    name: str
    service: str
    port: int
    subset: str
    policy: ClusterPolicy
    endpoints: tuple[ClusterEndpoint, ...]
    ring: tuple[tuple[int, int], ...] = ()  # (hash, endpoint index), when the policy hashes
    ring_keys: tuple[int, ...] = ()

    @classmethod
    def build(cls, name: str, service: str, port: int, subset: str, policy: ClusterPolicy,
              endpoints: tuple[ClusterEndpoint, ...]) -> Cluster:
        ring = hash_ring(endpoints, policy.lb.ring_size) if policy.lb.is_hash else ()
        return cls(name, service, port, subset, policy, endpoints, ring, tuple(h for h, _ in ring))

    def healthy(self, now: float, state: BalancerState) -> list[ClusterEndpoint]:
        return [ep for ep in self.endpoints if state.is_healthy(ep, now)]

    def hash_key(self, req: RequestView, getrandbits: Callable[[int], int]) -> tuple[str | None, str | None]:
        """(key, generated cookie value) per consistentHash policy.

        `getrandbits` draws the generated cookie (httpCookie with a ttl); pass e.g. `random.Random(0).getrandbits`
        to make it reproducible.
        """
        lb = self.policy.lb
        if lb.hash_header:
            return req.headers.get(lb.hash_header), None
        if lb.hash_cookie:
            name = lb.hash_cookie.name
            for part in req.headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v, None
            if lb.hash_cookie.ttl_s:  # Envoy generates the cookie when ttl is set
                generated = format(getrandbits(64), "016x")
                return generated, generated
            return None, None
        if lb.hash_source_ip:
            return req.source_ip, None
        if lb.hash_query:
            return dict(parse_qsl(split_path(req.path)[1], keep_blank_values=True)).get(lb.hash_query), None
        return None, None

    def pick(self, req: RequestView, rng: random.Random, now: float, state: BalancerState,
             exclude: Callable[[ClusterEndpoint], bool] | None = None,
             cookie_bits: Callable[[int], int] | None = None) -> tuple[ClusterEndpoint | None, str | None]:
        """Choose a healthy endpoint per the cluster's LB policy. Returns (endpoint, cookie to set).

        `rng` picks among endpoints; `cookie_bits` generates a hash cookie (`hash_key`'s `getrandbits`, by default
        `rng.getrandbits`).
        """
        eps = self.healthy(now, state)
        if exclude is not None and len(eps) > 1:
            others = [ep for ep in eps if not exclude(ep)]
            eps = others or eps
        if not eps:
            return None, None
        lb = self.policy.lb
        if lb.is_hash:
            key, cookie = self.hash_key(req, cookie_bits or rng.getrandbits)
            if key is not None and self.ring:
                start = bisect.bisect_left(self.ring_keys, _hash64(key)) % len(self.ring)
                healthy = set(map(id, eps))
                for j in range(len(self.ring)):
                    ep = self.endpoints[self.ring[(start + j) % len(self.ring)][1]]
                    if id(ep) in healthy:
                        return ep, cookie
            return eps[rng.randrange(len(eps))], cookie
        if len(eps) == 1:
            return eps[0], None
        if lb.simple == "ROUND_ROBIN":
            return eps[state.next_round_robin(self.name) % len(eps)], None
        if lb.simple == "RANDOM":
            return eps[rng.randrange(len(eps))], None
        # LEAST_REQUEST with equal weights: Envoy's power of two choices.
        n = len(eps)
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        a, b = eps[i], eps[j + (j >= i)]
        return (a if state.active(a) <= state.active(b) else b), None
