"""`blueGreen`: preview the new version by header, switch everyone in one snapshot, keep the old one warm.

```json
{"type": "blueGreen", "service": "reviews", "activeSubset": "v1", "previewSubset": "v2",
 "preview": {"headers": {"x-preview": "true"}}, "autoPromotionSeconds": 0, "scaleDownDelay": 60,
 "scaleDown": ["reviews-v1"]}
```

`"preview": {"hosts": ["preview.bookinfo.example.com"], "gateways": ["bookinfo-gateway"]}` previews on a second
host instead (or as well): a Graylane-managed VirtualService `SERVICE-preview` sends everything arriving at the
gateway for those hosts to the new subset (for a service the gateway routes to, e.g. productpage); it is removed
after the switch and on abort.

Argo Rollouts' blue/green (`activeService`/`previewService`, `autoPromotionEnabled`, `autoPromotionSeconds`,
`prePromotionAnalysis`, `scaleDownDelaySeconds`) over subsets of one service: the stage runs canaryRollout's
machinery with these steps: keep 100% on the active subset, add the preview route (requests matching
`preview.headers` or `preview.cookie` go to the new subset), the optional pre-promotion `analysis`, a pause
(`autoPromotionSeconds`, or until a person answers Promote / Abort when `autoPromotionEnabled` is false, the
default), then the switch: 100% to the new subset and the preview route removed, in one snapshot. The old version
stays warm for `scaleDownDelay` seconds (default 30): Abort in that window is one snapshot back. `services` moves
several services together, as canaryRollout does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines.stages.canary_rollout import CanaryRolloutStage, RolloutTask
from graylane.pipelines.tasks import Task

PREVIEW_ROUTE = "preview"


def blue_green_steps(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    preview = ctx.get("preview") or {}
    if not isinstance(preview, dict) or not ({"headers", "cookie", "match", "hosts"} & set(preview)):
        raise ValidationError("blueGreen: `preview` needs headers (e.g. {headers: {x-preview: \"true\"}}), a "
                              "cookie, an Argo-style match, or hosts and gateways (a second host)")
    steps: list[dict[str, Any]] = [{"setWeight": 0}]
    if "hosts" in preview:
        hosts, gateways = preview.get("hosts"), preview.get("gateways")
        if not _names(hosts) or not _names(gateways):
            raise ValidationError("blueGreen: a preview host needs `hosts` and `gateways`, each a list of names "
                                  "(e.g. {hosts: [preview.bookinfo.example.com], gateways: [bookinfo-gateway]})")
        if len(ctx.get("services") or [None]) > 1:
            raise ValidationError("blueGreen: a preview host previews one service; use a header preview for several")
        steps.append({"setPreviewHost": {"hosts": hosts, "gateways": gateways}})
    if {"headers", "cookie", "match"} & set(preview):
        route = {"name": PREVIEW_ROUTE, **{k: v for k, v in preview.items() if k not in ("hosts", "gateways")}}
        steps.append({"setHeaderRoute": route})
    if ctx.get("prePromotionAnalysis"):
        steps.append({"analysis": ctx["prePromotionAnalysis"]})
    auto = ctx.get("autoPromotionEnabled", False)
    if ctx.get("autoPromotionSeconds"):
        steps.append({"pause": {"duration": ctx["autoPromotionSeconds"]}})
    elif not auto:
        steps.append({"pause": {}})
    return steps


def _names(raw: Any) -> bool:
    return isinstance(raw, list) and bool(raw) and all(isinstance(x, str) and x for x in raw)


def _as_rollout(ctx: dict[str, Any]) -> dict[str, Any]:
    out = dict(ctx)
    out.setdefault("stableSubset", ctx.get("activeSubset"))
    out.setdefault("canarySubset", ctx.get("previewSubset"))
    out.setdefault("scaleDownDelay", 30)
    return out


class BlueGreenTask(RolloutTask):
    name = "runBlueGreen"

    def steps(self, ctx: dict[str, Any]) -> Any:
        return blue_green_steps(ctx)

    async def run(self, stage: Any) -> Any:
        return await super().run(dataclasses.replace(stage, context=_as_rollout(stage.context)))


class BlueGreenStage(CanaryRolloutStage):
    type = "blueGreen"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [BlueGreenTask()]


DEFINITION = BlueGreenStage()
