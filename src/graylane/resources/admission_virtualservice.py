"""Admission checks of VirtualService, with Istio's messages (pkg/config/validation/virtualservice.go)."""

from __future__ import annotations

from typing import Any

from graylane.resources.admission_base import (
    HTTP_STATUSES,
    HTTP_TOKEN,
    RETRY_ON_POLICIES,
    WILDCARD_DOMAIN,
    Checks,
    as_map,
    check_regex,
    hosts_overlap,
    is_dns1123_label,
    items_of,
    string_match,
)
from graylane.resources.document import FieldPath
from graylane.resources.durations import parse_duration
from graylane.resources.messages import go_float, go_quote
from graylane.resources.sticky import STICKY_ANNOTATION, parse_sticky


def _destination(c: Checks, path: FieldPath, dest: Any) -> None:
    dest = as_map(dest)
    host = dest.get("host")
    if host == "*":
        c.error((*path, "host"), "invalid destination host *")
    elif isinstance(host, str) and not WILDCARD_DOMAIN.match(host):
        c.error((*path, "host"), f"invalid destination host {host}: must be a DNS name, optionally with a leading *.")
    subset = dest.get("subset")
    if isinstance(subset, str) and subset and not is_dns1123_label(subset):
        c.error((*path, "subset"), f"subset name is invalid: {subset}")
    c.port((*path, "port", "number"), as_map(dest.get("port")).get("number"))


def _route_destinations(c: Checks, path: FieldPath, routes: Any) -> None:
    total = 0
    items = items_of(routes)
    for i, item in items:
        item = as_map(item)
        _destination(c, (*path, i, "destination"), item.get("destination"))
        weight = item.get("weight")
        if isinstance(weight, int):
            if weight < 0:
                c.error((*path, i, "weight"), f"weight {weight} < 0")
            total += weight
    if len(items) > 1 and total == 0:
        c.error(path, "total destination weight = 0")


def _validate_percentage(c: Checks, path: FieldPath, percentage: Any) -> None:
    value = as_map(percentage).get("value")
    if isinstance(value, int | float) and (value < 0 or value > 100 or 0 < value < 0.0001):
        c.error((*path, "value"), f"percentage {go_float(value)} is neither 0.0, nor in range [0.0001, 100.0]")


def _fault(c: Checks, path: FieldPath, fault: Any) -> None:
    if fault is None:
        return
    fault = as_map(fault)
    abort, delay = fault.get("abort"), fault.get("delay")
    if abort is None and delay is None:
        c.error(path, "HTTP fault injection must have an abort and/or a delay")
    if abort is not None:
        abort = as_map(abort)
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
        delay = as_map(delay)
        _validate_percentage(c, (*path, "delay", "percentage"), delay.get("percentage"))
        percent = delay.get("percent")
        if isinstance(percent, int) and not 0 <= percent <= 100:
            c.error((*path, "delay", "percent"), f"percentage {percent} is not in range 0..100")
        if "fixedDelay" in delay:
            c.duration((*path, "delay", "fixedDelay"), delay["fixedDelay"])
        if "exponentialDelay" in delay:
            c.duration((*path, "delay", "exponentialDelay"), delay["exponentialDelay"])
            c.error((*path, "delay", "exponentialDelay"), "exponentialDelay not supported yet")


def _retries(c: Checks, path: FieldPath, retries: Any) -> None:
    if retries is None:
        return
    retries = as_map(retries)
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
            if code not in HTTP_STATUSES and policy not in RETRY_ON_POLICIES:
                c.error((*path, "retryOn"), f"{go_quote(policy)} is not a valid retryOn policy")
    if "backoff" in retries:
        c.duration((*path, "backoff"), retries["backoff"])


def _redirect(c: Checks, path: FieldPath, redirect: Any) -> None:
    if redirect is None:
        return
    redirect = as_map(redirect)
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


def _rewrite(c: Checks, path: FieldPath, rewrite: Any) -> None:
    if rewrite is None:
        return
    rewrite = as_map(rewrite)
    regex_rewrite = rewrite.get("uriRegexRewrite")
    if rewrite.get("uri") and regex_rewrite is not None:
        c.error(path, "rewrite may only contain one of URI or UriRegexRewrite")
    elif not rewrite.get("uri") and regex_rewrite is None and not rewrite.get("authority"):
        c.error(path, "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or "
                      "UriRegexRewrite may be specified")
    if regex_rewrite is not None:
        regex_rewrite = as_map(regex_rewrite)
        if not regex_rewrite.get("match") or not regex_rewrite.get("rewrite"):
            c.error((*path, "uriRegexRewrite"),
                    "UriRegexRewrite requires both Rewrite and Match fields to be specified")
        else:
            check_regex(c, (*path, "uriRegexRewrite", "match"), regex_rewrite["match"],
                        "HTTPRewrite.UriRegexRewrite.Match")


def _direct_response(c: Checks, path: FieldPath, direct: Any) -> None:
    if direct is None:
        return
    direct = as_map(direct)
    status = direct.get("status")
    if isinstance(status, int) and not 200 <= status <= 599:
        c.error((*path, "status"), f"HTTP status {status} is not in range 200-599")
    body = as_map(direct.get("body"))
    size = len(body.get("string") or body.get("bytes") or "")
    if size > 1024 * 1024:
        c.error((*path, "body"), "large direct_responses may impact control plane performance, must be less than 1MB")
    elif size > 100 * 1024:
        c.warn((*path, "body"), "large direct_responses may impact control plane performance")


def _mirrors(c: Checks, path: FieldPath, route: dict[str, Any]) -> None:
    if "mirror" in route:
        _destination(c, (*path, "mirror"), route["mirror"])
    if "mirrorPercent" in route:
        value = route["mirrorPercent"]
        if value > 100:
            c.error((*path, "mirrorPercent"), f"mirror_percent must have a max value of 100 (it has {value})")
        c.warn((*path, "mirrorPercent"), 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead')
    value = as_map(route.get("mirrorPercentage")).get("value")
    if isinstance(value, int | float):
        if value > 100:
            c.error((*path, "mirrorPercentage", "value"),
                    f"mirror_percentage must have a max value of 100 (it has {float(value):f})")
        if value < 0:
            c.error((*path, "mirrorPercentage", "value"),
                    f"mirror_percentage must have a min value of 0 (it has {float(value):f})")
    for i, mirror in items_of(route.get("mirrors")):
        mirror = as_map(mirror)
        _destination(c, (*path, "mirrors", i, "destination"), mirror.get("destination"))
        value = as_map(mirror.get("percentage")).get("value")
        if isinstance(value, int | float):
            if value > 100:
                c.error((*path, "mirrors", i, "percentage", "value"),
                        f"mirror percentage must have a max value of 100 (it has {float(value):f})")
            if value < 0:
                c.error((*path, "mirrors", i, "percentage", "value"),
                        f"mirror percentage must have a min value of 0 (it has {float(value):f})")


def _matches(c: Checks, path: FieldPath, matches: Any) -> None:
    for j, match in items_of(matches):
        match = as_map(match)
        mp = (*path, j)
        for field in ("uri", "scheme", "method", "authority"):
            if field in match:
                string_match(c, (*mp, field), match[field], field, prefix_required=True)
        for field, where in (("headers", "headers"), ("withoutHeaders", "headers"), ("queryParams", "queryParams")):
            for name, sm in as_map(match.get(field)).items():
                if field != "queryParams" and not HTTP_TOKEN.match(str(name)):
                    c.error((*mp, field, name), f"header name {name} is not a valid header name")
                string_match(c, (*mp, field, name), sm, where, prefix_required=False)
        c.port((*mp, "port"), match.get("port"))
        source_ns = match.get("sourceNamespace")
        if source_ns and not is_dns1123_label(source_ns):
            c.error((*mp, "sourceNamespace"), f"sourceNamespace match {source_ns} is invalid")


def _cors(c: Checks, path: FieldPath, cors: Any) -> None:
    if cors is None:
        return
    cors = as_map(cors)
    for i, origin in items_of(cors.get("allowOrigins")):
        origin = as_map(origin)
        value = origin.get("exact") or origin.get("prefix") or origin.get("regex") or ""
        if value == "":
            c.error((*path, "allowOrigins", i), f"'{value}' is not a valid match type for CORS allow origins")
        elif "regex" in origin:
            check_regex(c, (*path, "allowOrigins", i, "regex"), origin["regex"], "corsPolicy.allowOrigins")
    if "maxAge" in cors:
        c.duration((*path, "maxAge"), cors["maxAge"])
        try:
            if parse_duration(cors["maxAge"]) % 1 != 0:
                c.error((*path, "maxAge"), "max_age duration is accurate only to seconds precision")
        except ValueError:
            pass  # reported by the duration check above


def _http_route(c: Checks, path: FieldPath, route: dict[str, Any], in_delegate: bool) -> None:
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


def _gateway_names(c: Checks, path: FieldPath, names: Any) -> None:
    for i, name in items_of(names):
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


def _sticky(c: Checks) -> None:
    """Graylane's sticky-canary annotation (resources/sticky.py); Istio ignores annotations."""
    annotations = as_map(as_map(c.doc.body.get("metadata")).get("annotations"))
    if STICKY_ANNOTATION in annotations:
        try:
            parse_sticky(annotations[STICKY_ANNOTATION])
        except ValueError as exc:
            c.error(("metadata", "annotations", STICKY_ANNOTATION), f"invalid {STICKY_ANNOTATION} annotation: {exc}")


def check_virtual_service(c: Checks, spec: dict[str, Any]) -> None:
    _sticky(c)
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
        if not WILDCARD_DOMAIN.match(host):
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
    for i, route in items_of(spec.get("http")):
        _http_route(c, ("spec", "http", i), as_map(route), is_delegate)
    for i, route in items_of(spec.get("tls")):
        route, path = as_map(route), ("spec", "tls", i)
        if not route.get("match"):
            c.error(path, "TLS route must have at least one match condition")
        for j, match in items_of(route.get("match")):
            if not as_map(match).get("sniHosts"):
                c.error((*path, "match", j), "TLS match must have at least one SNI host")
            c.port((*path, "match", j, "port"), as_map(match).get("port"))
        if not route.get("route"):
            c.error(path, "TLS route is required")
        _route_destinations(c, (*path, "route"), route.get("route"))
    for i, route in items_of(spec.get("tcp")):
        route, path = as_map(route), ("spec", "tcp", i)
        for j, match in items_of(route.get("match")):
            c.port((*path, "match", j, "port"), as_map(match).get("port"))
        if not route.get("route"):
            c.error(path, "TCP route is required")
        _route_destinations(c, (*path, "route"), route.get("route"))
