"""Editing a service's VirtualService for progressive delivery: pure functions on dict bodies, no I/O.

The **managed route** of a service is the `http` rule that carries its default traffic: every destination of it
is a subset of the service's host. Weights change there, in place; every other rule the user wrote (matches,
retries, timeouts, faults, mirrors, other hosts) is left exactly as it was. Rules Graylane adds (a header route
to the canary, a mirror route) carry a `name` recorded in the annotation `graylane.io/managed-routes`, sit
above the managed route (Argo Rollouts' `managedRoutes`: above the user's routes), and are removed by name.

A VirtualService Graylane had to create (none routed the service) is annotated `graylane.io/managed-by:
graylane`. An HTTPRoute body (a member with `httpRoute`) is edited by pipelines.httproute_edit instead: weights
only, named by backend Service.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import httproute_edit

ISTIO_API = "networking.istio.io/v1"
MANAGED_BY = "graylane.io/managed-by"
MANAGED_ROUTES = "graylane.io/managed-routes"
MIRROR_ON_MANAGED = "graylane.io/managed-mirror"  # the managed route itself carries Graylane's mirror
STICKY = "graylane.io/sticky"  # sticky canary (resources/sticky.py): JSON, {"cookie": {...}} or {"header": name}
# Metadata a write keeps from a live body; the rest (uid, managedFields, generation, ...) is the server's.
_KEPT_METADATA = ("name", "namespace", "labels", "annotations", "resourceVersion")


def short_host(host: Any) -> str:
    """`reviews.default.svc.cluster.local` -> `reviews`."""
    return str(host or "").split(".")[0]


def check_weights(weights: Any, where: str) -> dict[str, int]:
    """`{subset: percent}` with whole percents 0-100 adding up to 100, or a ValidationError saying what is wrong."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValidationError(f"{where}: weights must be a map of subset -> percent, e.g. {{v1: 90, v2: 10}}")
    out: dict[str, int] = {}
    for subset, raw in weights.items():
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise ValidationError(f"{where}: weight of {subset!r} is {raw!r}, not a whole percent") from None
        if not 0 <= value <= 100:
            raise ValidationError(f"{where}: weight of {subset!r} is {value}, outside 0-100")
        out[str(subset)] = value
    if sum(out.values()) != 100:
        shown = ", ".join(f"{k}={v}" for k, v in out.items())
        raise ValidationError(f"{where}: weights add up to {sum(out.values())}, not 100 ({shown})")
    return out


def routes_host(vs: Mapping[str, Any], service: str) -> bool:
    """Whether the VirtualService's `hosts` name the service (short name or any FQDN of it)."""
    return any(short_host(h) == service for h in (vs.get("spec") or {}).get("hosts") or [])


def _subset_only(rule: Any, service: str) -> bool:
    dests = [r.get("destination") for r in (rule.get("route") or []) if isinstance(r, dict)] \
        if isinstance(rule, dict) else []
    return bool(dests) and all(isinstance(d, dict) and short_host(d.get("host")) == service and d.get("subset")
                               for d in dests)


def managed_names(vs: Mapping[str, Any]) -> list[str]:
    raw = ((vs.get("metadata") or {}).get("annotations") or {}).get(MANAGED_ROUTES)
    try:
        names = json.loads(raw) if raw else []
    except ValueError:
        names = []
    return [str(n) for n in names] if isinstance(names, list) else []


def managed_route_index(vs: Mapping[str, Any], service: str) -> int | None:
    """Index in `spec.http` of the service's managed route: the last rule without `match` whose destinations are
    all subsets of the host (the default route), else the last such rule; never a rule Graylane added."""
    rules = (vs.get("spec") or {}).get("http") or []
    ours = set(managed_names(vs))
    candidates = [i for i, r in enumerate(rules) if _subset_only(r, service) and r.get("name") not in ours]
    default = [i for i in candidates if not rules[i].get("match")]
    if default:
        return default[-1]
    return candidates[-1] if candidates else None


def _is_httproute(body: Mapping[str, Any]) -> bool:
    return body.get("kind") == "HTTPRoute"


def route_weights(vs: Mapping[str, Any], service: str) -> dict[str, int]:
    """The managed route's `{subset: weight}` (a lone destination without a weight has 100)."""
    if _is_httproute(vs):
        return httproute_edit.route_weights(vs)
    idx = managed_route_index(vs, service)
    if idx is None:
        return {}
    route = vs["spec"]["http"][idx].get("route") or []
    one = len(route) == 1
    return {str(r["destination"]["subset"]): int(r.get("weight", 100 if one else 0)) for r in route}


def new_virtual_service(service: str, namespace: str, name: str | None = None) -> dict[str, Any]:
    """An empty Graylane-managed VirtualService for the service (its managed route is added by `set_weights`)."""
    return {"apiVersion": ISTIO_API, "kind": "VirtualService",
            "metadata": {"name": name or service, "namespace": namespace, "annotations": {MANAGED_BY: "graylane"}},
            "spec": {"hosts": [service], "http": []}}


def writable(vs: Mapping[str, Any]) -> dict[str, Any]:
    """A copy fit to apply: the user's fields and metadata, without what the server keeps (uid, status, ...)."""
    body = copy.deepcopy(dict(vs))
    md = body.get("metadata") or {}
    body["metadata"] = {k: md[k] for k in _KEPT_METADATA if k in md}
    body.pop("status", None)
    return body


def _destinations(service: str, weights: Mapping[str, int], previous: list[Any]) -> list[dict[str, Any]]:
    """Route entries for the weights; an entry that already routed a subset keeps its other fields (port,
    headers)."""
    by_subset = {str((r.get("destination") or {}).get("subset")): r for r in previous if isinstance(r, dict)}
    host = next((r["destination"]["host"] for r in previous if isinstance(r, dict) and r.get("destination")),
                service)
    out = []
    for subset, weight in weights.items():
        entry = copy.deepcopy(by_subset.get(subset) or {"destination": {"host": host, "subset": subset}})
        entry["weight"] = int(weight)
        out.append(entry)
    return out


def set_weights(vs: Mapping[str, Any], service: str, weights: Mapping[str, int]) -> dict[str, Any]:
    """The VirtualService with the managed route's weights set (a default route is appended if there is none);
    Graylane's mirror routes follow the same weights. Nothing else changes."""
    if _is_httproute(vs):
        return httproute_edit.set_weights(vs, weights)
    out = copy.deepcopy(dict(vs))
    rules = out.setdefault("spec", {}).setdefault("http", [])
    idx = managed_route_index(out, service)
    if idx is None:
        rules.append({"route": _destinations(service, weights, [])})
        idx = len(rules) - 1
    else:
        rules[idx]["route"] = _destinations(service, weights, rules[idx].get("route") or [])
    ours = set(managed_names(out))
    for rule in rules:
        if rule.get("name") in ours and rule.get("mirror"):
            rule["route"] = copy.deepcopy(rules[idx]["route"])
    return out


def set_sticky(vs: Mapping[str, Any], sticky: Mapping[str, Any] | None) -> dict[str, Any]:
    """The VirtualService with the sticky-canary annotation set to `sticky` (None: removed). Nothing else changes."""
    if _is_httproute(vs) and sticky:
        raise httproute_edit.refuse("sticky canary", (vs.get("metadata") or {}).get("name"))
    out = copy.deepcopy(dict(vs))
    notes = out.setdefault("metadata", {}).setdefault("annotations", {})
    if sticky:
        notes[STICKY] = json.dumps(dict(sticky), sort_keys=True)
    else:
        notes.pop(STICKY, None)
    return out


def _set_managed(out: dict[str, Any], names: list[str]) -> None:
    notes = out.setdefault("metadata", {}).setdefault("annotations", {})
    if names:
        notes[MANAGED_ROUTES] = json.dumps(names)
    else:
        notes.pop(MANAGED_ROUTES, None)


def header_matches(spec: Any, where: str) -> list[dict[str, Any]]:
    """Istio `match` blocks from a step's match: Argo's `[{headerName, headerValue: {exact|regex|prefix}}]` (one
    block, ANDed), or Graylane's short forms `{headers: {end-user: jason}}` and `{cookie: {canary: always}}`."""
    headers: dict[str, dict[str, str]] = {}
    if isinstance(spec, list):
        for item in spec:
            if not isinstance(item, dict) or not item.get("headerName"):
                raise ValidationError(f"{where}: each match needs headerName and headerValue")
            value = item.get("headerValue")
            if isinstance(value, str):
                value = {"exact": value}
            if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("exact", "regex", "prefix"):
                raise ValidationError(f"{where}: headerValue of {item['headerName']!r} must be one of "
                                      "{exact|regex|prefix: value}")
            headers[str(item["headerName"]).lower()] = {k: str(v) for k, v in value.items()}
    elif isinstance(spec, dict):
        for name, value in (spec.get("headers") or {}).items():
            headers[str(name).lower()] = {k: str(v) for k, v in value.items()} if isinstance(value, dict) \
                else {"exact": str(value)}
        for name, value in (spec.get("cookie") or spec.get("cookies") or {}).items():
            headers["cookie"] = {"regex": f"^(.*?;\\s*)?({_re(str(name))}={_re(str(value))})(;.*)?$"}
    if not headers:
        raise ValidationError(f"{where}: the route needs a match (headers or a cookie)")
    return [{"headers": headers}]


def _re(text: str) -> str:
    return "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in text)


def _insert_managed(out: dict[str, Any], service: str, rule: dict[str, Any]) -> None:
    """Put a named rule of Graylane's above the user's rules, after Graylane's earlier ones; replace a same-named
    one in place."""
    rules = out.setdefault("spec", {}).setdefault("http", [])
    names = managed_names(out)
    for i, existing in enumerate(rules):
        if existing.get("name") == rule["name"]:
            rules[i] = rule
            break
    else:
        position = sum(1 for r in rules if r.get("name") in names)
        rules.insert(position, rule)
    if rule["name"] not in names:
        names.append(rule["name"])
    _set_managed(out, names)


def _policies(vs: Mapping[str, Any], service: str) -> dict[str, Any]:
    """The managed route's timeout/retries/headers/corsPolicy, so canary users get the same policies."""
    idx = managed_route_index(vs, service)
    if idx is None:
        return {}
    rule = vs["spec"]["http"][idx]
    return {k: copy.deepcopy(rule[k]) for k in ("timeout", "retries", "headers", "corsPolicy") if k in rule}


def set_header_route(vs: Mapping[str, Any], service: str, name: str, match: list[dict[str, Any]],
                     subset: str) -> dict[str, Any]:
    """Add (or replace) the named rule sending matching requests to `subset`, above the weighted route."""
    if _is_httproute(vs):
        names = managed_names(vs)
        out = httproute_edit.set_header_rule(vs, name, match, subset, names)
        _set_managed(out, [*names, name] if name not in names else names)
        return out
    out = copy.deepcopy(dict(vs))
    host = _host_of(out, service)
    rule = {"name": name, "match": match, **_policies(out, service),
            "route": [{"destination": {"host": host, "subset": subset}}]}
    _insert_managed(out, service, rule)
    return out


def set_mirror_route(vs: Mapping[str, Any], service: str, name: str, percentage: float, subset: str,
                     match: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mirror `percentage`% of the service's traffic to `subset`. Without a match the managed route itself mirrors
    (the weights are kept); with one, a named rule for the matching requests routes as the managed route does and
    mirrors."""
    if _is_httproute(vs):
        names = managed_names(vs)
        out = httproute_edit.set_mirror(vs, name, percentage, subset, match, names)
        if match:
            _set_managed(out, [*names, name] if name not in names else names)
        else:
            out.setdefault("metadata", {}).setdefault("annotations", {})[MIRROR_ON_MANAGED] = \
                json.dumps({"name": name, "backend": subset})
        return out
    out = copy.deepcopy(dict(vs))
    host = _host_of(out, service)
    mirror = {"mirror": {"host": host, "subset": subset}, "mirrorPercentage": {"value": float(percentage)}}
    idx = managed_route_index(out, service)
    if idx is None:
        raise ValidationError(f"VirtualService {(out.get('metadata') or {}).get('name')}: {service} has no "
                              "weighted route to mirror yet", hint="set a weight first (setWeight)")
    if not match:
        out["spec"]["http"][idx].update(mirror)
        out["metadata"].setdefault("annotations", {})[MIRROR_ON_MANAGED] = name
        return out
    rule = {"name": name, "match": match, **_policies(out, service),
            "route": copy.deepcopy(out["spec"]["http"][idx]["route"]), **mirror}
    _insert_managed(out, service, rule)
    return out


def remove_route(vs: Mapping[str, Any], service: str, name: str) -> dict[str, Any]:
    """Remove Graylane's rule (or managed-route mirror) called `name`; the user's rules stay."""
    if _is_httproute(vs):
        return _remove_httproute_rule(vs, name)
    out = copy.deepcopy(dict(vs))
    names = managed_names(out)
    rules = (out.get("spec") or {}).get("http") or []
    if name in names:
        out["spec"]["http"] = [r for r in rules if r.get("name") != name]
        names.remove(name)
        _set_managed(out, names)
    notes = (out.get("metadata") or {}).get("annotations") or {}
    if notes.get(MIRROR_ON_MANAGED) == name:
        idx = managed_route_index(out, service)
        if idx is not None:
            out["spec"]["http"][idx].pop("mirror", None)
            out["spec"]["http"][idx].pop("mirrorPercentage", None)
        notes.pop(MIRROR_ON_MANAGED, None)
    return out


def _remove_httproute_rule(route: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = dict(route)
    names = managed_names(out)
    if name in names:
        out = httproute_edit.remove_rule(out, name)
        names.remove(name)
        _set_managed(out, names)
    notes = (out.get("metadata") or {}).get("annotations") or {}
    try:
        mirror = json.loads(notes.get(MIRROR_ON_MANAGED) or "null")
    except ValueError:
        mirror = None
    if isinstance(mirror, dict) and mirror.get("name") == name:
        out = httproute_edit.remove_mirror(out, str(mirror.get("backend")))
        out["metadata"]["annotations"].pop(MIRROR_ON_MANAGED, None)
    return out


def remove_managed_routes(vs: Mapping[str, Any], service: str) -> dict[str, Any]:
    """Remove every rule and mirror Graylane added (abort, promotion)."""
    out = copy.deepcopy(dict(vs))
    for name in managed_names(out):
        out = remove_route(out, service, name)
    mirror = ((out.get("metadata") or {}).get("annotations") or {}).get(MIRROR_ON_MANAGED)
    if mirror and _is_httproute(out):  # {"name", "backend"} there: the filter is found by its backend
        try:
            mirror = (json.loads(mirror) or {}).get("name")
        except (ValueError, AttributeError):
            mirror = None
    if mirror:
        out = remove_route(out, service, str(mirror))
    return out


def _host_of(vs: Mapping[str, Any], service: str) -> str:
    idx = managed_route_index(vs, service)
    if idx is not None:
        return str(vs["spec"]["http"][idx]["route"][0]["destination"]["host"])
    return service


def routed_subsets(vs: Mapping[str, Any], service: str) -> set[str]:
    """Every subset of the service some rule of the VirtualService may send traffic to (weight > 0, or mirrored)."""
    if _is_httproute(vs):
        return {name for name, weight in httproute_edit.route_weights(vs).items() if weight > 0}
    out: set[str] = set()
    for rule in (vs.get("spec") or {}).get("http") or []:
        route = rule.get("route") or []
        for r in route:
            dest = r.get("destination") or {}
            if short_host(dest.get("host")) == service and dest.get("subset") and \
                    (len(route) == 1 or int(r.get("weight", 0)) > 0):
                out.add(str(dest["subset"]))
        mirror = rule.get("mirror") or {}
        if short_host(mirror.get("host")) == service and mirror.get("subset"):
            out.add(str(mirror["subset"]))
    return out


def pick_virtual_service(candidates: list[dict[str, Any]], service: str, name: str | None) -> dict[str, Any] | None:
    """The VirtualService that routes the service: the named one, else one whose hosts name the service and that
    has a managed route for it (a Graylane-managed one first), else one whose hosts name it."""
    if name:
        return next((vs for vs in candidates if (vs.get("metadata") or {}).get("name") == name), None)
    hosting = [vs for vs in candidates if routes_host(vs, service) and not (vs.get("spec") or {}).get("gateways")]
    routed = [vs for vs in hosting if managed_route_index(vs, service) is not None]
    routed.sort(key=lambda vs: ((vs.get("metadata") or {}).get("annotations") or {}).get(MANAGED_BY) != "graylane")
    if routed:
        return routed[0]
    return hosting[0] if hosting else None
