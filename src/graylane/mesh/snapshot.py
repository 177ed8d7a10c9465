"""What the control plane pushes to the data plane: frozen, typed values and the one decoder from the JSON wire form.

`decode_snapshot` is the only place that reads the snapshot's string keys; the proxy, `graylane route` and the
compiler's own check see `Snapshot` objects. A malformed snapshot fails with `SnapshotError` naming the path
(`virtual_services[2].http[0].match[1].uri`). Knows routing's value types; knows no sockets, store or resources.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from graylane.errors import ValidationError
from graylane.mesh.routing.balancing import Cluster, ClusterEndpoint
from graylane.mesh.routing.l4 import L4Match, L4Route, TlsCredential, TlsServer
from graylane.mesh.routing.matching import Match, Source, StringMatch, compile_regex
from graylane.mesh.routing.policies import (
    RING_SIZE,
    ClusterPolicy,
    Cors,
    HashCookie,
    HeaderOps,
    InboundRateLimit,
    LoadBalancer,
    OutlierPolicy,
    PoolPolicy,
    RateLimit,
    RetryPolicy,
    StickyPolicy,
)
from graylane.mesh.routing.rules import (
    Destination,
    DirectResponse,
    Fault,
    Mirror,
    Redirect,
    Rewrite,
    Rule,
    VirtualService,
)
from graylane.mesh.routing.table import Listener, Service

T = TypeVar("T")


class SnapshotError(ValidationError):
    """A snapshot that cannot be decoded: the message starts with the path of the offending value."""


@dataclass(frozen=True, slots=True)
class Options:
    """Mesh-wide options (MeshOptions as the data plane needs them)."""

    load_balancing: str = "deterministic"  # or "random" (Envoy's weighted_clusters)
    trace_sampling: float = 1.0
    access_log: str = ""  # "", "text" or "json"
    domain_suffix: str = "cluster.local"
    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """One versioned configuration of the whole data plane."""

    version: int
    options: Options
    services: Mapping[str, Service]
    subsets: Mapping[str, frozenset[str]]
    virtual_services: tuple[VirtualService, ...]
    clusters: Mapping[str, Cluster]
    listeners: Mapping[str, Listener]
    inbound_rate_limits: tuple[InboundRateLimit, ...]
    warnings: tuple[str, ...] = ()
    l4_routes: tuple[L4Route, ...] = ()  # VirtualService tcp/tls routes (routing/l4.py)
    tls_credentials: Mapping[str, TlsCredential] = field(default_factory=dict, repr=False)  # by ns/secret name
    # The wire form as received, for /config_dump and the last-good file only; nothing decides on it.
    document: Mapping[str, object] = field(default_factory=dict, repr=False)
    # Decoded parts by their wire form, so the next decode reuses what did not change (compiling regexes is not
    # cheap; comparing dicts is).
    reuse: _Reuse = field(default_factory=lambda: _Reuse({}, {}), repr=False)


@dataclass(frozen=True, slots=True)
class _Reuse:
    virtual_services: Mapping[tuple[str, str], tuple[object, VirtualService]]
    clusters: Mapping[str, tuple[object, Cluster]]


EMPTY = Snapshot(0, Options(), {}, {}, (), {}, {}, ())


# --------------------------------------------------------------------------------------------- the reader


class _At:
    """A JSON value and its path; typed getters raise `SnapshotError` naming the path."""

    __slots__ = ("value", "path")

    def __init__(self, value: object, path: str) -> None:
        self.value = value
        self.path = path

    def fail(self, what: str) -> SnapshotError:
        return SnapshotError(f"{self.path or 'snapshot'}: {what}")

    def obj(self) -> Mapping[str, object]:
        if not isinstance(self.value, Mapping):
            raise self.fail(f"expected an object, got {type(self.value).__name__}")
        return self.value

    def child(self, key: str) -> _At:
        """The value under `key` (None when absent, or when this value is None itself)."""
        value = None if self.value is None else self.obj().get(key)
        return _At(value, f"{self.path}.{key}" if self.path else key)

    def has(self, key: str) -> bool:
        return self.value is not None and self.obj().get(key) is not None

    def items(self) -> list[tuple[str, _At]]:
        if self.value is None:
            return []
        return [(str(k), _At(v, f"{self.path}.{k}" if self.path else str(k))) for k, v in self.obj().items()]

    def elements(self) -> list[_At]:
        if self.value is None:
            return []
        if not isinstance(self.value, list | tuple):
            raise self.fail(f"expected a list, got {type(self.value).__name__}")
        return [_At(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def text(self, default: str | None = None) -> str:
        if self.value is None and default is not None:
            return default
        if isinstance(self.value, str):
            return self.value
        if isinstance(self.value, int | float) and not isinstance(self.value, bool):
            return str(self.value)
        raise self.fail(f"expected a string, got {type(self.value).__name__}")

    def opt_str(self) -> str | None:
        return None if self.value is None else self.text()

    def integer(self, default: int | None = None) -> int:
        if self.value is None and default is not None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int | float | str):
            raise self.fail(f"expected an integer, got {type(self.value).__name__}")
        try:
            return int(self.value)
        except ValueError:
            raise self.fail(f"expected an integer, got {self.value!r}") from None

    def opt_int(self) -> int | None:
        return None if self.value is None or self.value == "" else self.integer()

    def number(self, default: float | None = None) -> float:
        if self.value is None and default is not None:
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int | float | str):
            raise self.fail(f"expected a number, got {type(self.value).__name__}")
        try:
            return float(self.value)
        except ValueError:
            raise self.fail(f"expected a number, got {self.value!r}") from None

    def opt_float(self) -> float | None:
        return None if self.value is None else self.number()

    def flag(self, default: bool = False) -> bool:
        return default if self.value is None else bool(self.value)

    def labels(self) -> dict[str, str]:
        return {k: v.text() for k, v in self.items()}

    def strs(self) -> tuple[str, ...]:
        return tuple(v.text() for v in self.elements())


def _each(items: Sequence[_At], decode: Callable[[_At], T]) -> tuple[T, ...]:
    return tuple(decode(item) for item in items)


# --------------------------------------------------------------------------------------------- matches


def _string_match(at: _At, ignore_case: bool = False) -> StringMatch:
    """Istio StringMatch: `{exact|prefix|regex: ...}`; `{}` or regex "*" is a presence match."""
    spec = at.obj() if at.value is not None else {}
    if not spec:
        return StringMatch("present")
    for kind in ("exact", "prefix", "regex"):
        if kind in spec:
            value = at.child(kind).text()
            if kind == "regex":
                if value == "*":  # Istio treats regex "*" as a presence match
                    return StringMatch("present")
                return StringMatch(kind, value, _regex(at.child(kind), value))
            return StringMatch(kind, value.lower() if ignore_case else value)
    if spec.get("present") is True:
        return StringMatch("present")
    raise at.fail(f"string match needs exact, prefix or regex, got {sorted(spec)}")


def _regex(at: _At, value: str) -> re.Pattern[str]:
    try:
        return compile_regex(value)
    except ValidationError as exc:
        raise at.fail(exc.message) from None


def _match(at: _At) -> Match:
    ignore = at.child("ignoreUriCase").flag()

    def sm(key: str, ic: bool = False) -> StringMatch | None:
        return _string_match(at.child(key), ic) if at.has(key) else None

    def table(key: str) -> tuple[tuple[str, StringMatch], ...]:
        # Istio ignores uri/scheme/method/authority keys in header matches.
        return tuple((k.lower(), _string_match(v)) for k, v in at.child(key).items()
                     if k.lower() not in ("uri", "scheme", "method", "authority"))

    return Match(
        name=at.child("name").text(""),
        uri=sm("uri", ignore),
        ignore_uri_case=ignore,
        scheme=sm("scheme"),
        method=sm("method"),
        authority=sm("authority"),
        headers=table("headers"),
        without_headers=table("withoutHeaders"),
        query_params=tuple((k, _string_match(v)) for k, v in at.child("queryParams").items()),
        port=at.child("port").opt_int(),
        source_labels=tuple(sorted(at.child("sourceLabels").labels().items())),
        source_namespace=at.child("sourceNamespace").opt_str(),
        gateways=at.child("gateways").strs() or None,
    )


# --------------------------------------------------------------------------------------------- policies


def _header_ops(at: _At) -> HeaderOps:
    if at.value is None:
        return HeaderOps()
    return HeaderOps(tuple((k.lower(), v.text()) for k, v in at.child("set").items()),
                     tuple((k.lower(), v.text()) for k, v in at.child("add").items()),
                     tuple(k.lower() for k in at.child("remove").strs()))


def _retry_policy(at: _At) -> RetryPolicy:
    if at.value is None:
        return RetryPolicy.istio_default()
    return RetryPolicy(at.child("attempts").integer(0), at.child("per_try_timeout_s").opt_float(),
                       frozenset(at.child("retry_on").strs()),
                       frozenset(c.integer() for c in at.child("codes").elements()),
                       at.child("backoff_s").number(0.025))


def _cors(at: _At) -> Cors:
    origins = [_string_match(o) for o in at.child("allowOrigins").elements()]
    origins += [StringMatch("exact", o) if o != "*" else StringMatch("present") for o in at.child("allowOrigin").strs()]
    max_age = str(at.child("max_age_s").integer()) if at.obj().get("max_age_s") else ""
    allow_credentials = at.child("allowCredentials").value
    return Cors(tuple(origins), ",".join(at.child("allowMethods").strs()), ",".join(at.child("allowHeaders").strs()),
                ",".join(at.child("exposeHeaders").strs()), max_age,
                None if allow_credentials is None else bool(allow_credentials),
                at.child("unmatchedPreflights").text("FORWARD") != "IGNORE")


def _load_balancer(at: _At) -> LoadBalancer:
    if not at.value:
        return LoadBalancer()
    if at.obj().get("consistentHash"):
        ch = at.child("consistentHash")
        cookie = ch.child("httpCookie")
        ring = ch.child("ringHash").child("minimumRingSize").value if ch.has("ringHash") else None
        return LoadBalancer("RING_HASH", ch.child("httpHeaderName").text("").lower() or None,
                            HashCookie(cookie.child("name").text(), cookie.child("path").text(""),
                                       cookie.child("ttl_s").number(0.0)) if cookie.value else None,
                            ch.child("useSourceIp").flag(), ch.child("httpQueryParameterName").opt_str(),
                            _At(ring or ch.obj().get("minimumRingSize") or RING_SIZE, ch.path).integer())
    simple = at.child("simple").text("LEAST_REQUEST")
    return LoadBalancer({"UNSPECIFIED": "LEAST_REQUEST", "LEAST_CONN": "LEAST_REQUEST"}.get(simple, simple))


def _cluster_policy(at: _At) -> ClusterPolicy:
    if at.value is None:
        return ClusterPolicy()
    p, od = at.child("pool"), at.child("outlier")
    d = PoolPolicy()
    pool = PoolPolicy(p.child("max_connections").integer(d.max_connections),
                      p.child("connect_timeout_s").number(d.connect_timeout_s),
                      p.child("max_pending").integer(d.max_pending),
                      p.child("max_requests_per_connection").integer(d.max_requests_per_connection),
                      p.child("max_retries").integer(d.max_retries),
                      p.child("idle_timeout_s").number(d.idle_timeout_s))
    outlier = None
    if od.value:
        o = OutlierPolicy()
        outlier = OutlierPolicy(od.child("consecutive_5xx").integer(0), od.child("consecutive_gateway").integer(0),
                                od.child("interval_s").number(o.interval_s),
                                od.child("base_ejection_s").number(o.base_ejection_s),
                                od.child("max_ejection_percent").number(o.max_ejection_percent))
    return ClusterPolicy(_load_balancer(at.child("loadBalancer")), pool, outlier)


def _rate_limit(at: _At) -> RateLimit:
    return RateLimit(at.child("max_tokens").integer(), at.child("tokens_per_fill").integer(1),
                     at.child("fill_interval_s").number(1.0) or 1.0, at.child("filter_enabled").number(0.0),
                     at.child("filter_enforced").number(0.0),
                     tuple(_pair(h) for h in at.child("response_headers").elements()))


def _pair(at: _At) -> tuple[str, str]:
    items = at.elements()
    if len(items) != 2:
        raise at.fail("expected [name, value]")
    return items[0].text(), items[1].text()


# --------------------------------------------------------------------------------------------- routes


def _destination(at: _At) -> Destination:
    headers = at.child("headers")
    return Destination(at.child("host").text(), at.child("subset").text(""), at.child("port").opt_int(),
                       at.child("weight").integer(0), _header_ops(headers.child("request")),
                       _header_ops(headers.child("response")))


def _rewrite(at: _At) -> Rewrite | None:
    if not at.value:
        return None
    urr = at.child("uriRegexRewrite")
    regex, source = None, None
    if urr.value:
        match, repl = urr.child("match").text(""), urr.child("rewrite").text("")
        regex, source = (_regex(urr.child("match"), match), re.sub(r"\\(\d)", r"\\g<\1>", repl)), (match, repl)
    return Rewrite(at.child("uri").opt_str(), at.child("authority").opt_str() or None, regex, source)


def _redirect(at: _At) -> Redirect | None:
    if at.value is None:
        return None
    return Redirect(at.child("uri").opt_str() or None, at.child("prefixRewrite").opt_str(),
                    at.child("authority").opt_str() or None, at.child("scheme").opt_str() or None,
                    at.child("port").opt_int() or None, at.child("derivePort").opt_str(),
                    at.child("redirectCode").integer(301))


def _direct_response(at: _At) -> DirectResponse | None:
    if at.value is None:
        return None
    body = at.child("body")
    data = b""
    if body.value:
        if "string" in body.obj():
            data = body.child("string").text("").encode()
        else:
            text = body.child("bytes").text("")
            try:
                data = base64.b64decode(text) if text else b""
            except ValueError:
                raise body.child("bytes").fail("not base64") from None
    return DirectResponse(at.child("status").integer(200), data)


def _fault(at: _At) -> Fault | None:
    if not at.value:
        return None
    delay, abort = at.child("delay"), at.child("abort")
    return Fault(delay.child("fixed_s").number(0.0) if delay.value else 0.0,
                 delay.child("percent").number(0.0) if delay.value else 0.0,
                 abort.child("httpStatus").integer(0) if abort.value else 0,
                 abort.child("percent").number(0.0) if abort.value else 0.0,
                 abort.child("grpcStatus").opt_int() if abort.value else None)


def _rule(index: int, at: _At) -> Rule:
    headers = at.child("headers")
    return Rule(
        index=index,
        name=at.child("name").text(""),
        matches=_each(at.child("match").elements(), _match),
        destinations=_each(at.child("route").elements(), _destination),
        redirect=_redirect(at.child("redirect")),
        direct_response=_direct_response(at.child("directResponse")),
        rewrite=_rewrite(at.child("rewrite")),
        timeout_s=at.child("timeout_s").opt_float(),
        retries=_retry_policy(at.child("retries")),
        fault=_fault(at.child("fault")),
        mirrors=tuple(Mirror(m.child("host").text(), m.child("subset").text(""), m.child("port").opt_int(),
                             m.child("percent").number(100.0)) for m in at.child("mirrors").elements()),
        cors=_cors(at.child("corsPolicy")) if at.obj().get("corsPolicy") else None,
        headers_request=_header_ops(headers.child("request")),
        headers_response=_header_ops(headers.child("response")),
    )


def decode_rule(index: int, spec: object, path: str = "rule") -> Rule:
    """One compiled HTTP route (the compiler checks each rule as the proxy will load it)."""
    return _rule(index, _At(spec, path))


def _sticky(at: _At) -> StickyPolicy | None:
    """`{"cookie": name, "max_age_s", "path", "same_site"}` or `{"header": name}` (resources/sticky.py)."""
    if at.value is None:
        return None
    header, cookie = at.child("header").text(""), at.child("cookie").text("")
    if bool(header) == bool(cookie):
        raise at.fail("sticky needs exactly one of cookie or header")
    if header:
        return StickyPolicy(header=header.lower())
    d = StickyPolicy()
    return StickyPolicy(cookie, at.child("max_age_s").integer(d.max_age_s), at.child("path").text(d.path),
                        at.child("same_site").text(d.same_site))


def _virtual_service(at: _At) -> VirtualService:
    return VirtualService(at.child("name").text(), at.child("namespace").text(), at.child("hosts").strs(),
                          at.child("gateways").strs() or ("mesh",), at.child("export_to").strs(),
                          tuple(_rule(j, r) for j, r in enumerate(at.child("http").elements())),
                          _sticky(at.child("sticky")))


# --------------------------------------------------------------------------------------------- the rest


def _cluster(name: str, at: _At) -> Cluster:
    eps = tuple(ClusterEndpoint((name, e.child("address").text()), e.child("address").text(), e.child("host").text(),
                                e.child("port").integer(), e.child("pod").text(""), e.child("namespace").text(""),
                                e.child("labels").labels(), e.child("workload").text(""),
                                e.child("service_account").text("default"), e.child("ready").flag(True))
                for e in at.child("endpoints").elements())
    return Cluster.build(name, at.child("service").text(), at.child("port").integer(), at.child("subset").text(""),
                         _cluster_policy(at.child("policy")), eps)


def _listener(at: _At) -> Listener:
    src = at.child("source")
    source = Source(src.child("namespace").text("default"), src.child("pod").text(""), src.child("labels").labels(),
                    src.child("workload").text("unknown"), src.child("service_account").text("default"))
    rl = at.child("rate_limit")
    tls = tuple(TlsServer(s.child("hosts").strs(), s.child("mode").text("SIMPLE"), s.child("credential").text())
                for s in at.child("tls_servers").elements())
    return Listener(at.child("name").text(), at.child("kind").text(), at.child("bind").text("127.0.0.1"),
                    at.child("port").integer(), source, at.child("server_port").integer(0), at.child("gateways").strs(),
                    at.child("server_hosts").strs(), _rate_limit(rl) if rl.value else None,
                    at.child("protocol").text("http"), tls, at.child("https_redirect").strs())


def _l4_route(at: _At) -> L4Route:
    matches = tuple(L4Match(m.child("port").opt_int(), m.child("gateways").strs() or None, m.child("sniHosts").strs(),
                            m.child("sourceNamespace").opt_str()) for m in at.child("match").elements())
    return L4Route(at.child("virtual_service").text(), at.child("protocol").text(), at.child("index").integer(0),
                   at.child("hosts").strs(), at.child("gateways").strs() or ("mesh",), matches,
                   _each(at.child("route").elements(), _destination))


def _tls_credential(at: _At) -> TlsCredential:
    return TlsCredential(at.child("cert").text(), at.child("key").text(), at.child("ca").text(""))


def _inbound(at: _At) -> InboundRateLimit:
    return InboundRateLimit(at.child("namespace").text(), tuple(sorted(at.child("selector").labels().items())),
                            _rate_limit(at))


def _options(at: _At) -> Options:
    if at.value is None:
        return Options()
    return Options(at.child("load_balancing").text("deterministic"), at.child("trace_sampling").number(1.0),
                   at.child("access_log").text("") if at.obj().get("access_log") else "",
                   at.child("domain_suffix").text("cluster.local"),
                   at.child("outbound_traffic_policy").text("ALLOW_ANY"))


def decode_snapshot(document: object, previous: Snapshot | None = None) -> Snapshot:
    """Decode the compiler's JSON into a `Snapshot`; raise `SnapshotError` naming the path of a bad value.

    VirtualServices and clusters whose wire form equals the one in `previous` are taken from it as they are.

    >>> decode_snapshot({"version": 3}).version
    3
    """
    root = _At(document, "")
    root.obj()
    old = previous.reuse if previous is not None else _Reuse({}, {})
    vss: list[VirtualService] = []
    vs_reuse: dict[tuple[str, str], tuple[object, VirtualService]] = {}
    for at in root.child("virtual_services").elements():
        key = (at.child("namespace").text(""), at.child("name").text(""))
        hit = old.virtual_services.get(key)
        if hit is not None and hit[0] == at.value:
            vs = hit[1]
        else:
            try:
                vs = _virtual_service(at)
            except SnapshotError as exc:
                raise SnapshotError(f"VirtualService {key[0]}/{key[1]}: {exc.message}") from None
        vss.append(vs)
        vs_reuse[key] = (at.value, vs)
    clusters: dict[str, Cluster] = {}
    cluster_reuse: dict[str, tuple[object, Cluster]] = {}
    for name, at in root.child("clusters").items():
        chit = old.clusters.get(name)
        clusters[name] = chit[1] if chit is not None and chit[0] == at.value else _cluster(name, at)
        cluster_reuse[name] = (at.value, clusters[name])
    services = {}
    for fqdn, s in root.child("services").items():
        services[fqdn] = Service(fqdn, s.child("name").text(), s.child("namespace").text(),
                                 tuple(p.child("port").integer() for p in s.child("ports").elements()),
                                 s.child("external").flag(),
                                 tuple((p.child("port").integer(), p.child("protocol").text(""))
                                       for p in s.child("ports").elements() if p.child("protocol").text("")))
    listeners = {lst.name: lst for lst in _each(root.child("listeners").elements(), _listener)}
    return Snapshot(
        version=root.child("version").integer(0),
        options=_options(root.child("options")),
        services=services,
        subsets={h: frozenset(s.strs()) for h, s in root.child("subsets").items()},
        virtual_services=tuple(vss),
        clusters=clusters,
        listeners=listeners,
        inbound_rate_limits=_each(root.child("inbound_rate_limits").elements(), _inbound),
        warnings=root.child("warnings").strs(),
        l4_routes=_each(root.child("l4_routes").elements(), _l4_route),
        tls_credentials={k: _tls_credential(v) for k, v in root.child("tls_credentials").items()},
        document=root.obj(),
        reuse=_Reuse(vs_reuse, cluster_reuse),
    )


def decode_cluster_policy(spec: object, path: str = "policy") -> ClusterPolicy:
    """A compiled DestinationRule traffic policy (the compiler checks each as the proxy will load it)."""
    return _cluster_policy(_At(spec, path))
