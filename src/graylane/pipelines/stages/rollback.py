"""Automatic rollback for the analysis stages (`kayentaCanary`, `analysis`): Graylane's `rollback` stage option.

When the stage's analysis failed, the `rollbackOnFailure` task, before the stage ends TERMINAL:

1. moves the VirtualService's traffic from the canary subset back to the baseline subset, at once
   (`durationSeconds: 0`, the default) or in `steps` equal steps over `durationSeconds` (to warm the baseline,
   argo-rollouts #3888), waiting for the data plane's ACK after each step;
2. never routes to a baseline with no ready endpoints: each step is checked as deployManifest's route check does
   (IST0101 / IST0173); a baseline that is not ready is waited for (`readyTimeoutSeconds`, default 60) and then
   the rollback stops with the route left as it was;
3. only then (make-before-break) scales down (`scaleDownManifests`) and deletes (`deleteManifests`) the canary,
   and removes its subset from the DestinationRule (`removeSubset: true`).

```json
"rollback": {"virtualService": "reviews", "location": "default", "baseline": "v1", "canary": "v2",
             "durationSeconds": 0, "steps": 1, "deleteManifests": ["deployment reviews-v2"]}
```

The task is a no-op when the analysis passed. It is re-entrant: its progress (`rollbackState`) is in the context.

`PATCH /executions/{id}/stages/{stage}` with `{"abortAnalysis": "why"}` aborts a running analysis stage (the
running interval or measurement stops within about two seconds) and its failure path runs: the rollback, then
TERMINAL with `analysis aborted by <user>: why` (`AbortableAnalysis`, mixed into both analysis stage types).
"""

from __future__ import annotations

import copy
from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import manifests, route_check
from graylane.pipelines.tasks import StageView, Task, TaskResult
from graylane.resources.document import ISTIO_NETWORKING, Document, ResourceKey, Source

FAILED_KEY = "analysisFailed"  # set by the analysis task: the reason the analysis failed
DEFAULT_READY_TIMEOUT_S = 60.0


def _config(stage: StageView) -> dict[str, Any]:
    raw = stage.context.get("rollback")
    if not isinstance(raw, dict):
        raise ValidationError("rollback must be an object", where=f"stage {stage.name!r}")
    for key in ("virtualService", "baseline", "canary"):
        if not str(raw.get(key) or "").strip():
            raise ValidationError(f"rollback.{key} is required", where=f"stage {stage.name!r}")
    return raw


def shifted_routes(spec: dict[str, Any], baseline: str, canary: str, fraction_left: float) -> tuple[dict[str, Any],
                                                                                                   bool]:
    """The VirtualService spec with `fraction_left` of the canary's original weight still on the canary (0: all of
    it moved to the baseline, the canary destination removed). Returns (spec, whether any route named the canary)."""
    out = copy.deepcopy(spec)
    touched = False
    for rule in out.get("http") or []:
        routes = [r for r in rule.get("route") or [] if isinstance(r, dict)]
        canary_routes = [r for r in routes if (r.get("destination") or {}).get("subset") == canary]
        if not canary_routes:
            continue
        touched = True
        moved_total = 0
        for r in canary_routes:
            weight = int(r.get("weight") or (100 if len(routes) == 1 else 0))
            keep = int(round(weight * fraction_left))
            moved_total += weight - keep
            r["weight"] = keep
        base = next((r for r in routes if (r.get("destination") or {}).get("subset") == baseline), None)
        if base is None:
            host = (canary_routes[0].get("destination") or {}).get("host")
            base = {"destination": {"host": host, "subset": baseline}, "weight": 0}
            routes.insert(0, base)
        base["weight"] = int(base.get("weight") or (100 if len(routes) == 1 else 0)) + moved_total
        if fraction_left <= 0:
            routes = [r for r in routes if (r.get("destination") or {}).get("subset") != canary]
        if len(routes) == 1:
            routes[0]["weight"] = 100
        rule["route"] = routes
    return out, touched


def _vs_document(live: dict[str, Any], spec: dict[str, Any]) -> Document:
    md = live.get("metadata") or {}
    body = {"apiVersion": live.get("apiVersion") or f"{ISTIO_NETWORKING}/v1", "kind": "VirtualService",
            "metadata": {k: md[k] for k in ("name", "namespace", "labels", "annotations") if md.get(k)},
            "spec": spec}
    return Document(body=body, source=Source("<rollback>", 1, 0))


class RollbackTask(Task):
    """`rollbackOnFailure`: see the module docstring."""

    name = "rollbackOnFailure"
    backoff_s = 1.0

    async def run(self, stage: StageView) -> TaskResult:
        if not stage.context.get(FAILED_KEY):
            return TaskResult.succeeded({"rollbackState": {"done": False, "reason": "the analysis passed"}})
        cfg = _config(stage)
        state = dict(stage.context.get("rollbackState") or {})
        if state.get("done"):
            return TaskResult.succeeded()
        where = f"stage {stage.name!r}"
        location = str(cfg.get("location") or stage.context.get("location") or "default")
        account = cfg.get("account") or stage.context.get("account")
        target = await stage.services.target(account, None)
        steps = max(1, int(cfg.get("steps") or 1)) if float(cfg.get("durationSeconds") or 0) > 0 else 1
        duration = float(cfg.get("durationSeconds") or 0)
        step = int(state.get("step") or 1)
        started = state.setdefault("startedMs", stage.now_ms)
        log: list[str] = list(state.get("log") or [])
        key = ResourceKey(ISTIO_NETWORKING, "VirtualService", location, str(cfg["virtualService"]))
        if not state.get("routed"):
            live_vs = await target.get(key)
            if live_vs is None:
                log.append(f"VirtualService {location}/{key.name} not found: no route to restore")
                state["routed"] = True
            else:
                spec = state.get("originalSpec") or live_vs.get("spec") or {}
                state["originalSpec"] = spec
                new_spec, touched = shifted_routes(spec, str(cfg["baseline"]), str(cfg["canary"]),
                                                   1 - step / steps)
                if not touched:
                    log.append(f"VirtualService {location}/{key.name} sends nothing to {cfg['canary']}")
                    state["routed"] = True
                else:
                    doc = _vs_document(live_vs, new_spec)
                    live = await route_check.live_resources(target)
                    blocking = route_check.blocking_findings([doc], live)
                    if blocking:
                        waited = (stage.now_ms - started) / 1000
                        limit = float(cfg.get("readyTimeoutSeconds") or DEFAULT_READY_TIMEOUT_S)
                        why = route_check.describe(blocking)
                        waiting = route_check.not_ready(live)
                        if waiting:
                            why += f" ({'; '.join(waiting)})"
                        if waited < limit:
                            return TaskResult.running(1.0, {"rollbackState": {**state, "waitingFor": why}})
                        return TaskResult.terminal(
                            f"{where}: the analysis failed ({stage.context[FAILED_KEY]}), and the rollback stopped: "
                            f"the baseline {cfg['baseline']} has no ready endpoints after {limit:g}s: {why}; the "
                            "route was left as it was")
                    await target.apply([doc], actor=stage.actor)
                    await target.wait_ready([key], timeout=60.0)
                    share = [f"{(r.get('destination') or {}).get('subset')} {r.get('weight', 100)}%"
                             for rule in new_spec.get("http") or [] for r in rule.get("route") or []]
                    log.append(f"step {step}/{steps}: VirtualService {location}/{key.name} -> {', '.join(share)}")
                    if step < steps:
                        state.update(step=step + 1, log=log)
                        return TaskResult.running(duration / steps, {"rollbackState": state})
                    state["routed"] = True
        log += await self._cleanup(stage, target, cfg, location)
        state.update(done=True, log=log, endedMs=stage.now_ms)
        summary = "; ".join(log)
        return TaskResult.succeeded({"rollbackState": state}, {"rolledBack": True, "rollbackSummary": summary})

    async def _cleanup(self, stage: StageView, target: Any, cfg: dict[str, Any], location: str) -> list[str]:
        where = f"stage {stage.name!r} rollback"
        log: list[str] = []
        for name in cfg.get("scaleDownManifests") or []:
            key = manifests.key_for(str(name), location, where)
            if await target.get(key) is not None:
                await target.patch(key, {"spec": {"replicas": 0}}, "merge", actor=stage.actor)
                log.append(f"scaled {name} to 0")
        if cfg.get("removeSubset"):
            dr_key = ResourceKey(ISTIO_NETWORKING, "DestinationRule", location,
                                 str(cfg.get("destinationRule") or cfg["virtualService"]))
            dr = await target.get(dr_key)
            subsets = ((dr or {}).get("spec") or {}).get("subsets") or []
            kept = [s for s in subsets if s.get("name") != cfg["canary"]]
            if dr is not None and len(kept) != len(subsets):
                await target.patch(dr_key, {"spec": {"subsets": kept}}, "merge", actor=stage.actor)
                log.append(f"removed subset {cfg['canary']} from DestinationRule {location}/{dr_key.name}")
        names = [str(n) for n in cfg.get("deleteManifests") or []]
        if names:
            keys = [manifests.key_for(n, location, where) for n in names]
            deleted = await target.delete(keys, actor=stage.actor)
            log += [f"deleted {k.kind.lower()} {k.name}" for k in deleted] or [f"{', '.join(names)} already gone"]
        return log


POLL_S = 2.0  # how often a waiting analysis task looks again (so an abort acts within about that long)


class AbortableAnalysis:
    """StageDefinition methods: a running analysis stage takes `{"abortAnalysis": "why"}`."""

    def patch_fields(self) -> frozenset[str]:
        return frozenset({"abortAnalysis"})

    def validate_patch(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                       roles: list[str]) -> tuple[dict[str, Any], str]:
        why = body.get("abortAnalysis")
        if why in (None, False, ""):
            raise ValidationError("abortAnalysis needs a reason (a string) or true", where=f"stage {name!r}")
        if context.get(FAILED_KEY):
            return {}, "abortAnalysis"  # already failed: its failure path is running
        reason = why if isinstance(why, str) else "no reason given"
        return {FAILED_KEY: f"analysis aborted by {user}: {reason}", "abortedBy": user}, "abortAnalysis"


async def alert_abort(stage: StageView) -> str | None:
    """The abort reason when the stage's `abortOnAlert` marker says an alert fired since the stage started.

    `"abortOnAlert": {"configMap": "reviews-canary-alert", "location": "default"}` names a ConfigMap an
    Alertmanager-triggered pipeline writes (docs/analysis.md): `data.status` `firing`, `data.startsAt` (RFC 3339),
    `data.alertname`, `data.summary`. An alert that started before this stage did is not about it.
    """
    cfg = stage.context.get("abortOnAlert")
    if not isinstance(cfg, dict) or not cfg.get("configMap"):
        return None
    from datetime import datetime

    target = await stage.services.target("local", None)
    body = await target.get(ResourceKey("", "ConfigMap", str(cfg.get("location") or "default"), str(cfg["configMap"])))
    data = (body or {}).get("data") or {}
    if str(data.get("status") or "") != "firing":
        return None
    try:
        started = datetime.fromisoformat(str(data.get("startsAt") or "").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    if started * 1000 < stage.start_time:
        return None
    what = f"alert {data.get('alertname') or '?'} firing since {data.get('startsAt')}"
    if data.get("summary"):
        what += f": {data['summary']}"
    return f"analysis aborted by {what}"


def failure_message(stage: StageView) -> str:
    """The stage's failure reason, with what the rollback did."""
    reason = str(stage.context.get(FAILED_KEY) or "")
    summary = stage.outputs.get("rollbackSummary") or (stage.context.get("rollbackState") or {}).get("log")
    if isinstance(summary, list):
        summary = "; ".join(summary)
    return f"{reason}; rolled back: {summary}" if summary else reason
