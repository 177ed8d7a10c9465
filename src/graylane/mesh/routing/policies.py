"""Route and cluster policies as data: header operations, retries, CORS, load-balancer, pool and outlier settings.

Frozen values decoded from the snapshot; the decisions that use them live in balancing.py and table.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graylane.mesh.routing.matching import StringMatch

# Istio's default retry policy when a route sets none (pilot/pkg/networking/core/route/retry/retry.go):
# 2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (503).
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY_CODES = (503,)
RING_SIZE = 1024  # ringHash.minimumRingSize default


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @classmethod
    def load(cls, spec: Mapping[str, Any] | None) -> HeaderOps:
        spec = spec or {}
        return cls(tuple((k.lower(), str(v)) for k, v in (spec.get("set") or {}).items()),
                   tuple((k.lower(), str(v)) for k, v in (spec.get("add") or {}).items()),
                   tuple(k.lower() for k in spec.get("remove") or ()))

    def is_empty(self) -> bool:
        return not (self.set or self.add or self.remove)

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply to a list of (lowercase name, value): remove, then set (replace), then add (comma-append)."""
        if self.is_empty():
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

    @classmethod
    def load(cls, spec: Mapping[str, Any] | None) -> RetryPolicy:
        if spec is None:
            return cls(2, None, frozenset(DEFAULT_RETRY_ON), frozenset(DEFAULT_RETRY_CODES), is_default=True)
        return cls(int(spec.get("attempts", 0)), spec.get("per_try_timeout_s"), frozenset(spec.get("retry_on", ())),
                   frozenset(int(c) for c in spec.get("codes", ())), float(spec.get("backoff_s", 0.025)))

    def retries_status(self, status: int) -> bool:
        on = self.retry_on
        if "5xx" in on and status >= 500:
            return True
        if "gateway-error" in on and status in (502, 503, 504):
            return True
        if "retriable-4xx" in on and status == 409:
            return True
        return "retriable-status-codes" in on and status in self.codes

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

    @classmethod
    def load(cls, spec: Mapping[str, Any]) -> Cors:
        origins = [StringMatch.load(o) for o in spec.get("allowOrigins") or ()]
        origins += [StringMatch("exact", o) if o != "*" else StringMatch("present")
                    for o in spec.get("allowOrigin") or ()]
        max_age = str(spec["max_age_s"]) if spec.get("max_age_s") else ""
        return cls(tuple(origins), ",".join(spec.get("allowMethods") or ()), ",".join(spec.get("allowHeaders") or ()),
                   ",".join(spec.get("exposeHeaders") or ()), max_age,
                   spec.get("allowCredentials"), spec.get("unmatchedPreflights", "FORWARD") != "IGNORE")

    def is_allowed(self, origin: str) -> bool:
        return any(m.matches(origin) for m in self.allow_origins)


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    simple: str = "LEAST_REQUEST"  # LEAST_REQUEST | ROUND_ROBIN | RANDOM | PASSTHROUGH
    hash_header: str | None = None
    hash_cookie: Mapping[str, Any] | None = None  # {name, path, ttl_s}
    hash_source_ip: bool = False
    hash_query: str | None = None
    ring_size: int = RING_SIZE

    @property
    def is_hash(self) -> bool:
        return bool(self.hash_header or self.hash_cookie or self.hash_source_ip or self.hash_query)

    @classmethod
    def load(cls, spec: Mapping[str, Any] | None) -> LoadBalancer:
        if not spec:
            return cls()
        ch = spec.get("consistentHash")
        if ch:
            return cls("RING_HASH", ch.get("httpHeaderName", "").lower() or None, ch.get("httpCookie"),
                       bool(ch.get("useSourceIp")), ch.get("httpQueryParameterName"),
                       int((ch.get("ringHash") or {}).get("minimumRingSize") or ch.get("minimumRingSize") or RING_SIZE))
        simple = spec.get("simple", "LEAST_REQUEST")
        return cls({"UNSPECIFIED": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST"}.get(simple, simple))


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

    @classmethod
    def load(cls, spec: Mapping[str, Any] | None) -> ClusterPolicy:
        spec = spec or {}
        pool = spec.get("pool") or {}
        od = spec.get("outlier")
        return cls(LoadBalancer.load(spec.get("loadBalancer")),
                   PoolPolicy(**{k: v for k, v in pool.items() if k in PoolPolicy.__dataclass_fields__}),
                   OutlierPolicy(**{k: v for k, v in od.items() if k in OutlierPolicy.__dataclass_fields__})
                   if od else None)
