"""A VirtualService and its HTTP routes, pre-parsed: matches, weighted destinations, mirrors, faults, rewrites."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graylane.mesh.routing.matching import Match, compile_regex
from graylane.mesh.routing.policies import Cors, HeaderOps, RetryPolicy


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
