"""Envoy's local_ratelimit token bucket (max_tokens, tokens_per_fill, fill_interval) with enabled/enforced."""

from __future__ import annotations

import random

from graylane.mesh.routing import RateLimit


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
