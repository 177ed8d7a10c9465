"""Shared pieces of the admission checks: the finding collector, name rules, RE2 regexes, string matches.

Messages are Istio's own (istio/istio `pkg/config/validation/validation.go`, `virtualservice.go`) so
people can search them. Checks read the raw body of documents that already passed the schema, so
every value has the type the schema promised.
"""

from __future__ import annotations

import http
import re
from collections.abc import Iterable
from typing import Any

import re2

from graylane.resources.document import Document, FieldPath, format_path
from graylane.resources.durations import parse_duration, validate_duration
from graylane.resources.finding import Finding, Severity
from graylane.resources.messages import SCHEMA_VALIDATION_ERROR, SCHEMA_WARNING, go_quote

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
WILDCARD_DOMAIN = re.compile(r"^(\*|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9_]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9_]*"
                              r"[A-Za-z0-9])?)*)$")
HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

# pkg/config/validation/agent/validation.go supportedRetryOnPolicies
RETRY_ON_POLICIES = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream",
    "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure", "cancelled",
    "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})
HTTP_STATUSES = frozenset(s.value for s in http.HTTPStatus)
GATEWAY_PROTOCOLS = frozenset({"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "REDIS", "MYSQL", "TCP", "TLS"})
TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
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


class Checks:
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


def items_of(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# === StringMatch ===

def string_match(c: Checks, path: FieldPath, match: Any, where: str, *, prefix_required: bool) -> None:
    match = as_map(match)
    set_fields = [k for k in ("exact", "prefix", "regex") if k in match]
    if len(set_fields) > 1:
        c.error(path, f"only one of exact, prefix, regex may be set (found {', '.join(set_fields)})")
    if prefix_required and "prefix" in match and match["prefix"] == "":
        c.error((*path, "prefix"), f"{go_quote(where)}: prefix string match should not be empty")
    if "regex" in match:
        check_regex(c, (*path, "regex"), match["regex"], where, empty_message="regex string match should not be empty")


def check_regex(c: Checks, path: FieldPath, pattern: Any, where: str, empty_message: str | None = None) -> None:
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
