"""Editing a service's Gateway API HTTPRoute for progressive delivery: backendRef weights, pure functions, no I/O.

With the Gateway API each version is its own Service (Istio's `bookinfo-versions.yaml`: `reviews-v1`,
`reviews-v2`), and an HTTPRoute rule splits traffic by `backendRefs[].weight`, as Argo Rollouts' and Flagger's
Gateway API integrations do (a stable and a canary Service). The **managed rule** is the rule carrying the
default traffic: the last rule without `matches` whose backendRefs are all Services (else the last rule with
backendRefs). Weights change there, in place; the user's other rules, filters, timeouts and each backendRef's own
fields (port, filters) stay as they were. Weights name backend Services: `{"reviews-v1": 90, "reviews-v2": 10}`;
a Service named for the first time gets the port of the rule's other backendRefs; a Service left out of the map
is dropped from the rule; weight 0 keeps it listed with no traffic.
"""

from __future__ import annotations

import copy
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


def refuse(what: str, name: Any) -> ValidationError:
    """A managed-route operation the Gateway API path does not offer (header, mirror routes; sticky canary)."""
    return ValidationError(f"HTTPRoute {name}: {what} is not supported on an HTTPRoute (weights only)",
                           hint="route the service with a VirtualService for header and mirror routes")
