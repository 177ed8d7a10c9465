"""`analysis`: run Argo Rollouts AnalysisTemplates (or Flagger-style built-ins) as a pipeline stage.

```json
{"type": "analysis", "name": "gate",
 "templates": [{"templateName": "success-rate"}, {"templateName": "cluster-p99", "clusterScope": true}],
 "args": [{"name": "service-name", "value": "reviews"}],
 "dryRun": [{"metricName": "experimental-.*"}],
 "builtins": {"canary": {"destination_service_name": "reviews", "destination_version": "v2"},
              "minSuccessPercent": 99, "maxDurationMs": 500, "interval": "20s", "count": 3, "window": "20s"},
 "durationSeconds": 300, "account": "local", "rollback": {...}}
```

`templates` name stored AnalysisTemplates (in the stage's `namespace`, default `default`) or ClusterAnalysisTemplates
(`clusterScope: true`), as an Argo Rollouts analysis step does; `args` are Argo's `{name, value}`. `builtins` adds
Flagger's request-success-rate and request-duration checks of the canary subset (graylane.analysis.builtins),
with or without templates. `durationSeconds` ends metrics that have an interval and no count (Argo's background
analysis would run until the rollout ends).

One task, `runAnalysis`, reconciles the AnalysisRun about once per due measurement; after each step the run's
status (Argo's shape: phase, message, metricResults with every measurement: resolved query, value, condition,
reason) is in `outputs.analysisRun`. The stage fails when the run ends Failed, Error or Inconclusive (Argo pauses
a rollout on Inconclusive; a pipeline has no one to ask, so it fails, saying so). With Graylane's `rollback`
option the rollback runs first (stages/rollback.py). A run lives in the control plane's memory: after a restart
the task starts the run again.
"""

from __future__ import annotations

import time
from typing import Any

from graylane.analysis import argo, builtins, canary_run
from graylane.analysis.argo import ResolvedRun, load_template, resolve
from graylane.analysis.argo_run import AnalysisRun, Providers
from graylane.analysis.resources import find_template
from graylane.errors import ValidationError
from graylane.pipelines.stages.kayenta_canary import json_safe, providers
from graylane.pipelines.stages.rollback import (
    FAILED_KEY,
    POLL_S,
    AbortableAnalysis,
    RollbackTask,
    alert_abort,
    failure_message,
)
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult

_RUNS: dict[tuple[str, str, int], AnalysisRun] = {}


async def resolved_run(context: dict[str, Any], templates_from: Any) -> ResolvedRun:
    """The stage's templates (read through the local account's Target) and built-ins, merged, args substituted
    (ValidationError names the field)."""
    namespace = str(context.get("namespace") or "default")
    templates = []
    for i, ref in enumerate(context.get("templates") or []):
        if not isinstance(ref, dict) or not ref.get("templateName"):
            raise ValidationError(f"templates[{i}]: templateName is required")
        body = await find_template(templates_from, str(ref["templateName"]),
                                   cluster_scope=bool(ref.get("clusterScope")), namespace=namespace)
        templates.append(load_template(body))
    args: dict[str, str] = {}
    for i, arg in enumerate(context.get("args") or []):
        if not isinstance(arg, dict) or not arg.get("name"):
            raise ValidationError(f"args[{i}]: an arg is {{name, value}}")
        args[str(arg["name"])] = str(arg.get("value", ""))
    dry = [str((d or {}).get("metricName", "")) for d in context.get("dryRun") or []]
    metrics = []
    if templates:
        run = resolve(templates, args, dry_run=dry)
        metrics, args = list(run.metrics), dict(run.args)
        secrets = run.secrets
    else:
        secrets = ()
    if isinstance(context.get("builtins"), dict):
        metrics += _builtins(context["builtins"])
    if not metrics:
        raise ValidationError("an analysis stage needs templates (templateName) or builtins")
    names = [m.name for m in metrics]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValidationError(f"two metrics have the same name: {', '.join(duplicated)}")
    return ResolvedRun(tuple(metrics), args, secrets)


def _builtins(cfg: dict[str, Any]) -> list[Any]:
    canary = cfg.get("canary")
    if not isinstance(canary, dict) or not canary:
        raise ValidationError("builtins.canary is required: the canary subset's labels, e.g. "
                              "{destination_service_name: reviews, destination_version: v2}")
    common: dict[str, Any] = {
        "interval": argo.parse_duration(cfg.get("interval", "1m"), "builtins.interval"),
        "window": argo.parse_duration(cfg.get("window", cfg.get("interval", "1m")), "builtins.window"),
        "count": int(cfg.get("count", 5)), "failure_limit": int(cfg.get("failureLimit", 0)),
        "prometheus_address": cfg.get("prometheusAddress") or None}
    labels = {str(k): str(v) for k, v in canary.items()}
    out = []
    if cfg.get("minSuccessPercent", 99) is not None:
        out.append(builtins.request_success_rate(labels, float(cfg.get("minSuccessPercent", 99)), **common))
    if cfg.get("maxDurationMs", 500) is not None:
        out.append(builtins.request_duration(labels, float(cfg.get("maxDurationMs", 500)),
                                              quantile=float(cfg.get("quantile", 0.99)), **common))
    return out


def _providers(context: dict[str, Any], services: Any) -> Providers:
    return providers(services, str(context.get("account") or canary_run.LOCAL_ACCOUNT))


class RunAnalysisTask(Task):
    name = "runAnalysis"

    async def run(self, stage: StageView) -> TaskResult:
        key = (stage.execution_id, stage.stage_id, stage.attempt)
        if stage.context.get(FAILED_KEY):  # aborted (PATCH abortAnalysis): stop measuring, keep what was taken
            run = _RUNS.pop(key, None)
            if run is not None:
                run.terminate()
            return TaskResult.succeeded()
        run = _RUNS.get(key)
        if run is None:
            local = await stage.services.target(canary_run.LOCAL_ACCOUNT, None)
            resolved = await resolved_run(stage.context, local)
            until = None
            if stage.context.get("durationSeconds") not in (None, ""):
                until = time.time() + float(stage.context["durationSeconds"])
            run = _RUNS[key] = AnalysisRun(resolved, _providers(stage.context, stage.services), until=until)
        aborted = await alert_abort(stage)
        if aborted:
            run.terminate()
            _RUNS.pop(key, None)
            return TaskResult.succeeded({FAILED_KEY: aborted}, {"analysisMessage": aborted})
        status = await run.step()
        outputs = {"analysisRun": json_safe(status.to_json()),
                   "analysisPhase": status.phase, "analysisMessage": status.message}
        if not status.completed:
            wake = run.next_time()
            return TaskResult.running(max(0.05, min(POLL_S, (wake or time.time() + 1) - time.time())), {}, outputs)
        _RUNS.pop(key, None)
        if status.phase == "Successful":
            return TaskResult.succeeded({"analysisPhase": status.phase}, outputs)
        reason = status.message or f"the analysis ended {status.phase}"
        if status.phase == "Inconclusive":
            reason += " (Inconclusive: Argo would pause for a person; a pipeline stage fails)"
        failed = f"AnalysisRun {status.phase}: {reason}"
        return TaskResult.succeeded({"analysisPhase": status.phase, FAILED_KEY: failed}, outputs)

    async def on_cancel(self, stage: StageView) -> None:
        run = _RUNS.pop((stage.execution_id, stage.stage_id, stage.attempt), None)
        if run is not None:
            run.terminate()

    async def on_timeout(self, stage: StageView) -> None:
        await self.on_cancel(stage)


class CompleteAnalysisTask(Task):
    name = "completeAnalysis"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        if stage.context.get(FAILED_KEY):
            return TaskResult.terminal(failure_message(stage))
        return TaskResult.succeeded()


class AnalysisStage(AbortableAnalysis, StageDefinition):
    type = "analysis"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        out: list[Task] = [RunAnalysisTask()]
        if isinstance(context.get("rollback"), dict):
            out.append(RollbackTask())
        out.append(CompleteAnalysisTask())
        return out


DEFINITION = AnalysisStage()
