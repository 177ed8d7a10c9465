"""Admission checks: what a cluster's admission (Istio's validation webhook, the API server) would reject.

Messages are Istio's own (istio/istio `pkg/config/validation/validation.go`, `virtualservice.go`) so
people can search them. Checks read the raw body of documents that already passed the schema, so
every value has the type the schema promised. Warnings here are Istio's validation warnings.
"""

from __future__ import annotations

import http
import re
from collections.abc import Callable, Iterable
from typing import Any

import re2

from graylane.resources.document import Document, FieldPath, format_path
from graylane.resources.durations import parse_duration, validate_duration
from graylane.resources.finding import Finding, Severity
from graylane.resources.messages import SCHEMA_VALIDATION_ERROR, SCHEMA_WARNING, go_float, go_quote

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_WILDCARD_DOMAIN = re.compile(r"^(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*"
                              r"[A-Za-z0-9])?)*)$")
_HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

# pkg/config/validation/agent/validation.go supportedRetryOnPolicies
RETRY_ON_POLICIES = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure", "cancelled",
    "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})
_HTTP_STATUSES = frozenset(s.value for s in http.HTTPStatus)
GATEWAY_PROTOCOLS = frozenset({"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "REDIS", "MYSQL", "TCP", "TLS"})
_TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def regex_error(pattern: str) -> str | None:
    """RE2's complaint about `pattern` (backreferences, lookaround, ...), or None when it compiles."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return None


def hosts_overlap(a: str, b: str) -> bool:
    """Istio host.Name.Matches: equal, or one wildcard (`*.foo.com`, `*`) covers the other."""
    if a == b:
        return True
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return False


class _Checks:
    """Collects errors and warnings for one document, each at a field path."""

    def __init__(self, doc: Document, istio: bool) -> None:
        self.doc = doc
        self.istio = istio
        self.findings: list[Finding] = []

    def error(self, path: FieldPath, message: str) -> None:
        if self.istio:
            self.findings.append(SCHEMA_VALIDATION_ERROR.at(self.doc, path, message, detail=message))
        else:
            text = ": ".join(p for p in (format_path(path), message) if p)
            self.findings.append(Finding(Severity.ERROR, None, text, self.doc, tuple(path), message))

    def warn(self, path: FieldPath, message: str) -> None:
        self.findings.append(SCHEMA_WARNING.at(self.doc, path, message, detail=message))

    def duration(self, path: FieldPath, value: Any) -> None:
        if isinstance(value, str):
            problem = validate_duration(value)
            if problem:
                self.error(path, problem)

    def duration_format(self, path: FieldPath, value: Any) -> None:
        if isinstance(value, str):
            try:
                parse_duration(value)
            except ValueError as exc:
                self.error(path, str(exc))

    def port(self, path: FieldPath, number: Any) -> None:
        if isinstance(number, int) and not 1 <= number <= 65535:
            self.error(path, f"port number {number} must be in the range 1..65535")

    def non_negative(self, base: FieldPath, obj: dict[str, Any] | None, fields: Iterable[str]) -> None:
        for name in fields:
            value = (obj or {}).get(name)
            if isinstance(value, int) and value < 0:
                self.error((*base, name), f"{name} must be non-negative (got {value})")


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# === StringMatch ===

def _string_match(c: _Checks, path: FieldPath, match: Any, where: str, *, prefix_required: bool) -> None:
    match = _map(match)
    set_fields = [k for k in ("exact", "prefix", "regex") if k in match]
    if len(set_fields) > 1:
        c.error(path, f"only one of exact, prefix, regex may be set (found {', '.join(set_fields)})")
    if prefix_required and "prefix" in match and match["prefix"] == "":
        c.error((*path, "prefix"), f"{go_quote(where)}: prefix string match should not be empty")
    if "regex" in match:
        _regex(c, (*path, "regex"), match["regex"], where, empty_message="regex string match should not be empty")


def _regex(c: _Checks, path: FieldPath, pattern: Any, where: str, empty_message: str | None = None) -> None:
    if not isinstance(pattern, str):
        return
    if pattern == "" and empty_message:
        c.error(path, f"{go_quote(where)}: {empty_message}")
        return
    if len(pattern) > 1024:
        c.error(path, f"{go_quote(where)}: regex is too large, max length allowed is 1024")
        return
    problem = regex_error(pattern)
    if problem:
        c.error(path, f"{go_quote(where)}: error parsing regexp: {problem}; Istio uses RE2 style regex-based match "
                      "(https://github.com/google/re2/wiki/Syntax)")


# === VirtualService ===

def _destination(c: _Checks, path: FieldPath, dest: Any) -> None:
    dest = _map(dest)
    host = dest.get("host")
    if host == "*":
        c.error((*path, "host"), "invalid destination host *")
    elif isinstance(host, str) and not _WILDCARD_DOMAIN.match(host):
        c.error((*path, "host"), f"invalid destination host {host}: must be a DNS name, optionally with a leading *.")
    subset = dest.get("subset")
    if isinstance(subset, str) and subset and not is_dns1123_label(subset):
        c.error((*path, "subset"), f"subset name is invalid: {subset}")
    c.port((*path, "port", "number"), _map(dest.get("port")).get("number"))


def _route_destinations(c: _Checks, path: FieldPath, routes: Any) -> None:
    total = 0
    items = _items(routes)
    for i, item in items:
        item = _map(item)
        _destination(c, (*path, i, "destination"), item.get("destination"))
        weight = item.get("weight")
        if isinstance(weight, int):
            if weight < 0:
                c.error((*path, i, "weight"), f"weight {weight} < 0")
            total += weight
    if len(items) > 1 and total == 0:
        c.error(path, "total destination weight = 0")


def _validate_percentage(c: _Checks, path: FieldPath, percentage: Any) -> None:
    value = _map(percentage).get("value")
    if isinstance(value, int | float) and (value < 0 or value > 100 or 0 < value < 0.0001):
        c.error((*path, "value"), f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]")


def _fault(c: _Checks, path: FieldPath, fault: Any) -> None:
    if fault is None:
        return
    fault = _map(fault)
    abort, delay = fault.get("abort"), fault.get("delay")
    if abort is None and delay is None:
        c.error(path, "HTTP fault injection must have an abort and/or a delay")
    if abort is not None:
        abort = _map(abort)
        _validate_percentage(c, (*path, "abort", "percentage"), abort.get("percentage"))
        if "grpcStatus" in abort:
            pass  # Envoy takes any gRPC status name; the local data plane answers it as given
        elif "http2Error" in abort:
            c.error((*path, "abort", "http2Error"), "HTTP/2 abort fault injection not supported yet")
        elif "httpStatus" in abort:
            status = abort["httpStatus"]
            if not 200 <= status <= 599:
                c.error((*path, "abort", "httpStatus"), f"HTTP status {status} is not in range 200-599")
        else:
            c.warn((*path, "abort"), "abort configured, but error type not set")
    if delay is not None:
        delay = _map(delay)
        _validate_percentage(c, (*path, "delay", "percentage"), delay.get("percentage"))
        percent = delay.get("percent")
        if isinstance(percent, int) and not 0 <= percent <= 100:
            c.error((*path, "delay", "percent"), f"percentage {percent} is not in range 0..100")
        if "fixedDelay" in delay:
            c.duration((*path, "delay", "fixedDelay"), delay["fixedDelay"])
        if "exponentialDelay" in delay:
            c.duration((*path, "delay", "exponentialDelay"), delay["exponentialDelay"])
            c.error((*path, "delay", "exponentialDelay"), "exponentialDelay not supported yet")


def _retries(c: _Checks, path: FieldPath, retries: Any) -> None:
    if retries is None:
        return
    retries = _map(retries)
    attempts = retries.get("attempts", 0)
    if attempts < 0:
        c.error((*path, "attempts"), "attempts cannot be negative")
    if attempts == 0 and any(k in retries for k in ("perTryTimeout", "retryOn", "retryRemoteLocalities")):
        c.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if "perTryTimeout" in retries:
        c.duration((*path, "perTryTimeout"), retries["perTryTimeout"])
    retry_on = retries.get("retryOn")
    if retry_on:
        for policy in retry_on.split(","):
            code = int(policy) if policy.isdigit() else None
            if code not in _HTTP_STATUSES and policy not in RETRY_ON_POLICIES:
                c.error((*path, "retryOn"), f"{go_quote(policy)} is not a valid retryOn policy")
    if "backoff" in retries:
        c.duration((*path, "backoff"), retries["backoff"])


def _redirect(c: _Checks, path: FieldPath, redirect: Any) -> None:
    if redirect is None:
        return
    redirect = _map(redirect)
    if not any(redirect.get(k) for k in ("uri", "authority", "scheme", "port", "derivePort")):
        c.error(path, "redirect must specify URI, authority, scheme, or port")
    code = redirect.get("redirectCode")
    if isinstance(code, int) and code != 0 and not 300 <= code <= 399:
        c.error((*path, "redirectCode"), f"{code} is not a valid redirect code, must be 3xx")
    scheme = redirect.get("scheme")
    if scheme and scheme not in ("http", "https"):
        c.error((*path, "scheme"), 'invalid redirect scheme, must be "http" or "https"')
    if "port" in redirect and "derivePort" in redirect:
        c.error(path, "only one of port or derivePort may be set")
    c.port((*path, "port"), redirect.get("port"))


def _rewrite(c: _Checks, path: FieldPath, rewrite: Any) -> None:
    if rewrite is None:
        return
    rewrite = _map(rewrite)
    regex_rewrite = rewrite.get("uriRegexRewrite")
    if rewrite.get("uri") and regex_rewrite is not None:
        c.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
    elif not rewrite.get("uri") and regex_rewrite is None and not rewrite.get("authority"):
        c.error(path, "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or "
                      "UriRegexRewrite may be specified")
    if regex_rewrite is not None:
        regex_rewrite = _map(regex_rewrite)
        if not regex_rewrite.get("match") or not regex_rewrite.get("rewrite"):
            c.error((*path, "uriRegexRewrite"),
                    "UriRegexRewrite requires both Rewrite and Match fields to be specified")
        else:
            _regex(c, (*path, "uriRegexRewrite", "match"), regex_rewrite["match"], "HTTPRewrite.UriRegexRewrite.Match")


def _direct_response(c: _Checks, path: FieldPath, direct: Any) -> None:
    if direct is None:
        return
    direct = _map(direct)
    status = direct.get("status")
    if isinstance(status, int) and not 200 <= status <= 599:
        c.error((*path, "status"), f"HTTP status {status} is not in range 200-599")
    body = _map(direct.get("body"))
    size = len(body.get("string") or body.get("bytes") or "")
    if size > 1024 * 1024:
        c.error((*path, "body"), "large direct_responses may impact control plane performance, must be less than 1MB")
    elif size > 100 * 1024:
        c.warn((*path, "body"), "large direct_responses may impact control plane performance")


def _mirrors(c: _Checks, path: FieldPath, route: dict[str, Any]) -> None:
    if "mirror" in route:
        _destination(c, (*path, "mirror"), route["mirror"])
    if "mirrorPercent" in route:
        value = route["mirrorPercent"]
        if value > 100:
            c.error((*path, "mirrorPercent"), f"mirror_percent must have a max value of 100 (it has {value})")
        c.warn((*path, "mirrorPercent"), 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead')
    value = _map(route.get("mirrorPercentage")).get("value")
    if isinstance(value, int | float):
        if value > 100:
            c.error((*path, "mirrorPercentage", "value"),
                    f"mirror_percentage must have a max value of 100 (it has {float(value):f})")
        if value < 0:
            c.error((*path, "mirrorPercentage", "value"),
                    f"mirror_percentage must have a min value of 0 (it has {float(value):f})")
    for i, mirror in _items(route.get("mirrors")):
        mirror = _map(mirror)
        _destination(c, (*path, "mirrors", i, "destination"), mirror.get("destination"))
        value = _map(mirror.get("percentage")).get("value")
        if isinstance(value, int | float):
            if value > 100:
                c.error((*path, "mirrors", i, "percentage", "value"),
                        f"mirror percentage must have a max value of 100 (it has {float(value):f})")
            if value < 0:
                c.error((*path, "mirrors", i, "percentage", "value"),
                        f"mirror percentage must have a min value of 0 (it has {float(value):f})")


def _matches(c: _Checks, path: FieldPath, matches: Any) -> None:
    for j, match in _items(matches):
        match = _map(match)
        mp = (*path, j)
        for field in ("uri", "scheme", "method", "authority"):
            if field in match:
                _string_match(c, (*mp, field), match[field], field, prefix_required=True)
        for field, where in (("headers", "headers"), ("withoutHeaders", "headers"), ("queryParams", "queryParams")):
            for name, sm in _map(match.get(field)).items():
                if field != "queryParams" and not _HTTP_TOKEN.match(str(name)):
                    c.error((*mp, field, name), f"header name {name} is not a valid header name")
                _string_match(c, (*mp, field, name), sm, where, prefix_required=False)
        c.port((*mp, "port"), match.get("port"))
        source_ns = match.get("sourceNamespace")
        if source_ns and not is_dns1123_label(source_ns):
            c.error((*mp, "sourceNamespace"), f"sourceNamespace match {source_ns} is invalid")


def _cors(c: _Checks, path: FieldPath, cors: Any) -> None:
    if cors is None:
        return
    cors = _map(cors)
    for i, origin in _items(cors.get("allowOrigins")):
        origin = _map(origin)
        value = origin.get("exact") or origin.get("prefix") or origin.get("regex") or ""
        if value == "":
            c.error((*path, "allowOrigins", i), f"'{value}' is not a valid match type for CORS allow origins")
        elif "regex" in origin:
            _regex(c, (*path, "allowOrigins", i, "regex"), origin["regex"], "corsPolicy.allowOrigins")
    if "maxAge" in cors:
        c.duration((*path, "maxAge"), cors["maxAge"])
        try:
            if parse_duration(cors["maxAge"]) % 1 != 0:
                c.error((*path, "maxAge"), "max_age duration is accurate only to seconds precision")
        except ValueError:
            pass  # reported by the duration check above


def _http_route(c: _Checks, path: FieldPath, route: dict[str, Any], in_delegate: bool) -> None:
    name = route.get("name", "")
    if route.get("delegate") is not None and not in_delegate:
        # A root route only hands over to its delegate VirtualService.
        if route.get("redirect") is not None:
            c.error((*path, "redirect"), f"root HTTP route {name} must not specify redirect")
        if route.get("route") is not None:
            c.error((*path, "route"), f"root HTTP route {name} must not specify route")
    else:
        if in_delegate and route.get("delegate") is not None:
            c.error((*path, "delegate"), "delegate HTTP route cannot contain delegate")
        routes = route.get("route") or []
        if route.get("redirect") is not None:
            if routes:
                c.error(path, "HTTP route cannot contain both route and redirect")
            if route.get("fault") is not None:
                c.error(path, "HTTP route cannot contain both fault and redirect")
            if route.get("rewrite") is not None:
                c.error(path, "HTTP route rule cannot contain both rewrite and redirect")
        elif route.get("directResponse") is not None:
            if routes:
                c.error(path, "HTTP route cannot contain both route and direct_response")
        elif not routes:
            c.error(path, "HTTP route, redirect or direct_response is required")
    if route.get("mirror") is not None and route.get("mirrors"):
        c.error(path, "HTTP route cannot contain both mirror and mirrors")
    _matches(c, (*path, "match"), route.get("match"))
    _cors(c, (*path, "corsPolicy"), route.get("corsPolicy"))
    _fault(c, (*path, "fault"), route.get("fault"))
    _mirrors(c, path, route)
    _redirect(c, (*path, "redirect"), route.get("redirect"))
    _direct_response(c, (*path, "directResponse"), route.get("directResponse"))
    _retries(c, (*path, "retries"), route.get("retries"))
    _rewrite(c, (*path, "rewrite"), route.get("rewrite"))
    _route_destinations(c, (*path, "route"), route.get("route"))
    if "timeout" in route:
        c.duration((*path, "timeout"), route["timeout"])


def _gateway_names(c: _Checks, path: FieldPath, names: Any) -> None:
    for i, name in _items(names):
        ns, slash, gw = str(name).partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                c.warn((*path, i), f"using legacy gatewayName format {go_quote(name)}; prefer the "
                                   f"<namespace>/<name> format: {go_quote(parts[1] + '/' + parts[0])}")
            continue
        if not ns or not gw:
            c.error((*path, i), "config namespace and gateway name cannot be empty")
        elif not is_dns1123_label(ns):
            c.error((*path, i), f"invalid value for namespace: {go_quote(ns)}")
        elif not is_dns1123_label(gw):
            c.error((*path, i), f"invalid value for gateway name: {go_quote(gw)}")


def check_virtual_service(c: _Checks, spec: dict[str, Any]) -> None:
    hosts = spec.get("hosts") or []
    gateways = spec.get("gateways") or []
    is_delegate = not hosts
    if is_delegate:
        if gateways:
            c.error(("spec", "gateways"), "delegate virtual service must have no gateways specified")
        if spec.get("tls"):
            c.error(("spec", "tls"), "delegate virtual service must have no tls route specified")
        if spec.get("tcp"):
            c.error(("spec", "tcp"), "delegate virtual service must have no tcp route specified")
    _gateway_names(c, ("spec", "gateways"), gateways)
    applies_to_mesh = not gateways or "mesh" in gateways
    valid_hosts = True
    for i, host in enumerate(hosts):
        if not _WILDCARD_DOMAIN.match(host):
            c.error(("spec", "hosts", i), f"invalid host {host}: must be a DNS name, optionally with a leading *.")
            valid_hosts = False
        elif applies_to_mesh and host == "*":
            c.error(("spec", "hosts", i),
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway")
            valid_hosts = False
    if valid_hosts:
        for i in range(len(hosts)):
            for j in range(i + 1, len(hosts)):
                if hosts_overlap(hosts[i], hosts[j]):
                    c.error(("spec", "hosts", j), f"duplicate hosts in virtual service: {hosts[i]} & {hosts[j]}")
    if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
        c.error(("spec",), "http, tcp or tls must be provided in virtual service")
    for i, route in _items(spec.get("http")):
        _http_route(c, ("spec", "http", i), _map(route), is_delegate)
    for i, route in _items(spec.get("tls")):
        route, path = _map(route), ("spec", "tls", i)
        if not route.get("match"):
            c.error(path, "TLS route must have at least one match condition")
        for j, match in _items(route.get("match")):
            if not _map(match).get("sniHosts"):
                c.error((*path, "match", j), "TLS match must have at least one SNI host")
            c.port((*path, "match", j, "port"), _map(match).get("port"))
        if not route.get("route"):
            c.error(path, "TLS route is required")
        _route_destinations(c, (*path, "route"), route.get("route"))
    for i, route in _items(spec.get("tcp")):
        route, path = _map(route), ("spec", "tcp", i)
        for j, match in _items(route.get("match")):
            c.port((*path, "match", j, "port"), _map(match).get("port"))
        if not route.get("route"):
            c.error(path, "TCP route is required")
        _route_destinations(c, (*path, "route"), route.get("route"))


# === DestinationRule ===

def _load_balancer(c: _Checks, path: FieldPath, lb: Any) -> None:
    if lb is None:
        return
    lb = _map(lb)
    if "simple" in lb and "consistentHash" in lb:
        c.error(path, "only one of simple or consistentHash may be set")
    ch = lb.get("consistentHash")
    if ch is not None:
        ch = _map(ch)
        keys = [k for k in ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName") if k in ch]
        if len(keys) > 1:
            c.error((*path, "consistentHash"), f"only one hash key may be set (found {', '.join(keys)})")
        if "httpCookie" in ch:
            cookie = _map(ch["httpCookie"])
            if not cookie.get("name"):
                c.error((*path, "consistentHash", "httpCookie"), "name required for HttpCookie")
            c.duration_format((*path, "consistentHash", "httpCookie", "ttl"), cookie.get("ttl"))
        if "ringHash" in ch and "maglev" in ch:
            c.error((*path, "consistentHash"), "only one of ringHash or maglev may be set")
        size = _map(ch.get("maglev")).get("tableSize")
        if isinstance(size, int) and (size < 2 or any(size % d == 0 for d in range(2, int(size ** 0.5) + 1))):
            c.error((*path, "consistentHash", "maglev", "tableSize"), "table size must be a prime number")
    if "localityLbSetting" in lb and "warmupDurationSecs" in lb and "warmup" in lb:
        c.error(path, "only one of warmupDurationSecs or warmup may be set")


def _traffic_policy(c: _Checks, path: FieldPath, policy: Any, *, port_level: bool = False) -> None:
    if policy is None:
        return
    policy = _map(policy)
    if not policy or (port_level and set(policy) <= {"port"}):
        c.error(path, "port traffic policy must have at least one field" if port_level
                else "traffic policy must have at least one field")
    _load_balancer(c, (*path, "loadBalancer"), policy.get("loadBalancer"))
    pool = _map(policy.get("connectionPool"))
    tcp, http_pool = _map(pool.get("tcp")), _map(pool.get("http"))
    c.non_negative((*path, "connectionPool", "tcp"), tcp, ("maxConnections",))
    c.non_negative((*path, "connectionPool", "http"), http_pool,
                   ("http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries",
                    "maxConcurrentStreams"))
    for field in ("connectTimeout", "maxConnectionDuration"):
        if field in tcp:
            c.duration((*path, "connectionPool", "tcp", field), tcp[field])
    for scope, obj in (("tcp", tcp), ("http", http_pool)):
        if "idleTimeout" in obj:
            c.duration_format((*path, "connectionPool", scope, "idleTimeout"), obj["idleTimeout"])
    keepalive = _map(tcp.get("tcpKeepalive"))
    for field in ("time", "interval"):
        if field in keepalive:
            c.duration((*path, "connectionPool", "tcp", "tcpKeepalive", field), keepalive[field])
    od = policy.get("outlierDetection")
    if od is not None:
        od, op = _map(od), (*path, "outlierDetection")
        c.non_negative(op, od, ("consecutiveErrors", "consecutive5xxErrors", "consecutiveGatewayErrors",
                                "consecutiveLocalOriginFailures"))
        for field in ("interval", "baseEjectionTime"):
            if field in od:
                c.duration((*op, field), od[field])
        for field in ("maxEjectionPercent", "minHealthPercent"):
            value = od.get(field)
            if isinstance(value, int) and not 0 <= value <= 100:
                c.error((*op, field), f"percentage {value} is not in range 0..100")
        if "consecutiveErrors" in od:
            c.warn((*op, "consecutiveErrors"), "outlier detection consecutive errors is deprecated, use "
                                               "consecutiveGatewayErrors or consecutive5xxErrors instead")
        if "consecutiveLocalOriginFailures" in od and not od.get("splitExternalLocalOriginErrors"):
            c.error((*op, "consecutiveLocalOriginFailures"),
                    "consecutive local origin failures is only relevant when split external local origin errors "
                    "is enabled")
    if not port_level:
        for i, plp in _items(policy.get("portLevelSettings")):
            plp = _map(plp)
            if not _map(plp.get("port")).get("number"):
                c.error((*path, "portLevelSettings", i, "port"), "portTrafficPolicy must have valid port")
            _traffic_policy(c, (*path, "portLevelSettings", i), plp, port_level=True)


def check_destination_rule(c: _Checks, spec: dict[str, Any]) -> None:
    host = spec.get("host", "")
    if host == "*" or not _WILDCARD_DOMAIN.match(host):
        c.error(("spec", "host"), f"invalid host {host}: must be a DNS name, optionally with a leading *.")
    _traffic_policy(c, ("spec", "trafficPolicy"), spec.get("trafficPolicy"))
    seen: set[str] = set()
    for i, subset in _items(spec.get("subsets")):
        subset, path = _map(subset), ("spec", "subsets", i)
        name = subset.get("name", "")
        if name == "":
            c.error((*path, "name"), "subset name cannot be empty")
        elif not is_dns1123_label(name):
            c.error((*path, "name"), f"subset name is invalid: {name}")
        elif name in seen:
            c.error((*path, "name"), f"duplicate subset names: {name}")
        seen.add(name)
        _traffic_policy(c, (*path, "trafficPolicy"), subset.get("trafficPolicy"))


# === Gateway, ServiceEntry, EnvoyFilter ===

def check_gateway(c: _Checks, spec: dict[str, Any]) -> None:
    if not is_dns1123_label(c.doc.name):
        c.error(("metadata", "name"), f"invalid gateway name: {go_quote(c.doc.name)}")
    servers = spec.get("servers") or []
    if not servers:
        c.error(("spec", "servers") if "servers" in spec else ("spec",), "gateway must have at least one server")
    port_names: set[str] = set()
    for i, server in _items(servers):
        server, path = _map(server), ("spec", "servers", i)
        hosts = server.get("hosts") or []
        if not hosts:
            c.error(path, "server config must contain at least one host")
        for j, host in enumerate(hosts):
            ns, slash, dns = host.rpartition("/")
            if slash and ns not in ("*", ".", "~") and not is_dns1123_label(ns):
                c.error((*path, "hosts", j), f"invalid namespace value {go_quote(ns)} in host {go_quote(host)}")
            if not _WILDCARD_DOMAIN.match(dns):
                c.error((*path, "hosts", j), f"invalid host {dns}: must be a DNS name, optionally with a leading *.")
        port = _map(server.get("port"))
        protocol = str(port.get("protocol", "")).upper()
        if protocol not in GATEWAY_PROTOCOLS:
            c.error((*path, "port", "protocol"), f"invalid protocol {go_quote(port.get('protocol'))}, supported "
                    "protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP")
        if not port.get("name"):
            c.error((*path, "port"), "port name must be set")
        elif port["name"] in port_names:
            c.error((*path, "port", "name"), f"port names in servers must be unique: duplicate name {port['name']}")
        else:
            port_names.add(port["name"])
        c.port((*path, "port", "number"), port.get("number"))
        tls = server.get("tls")
        if protocol in _TLS_PROTOCOLS and tls is None:
            c.error(path, "server must have TLS settings for HTTPS/TLS protocols")
        elif protocol not in _TLS_PROTOCOLS and tls is not None and set(_map(tls)) - {"httpsRedirect"}:
            c.warn((*path, "tls"), "tls settings are only used by HTTPS/TLS servers; plain servers may only set "
                                   "httpsRedirect")


def check_service_entry(c: _Checks, spec: dict[str, Any]) -> None:
    hosts = spec.get("hosts") or []
    if not hosts:
        c.error(("spec",), "service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            c.error(("spec", "hosts", i), f"invalid host {host}")
        elif not _WILDCARD_DOMAIN.match(host):
            c.error(("spec", "hosts", i), f"invalid host {host}: must be a DNS name, optionally with a leading *.")
    if spec.get("workloadSelector") is not None and spec.get("endpoints") is not None:
        c.error(("spec",), "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
    names: set[str] = set()
    numbers: set[int] = set()
    for i, port in _items(spec.get("ports")):
        port, path = _map(port), ("spec", "ports", i)
        name, number = port.get("name", ""), port.get("number")
        if name in names:
            c.error((*path, "name"), f"service entry port name {go_quote(name)} already defined")
        if number in numbers:
            c.error((*path, "number"), f"service entry port {number} already defined")
        names.add(name)
        numbers.add(number)
        if not is_dns1123_label(name):
            c.error((*path, "name"), f"invalid port name: {name}")
        c.port((*path, "number"), number)
    if spec.get("resolution", "NONE") == "NONE" and spec.get("endpoints"):
        c.error(("spec", "endpoints"), "no endpoints should be provided for resolution type none")
    for i, endpoint in _items(spec.get("endpoints")):
        endpoint = _map(endpoint)
        if not endpoint.get("address") and not endpoint.get("network"):
            c.error(("spec", "endpoints", i), "address is required")
        for name, number in _map(endpoint.get("ports")).items():
            if name not in names:
                c.error(("spec", "endpoints", i, "ports", name), f"endpoint port {number} is not defined by the "
                                                                 "service entry")


def check_envoy_filter(c: _Checks, spec: dict[str, Any]) -> None:
    if spec.get("workloadSelector") is not None and spec.get("targetRefs"):
        c.error(("spec",), "only one of targetRefs or workloadSelector can be set")
    for i, patch in _items(spec.get("configPatches")):
        patch, path = _map(patch), ("spec", "configPatches", i)
        if not patch.get("applyTo"):
            c.error(path, "Envoy filter: missing applyTo")
        if patch.get("patch") is None:
            c.error(path, "Envoy filter: missing patch")
        elif not _map(patch["patch"]).get("operation"):
            c.error((*path, "patch"), "Envoy filter: missing patch operation")


# === Kubernetes core and Graylane kinds ===

def _label_selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_deployment(c: _Checks, spec: dict[str, Any]) -> None:
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        c.error(("spec", "replicas"), "must be greater than or equal to 0")
    selector = _map(_map(spec.get("selector")).get("matchLabels"))
    template = _map(spec.get("template"))
    labels = _map(_map(template.get("metadata")).get("labels"))
    if not selector and not _map(spec.get("selector")).get("matchExpressions"):
        c.error(("spec", "selector"), "empty selector is invalid for deployment")
    elif not _label_selector_matches(selector, labels):
        c.error(("spec", "template", "metadata", "labels"), "`selector` does not match template `labels`")
    containers = _map(template.get("spec")).get("containers") or []
    if not containers:
        c.error(("spec", "template", "spec", "containers"), "Required value: at least one container")
    names: set[str] = set()
    for i, container in _items(containers):
        container, path = _map(container), ("spec", "template", "spec", "containers", i)
        if container.get("name") in names:
            c.error((*path, "name"), f"Duplicate value: {go_quote(container.get('name'))}")
        names.add(container.get("name"))
        for j, port in _items(container.get("ports")):
            number = _map(port).get("containerPort")
            if isinstance(number, int) and not 1 <= number <= 65535:
                c.error((*path, "ports", j, "containerPort"), "must be between 1 and 65535, inclusive")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in _map(container.get(probe))]
            if probe in container and len(handlers) != 1:
                c.error((*path, probe), "must specify exactly one handler type (httpGet, tcpSocket, exec or grpc)")


def check_service(c: _Checks, spec: dict[str, Any]) -> None:
    if not _DNS1035_LABEL.match(c.doc.name) or len(c.doc.name) > 63:
        c.error(("metadata", "name"), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                      "start with an alphabetic character, and end with an alphanumeric character")
    ports = spec.get("ports") or []
    names: set[str] = set()
    for i, port in _items(ports):
        port, path = _map(port), ("spec", "ports", i)
        number = port.get("port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            c.error((*path, "port"), "must be between 1 and 65535, inclusive")
        name = port.get("name")
        if len(ports) > 1 and not name:
            c.error((*path, "name"), "Required value: every port of a multi-port service needs a name")
        elif name in names:
            c.error((*path, "name"), f"Duplicate value: {go_quote(name)}")
        names.add(name)


def check_local_image(c: _Checks, spec: dict[str, Any]) -> None:
    if not spec.get("image"):
        c.error(("spec", "image"), "must not be empty: a glob pattern of the images this entry runs")
    if not spec.get("command") and not spec.get("args"):
        c.error(("spec",), "command or args is required: what to run for the image")
    for name in _map(spec.get("env")):
        if not re.match(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", str(name)):
            c.error(("spec", "env", name), f"invalid environment variable name {go_quote(name)}")


CHECKS: dict[tuple[str, str], Callable[[_Checks, dict[str, Any]], None]] = {
    ("networking.istio.io", "VirtualService"): check_virtual_service,
    ("networking.istio.io", "DestinationRule"): check_destination_rule,
    ("networking.istio.io", "Gateway"): check_gateway,
    ("networking.istio.io", "ServiceEntry"): check_service_entry,
    ("networking.istio.io", "EnvoyFilter"): check_envoy_filter,
    ("apps", "Deployment"): check_deployment,
    ("", "Service"): check_service,
    ("graylane.io", "LocalImage"): check_local_image,
}


def admission_findings(doc: Document) -> list[Finding]:
    """Errors and warnings of the admission checks for one schema-valid document."""
    check = CHECKS.get((doc.group, doc.kind))
    if check is None:
        return []
    c = _Checks(doc, istio=doc.group == "networking.istio.io")
    check(c, doc.spec)
    return c.findings
