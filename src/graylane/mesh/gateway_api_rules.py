"""HTTPRoute rules -> VirtualService http routes with Gateway API semantics (one route per match).

What each field becomes (Istio's `convertHTTPRoute`): path Exact -> `uri.exact`; PathPrefix -> element-wise,
a full-match regex `<prefix>(/.*)?` (`/` -> prefix `/`); RegularExpression -> `uri.regex`; headers (names
lower-cased, the first of duplicates wins), queryParams, method; RequestHeaderModifier / ResponseHeaderModifier
-> `headers`; RequestRedirect -> `redirect` (302 by default); URLRewrite -> `rewrite` (`uriRegexRewrite` for
paths, so ReplacePrefixMatch is element-wise too); RequestMirror -> `mirrors`; timeouts.request /
backendRequest -> `timeout`. backendRefs: weight 1 by default, 0 dropped; a backend that cannot be used
(not found, wrong kind, no ReferenceGrant) keeps its share as a 500 (`fault.abort` of that percentage); no
usable backend at all -> `directResponse` 500. GRPCRoute rules are converted the same way, their method
matches becoming paths as Istio's `createGRPCURIMatch` does: Exact service+method -> `uri.exact /svc/Method`,
service only -> `uri.prefix /svc/`, method only -> `uri.regex /[^/]+/Method`; RegularExpression -> `uri.regex
/<service or [^/]+>/<method or [^/]+>`. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graylane.mesh.config_base import meta, parse_duration, where_of

_REGEX_SPECIAL = set("\\.^$*+?()[]{}|")
_PATH_RANK = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}
UNSUPPORTED_FILTERS = ("ExtensionRef", "CORS", "ExternalAuth")


def regex_escape(text: str) -> str:
    """Escape for RE2 and Python alike (only regex metacharacters)."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


@dataclass
class Backends:
    """Service backends as the snapshot knows them, and the ReferenceGrants that open other namespaces."""

    services: Mapping[str, Mapping[str, Any]]
    grants: list[Mapping[str, Any]]
    suffix: str
    group: str

    def granted(self, route_ns: str, target_ns: str, name: str, route_kind: str = "HTTPRoute") -> bool:
        for grant in self.grants:
            if meta(grant)[1] != target_ns:
                continue
            spec = grant.get("spec") or {}
            if not any(f.get("group") == self.group and f.get("kind") == route_kind and f.get("namespace") == route_ns
                       for f in spec.get("from") or ()):
                continue
            if any((t.get("group") or "") == "" and t.get("kind") == "Service" and t.get("name") in (None, "", name)
                   for t in spec.get("to") or ()):
                return True
        return False

    def resolve(self, ref: Mapping[str, Any], route_ns: str, enforce: bool,
                route_kind: str = "HTTPRoute") -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """({host, port} destination, None) or (None, (reason, message)) for one backendRef."""
        group, kind, name = str(ref.get("group") or ""), str(ref.get("kind") or "Service"), str(ref.get("name"))
        if group != "" or kind != "Service":
            return None, ("InvalidKind", f"referencing unsupported backendRef: group {group!r} kind {kind!r}")
        bns = str(ref.get("namespace") or route_ns)
        if bns != route_ns and enforce and not self.granted(route_ns, bns, name, route_kind):
            return None, ("RefNotPermitted", f"backendRef {name}/{bns} not accessible to a {route_kind} in namespace "
                                             f"{route_ns!r} (missing a ReferenceGrant?)")
        fqdn = f"{name}.{bns}.svc.{self.suffix}"
        svc = self.services.get(fqdn)
        if svc is None:
            return None, ("BackendNotFound", f"backend({name}.{bns}) not found")
        port = ref.get("port")
        if port is None:
            return None, ("BackendNotFound", f"backendRef {name}: port is required for a Service")
        if int(port) not in [p["port"] for p in svc.get("ports") or ()]:
            return None, ("BackendNotFound", f"backend({name}.{bns}) has no port {port}")
        return {"host": fqdn, "port": {"number": int(port)}}, None


class RuleContext:
    """One HTTPRoute being converted: where its fields are, and the first reference problem (ResolvedRefs)."""

    def __init__(self, route: Mapping[str, Any], backends: Backends,
                 check: Callable[[dict[str, Any], str], None]) -> None:
        self.route = route
        self.name, self.ns = meta(route)
        self.kind = str(route.get("kind") or "HTTPRoute")
        self.backends = backends
        self.check = check
        self.problem: tuple[str, str] | None = None

    def note(self, problem: tuple[str, str]) -> None:
        if self.problem is None:
            self.problem = problem


def _header_ops(f: Mapping[str, Any] | None) -> dict[str, Any]:
    f = f or {}
    out: dict[str, Any] = {}
    if f.get("set"):
        out["set"] = {h["name"]: str(h.get("value", "")) for h in f["set"]}
    if f.get("add"):
        out["add"] = {h["name"]: str(h.get("value", "")) for h in f["add"]}
    if f.get("remove"):
        out["remove"] = [str(n) for n in f["remove"]]
    return out


def _match(m: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, tuple[Any, ...], str, str]:
    """(VirtualService match or None, precedence key, path type, path value)."""
    if m is None:
        return None, (1, 0, 0, 0, 0, 0), "PathPrefix", "/"
    path = m.get("path") or {}
    ptype = str(path.get("type") or "PathPrefix")
    value = str(path.get("value") if path.get("value") is not None else "/")
    out: dict[str, Any] = {}
    if ptype == "Exact":
        out["uri"] = {"exact": value}
    elif ptype == "PathPrefix":
        stem = value.rstrip("/")
        out["uri"] = {"prefix": "/"} if not stem else {"regex": regex_escape(stem) + "(/.*)?"}
    else:
        out["uri"] = {"regex": value}
    headers: dict[str, Any] = {}
    for h in m.get("headers") or ():
        headers.setdefault(str(h["name"]).lower(), {"regex" if h.get("type") == "RegularExpression" else "exact":
                                                    str(h.get("value", ""))})
    if headers:
        out["headers"] = headers
    params: dict[str, Any] = {}
    for q in m.get("queryParams") or ():
        params.setdefault(str(q["name"]), {"regex" if q.get("type") == "RegularExpression" else "exact":
                                           str(q.get("value", ""))})
    if params:
        out["queryParams"] = params
    if m.get("method"):
        out["method"] = {"exact": str(m["method"])}
    key = (0, -_PATH_RANK.get(ptype, 0), -len(value), -int(bool(m.get("method"))), -len(headers), -len(params))
    return out, key, ptype, value


def _grpc_match(m: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, tuple[Any, ...], str, str]:
    """A GRPCRoute match as a VirtualService match (gRPC is HTTP/2 POST to /service/method), its precedence key
    (the spec's: longer service, then longer method, then more headers) and the path it matches."""
    if m is None:
        return None, (1, 0, 0, 0, 0, 0), "PathPrefix", "/"
    method = m.get("method") or {}
    service, name = str(method.get("service") or ""), str(method.get("method") or "")
    out: dict[str, Any] = {}
    if method and (method.get("type") or "Exact") == "Exact":
        if service and name:
            out["uri"] = {"exact": f"/{service}/{name}"}
        elif service:
            out["uri"] = {"prefix": f"/{service}/"}
        elif name:
            out["uri"] = {"regex": f"/[^/]+/{regex_escape(name)}"}
    elif method:
        out["uri"] = {"regex": f"/{service or '[^/]+'}/{name or '[^/]+'}"}
    headers: dict[str, Any] = {}
    for h in m.get("headers") or ():
        headers.setdefault(str(h["name"]).lower(), {"regex" if h.get("type") == "RegularExpression" else "exact":
                                                    str(h.get("value", ""))})
    if headers:
        out["headers"] = headers
    key = (0, -int(bool(service)), -len(service), -len(name), -len(headers), 0)
    return (out or None), key, "PathPrefix", "/"


def _prefix_rewrite(stem: str, replacement: str) -> dict[str, str]:
    """ReplacePrefixMatch, element-wise: `/foo/bar` with prefix `/foo` -> `/xyz` gives `/xyz/bar`; `` or `/` gives
    `/bar`; `/foo` -> `/xyz` (spec table), as a regex rewrite of the whole path."""
    new = replacement.rstrip("/")
    if not new:
        return {"match": f"^{regex_escape(stem)}/?(.*)$", "rewrite": "/\\1"}
    return {"match": f"^{regex_escape(stem)}(/.*)?$", "rewrite": new.replace("\\", "\\\\") + "\\1"}


def _mirror(ctx: RuleContext, f: Mapping[str, Any], enforce: bool) -> dict[str, Any] | None:
    dest, problem = ctx.backends.resolve(f.get("backendRef") or {}, ctx.ns, enforce, ctx.kind)
    if problem:
        ctx.note(problem)
        return None
    if f.get("fraction"):
        fr = f["fraction"]
        pct = 100.0 * int(fr.get("numerator", 0)) / int(fr.get("denominator") or 100)
    else:
        pct = float(f["percent"]) if f.get("percent") is not None else 100.0
    return {"destination": dest, "percentage": {"value": pct}}


def _filters(ctx: RuleContext, rule: dict[str, Any], filters: list[Mapping[str, Any]], enforce: bool,
             ptype: str, value: str) -> list[dict[str, Any]]:
    """Apply rule-level filters to `rule`; a redirect with ReplacePrefixMatch becomes two routes (exact/prefix)."""
    headers: dict[str, Any] = {}
    split: list[dict[str, Any]] = []
    for f in filters:
        t = f.get("type")
        if t == "RequestHeaderModifier":
            headers["request"] = _header_ops(f.get("requestHeaderModifier"))
        elif t == "ResponseHeaderModifier":
            headers["response"] = _header_ops(f.get("responseHeaderModifier"))
        elif t == "RequestMirror":
            m = _mirror(ctx, f.get("requestMirror") or {}, enforce)
            if m:
                rule.setdefault("mirrors", []).append(m)
        elif t == "URLRewrite":
            rw = f.get("urlRewrite") or {}
            out: dict[str, Any] = {}
            if rw.get("hostname"):
                out["authority"] = str(rw["hostname"])
            path = rw.get("path") or {}
            if path.get("type") == "ReplaceFullPath":
                out["uriRegexRewrite"] = {"match": "^.*$", "rewrite": str(path.get("replaceFullPath") or "/")
                                          .replace("\\", "\\\\")}
            elif path.get("type") == "ReplacePrefixMatch":
                stem = value.rstrip("/") if ptype == "PathPrefix" else ""
                out["uriRegexRewrite"] = _prefix_rewrite(stem, str(path.get("replacePrefixMatch") or ""))
            rule["rewrite"] = out
        elif t == "RequestRedirect":
            rd = f.get("requestRedirect") or {}
            red: dict[str, Any] = {"redirectCode": int(rd.get("statusCode") or 302)}
            if rd.get("scheme"):
                red["scheme"] = str(rd["scheme"])
            if rd.get("hostname"):
                red["authority"] = str(rd["hostname"])
            if rd.get("port"):
                red["port"] = int(rd["port"])
            else:
                red["derivePort"] = "FROM_PROTOCOL_DEFAULT" if rd.get("scheme") else "FROM_REQUEST_PORT"
            path = rd.get("path") or {}
            if path.get("type") == "ReplaceFullPath":
                red["uri"] = str(path.get("replaceFullPath") or "/")
            elif path.get("type") == "ReplacePrefixMatch":
                new = str(path.get("replacePrefixMatch") or "").rstrip("/")
                stem = value.rstrip("/") if ptype == "PathPrefix" else ""
                if stem:  # /p exactly, then /p/...: prefixRewrite replaces the matched prefix as written
                    split = [{**rule, "match": [{**(rule.get("match") or [{}])[0], "uri": {"exact": stem}}],
                              "redirect": {**red, "prefixRewrite": new or "/"}},
                             {**rule, "match": [{**(rule.get("match") or [{}])[0], "uri": {"prefix": stem + "/"}}],
                              "redirect": {**red, "prefixRewrite": new + "/"}}]
                else:
                    red["prefixRewrite"] = new + "/" if rule.get("match") else new
            rule["redirect"] = red
        elif t in UNSUPPORTED_FILTERS:
            ctx.note(("InvalidFilter", f"filter {t} is not supported by the local mesh; the rule answers 500"))
            rule["directResponse"] = {"status": 500}
    if headers:
        rule["headers"] = headers
    if split:
        return [{**r, "headers": headers} if headers else r for r in split]
    return [rule]


def _backends(ctx: RuleContext, rule_spec: Mapping[str, Any], rule: dict[str, Any], enforce: bool) -> None:
    """backendRefs -> `route` (weights as written, 0 dropped), invalid shares -> 500, none -> directResponse 500."""
    valid: list[dict[str, Any]] = []
    invalid_weight = total = 0
    for b in rule_spec.get("backendRefs") or ():
        weight = int(b.get("weight", 1) if b.get("weight") is not None else 1)
        dest, problem = ctx.backends.resolve(b, ctx.ns, enforce, ctx.kind)
        if problem:
            ctx.note(problem)
        if weight <= 0:
            continue
        total += weight
        if dest is None:
            invalid_weight += weight
            continue
        item: dict[str, Any] = {"destination": dest, "weight": weight}
        hdrs: dict[str, Any] = {}
        for f in b.get("filters") or ():
            if f.get("type") == "RequestHeaderModifier":
                hdrs["request"] = _header_ops(f.get("requestHeaderModifier"))
            elif f.get("type") == "ResponseHeaderModifier":
                hdrs["response"] = _header_ops(f.get("responseHeaderModifier"))
            else:
                ctx.note(("InvalidFilter", f"backendRef filter {f.get('type')} is not supported"))
        if hdrs:
            item["headers"] = hdrs
        valid.append(item)
    if not valid:
        rule["directResponse"] = {"status": 500}
        return
    if len(valid) == 1:
        valid[0].pop("weight")
    rule["route"] = valid
    if invalid_weight:
        rule["fault"] = {"abort": {"httpStatus": 500, "percentage": {"value": 100.0 * invalid_weight / total}}}


def rule_entries(ctx: RuleContext, enforce: bool) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every (precedence key, VirtualService http route) of the HTTPRoute, in rule and match order."""
    spec = ctx.route.get("spec") or {}
    out: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for ri, rule_spec in enumerate(spec.get("rules") or [{}]):
        where = where_of(ctx.route, f"spec.rules[{ri}]")
        name = str(rule_spec.get("name") or f"{ctx.ns}.{ctx.name}.{ri}")
        filters = list(rule_spec.get("filters") or ())
        redirect = any(f.get("type") == "RequestRedirect" for f in filters)
        to_match = _grpc_match if ctx.kind == "GRPCRoute" else _match
        timeout = None
        for key in ("request", "backendRequest"):  # Istio: backendRequest without retry overwrites the timeout
            value = (rule_spec.get("timeouts") or {}).get(key)
            if value is not None and parse_duration(value, f"{where}.timeouts.{key}") > 0:
                timeout = value
        matches = rule_spec.get("matches") or [None]
        for m in matches:
            vs_match, key, ptype, value = to_match(m)
            rule: dict[str, Any] = {"name": name}
            if vs_match is not None:
                rule["match"] = [vs_match]
            if not redirect:
                _backends(ctx, rule_spec, rule, enforce)
            if timeout is not None and not redirect:
                rule["timeout"] = timeout
            for compiled in _filters(ctx, rule, filters, enforce, ptype, value):
                if compiled.get("directResponse") or compiled.get("redirect"):
                    compiled = {k: v for k, v in compiled.items() if k not in ("route", "fault", "mirrors", "timeout")}
                ctx.check(compiled, where)
                out.append((key, compiled))
    return out
