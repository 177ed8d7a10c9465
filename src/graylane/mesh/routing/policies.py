"""Route and cluster policies as data: header operations, retries, CORS, load-balancer, pool, outlier and
local rate-limit settings.

Frozen values built by the snapshot decoder (`graylane.mesh.snapshot`); the decisions that use them live in
balancing.py and table.py, the enforcement in the proxy's layers. Knows no dicts, sockets or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from graylane.mesh.routing.matching import StringMatch

# Istio's default retry policy when a route sets none (pilot/pkg/networking/core/route/retry/retry.go):
# 2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (503).
DEFAULT_RETRY_ON: Final = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY_CODES: Final = (503,)
RING_SIZE: Final = 1024  # ringHash.minimumRingSize default


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    empty: bool = field(init=False, repr=False, compare=False)  # no operation at all (read on the hot path)

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", not (self.set or self.add or self.remove))

    def is_empty(self) -> bool:
        return self.empty

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply to a list of (lowercase name, value): remove, then set (replace), then add (comma-append)."""
        if self.empty:
            return headers
        drop = set(self.remove) | {k for k, _ in self.set}
        out = [(k, v) for k, v in headers if k not in drop]
        out.extend(self.set)
        for k, v in self.add:
            for i, (name, old) in enumerate(out):
                if name == k:
                    out[i] = (name, f"{old},{v}")
                    break
            else:
                out.append((k, v))
        return out


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int  # retries, not tries
    per_try_timeout_s: float | None
    retry_on: frozenset[str]
    codes: frozenset[int]
    backoff_s: float = 0.025
    is_default: bool = False
    # The response statuses `retry_on` retries (5xx, gateway-error, retriable-4xx, retriable-status-codes), as a set
    # read once per response on the hot path.
    statuses: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        on, statuses = self.retry_on, set[int]()
        if "5xx" in on:
            statuses.update(range(500, 1000))  # httptools reads any three-digit status
        if "gateway-error" in on:
            statuses.update((502, 503, 504))
        if "retriable-4xx" in on:
            statuses.add(409)
        if "retriable-status-codes" in on:
            statuses.update(self.codes)
        object.__setattr__(self, "statuses", frozenset(statuses))

    @classmethod
    def istio_default(cls) -> RetryPolicy:
        """What a route without `retries` gets (2 retries on connect-failure,refused-stream,... and 503)."""
        return cls(2, None, frozenset(DEFAULT_RETRY_ON), frozenset(DEFAULT_RETRY_CODES), is_default=True)

    def retries_status(self, status: int) -> bool:
        return status in self.statuses

    def retries_connect_failure(self) -> bool:
        return bool(self.retry_on & {"connect-failure", "5xx", "gateway-error", "reset", "reset-before-request",
                                     "refused-stream"})

    def retries_reset(self) -> bool:
        return bool(self.retry_on & {"reset", "5xx", "gateway-error"})

    def retries_timeout(self) -> bool:
        return bool(self.retry_on & {"5xx", "gateway-error"})

    def describe(self) -> str:
        on = ",".join(sorted(self.retry_on))
        codes = f" codes={sorted(self.codes)}" if self.codes else ""
        tt = f" perTryTimeout={self.per_try_timeout_s:g}s" if self.per_try_timeout_s else ""
        return f"{self.attempts} retries on {on}{codes}{tt}" + (" (Istio default)" if self.is_default else "")


@dataclass(frozen=True, slots=True)
class Cors:
    allow_origins: tuple[StringMatch, ...]
    allow_methods: str
    allow_headers: str
    expose_headers: str
    max_age: str
    allow_credentials: bool | None
    forward_unmatched: bool

    def is_allowed(self, origin: str) -> bool:
        return any(m.matches(origin) for m in self.allow_origins)


@dataclass(frozen=True, slots=True)
class HashCookie:
    """consistentHash.httpCookie: the cookie to hash on; generated (Set-Cookie) when `ttl_s` is set."""

    name: str
    path: str = ""
    ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    simple: str = "LEAST_REQUEST"  # LEAST_REQUEST | ROUND_ROBIN | RANDOM | PASSTHROUGH
    hash_header: str | None = None
    hash_cookie: HashCookie | None = None
    hash_source_ip: bool = False
    hash_query: str | None = None
    ring_size: int = RING_SIZE
    is_hash: bool = field(init=False, repr=False, compare=False)  # any hash key (read per request by the balancer)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_hash", bool(self.hash_header or self.hash_cookie or self.hash_source_ip or
                                                 self.hash_query))

@dataclass(frozen=True, slots=True)
class PoolPolicy:
    max_connections: int = 2**32 - 1
    connect_timeout_s: float = 10.0
    max_pending: int = 2**32 - 1
    max_requests_per_connection: int = 0
    max_retries: int = 2**32 - 1
    idle_timeout_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive_5xx: int = 0  # 0 disables
    consecutive_gateway: int = 0
    interval_s: float = 10.0
    base_ejection_s: float = 30.0
    max_ejection_percent: float = 10.0


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    lb: LoadBalancer = field(default_factory=LoadBalancer)
    pool: PoolPolicy = field(default_factory=PoolPolicy)
    outlier: OutlierPolicy | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Envoy's local_ratelimit: a token bucket, enabled/enforced percentages, headers on a 429."""

    max_tokens: int
    tokens_per_fill: int = 1
    fill_interval_s: float = 1.0
    filter_enabled: float = 0.0
    filter_enforced: float = 0.0
    response_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class InboundRateLimit:
    """A local rate limit applied by the destination's sidecar to the pods its selector picks."""

    namespace: str
    selector: tuple[tuple[str, str], ...]
    limit: RateLimit

    def selects(self, namespace: str, labels: dict[str, str]) -> bool:
        return self.namespace in (namespace, "istio-system") and all(labels.get(k) == v for k, v in self.selector)


@dataclass(frozen=True, slots=True)
class StickyPolicy:
    """One VirtualService's sticky identity: a cookie the proxy sets, or a header the app carries."""

    cookie: str = ""
    max_age_s: int = 86400
    path: str = "/"
    same_site: str = "Lax"
    header: str = ""

    def set_cookie(self, value: str) -> str:
        """The `Set-Cookie` value naming `value` (a subset)."""
        return f"{self.cookie}={value}; Max-Age={self.max_age_s}; Path={self.path}; SameSite={self.same_site}" \
            "; HttpOnly"
