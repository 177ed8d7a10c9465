"""Which requests a rule takes: the request view, Istio StringMatch, HTTPMatchRequest, host patterns, the source.

Pure: no sockets, no state, no dicts (the snapshot decoder builds these values). A failed condition is returned as
a `Miss` and formatted only when explained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import re2  # google-re2: Istio validates regexes with RE2

from graylane.errors import ValidationError

# ----------------------------------------------------------------------------------------------- requests


@dataclass(slots=True, init=False)
class RequestView:
    """What routing may look at. `headers` has lowercase names; repeated headers joined with ','."""

    method: str
    path: str  # origin-form path, query string included
    authority: str  # Host (or absolute-form authority), maybe with :port
    headers: Mapping[str, str]
    scheme: str
    port: int  # destination port the request was addressed to
    source_ip: str

    # Written out: compiled (graylane.mesh.native), a dataclass's generated __init__ stays interpreted Python.
    def __init__(self, method: str, path: str, authority: str, headers: Mapping[str, str], scheme: str = "http",
                 port: int = 80, source_ip: str = "127.0.0.1") -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.headers = headers
        self.scheme = scheme
        self.port = port
        self.source_ip = source_ip


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
        re2.compile(value)
    except re2.error as exc:
        raise ValidationError(f"invalid RE2 regex {value!r}: {exc}") from None
    try:
        return re.compile(value, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ValidationError(f"regex {value!r} is not supported: {exc}") from None


# --------------------------------------------------------------------------------------------------- matches

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
            header = req.headers.get(name)
            # Non-presence withoutHeaders treat a missing header as empty (Envoy TreatMissingHeaderAsEmpty).
            if m.matches(header if m.kind == "present" or header is not None else ""):
                return ("withoutHeaders {} {} matches {!r}", (name, m, header))
        if self.query_params:
            params = dict(parse_qsl(split_path(req.path)[1], keep_blank_values=True))
            for name, m in self.query_params:
                if not m.matches(params.get(name)):
                    return ("queryParams {} {} does not match {!r}", (name, m, params.get(name)))
        return None


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*" or pattern == host:
        return True
    return pattern.startswith("*") and host.endswith(pattern[1:])


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
