"""`kayentaCanary`: Spinnaker's automated canary analysis stage, judged by Graylane's NetflixACAJudge port.

Settings are orca's (graylane.analysis.canary_run has the list). Tasks, as orca's RunCanaryIntervalsStage plans
its child stages:

- `runCanary #i` for each interval (lifetime / interval of them): waits (realTime) until the interval ends, then
  fetches control and experiment for every metric of the canary config over the interval and judges them. Each
  keeps its record in `outputs.canaryIntervals[i-1]` (score, verdict, the judge's whole report, every measurement
  with its resolved query). A score below `marginal` fails the analysis and later intervals do not run; the last
  interval must reach `pass`.
- `rollbackOnFailure` when the stage has Graylane's `rollback` option (stages/rollback.py).
- `completeCanaryAnalysis`: SUCCEEDED, or TERMINAL with the reason, mapped through the stage's failure options
  (`continuePipeline` gives FAILED_CONTINUE, `failPipeline: false` STOPPED: unlike Spinnaker #2697).

Outputs (and context): `canaryScores` (one per interval so far), `canaryScoreMessage`, `lastReport`.
"""

from __future__ import annotations

import math
from typing import Any

from graylane.analysis import canary_run
from graylane.pipelines.services import TaskServices
from graylane.pipelines.stages.rollback import (
    FAILED_KEY,
    POLL_S,
    AbortableAnalysis,
    RollbackTask,
    alert_abort,
    failure_message,
)
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def providers(services: TaskServices, account: str) -> canary_run.Providers:
    """The metric providers of an account, from the tasks' analysis service (pipelines/services.py); without
    one, what needs no control plane (an account's Prometheus; no local telemetry)."""
    if services.analysis is not None:
        found: canary_run.Providers = services.analysis.providers(account)
        return found
    from graylane.targets.accounts import prometheus_url

    return canary_run.providers_for(account, None, prometheus_url)


def json_safe(value: Any) -> Any:
    """NaN and infinities as null, so the record is strict JSON."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class RunCanaryTask(Task):
    """One interval (orca's `runCanary` child stage)."""

    def __init__(self, index: int, total: int) -> None:
        self.index = index
        self.total = total
        self.name = f"runCanary #{index}"  # type: ignore[misc]

    async def run(self, stage: StageView) -> TaskResult:
        if stage.context.get(FAILED_KEY):
            return TaskResult.succeeded()  # an earlier interval failed the analysis: nothing more to judge
        p = await canary_run.load_plan(stage.context, await stage.services.target(canary_run.LOCAL_ACCOUNT, None))
        began = float(stage.context.get("canaryAnalysisStart") or (stage.start_time + stage.paused_ms) / 1000)
        start, end = canary_run.interval_window(p, self.index, began)
        now = stage.now_ms / 1000
        context: dict[str, Any] = {"canaryAnalysisStart": began}
        aborted = await alert_abort(stage)
        if aborted:
            return TaskResult.succeeded({**context, FAILED_KEY: aborted, "canaryScoreMessage": aborted},
                                        {"canaryScoreMessage": aborted})
        if p.analysis_type == "realTime" and now < end:
            return TaskResult.running(min(end - now, POLL_S), {**context, "canaryIntervalDue": end})
        found = providers(stage.services, p.account)
        record = json_safe(await canary_run.judge_interval(p, found, self.index, start, end))
        intervals = [*(stage.outputs.get("canaryIntervals") or []), record]
        scores = [i["score"] for i in intervals]
        score = float(record["score"])
        last = self.index >= self.total
        if score < p.thresholds.marginal:
            failed = (f"Canary score {score:g} of interval {self.index}/{self.total} is below the marginal score "
                      f"threshold {p.thresholds.marginal:g}: {record['message']}")
        elif last and score < p.thresholds.pass_score:
            failed = (f"Final canary score {score:g} is below the pass score threshold {p.thresholds.pass_score:g}: "
                      f"{record['message']}")
        else:
            failed = ""
        if failed:
            message = failed
        elif last:
            message = f"Final canary score {score:g} is not below the pass score threshold {p.thresholds.pass_score:g}"
        else:
            message = f"Interval {self.index}/{self.total}: canary score {score:g} ({record['classification']})"
        outputs = {"canaryIntervals": intervals, "canaryScores": scores, "canaryScoreMessage": message,
                   "lastReport": record["report"], "lastUpdated": int(now * 1000),
                   "canaryConfigName": p.config_name}
        context.update(canaryScores=scores, canaryScoreMessage=message, lastUpdated=int(now * 1000))
        if failed:
            context[FAILED_KEY] = failed
        return TaskResult.succeeded(context, outputs)


class CompleteCanaryTask(Task):
    """orca's AggregateCanaryResultsTask: the verdict of the whole analysis."""

    name = "completeCanaryAnalysis"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        if stage.context.get(FAILED_KEY):
            return TaskResult.terminal(failure_message(stage))
        return TaskResult.succeeded()


class KayentaCanaryStage(AbortableAnalysis, StageDefinition):
    type = "kayentaCanary"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        total = _interval_count(context)
        out: list[Task] = [RunCanaryTask(i, total) for i in range(1, total + 1)]
        if isinstance(context.get("rollback"), dict):
            out.append(RollbackTask())
        out.append(CompleteCanaryTask())
        return out


def _interval_count(context: dict[str, Any]) -> int:
    """How many intervals the settings give; 1 when they cannot be read (the first task then fails, naming why)."""
    cfg = context.get("canaryConfig")
    if not isinstance(cfg, dict):
        return 1
    try:
        if str(context.get("analysisType") or "realTime") == "retrospective":
            scope = (cfg.get("scopes") or [{}])[0]
            lifetime = (canary_run._iso_time(scope.get("endTimeIso"), "end")
                        - canary_run._iso_time(scope.get("startTimeIso"), "start"))
        elif cfg.get("lifetimeDuration"):
            lifetime = canary_run.iso_duration(cfg["lifetimeDuration"], "lifetimeDuration")
        else:
            lifetime = float(cfg.get("lifetimeHours") or 0) * 3600
        interval = canary_run._seconds(cfg, "canaryAnalysisIntervalMins", "canaryConfig") or lifetime
    except Exception:
        return 1
    if lifetime <= 0 or interval <= 0:
        return 1
    return max(1, min(1000, int(lifetime // min(interval, lifetime) + 1e-9)))


DEFINITION = KayentaCanaryStage()
