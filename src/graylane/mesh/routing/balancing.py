"""Choosing among destinations and endpoints: the deterministic weighted picker, least-request, round robin,
random, and the consistent-hash ring. Endpoint and cluster state the proxy carries across snapshots lives here too.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from graylane.mesh.routing.matching import RequestView, split_path
from graylane.mesh.routing.policies import ClusterPolicy

# --------------------------------------------------------------------------------------------- weights


class WeightedPicker:
    """Deterministic weighted pick: exact per cycle of sum(weights), and every prefix within one request.

    Each destination's k-th pick is a Pfair subtask released at floor((k-1)*T/w) and due at ceil(k*T/w); picking
    the eligible subtask with the earliest deadline keeps the lag strictly inside (-1, 1) (Baruah et al., Pfair
    scheduling), i.e. an exact 1% canary. With the mesh option `random`, picks like Envoy's weighted_clusters.
    """

    __slots__ = ("weights", "total", "counts", "slot", "use_random")

    def __init__(self, weights: list[int], use_random: bool = False) -> None:
        self.weights = weights
        self.total = sum(weights)
        self.counts = [0] * len(weights)
        self.slot = 0
        self.use_random = use_random

    def pick(self, rng: random.Random) -> int:
        n = len(self.weights)
        if n == 1:
            return 0
        total = self.total
        if self.use_random:
            x = rng.random() * total
            for i, w in enumerate(self.weights):
                x -= w
                if x < 0:
                    return i
            return n - 1
        t, counts, best, best_deadline = self.slot, self.counts, -1, 0
        for i, w in enumerate(self.weights):
            c = counts[i]
            if w == 0 or c >= w or (c * total) // w > t:
                continue
            deadline = -(-(c + 1) * total // w)
            if best < 0 or deadline < best_deadline or (deadline == best_deadline and w > self.weights[best]):
                best, best_deadline = i, deadline
        if best < 0:  # cannot happen with exact arithmetic; stay safe
            best = max(range(n), key=lambda i: (t + 1) * self.weights[i] - counts[i] * total)
        counts[best] += 1
        self.slot = t + 1
        if self.slot >= total:
            self.slot = 0
            self.counts = [0] * n
        return best


# --------------------------------------------------------------------------------------------- endpoints


@dataclass(slots=True, eq=False)
class EndpointState:
    """One host of a cluster, as Envoy's load balancer and outlier detector see it."""

    address: str
    host: str
    port: int
    pod: str
    namespace: str
    labels: dict[str, str]
    workload: str
    service_account: str
    ready: bool = True
    active: int = 0  # in-flight requests (LEAST_REQUEST)
    ejected_until: float = 0.0
    times_ejected: int = 0
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0

    def is_healthy(self, now: float) -> bool:
        return self.ready and self.ejected_until <= now


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(slots=True, eq=False)
class ClusterCounters:
    """Circuit-breaker gauges, shared across snapshots while the cluster name stays."""

    connections: int = 0
    pending: int = 0
    retries: int = 0
    rr_cursor: int = 0


@dataclass(slots=True, eq=False)
class Cluster:
    """An Envoy cluster `outbound|port|subset|fqdn`: its endpoints, policy and balancer state."""

    name: str
    service: str
    port: int
    subset: str
    policy: ClusterPolicy
    endpoints: list[EndpointState]
    counters: ClusterCounters
    ring: list[tuple[int, int]] = field(default_factory=list)  # (hash, endpoint index)
    ring_keys: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy.lb.is_hash and self.endpoints:
            per = max(1, -(-self.policy.lb.ring_size // len(self.endpoints)))
            ring = sorted((_hash64(f"{ep.address}_{i}"), idx) for idx, ep in enumerate(self.endpoints)
                          for i in range(per))
            self.ring = ring
            self.ring_keys = [h for h, _ in ring]

    def healthy(self, now: float) -> list[EndpointState]:
        return [ep for ep in self.endpoints if ep.is_healthy(now)]

    def hash_key(self, req: RequestView,
                 getrandbits: Callable[[int], int] | None = None) -> tuple[str | None, str | None]:
        """(key, generated cookie value) per consistentHash policy.

        `getrandbits` draws the generated cookie (httpCookie with a ttl); pass e.g. `random.Random(0).getrandbits`
        to make it reproducible. By default it is the global `random.getrandbits`.
        """
        lb = self.policy.lb
        if lb.hash_header:
            return req.headers.get(lb.hash_header), None
        if lb.hash_cookie:
            name = lb.hash_cookie.get("name", "")
            for part in req.headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v, None
            if lb.hash_cookie.get("ttl_s"):  # Envoy generates the cookie when ttl is set
                generated = format((getrandbits or random.getrandbits)(64), "016x")
                return generated, generated
            return None, None
        if lb.hash_source_ip:
            return req.source_ip, None
        if lb.hash_query:
            return dict(parse_qsl(split_path(req.path)[1], keep_blank_values=True)).get(lb.hash_query), None
        return None, None

    def pick(self, req: RequestView, rng: random.Random, now: float,
             exclude: Callable[[EndpointState], bool] | None = None,
             cookie_bits: Callable[[int], int] | None = None) -> tuple[EndpointState | None, str | None]:
        """Choose a healthy endpoint per the cluster's LB policy. Returns (endpoint, cookie to set).

        `rng` picks among endpoints; `cookie_bits` generates a hash cookie (`hash_key`'s `getrandbits`).
        """
        eps = self.healthy(now)
        if exclude is not None and len(eps) > 1:
            others = [ep for ep in eps if not exclude(ep)]
            eps = others or eps
        if not eps:
            return None, None
        lb = self.policy.lb
        if lb.is_hash:
            key, cookie = self.hash_key(req, cookie_bits)
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
            self.counters.rr_cursor += 1
            return eps[self.counters.rr_cursor % len(eps)], None
        if lb.simple == "RANDOM":
            return eps[rng.randrange(len(eps))], None
        # LEAST_REQUEST with equal weights: Envoy's power of two choices.
        n = len(eps)
        i = rng.randrange(n)
        j = rng.randrange(n - 1)
        a, b = eps[i], eps[j + (j >= i)]
        return (a if a.active <= b.active else b), None
