"""A VirtualService and its HTTP routes as typed values: matches, weighted destinations, mirrors, faults, rewrites,
redirects and direct responses. Built by the snapshot decoder; knows no dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from graylane.mesh.routing.matching import Match
from graylane.mesh.routing.policies import Cors, HeaderOps, RetryPolicy, StickyPolicy


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
class Fault:
    """HTTPFaultInjection: a fixed delay and/or an abort, each applied to its percentage of requests."""

    delay_s: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 0
    abort_percent: float = 0.0
    abort_grpc: int | None = None  # abort.grpcStatus: a gRPC trailers-only answer with this grpc-status


@dataclass(frozen=True, slots=True)
class Rewrite:
    """HTTPRewrite: `uri` replaces the matched prefix; `uri_regex` is (pattern, Python replacement)."""

    uri: str | None = None
    authority: str | None = None
    uri_regex: tuple[re.Pattern[str], str] | None = None
    uri_regex_source: tuple[str, str] | None = None  # (match, rewrite) as written, for `graylane route`

    def as_istio(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.uri is not None:
            out["uri"] = self.uri
        if self.authority is not None:
            out["authority"] = self.authority
        if self.uri_regex_source is not None:
            out["uriRegexRewrite"] = {"match": self.uri_regex_source[0], "rewrite": self.uri_regex_source[1]}
        return out


@dataclass(frozen=True, slots=True)
class Redirect:
    """HTTPRedirect, Istio's fields."""

    uri: str | None = None
    prefix_rewrite: str | None = None
    authority: str | None = None
    scheme: str | None = None
    port: int | None = None
    derive_port: str | None = None
    code: int = 301

    def as_istio(self) -> dict[str, object]:
        pairs = (("uri", self.uri), ("prefixRewrite", self.prefix_rewrite), ("authority", self.authority),
                 ("scheme", self.scheme), ("port", self.port), ("derivePort", self.derive_port))
        return {**{k: v for k, v in pairs if v is not None}, "redirectCode": self.code}


@dataclass(frozen=True, slots=True)
class DirectResponse:
    """HTTPDirectResponse: status and body (from `string` or base64 `bytes`)."""

    status: int
    body: bytes = b""

    def as_istio(self) -> dict[str, object]:
        return {"status": self.status, "body": {"string": self.body.decode("utf-8", "replace")}}


@dataclass(frozen=True, slots=True)
class Rule:
    """One HTTPRoute of a VirtualService, pre-parsed."""

    index: int
    name: str
    matches: tuple[Match, ...]
    destinations: tuple[Destination, ...]
    redirect: Redirect | None
    direct_response: DirectResponse | None
    rewrite: Rewrite | None
    timeout_s: float | None
    retries: RetryPolicy
    fault: Fault | None
    mirrors: tuple[Mirror, ...]
    cors: Cors | None
    headers_request: HeaderOps
    headers_response: HeaderOps

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
    sticky: StickyPolicy | None = None  # the graylane.io/sticky annotation (routing/sticky.py)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def is_exported_to(self, namespace: str) -> bool:
        return not self.export_to or "*" in self.export_to or namespace in self.export_to or (
            "." in self.export_to and namespace == self.namespace)


def is_catch_all(rule: Rule) -> bool:
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
