"""Admission checks of the Gateway API kinds: the CRDs' CEL rules (kubernetes-sigs/gateway-api
`config/crd/standard/*.yaml`, `apis/v1/*_types.go` markers), with the CRDs' messages where they have one.

The schema (types, enums, ranges such as weight 0..1000000) is the pydantic model's; these are the rules the
API server evaluates beyond it: path values, header names, filter combinations, timeouts, listener
uniqueness, Service backendRefs needing a port.
"""

from __future__ import annotations

import re
from typing import Any

from graylane.resources.admission_base import Checks, as_map, items_of, regex_error
from graylane.resources.durations import parse_duration

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GRPC_SERVICE = re.compile(r"^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$", re.IGNORECASE)
_GRPC_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
_GEP2257 = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_BAD_PATH = ("//", "/./", "/../", "%2f", "%2F", "#")
_ONCE = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "CORS")
_FIELD = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
          "RequestMirror": "requestMirror", "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
          "ExtensionRef": "extensionRef", "CORS": "cors", "ExternalAuth": "externalAuth"}


def _path_value(c: Checks, path: tuple[Any, ...], value: Any) -> None:
    if not isinstance(value, str):
        return
    if not value.startswith("/"):
        c.error(path, "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']")
    elif any(bad in value for bad in _BAD_PATH) or value.endswith(("/..", "/.")):
        c.error(path, "must not contain '//', '/./', '/../', '%2f', '%2F' or '#', nor end with '/..' or '/.' "
                      "when type one of ['Exact', 'PathPrefix']")


def _hostname(c: Checks, path: tuple[Any, ...], value: Any) -> None:
    if isinstance(value, str) and (not _HOSTNAME.match(value) or len(value) > 253):
        c.error(path, f"invalid hostname {value!r}: a lowercase RFC 1123 subdomain, optionally prefixed by '*.' "
                      "(no IP addresses, no port)")


def _header_ops(c: Checks, path: tuple[Any, ...], f: dict[str, Any]) -> None:
    seen: set[str] = set()
    for key in ("set", "add"):
        for i, h in items_of(f.get(key)):
            name = str(as_map(h).get("name", ""))
            if not _HEADER_NAME.match(name):
                c.error((*path, key, i, "name"), f"invalid header name {name!r}")
            if name.lower() in seen:
                c.error((*path, key, i, "name"), f"header name {name!r} is listed twice (names are case-insensitive)")
            seen.add(name.lower())
            if any(ch in str(as_map(h).get("value", "")) for ch in "\r\n\x00"):
                c.error((*path, key, i, "value"), "header values must not contain control characters")


def _backend_ref(c: Checks, path: tuple[Any, ...], ref: dict[str, Any]) -> None:
    if (ref.get("group") or "") == "" and (ref.get("kind") or "Service") == "Service":
        if ref.get("port") is None:
            c.error(path, "Must have port for Service reference")
        if "." in str(ref.get("name", "")):
            c.error((*path, "name"), "use the Service name, not its hostname (Istio refuses dotted Service names)")


def _duration(c: Checks, path: tuple[Any, ...], value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    if not _GEP2257.match(value):
        c.error(path, f"invalid duration {value!r}: GEP-2257 form such as 10s, 500ms, 1h30m (units h, m, s, ms)")
        return None
    return float(parse_duration(value))


def _filters(c: Checks, path: tuple[Any, ...], filters: list[Any], rule: dict[str, Any]) -> None:
    types = [as_map(f).get("type") for f in filters]
    for t in _ONCE:
        if types.count(t) > 1:
            c.error(path, f"{t} filter cannot be repeated")
    if "RequestRedirect" in types and "URLRewrite" in types:
        c.error(path, "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not "
                      "both")
    if "RequestRedirect" in types and rule.get("backendRefs"):
        c.error(path[:-1], "RequestRedirect filter must not be used together with backendRefs")
    for i, f in items_of(filters):
        f = as_map(f)
        t = f.get("type")
        for ftype, key in _FIELD.items():
            if ftype == t and f.get(key) is None:
                c.error((*path, i), f"filter.{key} must be specified for {ftype} filter.type")
            elif ftype != t and f.get(key) is not None:
                c.error((*path, i, key), f"filter.{key} must be nil if the filter.type is not {ftype}")
        if t in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            _header_ops(c, (*path, i, _FIELD[t]), as_map(f.get(_FIELD[t])))
        elif t == "RequestMirror":
            mirror = as_map(f.get("requestMirror"))
            _backend_ref(c, (*path, i, "requestMirror", "backendRef"), as_map(mirror.get("backendRef")))
            if mirror.get("percent") is not None and mirror.get("fraction") is not None:
                c.error((*path, i, "requestMirror"), "Only one of percent or fraction may be specified in "
                                                     "HTTPRequestMirrorFilter")
        elif t in ("RequestRedirect", "URLRewrite"):
            body = as_map(f.get(_FIELD[t]))
            _hostname(c, (*path, i, _FIELD[t], "hostname"), body.get("hostname"))
            mod = as_map(body.get("path"))
            if mod:
                want = "replaceFullPath" if mod.get("type") == "ReplaceFullPath" else "replacePrefixMatch"
                other = "replacePrefixMatch" if want == "replaceFullPath" else "replaceFullPath"
                if mod.get(want) is None and t == "URLRewrite" and want == "replaceFullPath":
                    c.error((*path, i, _FIELD[t], "path"), "replaceFullPath must be specified when type is set to "
                                                           "'ReplaceFullPath'")
                if mod.get(other) is not None:
                    c.error((*path, i, _FIELD[t], "path", other), f"{other} must be nil when type is set to "
                                                                  f"'{mod.get('type')}'")
                if mod.get("type") == "ReplacePrefixMatch":
                    matches = rule.get("matches") or []
                    ok = len(matches) == 1 and (as_map(as_map(matches[0]).get("path")).get("type") or "PathPrefix") \
                        == "PathPrefix"
                    if not ok:
                        c.error((*path, i), "When using " + ("RequestRedirect" if t == "RequestRedirect" else
                                                             "URLRewrite") + " filter with path.replacePrefixMatch, "
                                "exactly one PathPrefix match must be specified")
        elif t in ("ExtensionRef", "CORS", "ExternalAuth"):
            c.warn((*path, i), f"filter {t} is not served by the local mesh: requests this rule takes get 500")


def _route_common(c: Checks, spec: dict[str, Any]) -> None:
    """What HTTPRoute and GRPCRoute share: hostnames and distinct parentRefs."""
    for i, h in items_of(spec.get("hostnames")):
        _hostname(c, ("spec", "hostnames", i), h)
    parents = [as_map(p) for p in spec.get("parentRefs") or []]
    keys = [(p.get("group"), p.get("kind"), p.get("namespace"), p.get("name"), p.get("sectionName"), p.get("port"))
            for p in parents]
    if len(set(keys)) != len(keys):
        c.error(("spec", "parentRefs"), "sectionName or port must be specified when parentRefs includes 2 or more "
                                        "references to the same parent")


def _header_matches(c: Checks, path: tuple[Any, ...], headers: Any) -> None:
    for hi, h in items_of(headers):
        h = as_map(h)
        if not _HEADER_NAME.match(str(h.get("name", ""))):
            c.error((*path, hi, "name"), f"invalid header name {h.get('name')!r}")
        if h.get("type") == "RegularExpression" and (problem := regex_error(str(h.get("value", "")))):
            c.error((*path, hi, "value"), f"invalid RE2 regular expression: {problem}")


def check_grpc_route(c: Checks, spec: dict[str, Any]) -> None:
    """GRPCRoute's CEL rules (apis/v1/grpcroute_types.go): a method match names a service or a method; Exact
    names are gRPC identifiers, RegularExpression ones valid RE2."""
    _route_common(c, spec)
    total = 0
    for ri, rule in items_of(spec.get("rules")):
        rule, rpath = as_map(rule), ("spec", "rules", ri)
        total += len(rule.get("matches") or [])
        for mi, m in items_of(rule.get("matches")):
            m, mpath = as_map(m), (*rpath, "matches", mi)
            method = as_map(m.get("method"))
            if m.get("method") is not None:
                if not method.get("service") and not method.get("method"):
                    c.error((*mpath, "method"), "One or both of 'service' or 'method' must be specified")
                exact = (method.get("type") or "Exact") == "Exact"
                for key, pattern in (("service", _GRPC_SERVICE), ("method", _GRPC_METHOD)):
                    value = method.get(key)
                    if value is None:
                        continue
                    if exact and not pattern.match(str(value)):
                        c.error((*mpath, "method", key), f"{key} must only contain valid characters (matching "
                                                         f"{pattern.pattern})")
                    elif not exact and (problem := regex_error(str(value))):
                        c.error((*mpath, "method", key), f"invalid RE2 regular expression: {problem}")
            _header_matches(c, (*mpath, "headers"), m.get("headers"))
        _filters(c, (*rpath, "filters"), list(rule.get("filters") or []), rule)
        for bi, b in items_of(rule.get("backendRefs")):
            b = as_map(b)
            _backend_ref(c, (*rpath, "backendRefs", bi), b)
            _filters(c, (*rpath, "backendRefs", bi, "filters"), list(b.get("filters") or []), {})
    if total > 128:
        c.error(("spec", "rules"), f"While 16 rules and 64 matches per rule are allowed, the total number of matches "
                                   f"across all rules in a route must be less than 128 (got {total})")


def check_http_route(c: Checks, spec: dict[str, Any]) -> None:
    _route_common(c, spec)
    total = 0
    for ri, rule in items_of(spec.get("rules")):
        rule, rpath = as_map(rule), ("spec", "rules", ri)
        total += len(rule.get("matches") or [])
        for mi, m in items_of(rule.get("matches")):
            m, mpath = as_map(m), (*rpath, "matches", mi)
            p = as_map(m.get("path"))
            ptype = p.get("type") or "PathPrefix"
            if ptype in ("Exact", "PathPrefix"):
                _path_value(c, (*mpath, "path", "value"), p.get("value", "/"))
            elif isinstance(p.get("value"), str):
                problem = regex_error(p["value"])
                if problem:
                    c.error((*mpath, "path", "value"), f"invalid RE2 regular expression: {problem}")
            for key in ("headers", "queryParams"):
                for hi, h in items_of(m.get(key)):
                    h = as_map(h)
                    if key == "headers" and not _HEADER_NAME.match(str(h.get("name", ""))):
                        c.error((*mpath, key, hi, "name"), f"invalid header name {h.get('name')!r}")
                    if h.get("type") == "RegularExpression" and (problem := regex_error(str(h.get("value", "")))):
                        c.error((*mpath, key, hi, "value"), f"invalid RE2 regular expression: {problem}")
        _filters(c, (*rpath, "filters"), list(rule.get("filters") or []), rule)
        for bi, b in items_of(rule.get("backendRefs")):
            b = as_map(b)
            _backend_ref(c, (*rpath, "backendRefs", bi), b)
            _filters(c, (*rpath, "backendRefs", bi, "filters"), list(b.get("filters") or []), {})
        timeouts = as_map(rule.get("timeouts"))
        request = _duration(c, (*rpath, "timeouts", "request"), timeouts.get("request"))
        backend = _duration(c, (*rpath, "timeouts", "backendRequest"), timeouts.get("backendRequest"))
        if request and backend and backend > request:
            c.error((*rpath, "timeouts"), "backendRequest timeout cannot be longer than request timeout")
        if rule.get("retry") is not None:
            c.warn((*rpath, "retry"), "retry (experimental) is not served by the local mesh and is ignored")
    if total > 128:
        c.error(("spec", "rules"), f"While 16 rules and 64 matches per rule are allowed, the total number of matches "
                                   f"across all rules in a route must be less than 128 (got {total})")


def check_k8s_gateway(c: Checks, spec: dict[str, Any]) -> None:
    names: set[str] = set()
    combos: set[tuple[Any, ...]] = set()
    for i, lst in items_of(spec.get("listeners")):
        lst, path = as_map(lst), ("spec", "listeners", i)
        if lst.get("name") in names:
            c.error((*path, "name"), "Listener name must be unique within the Gateway")
        names.add(lst.get("name"))
        combo = (lst.get("port"), lst.get("protocol"), lst.get("hostname"))
        if combo in combos:
            c.error(path, "Combination of port, protocol and hostname must be unique for each listener")
        combos.add(combo)
        _hostname(c, (*path, "hostname"), lst.get("hostname"))
        protocol = lst.get("protocol")
        if protocol in ("HTTP", "TCP", "UDP") and lst.get("tls") is not None:
            c.error((*path, "tls"), "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
        if protocol == "HTTPS" and lst.get("tls") is None:
            c.error(path, "tls mode must be set for protocol HTTPS")
        if protocol in ("HTTP", "TCP", "UDP") and lst.get("hostname") and protocol != "HTTP":
            c.error((*path, "hostname"), "hostname must not be specified for protocols ['TCP', 'UDP']")
        if protocol not in ("HTTP", "HTTPS", "TCP", "TLS"):
            c.warn((*path, "protocol"), f"protocol {protocol} is not served by the local mesh (HTTP, HTTPS, TCP and "
                                        "TLS are): the listener is reported Accepted=False, UnsupportedProtocol")
        nss = as_map(as_map(lst.get("allowedRoutes")).get("namespaces"))
        if nss.get("from") == "Selector" and nss.get("selector") is None:
            c.error((*path, "allowedRoutes", "namespaces"), "selector must be specified when from is Selector")


def check_l4_route(c: Checks, spec: dict[str, Any]) -> None:
    """TCPRoute and TLSRoute (apis/v1alpha2/tcproute_types.go, tlsroute_types.go): hostnames (TLSRoute), distinct
    parentRefs, Service backendRefs with a port."""
    _route_common(c, spec)
    for ri, rule in items_of(spec.get("rules")):
        for bi, b in items_of(as_map(rule).get("backendRefs")):
            _backend_ref(c, ("spec", "rules", ri, "backendRefs", bi), as_map(b))
    if c.doc.kind == "TLSRoute" and c.doc.api_version.endswith(("/v1alpha3", "/v1")) and not spec.get("hostnames"):
        c.error(("spec", "hostnames"), "TLSRoute needs at least one hostname (required from v1alpha3)")


def check_reference_grant(c: Checks, spec: dict[str, Any]) -> None:
    for i, f in items_of(spec.get("from")):
        if as_map(f).get("namespace") == c.doc.namespace:
            c.warn(("spec", "from", i, "namespace"), "a ReferenceGrant is only needed across namespaces")
