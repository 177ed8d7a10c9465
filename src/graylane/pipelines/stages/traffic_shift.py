"""`trafficShift`: set route weights by subset, for one service or several moved as one release.

```json
{"type": "trafficShift", "service": "reviews", "weights": {"v1": 90, "v2": 10}, "account": "local",
 "namespace": "default", "virtualService": "reviews"}
{"type": "trafficShift", "services": [{"service": "reviews", "weights": {"v1": 50, "v2": 50}},
                                      {"service": "ratings", "weights": {"v1": 50, "v2": 50}}]}
```

The managed route of each service's VirtualService is edited in place (pipelines.routes_edit); a Graylane-managed
VirtualService is created when none routes the service. With the Gateway API, `"httpRoute": "reviews"` names the
HTTPRoute and the weights name backend Services (`{"reviews-v1": 90, "reviews-v2": 10}`, Istio's per-version
Services); its default rule's backendRef weights are edited in place (pipelines.httproute_edit). Subsets no
DestinationRule defines, or whose pods are not ready (for an HTTPRoute: backend Services that do not exist), are
refused before anything is applied (`skipRouteCheck: true` applies anyway). Every member goes in one apply: one
store transaction and one data-plane snapshot locally, one pass on Kubernetes; the stage then waits for the data
plane's ACK (local), Istio's status (Kubernetes) or the HTTPRoute's parents' status.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import route_check, traffic
from graylane.pipelines import routes_edit as edit
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def members(context: dict[str, Any], where: str) -> list[tuple[traffic.Member, dict[str, int]]]:
    """(member, weights) for `service`+`weights` or each entry of `services`."""
    namespace = str(context.get("namespace") or context.get("namespaceOverride") or "default")
    raw = context.get("services")
    if raw is None:
        raw = [{k: context.get(k) for k in ("service", "weights", "virtualService", "httpRoute")}]
    if not isinstance(raw, list) or not raw:
        raise ValidationError(f"{where}: name a `service` with `weights`, or `services: [{{service, weights}}]`")
    out = []
    for i, item in enumerate(raw):
        at = f"{where} services[{i}]" if context.get("services") is not None else where
        member = traffic.Member.parse(item, namespace, at)
        out.append((member, edit.check_weights(item.get("weights"), f"{at} ({member.service})")))
    seen = [m.service for m, _ in out]
    if len(set(seen)) != len(seen):
        raise ValidationError(f"{where}: a service is named twice: {', '.join(seen)}")
    return out


class ShiftTrafficTask(Task):
    name = "shiftTraffic"

    async def run(self, stage: StageView) -> TaskResult:
        where = f"stage {stage.name!r}"
        shifts = members(stage.context, where)
        target = await stage.services.target(stage.context.get("account"), None)
        edits: list[tuple[traffic.Member, traffic.Edit]] = [
            (m, partial(edit.set_weights, service=m.service, weights=w)) for m, w in shifts]
        applied = await traffic.apply(target, edits, actor=stage.actor,
                                      checked=not stage.context.get(route_check.OPTION), timeout=_timeout(stage))
        weights = {m.service: w for m, w in shifts}
        return TaskResult.succeeded({"trafficShift.applied": applied},
                                    {"weights": weights, "virtualServices": [a["key"][3] for a in applied]})


def _timeout(stage: StageView) -> float:
    if stage.context.get("stageTimeoutMs"):
        return max(1.0, int(stage.context["stageTimeoutMs"]) / 1000 -
                   (stage.now_ms - stage.start_time - stage.paused_ms) / 1000)
    return traffic.DEFAULT_WAIT_S


class TrafficShiftStage(StageDefinition):
    type = "trafficShift"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [ShiftTrafficTask()]


DEFINITION = TrafficShiftStage()
