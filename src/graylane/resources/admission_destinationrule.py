"""Admission checks of DestinationRule: subsets, traffic policies, load balancing, outlier detection."""

from __future__ import annotations

from typing import Any

from graylane.resources.admission_base import (
    WILDCARD_DOMAIN,
    Checks,
    as_map,
    is_dns1123_label,
    items_of,
)
from graylane.resources.document import FieldPath


def _load_balancer(c: Checks, path: FieldPath, lb: Any) -> None:
    if lb is None:
        return
    lb = as_map(lb)
    if "simple" in lb and "consistentHash" in lb:
        c.error(path, "only one of simple or consistentHash may be set")
    ch = lb.get("consistentHash")
    if ch is not None:
        ch = as_map(ch)
        keys = [k for k in ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName") if k in ch]
        if len(keys) > 1:
            c.error((*path, "consistentHash"), f"only one hash key may be set (found {', '.join(keys)})")
        if "httpCookie" in ch:
            cookie = as_map(ch["httpCookie"])
            if not cookie.get("name"):
                c.error((*path, "consistentHash", "httpCookie"), "name required for HttpCookie")
            c.duration_format((*path, "consistentHash", "httpCookie", "ttl"), cookie.get("ttl"))
        if "ringHash" in ch and "maglev" in ch:
            c.error((*path, "consistentHash"), "only one of ringHash or maglev may be set")
        size = as_map(ch.get("maglev")).get("tableSize")
        if isinstance(size, int) and (size < 2 or any(size % d == 0 for d in range(2, int(size ** 0.5) + 1))):
            c.error((*path, "consistentHash", "maglev", "tableSize"), "table size must be a prime number")
    if "localityLbSetting" in lb and "warmupDurationSecs" in lb and "warmup" in lb:
        c.error(path, "only one of warmupDurationSecs or warmup may be set")


def _traffic_policy(c: Checks, path: FieldPath, policy: Any, *, port_level: bool = False) -> None:
    if policy is None:
        return
    policy = as_map(policy)
    if not policy or (port_level and set(policy) <= {"port"}):
        c.error(path, "port traffic policy must have at least one field" if port_level
                else "traffic policy must have at least one field")
    _load_balancer(c, (*path, "loadBalancer"), policy.get("loadBalancer"))
    pool = as_map(policy.get("connectionPool"))
    tcp, http_pool = as_map(pool.get("tcp")), as_map(pool.get("http"))
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
    keepalive = as_map(tcp.get("tcpKeepalive"))
    for field in ("time", "interval"):
        if field in keepalive:
            c.duration((*path, "connectionPool", "tcp", "tcpKeepalive", field), keepalive[field])
    od = policy.get("outlierDetection")
    if od is not None:
        od, op = as_map(od), (*path, "outlierDetection")
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
        for i, plp in items_of(policy.get("portLevelSettings")):
            plp = as_map(plp)
            if not as_map(plp.get("port")).get("number"):
                c.error((*path, "portLevelSettings", i, "port"), "portTrafficPolicy must have valid port")
            _traffic_policy(c, (*path, "portLevelSettings", i), plp, port_level=True)


def check_destination_rule(c: Checks, spec: dict[str, Any]) -> None:
    host = spec.get("host", "")
    if host == "*" or not WILDCARD_DOMAIN.match(host):
        c.error(("spec", "host"), f"invalid host {host}: must be a DNS name, optionally with a leading *.")
    _traffic_policy(c, ("spec", "trafficPolicy"), spec.get("trafficPolicy"))
    seen: set[str] = set()
    for i, subset in items_of(spec.get("subsets")):
        subset, path = as_map(subset), ("spec", "subsets", i)
        name = subset.get("name", "")
        if name == "":
            c.error((*path, "name"), "subset name cannot be empty")
        elif not is_dns1123_label(name):
            c.error((*path, "name"), f"subset name is invalid: {name}")
        elif name in seen:
            c.error((*path, "name"), f"duplicate subset names: {name}")
        seen.add(name)
        _traffic_policy(c, (*path, "trafficPolicy"), subset.get("trafficPolicy"))
