"""Route one request through a compiled snapshot: host, VirtualService rule, weighted destination, endpoint.

Pure core shared by the data plane and `graylane route`: no sockets, no asyncio, no store. Randomness and
time are parameters. Mutable state here is only what Envoy keeps per route/cluster (round-robin cursors,
active-request counts, outlier ejections) and it lives in small objects the proxy carries across snapshots.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote

from graylane.errors import ValidationError

# Istio's default retry policy when a route sets none (pilot/pkg/networking/core/route/retry/retry.go):
# 2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes (503).
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY_CODES = (503,)
RING_SIZE = 1024  # ringHash.minimumRingSize default
PASSTHROUGH = "PassthroughCluster"


class Outcome(enum.StrEnum):
    ROUTED = "ROUTED"
    NO_ROUTE = "NO_ROUTE"  # 404 NR
    CLUSTER_NOT_FOUND = "CLUSTER_NOT_FOUND"  # 503 NC
    NO_HEALTHY_UPSTREAM = "NO_HEALTHY_UPSTREAM"  # 503 UH
    FAULT_ABORT = "FAULT_ABORT"  # FI
    REDIRECT = "REDIRECT"
    DIRECT_RESPONSE = "DIRECT_RESPONSE"


# ----------------------------------------------------------------------------------------------- requests


@dataclass(slots=True)
class RequestView:
    """What routing may look at. `headers` has lowercase names; repeated headers joined with ','."""

    method: str
    path: str  # origin-form path, query string included
    authority: str  # Host (or absolute-form authority), maybe with :port
    headers: Mapping[str, str]
    scheme: str = "http"
    port: int = 80  # destination port the request was addressed to
    source_ip: str = "127.0.0.1"


def split_path(path: str) -> tuple[str, str]:
    i = path.find("?")
    return (path, "") if i < 0 else (path[:i], path[i + 1:])


def split_host_port(authority: str, default: int) -> tuple[str, int]:
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and "]" not in port:
        return host.lower(), int(port)
    return authority.lower(), default


# ------------------------------------------------------------------------------------------ string matches


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Istio StringMatch: exact | prefix | regex (RE2 syntax, full match); `present` for presence matches."""

    kind: str  # exact, prefix, regex, present
    value: str = ""
    pattern: re.Pattern[str] | None = None

    @classmethod
    def load(cls, spec: Mapping[str, Any], ignore_case: bool = False) -> StringMatch:
        if not spec:
            return cls("present")
        for kind in ("exact", "prefix", "regex"):
            if kind in spec:
                value = str(spec[kind])
                if kind == "regex":
                    if value == "*":  # Istio treats regex "*" as a presence match
                        return cls("present")
                    return cls(kind, value, compile_regex(value, ignore_case=False))
                return cls(kind, value.lower() if ignore_case else value)
        if spec.get("present") is True:
            return cls("present")
        raise ValidationError(f"string match needs exact, prefix or regex, got {sorted(spec)}")

    def matches(self, value: str | None) -> bool:
        if self.kind == "present":
            return value is not None
        if value is None:
            return False
        if self.kind == "exact":
            return value == self.value
        if self.kind == "prefix":
            return value.startswith(self.value)
        assert self.pattern is not None
        return self.pattern.fullmatch(value) is not None

    def describe(self) -> str:
        return "present" if self.kind == "present" else f"{self.kind} {self.value!r}"


def compile_regex(value: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile with Python's re after checking the pattern is valid RE2 (what Istio/Envoy accept)."""
    try:
        import re2  # google-re2: Istio validates regexes with RE2

        re2.compile(value)
    except ImportError:  # pragma: no cover
        pass
    except Exception as exc:  # re2.error
        raise ValidationError(f"invalid RE2 regex {value!r}: {exc}") from None
    try:
        return re.compile(value, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValidationError(f"regex {value!r} is not supported: {exc}") from None


# ------------------------------------------------------------------------------------------ matches / rules

Miss = tuple[str, tuple[Any, ...]]  # a failed condition: format string and its arguments


def why(miss: Miss) -> str:
    """Render a failed condition for people (only the explainer pays for the formatting)."""
    fmt, args = miss
    return fmt.format(*(a.describe() if isinstance(a, StringMatch) else a for a in args))



@dataclass(frozen=True, slots=True)
class Match:
    """One HTTPMatchRequest: every present field must hold (AND)."""

    name: str = ""
    uri: StringMatch | None = None
    ignore_uri_case: bool = False
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    port: int | None = None
    source_labels: tuple[tuple[str, str], ...] = ()
    source_namespace: str | None = None
    gateways: tuple[str, ...] | None = None

    @classmethod
    def load(cls, spec: Mapping[str, Any]) -> Match:
        ignore = bool(spec.get("ignoreUriCase"))

        def sm(key: str, ic: bool = False) -> StringMatch | None:
            return StringMatch.load(spec[key], ic) if spec.get(key) is not None else None

        def table(key: str) -> tuple[tuple[str, StringMatch], ...]:
            # Istio ignores uri/scheme/method/authority keys in header matches.
            return tuple((k.lower(), StringMatch.load(v or {})) for k, v in (spec.get(key) or {}).items()
                         if k.lower() not in ("uri", "scheme", "method", "authority"))

        return cls(
            name=str(spec.get("name", "")),
            uri=sm("uri", ignore),
            ignore_uri_case=ignore,
            scheme=sm("scheme"),
            method=sm("method"),
            authority=sm("authority"),
            headers=table("headers"),
            without_headers=table("withoutHeaders"),
            query_params=tuple((k, StringMatch.load(v or {})) for k, v in (spec.get("queryParams") or {}).items()),
            port=int(spec["port"]) if spec.get("port") is not None else None,
            source_labels=tuple(sorted((spec.get("sourceLabels") or {}).items())),
            source_namespace=spec.get("sourceNamespace"),
            gateways=tuple(spec["gateways"]) if spec.get("gateways") else None,
        )

    def mismatch(self, req: RequestView, source: Source, listener_gateways: tuple[str, ...]) -> Miss | None:
        """None when every condition holds, else the first failing condition, formatted lazily by `why`."""
        # gateways/sourceLabels/sourceNamespace select which proxies get the route (Istio sourceMatchHTTP).
        if self.gateways is not None:
            allowed = listener_gateways or ("mesh",)
            if not any(g in self.gateways for g in allowed):
                return ("gateways {} do not include {}", (list(self.gateways), list(allowed)))
        for key, value in self.source_labels:
            if source.labels.get(key) != value:
                return ("sourceLabels {}={} not on source (has {!r})", (key, value, source.labels.get(key)))
        if self.source_namespace is not None and source.namespace != self.source_namespace:
            return ("sourceNamespace {!r} != {!r}", (self.source_namespace, source.namespace))
        if self.port is not None and req.port != self.port:
            return ("port {} != {}", (self.port, req.port))
        path = req.path
        if self.uri is not None:
            path = split_path(path)[0]
            value = path.lower() if self.ignore_uri_case and self.uri.kind != "regex" else path
            if not self.uri.matches(value):
                return ("uri {} does not match {!r}", (self.uri, path))
        if self.method is not None and not self.method.matches(req.method):
            return ("method {} does not match {!r}", (self.method, req.method))
        if self.scheme is not None and not self.scheme.matches(req.scheme):
            return ("scheme {} does not match {!r}", (self.scheme, req.scheme))
        if self.authority is not None and not self.authority.matches(req.authority):
            return ("authority {} does not match {!r}", (self.authority, req.authority))
        for name, m in self.headers:
            if not m.matches(req.headers.get(name)):
                return ("header {} {} does not match {!r}", (name, m, req.headers.get(name)))
        for name, m in self.without_headers:
            value = req.headers.get(name)
            # Non-presence withoutHeaders treat a missing header as empty (Envoy TreatMissingHeaderAsEmpty).
            if m.matches(value if m.kind == "present" or value is not None else ""):
                return ("withoutHeaders {} {} matches {!r}", (name, m, value))
        if self.query_params:
            params = dict(parse_qsl(split_path(req.path)[1], keep_blank_values=True))
            for name, m in self.query_params:
                if not m.matches(params.get(name)):
                    return ("queryParams {} {} does not match {!r}", (name, m, params.get(name)))
        return None


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
class Destination:
    host: str  # FQDN
    subset: str
    port: int | None
    weight: int
    headers_request: HeaderOps
    headers_response: HeaderOps

    def cluster_name(self, port: int) -> str:
        return f"outbound|{port}|{self.subset}|{self.host}"


@dataclass(frozen=True, slots=True)
class Mirror:
    host: str
    subset: str
    port: int | None
    percent: float


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
class Rule:
    """One HTTPRoute of a VirtualService, pre-parsed."""

    index: int
    name: str
    matches: tuple[Match, ...]
    destinations: tuple[Destination, ...]
    redirect: Mapping[str, Any] | None
    direct_response: Mapping[str, Any] | None
    rewrite: Mapping[str, Any] | None
    uri_regex_rewrite: tuple[re.Pattern[str], str] | None
    timeout_s: float | None
    retries: RetryPolicy
    delay_s: float
    delay_percent: float
    abort_status: int
    abort_percent: float
    mirrors: tuple[Mirror, ...]
    cors: Cors | None
    headers_request: HeaderOps
    headers_response: HeaderOps

    @classmethod
    def load(cls, index: int, spec: Mapping[str, Any]) -> Rule:
        fault = spec.get("fault") or {}
        delay, abort = fault.get("delay") or {}, fault.get("abort") or {}
        rw = spec.get("rewrite")
        urr = None
        if rw and rw.get("uriRegexRewrite"):
            r = rw["uriRegexRewrite"]
            urr = (compile_regex(r.get("match", "")), re.sub(r"\\(\d)", r"\\g<\1>", str(r.get("rewrite", ""))))
        headers = spec.get("headers") or {}
        return cls(
            index=index,
            name=str(spec.get("name", "")),
            matches=tuple(Match.load(m) for m in spec.get("match") or ()),
            destinations=tuple(
                Destination(d["host"], d.get("subset", ""), d.get("port"), int(d.get("weight", 0)),
                            HeaderOps.load((d.get("headers") or {}).get("request")),
                            HeaderOps.load((d.get("headers") or {}).get("response")))
                for d in spec.get("route") or ()),
            redirect=spec.get("redirect"),
            direct_response=spec.get("directResponse"),
            rewrite=rw,
            uri_regex_rewrite=urr,
            timeout_s=spec.get("timeout_s"),
            retries=RetryPolicy.load(spec.get("retries")),
            delay_s=float(delay.get("fixed_s", 0.0)),
            delay_percent=float(delay.get("percent", 0.0)) if delay else 0.0,
            abort_status=int(abort.get("httpStatus", 0) or 0),
            abort_percent=float(abort.get("percent", 0.0)) if abort else 0.0,
            mirrors=tuple(Mirror(m["host"], m.get("subset", ""), m.get("port"), float(m.get("percent", 100.0)))
                          for m in spec.get("mirrors") or ()),
            cors=Cors.load(spec["corsPolicy"]) if spec.get("corsPolicy") else None,
            headers_request=HeaderOps.load(headers.get("request")),
            headers_response=HeaderOps.load(headers.get("response")),
        )

    def live_destinations(self) -> list[Destination]:
        """Istio: a single destination gets all traffic; otherwise weight/sum, 0-weight ones get none."""
        if len(self.destinations) == 1:
            return list(self.destinations)
        return [d for d in self.destinations if d.weight > 0]


@dataclass(frozen=True, slots=True)
class VirtualService:
    name: str
    namespace: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]  # resolved ns/name, or "mesh"
    export_to: tuple[str, ...]
    rules: tuple[Rule, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def is_exported_to(self, namespace: str) -> bool:
        return not self.export_to or "*" in self.export_to or namespace in self.export_to or (
            "." in self.export_to and namespace == self.namespace)


def _is_catch_all(rule: Rule) -> bool:
    """No match, or a match on uri prefix "/" or regex ".*" alone (Istio's catch-all test)."""
    if not rule.matches:
        return True
    for m in rule.matches:
        only_uri = not (m.headers or m.without_headers or m.query_params or m.method or m.scheme or m.authority
                        or m.port or m.source_labels or m.source_namespace)
        if only_uri and (m.uri is None or (m.uri.kind == "prefix" and m.uri.value == "/") or
                         (m.uri.kind == "regex" and m.uri.value in ("*", ".*"))):
            return True
    return False


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*") and host.endswith(pattern[1:])


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


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


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

    def hash_key(self, req: RequestView) -> tuple[str | None, str | None]:
        """(key, generated cookie value) per consistentHash policy."""
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
                generated = format(random.getrandbits(64), "016x")
                return generated, generated
            return None, None
        if lb.hash_source_ip:
            return req.source_ip, None
        if lb.hash_query:
            return dict(parse_qsl(split_path(req.path)[1], keep_blank_values=True)).get(lb.hash_query), None
        return None, None

    def pick(self, req: RequestView, rng: random.Random, now: float,
             exclude: Callable[[EndpointState], bool] | None = None) -> tuple[EndpointState | None, str | None]:
        """Choose a healthy endpoint per the cluster's LB policy. Returns (endpoint, cookie to set)."""
        eps = self.healthy(now)
        if exclude is not None and len(eps) > 1:
            others = [ep for ep in eps if not exclude(ep)]
            eps = others or eps
        if not eps:
            return None, None
        lb = self.policy.lb
        if lb.is_hash:
            key, cookie = self.hash_key(req)
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


# --------------------------------------------------------------------------------------------- listeners


@dataclass(frozen=True, slots=True)
class Source:
    """Who sends through a listener: a sidecar's pod, or the ingress gateway."""

    namespace: str
    pod: str
    labels: Mapping[str, str]
    workload: str
    service_account: str

    @property
    def app(self) -> str:
        return self.labels.get("app", "unknown") or "unknown"

    @property
    def version(self) -> str:
        return self.labels.get("version", "unknown") or "unknown"


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    kind: str  # sidecar | gateway
    bind: str
    port: int
    source: Source
    server_port: int = 0  # gateway server port (before host-port mapping)
    gateways: tuple[str, ...] = ()  # ns/name of gateways served here
    server_hosts: tuple[str, ...] = ()
    rate_limit: Mapping[str, Any] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.bind, self.port)


# --------------------------------------------------------------------------------------------- decisions


@dataclass(slots=True)
class RouteDecision:
    """What happens to one request, explaining itself (proxy and `graylane route` read the same value)."""

    outcome: Outcome
    host: str = ""  # destination service FQDN (or the Host when unresolved)
    virtual_service: VirtualService | None = None
    rule: Rule | None = None
    match_index: int | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (rule index, why it did not match)
    destination: Destination | None = None
    share: float = 1.0
    cluster: Cluster | None = None
    cluster_name: str = ""
    endpoint: EndpointState | None = None
    set_cookie: str | None = None
    delay_s: float = 0.0
    abort_status: int = 0
    detail: str = ""

    @property
    def flags(self) -> str:
        return {Outcome.NO_ROUTE: "NR", Outcome.CLUSTER_NOT_FOUND: "NC", Outcome.NO_HEALTHY_UPSTREAM: "UH",
                Outcome.FAULT_ABORT: "FI"}.get(self.outcome, "")

    @property
    def status(self) -> int:
        if self.outcome is Outcome.NO_ROUTE:
            return 404
        if self.outcome in (Outcome.CLUSTER_NOT_FOUND, Outcome.NO_HEALTHY_UPSTREAM):
            return 503
        if self.outcome is Outcome.FAULT_ABORT:
            return self.abort_status
        if self.outcome is Outcome.REDIRECT:
            return int((self.rule.redirect or {}).get("redirectCode", 301)) if self.rule else 301
        if self.outcome is Outcome.DIRECT_RESPONSE:
            return int((self.rule.direct_response or {}).get("status", 200)) if self.rule else 200
        return 0


@dataclass(frozen=True, slots=True)
class Service:
    fqdn: str
    name: str
    namespace: str
    ports: tuple[int, ...]
    external: bool = False


# --------------------------------------------------------------------------------------------- the table


class RouteTable:
    """An immutable, versioned view of a snapshot with the per-route/per-cluster state the proxy keeps."""

    def __init__(self, snapshot: Mapping[str, Any], previous: RouteTable | None = None) -> None:
        self.snapshot = snapshot
        self.version = int(snapshot.get("version", 0))
        options = snapshot.get("options") or {}
        self.domain_suffix = options.get("domain_suffix", "cluster.local")
        self.use_random = options.get("load_balancing") == "random"
        self.trace_sampling = float(options.get("trace_sampling", 1.0))
        self.services: dict[str, Service] = {
            fqdn: Service(fqdn, s["name"], s["namespace"], tuple(p["port"] for p in s.get("ports", ())),
                          bool(s.get("external")))
            for fqdn, s in (snapshot.get("services") or {}).items()}
        self.virtual_services: list[VirtualService] = []
        # Unchanged parts of the previous snapshot are reused as they are (dict equality is cheap, compiling isn't).
        old_vs_raw = previous.vs_raw if previous else {}
        self.vs_raw: dict[tuple[str, str], tuple[Mapping[str, Any], VirtualService]] = {}
        for i, vs in enumerate(snapshot.get("virtual_services") or ()):
            key = (vs.get("namespace"), vs.get("name"))
            hit = old_vs_raw.get(key)
            if hit is not None and hit[0] == vs:
                self.virtual_services.append(hit[1])
                self.vs_raw[key] = hit
                continue
            where = f"VirtualService {vs.get('namespace')}/{vs.get('name')}"
            try:
                rules = tuple(Rule.load(j, r) for j, r in enumerate(vs.get("http") or ()))
            except ValidationError as exc:
                raise ValidationError(f"{where}: {exc.message}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(f"{where}: malformed rule ({exc!r}) in snapshot item {i}") from None
            obj = VirtualService(vs["name"], vs["namespace"], tuple(vs.get("hosts") or ()),
                                 tuple(vs.get("gateways") or ("mesh",)), tuple(vs.get("export_to") or ()), rules)
            self.virtual_services.append(obj)
            self.vs_raw[key] = (vs, obj)
        self.subsets: dict[str, set[str]] = {h: set(s) for h, s in (snapshot.get("subsets") or {}).items()}
        old_clusters = previous.clusters if previous else {}
        old_cluster_raw = previous.cluster_raw if previous else {}
        self.cluster_raw: dict[str, Mapping[str, Any]] = {}
        self.clusters: dict[str, Cluster] = {}
        for name, c in (snapshot.get("clusters") or {}).items():
            old = old_clusters.get(name)
            self.cluster_raw[name] = c
            if old is not None and old_cluster_raw.get(name) == c:
                self.clusters[name] = old
                continue
            old_eps = {ep.address: ep for ep in old.endpoints} if old else {}
            eps = []
            for e in c.get("endpoints") or ():
                prev = old_eps.get(e["address"])
                if prev is not None:  # keep active counts and ejections across snapshots
                    prev.ready = bool(e.get("ready", True))
                    prev.labels = dict(e.get("labels") or {})
                    eps.append(prev)
                    continue
                eps.append(EndpointState(e["address"], e["host"], int(e["port"]), e.get("pod", ""),
                                         e.get("namespace", ""), dict(e.get("labels") or {}),
                                         e.get("workload", ""), e.get("service_account", "default"),
                                         bool(e.get("ready", True))))
            self.clusters[name] = Cluster(name, c["service"], int(c["port"]), c.get("subset", ""),
                                          ClusterPolicy.load(c.get("policy")), eps,
                                          old.counters if old else ClusterCounters())
        self.listeners: dict[str, Listener] = {}
        for spec in snapshot.get("listeners") or ():
            src = spec.get("source") or {}
            lst = Listener(spec["name"], spec["kind"], spec.get("bind", "127.0.0.1"), int(spec["port"]),
                           Source(src.get("namespace", "default"), src.get("pod", ""), dict(src.get("labels") or {}),
                                  src.get("workload", "unknown"), src.get("service_account", "default")),
                           int(spec.get("server_port", 0)), tuple(spec.get("gateways") or ()),
                           tuple(spec.get("server_hosts") or ()), spec.get("rate_limit"))
            self.listeners[lst.name] = lst
        self.inbound_rate_limits: list[Mapping[str, Any]] = list(snapshot.get("inbound_rate_limits") or ())
        old_pickers = previous.pickers if previous else {}
        self.pickers: dict[tuple[Any, ...], WeightedPicker] = {}
        # Per rule (by identity; rules live as long as this table): live destinations and their picker.
        self.rule_live: dict[int, tuple[list[Destination], WeightedPicker | None]] = {}
        for vs in self.virtual_services:
            for rule in vs.rules:
                live = rule.live_destinations()
                picker = None
                if len(live) > 1:
                    key = (vs.key, rule.index, tuple((d.host, d.subset, d.port, d.weight) for d in live))
                    old_p = old_pickers.get(key)
                    picker = self.pickers[key] = old_p if old_p and old_p.use_random == self.use_random else \
                        WeightedPicker([d.weight for d in live], self.use_random)
                self.rule_live[id(rule)] = (live, picker)
        self._vhost_cache: dict[tuple[str, str], tuple[str, VirtualService | None]] = {}
        self._cluster_cache: dict[tuple[int, int], tuple[str, Cluster | None]] = {}
        self._default_dest: dict[str, Destination] = {}
        self._passthrough_clusters: dict[tuple[str, int], Cluster] = {}
        # meshConfig.outboundTrafficPolicy.mode: ALLOW_ANY (Istio's default) or REGISTRY_ONLY.
        self.allow_any = options.get("outbound_traffic_policy", "ALLOW_ANY") != "REGISTRY_ONLY"

    # -- host resolution -------------------------------------------------------------------------------

    def candidates(self, host: str, namespace: str) -> list[str]:
        """Istio's virtual-host domains: `reviews`, `reviews.ns`, `reviews.ns.svc`, FQDN (port ignored)."""
        suffix = self.domain_suffix
        out = [host]
        parts = host.split(".")
        if len(parts) == 1:
            out.append(f"{host}.{namespace}.svc.{suffix}")
        elif len(parts) == 2:
            out.append(f"{host}.svc.{suffix}")
        elif len(parts) == 3 and parts[2] == "svc":
            out.append(f"{host}.{suffix}")
        return out

    def resolve(self, listener: Listener, authority: str) -> tuple[str, VirtualService | None]:
        """(destination host, VirtualService or None) for a request's Host on a listener. Cached per listener."""
        key = (listener.name, authority)
        hit = self._vhost_cache.get(key)
        if hit is not None:
            return hit
        host, _ = split_host_port(authority, 80)
        result: tuple[str, VirtualService | None]
        if listener.kind == "gateway":
            result = (host, self._gateway_vs(listener, host))
        else:
            result = ("", None)
            for cand in reversed(self.candidates(host, listener.source.namespace)):
                vs = self._mesh_vs(cand, listener.source.namespace)
                if vs is not None or cand in self.services:
                    result = (cand, vs)
                    break
            if not result[0]:
                result = (host, None)
        if len(self._vhost_cache) < 100_000:
            self._vhost_cache[key] = result
        return result

    def _mesh_vs(self, fqdn: str, namespace: str) -> VirtualService | None:
        # Sidecars do not merge VirtualServices for one host: the oldest wins (snapshot order).
        for vs in self.virtual_services:
            if "mesh" in vs.gateways and vs.is_exported_to(namespace) and any(host_matches(h, fqdn) for h in vs.hosts):
                return vs
        return None

    def _gateway_vs(self, listener: Listener, host: str) -> VirtualService | None:
        if not any(host_matches(h, host) for h in listener.server_hosts):
            return None
        group = [vs for vs in self.virtual_services
                 if any(g in vs.gateways for g in listener.gateways) and any(host_matches(h, host) for h in vs.hosts)]
        if len(group) <= 1:
            return group[0] if group else None
        # Gateways merge VirtualServices for one host: rules in creation order, catch-all rules moved to the end
        # (istio.io traffic-management best practices; pilot mergeVirtualServicesIfNeeded).
        rules = [r for vs in group for r in vs.rules]
        ordered = [r for r in rules if not _is_catch_all(r)] + [r for r in rules if _is_catch_all(r)]
        merged = tuple(replace(r, index=i) for i, r in enumerate(ordered))
        first = group[0]
        return VirtualService("+".join(vs.name if vs.namespace == first.namespace else vs.key for vs in group),
                              first.namespace, first.hosts, first.gateways, first.export_to, merged)

    # -- routing ---------------------------------------------------------------------------------------

    def route(self, req: RequestView, listener: Listener, rng: random.Random, now: float = 0.0,
              explain: bool = False, pick_endpoint: bool = True) -> RouteDecision:
        """First matching http rule of the host's VirtualService, then a weighted destination and endpoint."""
        host, vs = self.resolve(listener, req.authority)
        if vs is None:
            if listener.kind == "sidecar" and host not in self.services and self.allow_any:
                return self._passthrough(req, host, pick_endpoint)
            if listener.kind == "gateway" or host not in self.services:
                return RouteDecision(Outcome.NO_ROUTE, host, detail=f"no route for host {host!r}")
            # No VirtualService: default route to the whole Service (all versions), default retry policy.
            dest = self._default_dest.get(host)
            if dest is None:
                dest = self._default_dest[host] = Destination(host, "", None, 100, HeaderOps(), HeaderOps())
            return self._destination(RouteDecision(Outcome.ROUTED, host), req, dest, rng, now, pick_endpoint)
        gateways = listener.gateways if listener.kind == "gateway" else ()
        decision = RouteDecision(Outcome.NO_ROUTE, host, virtual_service=vs)
        for rule in vs.rules:
            if not rule.matches:
                # A rule without match is a catch-all; Istio stops translating after it.
                decision.match_index = None
                return self._apply(decision, rule, req, rng, now, pick_endpoint)
            reasons = []
            for mi, m in enumerate(rule.matches):
                miss = m.mismatch(req, listener.source, gateways)
                if miss is None:
                    decision.match_index = mi
                    return self._apply(decision, rule, req, rng, now, pick_endpoint)
                if explain:
                    reasons.append(f"match[{mi}]: {why(miss)}")
            if explain:
                decision.skipped.append((rule.index, "; ".join(reasons)))
        decision.detail = f"no rule of VirtualService {vs.key} matched"
        return decision

    def _passthrough(self, req: RequestView, host: str, pick_endpoint: bool) -> RouteDecision:
        """Istio's default outboundTrafficPolicy ALLOW_ANY: a host outside the registry goes where it says."""
        port = req.port
        key = (host, port)
        cluster = self._passthrough_clusters.get(key)
        if cluster is None:
            ep = EndpointState(f"{host}:{port}", host, port, "", "", {}, "", "default")
            cluster = Cluster(PASSTHROUGH, host, port, "", ClusterPolicy(), [ep], ClusterCounters())
            if len(self._passthrough_clusters) < 10_000:
                self._passthrough_clusters[key] = cluster
        dest = Destination(host, "", port, 100, HeaderOps(), HeaderOps())
        d = RouteDecision(Outcome.ROUTED, host, destination=dest, cluster=cluster, cluster_name=PASSTHROUGH,
                          detail="outside the mesh registry: PassthroughCluster (outboundTrafficPolicy ALLOW_ANY)")
        if pick_endpoint:
            d.endpoint = cluster.endpoints[0]
        return d

    def _apply(self, d: RouteDecision, rule: Rule, req: RequestView, rng: random.Random, now: float,
               pick_endpoint: bool) -> RouteDecision:
        d.rule = rule
        # Faults apply at the client-side proxy before routing (delay, then abort), independently.
        if rule.delay_percent > 0 and rng.random() * 100 < rule.delay_percent:
            d.delay_s = rule.delay_s
        if rule.abort_percent > 0 and rule.abort_status and rng.random() * 100 < rule.abort_percent:
            d.outcome, d.abort_status = Outcome.FAULT_ABORT, rule.abort_status
            return d
        if rule.redirect is not None:
            d.outcome = Outcome.REDIRECT
            return d
        if rule.direct_response is not None:
            d.outcome = Outcome.DIRECT_RESPONSE
            return d
        entry = self.rule_live.get(id(rule))
        if entry is None:  # a rule from outside this table
            live0 = rule.live_destinations()
            entry = self.rule_live[id(rule)] = (live0, WeightedPicker([x.weight for x in live0], self.use_random)
                                                if len(live0) > 1 else None)
        live, picker = entry
        if not live:
            d.outcome, d.detail = Outcome.NO_ROUTE, "route has no destination with weight > 0"
            return d
        if picker is None:
            dest, share = live[0], 1.0
        else:
            dest = live[picker.pick(rng)]
            share = dest.weight / picker.total
        d.outcome = Outcome.ROUTED
        d.share = share
        return self._destination(d, req, dest, rng, now, pick_endpoint)

    def destination_port(self, host: str, port: int | None, req_port: int) -> int:
        if port:
            return int(port)
        svc = self.services.get(host)
        if svc is None or not svc.ports:
            return req_port
        if len(svc.ports) == 1 or req_port not in svc.ports:
            return svc.ports[0]
        return req_port

    def cluster_for(self, host: str, subset: str, port: int | None, req_port: int) -> tuple[str, Cluster | None]:
        p = self.destination_port(host, port, req_port)
        name = f"outbound|{p}|{subset}|{host}"
        return name, self.clusters.get(name)

    def _destination(self, d: RouteDecision, req: RequestView, dest: Destination, rng: random.Random, now: float,
                     pick_endpoint: bool) -> RouteDecision:
        d.destination = dest
        d.host = dest.host
        ckey = (id(dest), req.port)
        hit = self._cluster_cache.get(ckey)
        if hit is None:
            hit = self._cluster_cache[ckey] = self.cluster_for(dest.host, dest.subset, dest.port, req.port)
        name, cluster = hit
        d.cluster_name = name
        if cluster is None:
            d.outcome = Outcome.CLUSTER_NOT_FOUND
            d.detail = (f"subset {dest.subset!r} of {dest.host} is not defined in any DestinationRule"
                        if dest.subset else f"no service {dest.host}")
            return d
        d.cluster = cluster
        if not pick_endpoint:
            if not cluster.healthy(now):
                d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        ep, cookie = cluster.pick(req, rng, now)
        if ep is None:
            d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        d.endpoint, d.set_cookie = ep, cookie
        return d


# --------------------------------------------------------------------------------------------- rewrites


def rewritten_path(rule: Rule, match: Match | None, path: str) -> str:
    """Apply rewrite.uri (replaces the matched prefix, as Envoy's prefix_rewrite) or uriRegexRewrite."""
    rw = rule.rewrite or {}
    base, sep, query = path.partition("?")
    if rule.uri_regex_rewrite is not None:
        pattern, repl = rule.uri_regex_rewrite
        base = pattern.sub(repl, base)
    elif rw.get("uri") is not None:
        new = str(rw["uri"])
        if match is not None and match.uri is not None and match.uri.kind in ("prefix", "exact"):
            base = new + base[len(match.uri.value):]
        elif match is not None and match.uri is not None:  # regex match: replace the whole path
            base = new
        else:  # no uri match: Istio matches prefix "/"
            base = new + base[1:]
    return base + sep + query


def redirect_location(rule: Rule, match: Match | None, req: RequestView) -> str:
    r = rule.redirect or {}
    host, port = split_host_port(req.authority, 0)
    scheme = r.get("scheme") or req.scheme
    authority = r.get("authority") or host
    path = req.path
    if r.get("uri"):
        path = str(r["uri"])
    elif r.get("prefixRewrite") is not None and match is not None and match.uri is not None:
        path = str(r["prefixRewrite"]) + path[len(match.uri.value):]
    # Envoy: a host_redirect drops the request's port unless a port (or derivePort) says otherwise.
    new_port: int | None = None if r.get("authority") else (port or None)
    if r.get("derivePort") == "FROM_REQUEST_PORT":
        new_port = port or None
    if r.get("port"):
        new_port = int(r["port"])
    elif r.get("derivePort") == "FROM_PROTOCOL_DEFAULT":
        new_port = None
    if new_port in ((80,) if scheme == "http" else (443,)):
        new_port = None
    return f"{scheme}://{authority}{':' + str(new_port) if new_port else ''}{path}"


def unquote_path(path: str) -> str:
    return unquote(path)
