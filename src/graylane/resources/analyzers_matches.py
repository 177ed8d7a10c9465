"""IST0130/IST0131: VirtualService rules and matches that never fire, as Istio's validation finds them.

First match wins, so (pkg/config/validation: analyzeUnreachableHTTPRules and its TCP/TLS twins):
- a rule after a rule without matches is unreachable, once for each of its matches; a second rule
  without matches too ("only the last rule can have no matches");
- a match identical to an earlier one (ignoring `name`, and empty fields as Go's JSON omits them) is
  ineffective; a rule all of whose matches are is unreachable;
- HTTP only: a URI prefix match is shadowed by an earlier, shorter prefix with the same port and
  headers/query parameters/withoutHeaders (exact or prefix values) and a method and authority the
  earlier one covers (no method means GET): `/api/v1/products` after `/api/v1/product`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import VS_INEFFECTIVE_MATCH, VS_UNREACHABLE_RULE

SCHEMA_ANALYZER = "schema.ValidationAnalyzer.VirtualService"


def _omit_empty(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _omit_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", 0, False, {}, [])}
    if isinstance(value, list):
        return [_omit_empty(v) for v in value]
    return value


def _match_key(match: Any, http: bool) -> str:
    if http and isinstance(match, dict):
        match = {k: v for k, v in match.items() if k != "name"}
    return json.dumps(_omit_empty(match), sort_keys=True, default=str)


def _rule_name(rule: dict[str, Any], n: int, http: bool) -> str:
    name = rule.get("name")
    return json.dumps(name) if http and isinstance(name, str) and name else f"#{n}"


def _match_name(match: Any, n: int, http: bool) -> str:
    name = match.get("name") if isinstance(match, dict) else None
    return json.dumps(name) if http and isinstance(name, str) and name else f"#{n}"


def _exact_or_prefix(value: Any) -> str:
    if isinstance(value, dict):
        if isinstance(value.get("exact"), str) and value["exact"]:
            return "exact:" + value["exact"]
        if isinstance(value.get("prefix"), str) and value["prefix"]:
            return "prefix:" + value["prefix"]
    return ""


def _string_map(value: Any) -> dict[str, str]:
    return {str(k): _exact_or_prefix(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _PrefixMatch:
    rule: str
    match: str
    path: tuple[str | int, ...]
    prefix: str
    port: Any
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without_headers: dict[str, str]


def _prefix_match(rule: str, match: Any, name: str, path: tuple[str | int, ...]) -> _PrefixMatch | None:
    uri = match.get("uri") if isinstance(match, dict) else None
    prefix = uri.get("prefix") if isinstance(uri, dict) else None
    if not isinstance(prefix, str) or not prefix:
        return None
    return _PrefixMatch(rule, name, path, prefix, match.get("port") or 0,
                        _exact_or_prefix(match.get("method")) or "exact:GET", _exact_or_prefix(match.get("authority")),
                        _string_map(match.get("headers")), _string_map(match.get("queryParams")),
                        _string_map(match.get("withoutHeaders")))


def _covers_map(a: dict[str, str], b: dict[str, str]) -> bool:
    return len(a) == len(b) and all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's coveredValidation: does the earlier prefix match `a` take every request of `b`?"""
    return (b.prefix.startswith(a.prefix) and a.port == b.port
            and (a.method == b.method or a.method.startswith(b.method))
            and (a.authority == b.authority or a.authority.startswith(b.authority))
            and _covers_map(a.headers, b.headers) and _covers_map(a.query, b.query)
            and _covers_map(a.without_headers, b.without_headers))


def check_unreachable(vs: Document) -> list[Finding]:
    findings: list[Finding] = []
    for section in ("http", "tcp", "tls"):
        http = section == "http"
        rules = vs.spec.get(section)
        if not isinstance(rules, list):
            continue
        seen: dict[str, int] = {}
        catch_all = -1
        prefixes: list[_PrefixMatch] = []
        for n, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            path = ("spec", section, n)
            name = _rule_name(rule, n, http)
            matches = rule.get("match") if isinstance(rule.get("match"), list) else []
            if not matches:
                if catch_all >= 0:
                    findings.append(VS_UNREACHABLE_RULE.at(vs, path, name, "only the last rule can have no matches",
                                                           analyzer=SCHEMA_ANALYZER))
                catch_all = n
                continue
            duplicates = 0
            for m, match in enumerate(matches):
                match_path = (*path, "match", m)
                if catch_all >= 0:
                    findings.append(VS_UNREACHABLE_RULE.at(vs, match_path, name, "route without matches defined before",
                                                           analyzer=SCHEMA_ANALYZER))
                    continue
                key = _match_key(match, http)
                if key in seen:
                    first = seen[key]
                    findings.append(VS_INEFFECTIVE_MATCH.at(vs, match_path, name, _match_name(match, m, http),
                                                            _rule_name(rules[first], first, http),
                                                            analyzer=SCHEMA_ANALYZER))
                    duplicates += 1
                    continue
                seen[key] = n
                prefix = _prefix_match(name, match, _match_name(match, m, http), match_path) if http else None
                if prefix is not None:
                    prefixes.append(prefix)
            if duplicates == len(matches):
                findings.append(VS_UNREACHABLE_RULE.at(vs, path, name, "all matches used by prior rules",
                                                       analyzer=SCHEMA_ANALYZER))
        for i, earlier in enumerate(prefixes):
            for later in prefixes[i + 1:]:
                if later.prefix != earlier.prefix and _covers(earlier, later):
                    findings.append(VS_INEFFECTIVE_MATCH.at(
                        vs, later.path, later.rule, f"{later.match} of prefix {later.prefix}",
                        f"{earlier.match} of prefix {earlier.prefix} on {earlier.rule}", analyzer=SCHEMA_ANALYZER))
    return findings
