"""The rate-limit layer: Envoy's local_ratelimit token bucket (max_tokens, tokens_per_fill, fill_interval) with
enabled/enforced percentages, per listener (outbound) and per destination pod (inbound).

Knows the snapshot's `RateLimit` values, a clock reading and a random source; nothing else.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from graylane.mesh.proxy.errors import RateLimited
from graylane.mesh.routing import ClusterEndpoint, InboundRateLimit, Listener, RateLimit


class TokenBucket:
    __slots__ = ("max_tokens", "per_fill", "interval_s", "tokens", "last_fill", "enabled", "enforced", "headers")

    def __init__(self, spec: RateLimit, now: float) -> None:
        self.max_tokens = spec.max_tokens
        self.per_fill = spec.tokens_per_fill
        self.interval_s = spec.fill_interval_s or 1.0
        self.tokens = self.max_tokens
        self.last_fill = now
        self.enabled = spec.filter_enabled
        self.enforced = spec.filter_enforced
        self.headers = list(spec.response_headers)

    def is_limited(self, now: float, rng: random.Random) -> bool:
        """Take a token; True when the request must get 429 RL (Envoy: enabled% counts, enforced% rejects)."""
        if self.enabled <= 0 or rng.random() * 100 >= self.enabled:
            return False
        fills = int((now - self.last_fill) / self.interval_s)
        if fills:
            self.tokens = min(self.max_tokens, self.tokens + fills * self.per_fill)
            self.last_fill += fills * self.interval_s
        if self.tokens > 0:
            self.tokens -= 1
            return False
        return self.enforced > 0 and rng.random() * 100 < self.enforced


class RateLimits:
    """The rate-limit layer: a bucket per listener (the sending sidecar or gateway) and one per destination pod
    (its sidecar's inbound limit). Raises `RateLimited` with the limit's response headers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.buckets: dict[tuple[str, RateLimit], TokenBucket] = {}
        self.inbound: dict[str, TokenBucket | None] = {}
        self.inbound_limits: tuple[InboundRateLimit, ...] = ()

    def follow(self, listeners: Iterable[Listener], inbound: tuple[InboundRateLimit, ...]) -> None:
        """Adopt a new snapshot: keep the buckets of listeners that stay, start inbound buckets over."""
        names = {lst.name for lst in listeners}
        self.buckets = {k: v for k, v in self.buckets.items() if k[0] in names}
        self.inbound = {}
        self.inbound_limits = inbound

    def check_listener(self, listener: Listener, now: float) -> None:
        spec = listener.rate_limit
        if spec is None:
            return
        key = (listener.name, spec)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(spec, now)
        if bucket.is_limited(now, self.rng):
            raise RateLimited(tuple(bucket.headers))

    def check_inbound(self, ep: ClusterEndpoint, now: float) -> None:
        if not self.inbound_limits:
            return
        bucket = self.inbound.get(ep.address, _UNSET)
        if bucket is _UNSET:
            bucket = None
            for rl in self.inbound_limits:
                if rl.selects(ep.namespace, dict(ep.labels)):
                    bucket = TokenBucket(rl.limit, now)  # one bucket per pod, as per sidecar
                    break
            self.inbound[ep.address] = bucket
        if isinstance(bucket, TokenBucket) and bucket.is_limited(now, self.rng):
            raise RateLimited(tuple(bucket.headers))


_UNSET = object()
