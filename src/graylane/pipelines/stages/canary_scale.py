"""canaryRollout's `setCanaryScale` step: the canary Deployment's replicas apart from its traffic weight (Argo Rollouts'
`setCanaryScale`). This module owns the step's validation, finding each member's canary and stable Deployments, and
the replica arithmetic; canary_rollout.py calls it from its steps, its promotion and its abort.

- `{"replicas": N}`: the canary runs N replicas.
- `{"weight": P}`: ceil(P% of the stable Deployment's replicas), as Argo's ceil(weight x spec.replicas / 100).
- `{"matchTrafficWeight": true}`: the canary follows the traffic weight: ceil(weight% of the stable's replicas)
  now and at every later `setWeight`.

Until a rollout's first setCanaryScale step the stage leaves the canary's replicas to its Deployment (the canary
was deployed before the stage). Once it has run, the stage manages them: at promotion the canary gets the stable's
replicas (Argo: the finished canary runs spec.replicas), and on abort it is scaled to 0 once traffic is back on the
stable version (Argo ignores setCanaryScale on abort, so the canary follows weight 0).

The Deployments: `canaryDeployment` / `stableDeployment` (on the stage or a `services` member), else the one
Deployment in the member's namespace whose pod labels carry the Service's selector and the subset's labels (the
DestinationRule's subset; with `httpRoute`, the canary/stable Service's selector).
"""

from __future__ import annotations

import math
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.document import ResourceKey

KEYS = ("replicas", "weight", "matchTrafficWeight")
MAX_REPLICAS = 10_000
WAIT_S = 600.0
ISTIO = "networking.istio.io"


def check(raw: Any, where: str) -> dict[str, Any]:
    """The step's config, or a ValidationError naming the field."""
    if not isinstance(raw, dict):
        raise ValidationError(f"{where}: setCanaryScale is an object with one of {', '.join(KEYS)} (got {raw!r})")
    given = [k for k in KEYS if k in raw]
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ValidationError(f"{where}: setCanaryScale has no field {unknown[0]!r} (one of {', '.join(KEYS)})")
    if len(given) != 1:
        raise ValidationError(f"{where}: setCanaryScale takes exactly one of {', '.join(KEYS)} (got "
                              f"{', '.join(given) or 'none'})")
    key, value = given[0], raw[given[0]]
    if key == "replicas" and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value <= MAX_REPLICAS):
        raise ValidationError(f"{where}: setCanaryScale.replicas must be a whole number from 0 to {MAX_REPLICAS} "
                              f"(got {value!r})")
    if key == "weight" and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100):
        raise ValidationError(f"{where}: setCanaryScale.weight must be a whole percent from 0 to 100 (got {value!r})")
    if key == "matchTrafficWeight" and value is not True:
        raise ValidationError(f"{where}: setCanaryScale.matchTrafficWeight must be true (got {value!r})")
    return {key: value}


def desired(mode: dict[str, Any], stable_replicas: int, traffic_weight: int) -> int:
    """The canary's replicas under `mode` (check()'s result)."""
    if "replicas" in mode:
        return int(mode["replicas"])
    weight = traffic_weight if mode.get("matchTrafficWeight") else int(mode["weight"])
    return math.ceil(weight * stable_replicas / 100)


def _labels(body: dict[str, Any]) -> dict[str, Any]:
    return ((((body.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}


async def _selector(target: Any, namespace: str, service: str) -> dict[str, Any] | None:
    body = await target.get(ResourceKey("", "Service", namespace, service))
    return ((body or {}).get("spec") or {}).get("selector") if body else None


async def deployment(target: Any, member: Any, subset: str, named: Any, where: str) -> str:
    """The Deployment running the member's `subset` (a subset, or a Service with httpRoute): `named`, or found."""
    if named:
        return str(named)
    ns = member.namespace
    if member.http_route:
        want = await _selector(target, ns, subset)
        if not want:
            raise ValidationError(f"{where}: setCanaryScale: Service {ns}/{subset} has no selector to find its "
                                  f"Deployment", hint="name it with canaryDeployment / stableDeployment")
    else:
        want = dict(await _selector(target, ns, member.service) or {})
        for dr in await target.list("DestinationRule", ns, ISTIO):
            if str((dr.get("spec") or {}).get("host") or "").split(".")[0] != member.service:
                continue
            for s in (dr.get("spec") or {}).get("subsets") or []:
                if isinstance(s, dict) and s.get("name") == subset:
                    want.update(s.get("labels") or {})
        if not want:
            want = {"app": member.service, "version": subset}
    found = [str(d["metadata"]["name"]) for d in await target.list("Deployment", ns, "apps")
             if want.items() <= _labels(d).items()]
    if len(found) != 1:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(want.items()))
        what = "no Deployment" if not found else f"{len(found)} Deployments ({', '.join(sorted(found))})"
        raise ValidationError(f"{where}: setCanaryScale: {what} in {ns} with pod labels {labels} (subset "
                              f"{subset!r} of {member.service})",
                              hint="name it with canaryDeployment / stableDeployment")
    return found[0]


async def replicas_of(target: Any, namespace: str, name: str, where: str) -> int:
    body = await target.get(ResourceKey("apps", "Deployment", namespace, name))
    if body is None:
        raise ValidationError(f"{where}: setCanaryScale: Deployment {namespace}/{name} not found")
    return int((body.get("spec") or {}).get("replicas", 1))


async def scale(target: Any, members: list[tuple[Any, str, str, dict[str, Any]]], mode: dict[str, Any] | None,
                traffic_weight: int, *, actor: str, where: str, to: int | None = None,
                wait: bool = True) -> dict[str, Any]:
    """Scale every member's canary Deployment: under `mode`, or to `to`, or (`to` = -1) to its stable's replicas.

    `members`: (member, stable, canary, its item) per member. Returns `context.rollout.canaryScale`'s
    `deployments`: {"namespace/name": {"desired": N, "stable": "namespace/name"}}."""
    out: dict[str, Any] = {}
    keys = []
    for member, stable, canary, item in members:
        ns = member.namespace
        canary_name = await deployment(target, member, canary, item.get("canaryDeployment"), where)
        stable_name = await deployment(target, member, stable, item.get("stableDeployment"), where)
        await replicas_of(target, ns, canary_name, where)  # it exists: a named one may not
        stable_replicas = await replicas_of(target, ns, stable_name, where)
        if to is None:
            assert mode is not None
            want = desired(mode, stable_replicas, traffic_weight)
        else:
            want = stable_replicas if to < 0 else to
        key = ResourceKey("apps", "Deployment", ns, canary_name)
        await target.patch(key, {"spec": {"replicas": want}}, "merge", actor=actor)
        keys.append(key)
        out[f"{ns}/{canary_name}"] = {"desired": want, "stable": f"{ns}/{stable_name}",
                                      "stableReplicas": stable_replicas}
    if wait and keys:
        await target.wait_ready(keys, timeout=WAIT_S)
    return out
