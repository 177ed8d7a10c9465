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

Two stage options (Argo Rollouts' `strategy.canary` fields), checked by `check_options`:

- `dynamicStableScale: true`: the stable Deployment's replicas follow 100 - the canary's weight, ceil((100 - w)% of
  its replicas when the rollout first moved it), shrinking after the traffic has moved to the canary and growing
  back before traffic returns to it (on abort: restored in full before any route change). `scale_stable`.
- `abortScaleDownDelaySeconds: N`: on abort, a canary whose replicas the stage manages keeps them N seconds after
  traffic is back on the stable version, then goes to 0; `0` keeps them (Argo: "does not scale down"); absent,
  it goes to 0 at once, as before the option existed (the abort has already waited for the data plane's ACK).

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
MAX_ABORT_DELAY_S = 86_400
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


def check_options(ctx: dict[str, Any], where: str) -> None:
    """`dynamicStableScale` and `abortScaleDownDelaySeconds` on the stage: a ValidationError naming the field."""
    delay = ctx.get("abortScaleDownDelaySeconds")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int)
                              or not 0 <= delay <= MAX_ABORT_DELAY_S):
        raise ValidationError(f"{where}: abortScaleDownDelaySeconds must be whole seconds from 0 to "
                              f"{MAX_ABORT_DELAY_S} (got {delay!r})")
    dynamic = ctx.get("dynamicStableScale")
    if dynamic is not None and not isinstance(dynamic, bool):
        raise ValidationError(f"{where}: dynamicStableScale must be true or false (got {dynamic!r})")
    if dynamic and ctx.get("scaleDownDelay") not in (None, 0, "", "0", "0s"):
        raise ValidationError(f"{where}: dynamicStableScale cannot be used with scaleDownDelay: the stable is "
                              f"scaled down as the canary's weight grows, so no warm stable is left to keep",
                              hint="remove scaleDownDelay (as Argo Rollouts refuses scaleDownDelaySeconds)")


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
                wait: bool = True, stable_base: dict[str, int] | None = None) -> dict[str, Any]:
    """Scale every member's canary Deployment: under `mode`, or to `to`, or (`to` = -1) to its stable's replicas.

    `members`: (member, stable, canary, its item) per member. `stable_base`: {"namespace/name": replicas} of
    stables that dynamicStableScale has resized, counted at their size before the rollout. Returns
    `context.rollout.canaryScale`'s `deployments`: {"namespace/name": {"desired": N, "stable": "namespace/name"}}."""
    out: dict[str, Any] = {}
    keys = []
    for member, stable, canary, item in members:
        ns = member.namespace
        canary_name = await deployment(target, member, canary, item.get("canaryDeployment"), where)
        stable_name = await deployment(target, member, stable, item.get("stableDeployment"), where)
        await replicas_of(target, ns, canary_name, where)  # it exists: a named one may not
        stable_replicas = (stable_base or {}).get(f"{ns}/{stable_name}")
        if stable_replicas is None:
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


async def scale_stable(target: Any, members: list[tuple[Any, str, str, dict[str, Any]]], canary_weight: int,
                       known: dict[str, Any], *, actor: str, where: str) -> dict[str, Any]:
    """dynamicStableScale: every member's stable Deployment to ceil((100 - canary_weight)% of its replicas before
    the rollout), then waits for it. `known`: the previous result (each stable's `replicas` before the rollout is
    read from it, or from the Deployment the first time). Returns `context.rollout.stableScale`:
    {"namespace/name": {"desired": N, "replicas": its replicas before the rollout}}."""
    out: dict[str, Any] = {}
    keys = []
    for member, stable, _canary, item in members:
        ns = member.namespace
        name = await deployment(target, member, stable, item.get("stableDeployment"), where)
        full = f"{ns}/{name}"
        base = int((known.get(full) or {}).get("replicas", -1))
        if base < 0:
            base = await replicas_of(target, ns, name, where)
        want = math.ceil((100 - canary_weight) * base / 100)
        key = ResourceKey("apps", "Deployment", ns, name)
        await target.patch(key, {"spec": {"replicas": want}}, "merge", actor=actor)
        keys.append(key)
        out[full] = {"desired": want, "replicas": base}
    if keys:
        await target.wait_ready(keys, timeout=WAIT_S)
    return out
