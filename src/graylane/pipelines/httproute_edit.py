"""Editing a service's Gateway API HTTPRoute for progressive delivery: backendRef weights, pure functions, no I/O.

With the Gateway API each version is its own Service (Istio's `bookinfo-versions.yaml`: `reviews-v1`,
`reviews-v2`), and an HTTPRoute rule splits traffic by `backendRefs[].weight`, as Argo Rollouts' and Flagger's
Gateway API integrations do (a stable and a canary Service). The **managed rule** is the rule carrying the
default traffic: the last rule without `matches` whose backendRefs are all Services (else the last rule with
backendRefs). Weights change there, in place; the user's other rules, filters, timeouts and each backendRef's own
fields (port, filters) stay as they were. Weights name backend Services: `{"reviews-v1": 90, "reviews-v2": 10}`;
a Service named for the first time gets the port of the rule's other backendRefs; a Service left out of the map
is dropped from the rule; weight 0 keeps it listed with no traffic.

Header and mirror routes, as Argo Rollouts' Gateway API plugin adds them: a header route is a rule named by
Graylane (`rules[].name`) placed first, whose matches are the managed rule's matches each ANDed with the header
conditions (so it is more specific than the managed rule under the Gateway API's precedence), sending them to the
canary Service; a mirror is a RequestMirror filter on the managed rule (or on a named rule for matching requests)
with `percent` (or `fraction` for a non-whole percentage). Which rules are Graylane's is kept by the caller
(routes_edit's annotation).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError

GROUP = "gateway.networking.k8s.io"


def _is_service(ref: Any) -> bool:
    return isinstance(ref, dict) and (ref.get("group") or "") == "" and (ref.get("kind") or "Service") == "Service"


def managed_rule_index(route: Mapping[str, Any]) -> int | None:
    """Index in `spec.rules` of the rule whose backendRef weights a release moves (see the module docstring)."""
    rules = [r if isinstance(r, dict) else {} for r in (route.get("spec") or {}).get("rules") or []]
    with_backends = [i for i, r in enumerate(rules) if r.get("backendRefs")]
    default = [i for i in with_backends
               if not matches_some(rules[i]) and all(_is_service(b) for b in rules[i]["backendRefs"])]
    if default:
        return default[-1]
    return with_backends[-1] if with_backends else None


def matches_some(rule: Mapping[str, Any]) -> bool:
    """Whether the rule matches only some requests (a `matches` entry that is not the match-everything `/`)."""
    matches = rule.get("matches") or []
    return any(m and m != {"path": {"type": "PathPrefix", "value": "/"}} for m in matches)


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """The managed rule's `{backend Service: weight}` (a lone backendRef without a weight has 100)."""
    idx = managed_rule_index(route)
    if idx is None:
        return {}
    refs = [b for b in route["spec"]["rules"][idx]["backendRefs"] if isinstance(b, dict)]
    one = len(refs) == 1
    return {str(b.get("name")): int(b["weight"]) if b.get("weight") is not None else (100 if one else 1)
            for b in refs}


def set_weights(route: Mapping[str, Any], weights: Mapping[str, int]) -> dict[str, Any]:
    """The HTTPRoute with the managed rule's backendRefs set to `weights`; nothing else changes."""
    out = copy.deepcopy(dict(route))
    name = (out.get("metadata") or {}).get("name")
    idx = managed_rule_index(out)
    if idx is None:
        raise ValidationError(f"HTTPRoute {name}: no rule with backendRefs to move weights on",
                              hint="give the route a rule with backendRefs (the stable Service, with its port)")
    rule = out["spec"]["rules"][idx]
    previous = {str(b.get("name")): b for b in rule["backendRefs"] if isinstance(b, dict)}
    port = next((b.get("port") for b in previous.values() if b.get("port") is not None), None)
    refs = []
    for service, weight in weights.items():
        entry = copy.deepcopy(previous.get(service))
        if entry is None:
            if port is None:
                raise ValidationError(f"HTTPRoute {name}: backend Service {service} needs a port and no other "
                                      "backendRef of the rule names one")
            entry = {"name": service, "port": port}
        entry["weight"] = int(weight)
        refs.append(entry)
    rule["backendRefs"] = refs
    return out


def _managed(route: dict[str, Any]) -> tuple[dict[str, Any], int]:
    idx = managed_rule_index(route)
    if idx is None:
        raise ValidationError(f"HTTPRoute {(route.get('metadata') or {}).get('name')}: no rule with backendRefs",
                              hint="give the route a rule with backendRefs (the stable Service, with its port)")
    return route["spec"]["rules"][idx], idx


def _port(rule: Mapping[str, Any]) -> Any:
    return next((b.get("port") for b in rule.get("backendRefs") or [] if isinstance(b, dict) and b.get("port")), None)


def gateway_matches(base: list[Any] | None, istio_match: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Istio header match blocks (`[{headers: {name: {exact|regex|prefix: v}}}]`) as Gateway API matches, each
    ANDed into every match of `base` (the managed rule's; none: match everything)."""
    out = []
    for block in istio_match:
        headers = []
        for name, cond in (block.get("headers") or {}).items():
            kind, value = next(iter(cond.items()))
            if kind == "exact":
                headers.append({"name": name, "type": "Exact", "value": value})
            else:  # the Gateway API has no prefix header match: a regex says it
                headers.append({"name": name, "type": "RegularExpression",
                                "value": value if kind == "regex" else f"^{re.escape(value)}.*"})
        for m in base or [{}]:
            merged = copy.deepcopy(dict(m))
            merged["headers"] = [*(merged.get("headers") or []), *headers]
            out.append(merged)
    return out


def _place(out: dict[str, Any], rule: dict[str, Any], managed: list[str]) -> None:
    """Graylane's rule first (after its earlier ones); a same-named one replaced in place."""
    rules = out["spec"]["rules"]
    for i, existing in enumerate(rules):
        if isinstance(existing, dict) and existing.get("name") == rule["name"]:
            rules[i] = rule
            return
    rules.insert(sum(1 for r in rules if isinstance(r, dict) and r.get("name") in managed), rule)


def set_header_rule(route: Mapping[str, Any], name: str, match: list[dict[str, Any]], canary: str,
                    managed: list[str]) -> dict[str, Any]:
    """Requests matching `match` (Istio header blocks) to the canary Service, in a rule named `name`."""
    out = copy.deepcopy(dict(route))
    base, _ = _managed(out)
    rule: dict[str, Any] = {"name": name, "matches": gateway_matches(base.get("matches"), match),
                            "backendRefs": [{"name": canary, "port": _port(base)}]}
    if base.get("timeouts"):
        rule["timeouts"] = copy.deepcopy(base["timeouts"])
    _place(out, rule, managed)
    return out


def _mirror_filter(canary: str, port: Any, percentage: float) -> dict[str, Any]:
    mirror: dict[str, Any] = {"backendRef": {"name": canary, "port": port}}
    if float(percentage).is_integer():
        mirror["percent"] = int(percentage)
    else:
        mirror["fraction"] = {"numerator": round(percentage * 1000), "denominator": 100_000}
    return {"type": "RequestMirror", "requestMirror": mirror}


def set_mirror(route: Mapping[str, Any], name: str, percentage: float, canary: str,
               match: list[dict[str, Any]] | None, managed: list[str]) -> dict[str, Any]:
    """Mirror `percentage`% to the canary Service: on the managed rule itself (no match), or in a rule named
    `name` for the matching requests, which routes as the managed rule does."""
    out = copy.deepcopy(dict(route))
    base, idx = _managed(out)
    mirror = _mirror_filter(canary, _port(base), percentage)
    if not match:
        filters = [f for f in base.get("filters") or [] if not _is_our_mirror(f, canary)]
        out["spec"]["rules"][idx]["filters"] = [*filters, mirror]
        return out
    rule = {"name": name, "matches": gateway_matches(base.get("matches"), match),
            "backendRefs": copy.deepcopy(base["backendRefs"]), "filters": [mirror]}
    _place(out, rule, managed)
    return out


def _is_our_mirror(f: Any, canary: str) -> bool:
    return isinstance(f, dict) and f.get("type") == "RequestMirror" and \
        ((f.get("requestMirror") or {}).get("backendRef") or {}).get("name") == canary


def remove_rule(route: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = copy.deepcopy(dict(route))
    out["spec"]["rules"] = [r for r in out["spec"].get("rules") or [] if not (isinstance(r, dict)
                                                                              and r.get("name") == name)]
    return out


def remove_mirror(route: Mapping[str, Any], canary: str) -> dict[str, Any]:
    """The managed rule's RequestMirror to `canary` goes (the user's other filters stay)."""
    out = copy.deepcopy(dict(route))
    idx = managed_rule_index(out)
    if idx is not None:
        rule = out["spec"]["rules"][idx]
        rule["filters"] = [f for f in rule.get("filters") or [] if not _is_our_mirror(f, canary)]
        if not rule["filters"]:
            rule.pop("filters")
    return out


def refuse(what: str, name: Any) -> ValidationError:
    """An operation the Gateway API path does not offer (sticky canary)."""
    return ValidationError(f"HTTPRoute {name}: {what} is not supported on an HTTPRoute",
                           hint="route the service with a VirtualService for sticky canary")
