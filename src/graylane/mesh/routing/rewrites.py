"""Where a routed request goes on the wire: path rewrites (prefix and regex) and redirect locations."""

from __future__ import annotations

from graylane.mesh.routing.matching import Match, RequestView, split_host_port
from graylane.mesh.routing.rules import Redirect, Rule


def rewritten_path(rule: Rule, match: Match | None, path: str) -> str:
    """Apply rewrite.uri (replaces the matched prefix, as Envoy's prefix_rewrite) or uriRegexRewrite."""
    rw = rule.rewrite
    base, sep, query = path.partition("?")
    if rw is None:
        return path
    if rw.uri_regex is not None:
        pattern, repl = rw.uri_regex
        base = pattern.sub(repl, base)
    elif rw.uri is not None:
        new = rw.uri
        if match is not None and match.uri is not None and match.uri.kind in ("prefix", "exact"):
            base = new + base[len(match.uri.value):]
        elif match is not None and match.uri is not None:  # regex match: replace the whole path
            base = new
        else:  # no uri match: Istio matches prefix "/"
            base = new + base[1:]
    return base + sep + query


def redirect_location(rule: Rule, match: Match | None, req: RequestView) -> str:
    r = rule.redirect or Redirect()
    host, port = split_host_port(req.authority, 0)
    scheme = r.scheme or req.scheme
    authority = r.authority or host
    path = req.path
    if r.uri:
        path = r.uri
    elif r.prefix_rewrite is not None and match is not None and match.uri is not None:
        path = r.prefix_rewrite + path[len(match.uri.value):]
    # Envoy: a host_redirect drops the request's port unless a port (or derivePort) says otherwise.
    new_port: int | None = None if r.authority else (port or None)
    if r.derive_port == "FROM_REQUEST_PORT":
        new_port = port or None
    if r.port:
        new_port = r.port
    elif r.derive_port == "FROM_PROTOCOL_DEFAULT":
        new_port = None
    if new_port in ((80,) if scheme == "http" else (443,)):
        new_port = None
    return f"{scheme}://{authority}{':' + str(new_port) if new_port else ''}{path}"
