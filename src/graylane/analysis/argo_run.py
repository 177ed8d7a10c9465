"""An Argo Rollouts AnalysisRun: take measurements on schedule and decide phases as Argo does.

The rules are Argo's (analysis/analysis.go, utils/evaluate/evaluate.go), re-implemented:

- A measurement: a provider error is `Error`; otherwise the conditions decide: none -> `Successful`; only
  successCondition -> `Failed` when false; only failureCondition -> `Successful` when false; both and neither
  true -> `Inconclusive`; a condition that cannot be evaluated (e.g. `result[0]` on an empty result) -> `Error`.
- A metric is measured after `initialDelay`, then every `interval` (10 s after an error), `count` times
  (counting only non-error measurements; no count and no interval: once; an interval and no count: until
  the run is terminated). It is `Failed` when failed > failureLimit (-1: never), `Inconclusive` when
  inconclusive > inconclusiveLimit, `Error` when consecutive errors > consecutiveErrorLimit (default 4),
  `Successful` when consecutiveSuccessLimit is reached or its count is.
- The run is the worst phase of its metrics (Failed > Error > Inconclusive > Successful), dry-run metrics
  aside; once one metric is Failed, Error or Inconclusive the run terminates (measures no more) and metrics
  still running end as Successful.

One deliberate difference (argo-rollouts #4479, where a run with only Error/Failed measurements reported
Successful): a metric that ends without a single Successful measurement is never Successful. It is Failed
when a measurement failed, else Inconclusive when one was inconclusive, else Error (every measurement
errored). A metric terminated before its first measurement is Successful, as in Argo, and says so.

Time comes from an injectable Clock: `ManualClock` moves instantly when the runner sleeps, so tests and
offline replays never wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from graylane.analysis.argo import Metric, ResolvedRun, build_query
from graylane.analysis.conditions import ConditionError, evaluate_condition
from graylane.analysis.measurement import Measurement, MetricProvider, Scope, describe, error
from graylane.analysis.prometheus_provider import PrometheusProvider
from graylane.analysis.web import WebProvider
from graylane.errors import GraylaneError

Phase = Literal["Pending", "Running", "Successful", "Failed", "Error", "Inconclusive"]
COMPLETED: frozenset[str] = frozenset({"Successful", "Failed", "Error", "Inconclusive"})
_ORDER = ("Successful", "Running", "Pending", "Inconclusive", "Error", "Failed")  # best to worst, as Argo
ERROR_RETRY_INTERVAL = 10.0  # Argo's DefaultErrorRetryInterval


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that jumps: `sleep` advances it at once (and yields to the event loop)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


@dataclass
class Providers:
    """The providers a run may use; `local` only where a local mesh records metrics."""

    local: MetricProvider | None = None
    prometheus: MetricProvider = field(default_factory=PrometheusProvider)
    web: MetricProvider = field(default_factory=WebProvider)

    def get(self, kind: str) -> MetricProvider | None:
        return {"local": self.local, "prometheus": self.prometheus, "web": self.web}.get(kind)


@dataclass
class Taken:
    """One measurement and its verdict: the resolved query, the value, the condition, and why."""

    phase: Phase
    measurement: Measurement
    condition: str
    reason: str
    started_at: float
    finished_at: float

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "condition": self.condition, "reason": self.reason,
                "startedAt": self.started_at, "finishedAt": self.finished_at, **self.measurement.to_json()}


@dataclass
class MetricResult:
    name: str
    dry_run: bool = False
    phase: Phase = "Pending"
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    measurements: list[Taken] = field(default_factory=list)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "phase": self.phase, "dryRun": self.dry_run, "count": self.count,
                "successful": self.successful, "failed": self.failed, "inconclusive": self.inconclusive,
                "error": self.error, "consecutiveError": self.consecutive_error, "message": self.message,
                "measurements": [t.to_json() for t in self.measurements]}


@dataclass
class RunStatus:
    phase: Phase
    message: str
    metrics: dict[str, MetricResult]
    started_at: float
    finished_at: float | None = None
    run_summary: dict[str, int] = field(default_factory=dict)
    dry_run_summary: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.phase in COMPLETED

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "message": self.message, "startedAt": self.started_at,
                "finishedAt": self.finished_at, "runSummary": self.run_summary,
                "dryRunSummary": self.dry_run_summary, "metricResults": [m.to_json() for m in self.metrics.values()]}


def judge(metric: Metric, m: Measurement, *, now: float) -> tuple[Phase, str, str]:
    """(phase, condition text, one sentence of why) for one measurement, by Argo's EvaluateResult rules."""
    ok, bad = metric.success_condition, metric.failure_condition
    shown = " and ".join(x for x in (f"successCondition `{ok}`" if ok else "",
                                     f"failureCondition `{bad}`" if bad else "") if x) or "no condition"
    if m.outcome == "error":
        return "Error", shown, f"the {m.provider} provider failed: {m.message}"
    what = f"result = {describe(m.value)}"
    if m.outcome in ("empty", "nan"):
        what += f": {m.message}"
    held: dict[str, bool] = {}
    for name, text in (("successCondition", ok), ("failureCondition", bad)):
        if text:
            try:
                held[name] = evaluate_condition(text, m.value, now=lambda: now)
            except ConditionError as exc:
                return "Error", shown, f"{what}; could not evaluate {name} `{text}`: {exc}"
    if not ok and not bad:
        return "Successful", shown, f"{what}; no condition, so any answer is Successful"
    success = held.get("successCondition", not held.get("failureCondition", False))
    failure = held.get("failureCondition", not held.get("successCondition", False))

    def says(name: str, text: str) -> str:
        return f"{name} `{text}` is {'true' if held[name] else 'false'}"
    parts = "; ".join(says(n, t) for n, t in (("successCondition", ok), ("failureCondition", bad)) if t)
    if failure:
        return "Failed", shown, f"{what}; {parts}, so the measurement Failed"
    if not success:
        return "Inconclusive", shown, f"{what}; {parts}: neither holds, so the measurement is Inconclusive"
    return "Successful", shown, f"{what}; {parts}, so the measurement is Successful"


class AnalysisRun:
    """Runs one ResolvedRun. `await run()` until a final phase; `step()` is one reconcile (for callers that
    schedule themselves); `terminate()` stops it as Argo's `spec.terminate` does. `until` (a clock time)
    terminates it then, so a metric with an interval and no count cannot run forever."""

    def __init__(self, resolved: ResolvedRun, providers: Providers, *, clock: Clock | None = None,
                 scope: Scope | None = None, until: float | None = None,
                 error_retry_interval: float = ERROR_RETRY_INTERVAL) -> None:
        self.resolved = resolved
        self.providers = providers
        self.clock: Clock = clock or SystemClock()
        self.scope = scope or Scope(variables=dict(resolved.args))
        self.until = until
        self.error_retry_interval = error_retry_interval
        self.terminated = False
        self.metrics = {m.name: m for m in resolved.metrics}
        self.status = RunStatus("Pending", "", {m.name: MetricResult(m.name, m.dry_run) for m in resolved.metrics},
                                started_at=self.clock.now())

    def terminate(self) -> None:
        self.terminated = True

    async def run(self) -> RunStatus:
        while True:
            status = await self.step()
            if status.completed:
                return status
            wake = self.next_time()
            now = self.clock.now()
            await self.clock.sleep(max((wake if wake is not None else now + 1.0) - now, 0.0))

    # -- one reconcile --------------------------------------------------------------------------------
    async def step(self) -> RunStatus:
        now = self.clock.now()
        if self.until is not None and now >= self.until:
            self.terminated = True
        due = [m for m in self.resolved.metrics if self._due(m, now)]
        if due:
            await asyncio.gather(*(self._measure(m) for m in due))
        self._assess()
        if self.status.completed and self.status.finished_at is None:
            self.status.finished_at = self.clock.now()
        return self.status

    def _terminating(self) -> bool:
        return self.terminated or any(r.phase in ("Failed", "Error", "Inconclusive")
                                      for r in self.status.metrics.values() if not r.dry_run)

    def _due_at(self, metric: Metric) -> float | None:
        result = self.status.metrics[metric.name]
        if result.phase in COMPLETED:
            return None
        if not result.measurements:
            return self.status.started_at + metric.initial_delay
        count = metric.effective_count
        if count is not None and result.count >= count:
            return None
        last = result.measurements[-1]
        interval = (self.error_retry_interval if last.phase == "Error" or metric.interval is None
                    else metric.interval)
        return last.finished_at + interval

    def _due(self, metric: Metric, now: float) -> bool:
        if self._terminating():
            return False
        at = self._due_at(metric)
        return at is not None and now >= at

    def next_time(self) -> float | None:
        times = [t for t in (self._due_at(m) for m in self.resolved.metrics) if t is not None]
        if self.until is not None:
            times.append(self.until)
        return min(times) if times else None

    async def _measure(self, metric: Metric) -> None:
        started = self.clock.now()
        provider = self.providers.get(metric.provider)
        try:
            query = build_query(metric, started)
        except GraylaneError as exc:
            measurement = error(metric.provider, metric.name, exc.message, at=started)
        else:
            if provider is None:
                measurement = error(metric.provider, metric.name, f"no {metric.provider} provider here (the "
                                    "local provider needs the local mesh's telemetry)", at=started)
            else:
                try:
                    measurement = await provider.measure(query, self.scope, started)
                except Exception as exc:  # a provider bug must not end the run as if it passed
                    measurement = error(metric.provider, metric.name, f"{type(exc).__name__}: {exc}", at=started)
        phase, condition, reason = judge(metric, measurement, now=started)
        for secret in self.resolved.secrets:
            reason = reason.replace(secret, "*****")
            measurement.message = measurement.message.replace(secret, "*****")
            measurement.query = measurement.query.replace(secret, "*****")
        result = self.status.metrics[metric.name]
        result.measurements.append(Taken(phase, measurement, condition, reason, started, self.clock.now()))
        if phase == "Error":
            result.error += 1
            result.consecutive_error += 1
            result.consecutive_success = 0
            return
        result.count += 1
        result.consecutive_error = 0
        if phase == "Successful":
            result.successful += 1
            result.consecutive_success += 1
        else:
            result.consecutive_success = 0
            if phase == "Failed":
                result.failed += 1
            else:
                result.inconclusive += 1

    # -- assessment -----------------------------------------------------------------------------------
    def _assess(self) -> None:
        for _ in range(2):  # a metric that just failed terminates the others in the same reconcile
            terminating = self._terminating()
            for metric in self.resolved.metrics:
                result = self.status.metrics[metric.name]
                if result.phase in COMPLETED:
                    continue
                phase, message = _metric_phase(metric, result, terminating)
                result.phase = phase
                if phase in COMPLETED:
                    last = result.measurements[-1].reason if result.measurements else ""
                    result.message = "; ".join(x for x in (message, f"last measurement: {last}" if last else "") if x)
        self._run_phase()

    def _run_phase(self) -> None:
        worst: str = ""
        message = ""
        everything = True
        run = {"count": 0, "successful": 0, "failed": 0, "inconclusive": 0, "error": 0}
        dry = dict(run)
        for metric in self.resolved.metrics:
            result = self.status.metrics[metric.name]
            summary = dry if result.dry_run else run
            summary["count"] += 1
            if result.phase not in COMPLETED:
                everything = False
                continue
            summary[result.phase.lower()] += 1
            if result.dry_run:
                worst = worst or "Successful"
                continue
            if not worst or _ORDER.index(result.phase) > _ORDER.index(worst):
                worst = result.phase
                if result.phase != "Successful":
                    message = f'Metric "{metric.name}" assessed {result.phase} due to {result.message}'
        self.status.run_summary, self.status.dry_run_summary = run, dry
        if dry["count"]:
            message = "; ".join(x for x in (message, "Dry-run summary: " + ", ".join(
                f"{k}={v}" for k, v in dry.items())) if x)
        if self.terminated and not message:
            message = "Run Terminated"
        if not everything or not worst:
            self.status.phase = "Running" if any(r.measurements for r in self.status.metrics.values()) \
                else "Pending"
            self.status.message = ""
            return
        self.status.phase = worst  # type: ignore[assignment]
        self.status.message = message


def _metric_phase(metric: Metric, r: MetricResult, terminating: bool) -> tuple[Phase, str]:
    """Argo's assessMetricStatus, with #4479's fix (no success means no Successful)."""
    if not r.measurements:
        if terminating:
            return "Successful", "the run ended before its first measurement (no data was judged)"
        return "Pending", ""
    failure_limit = metric.failure_limit
    phase: Phase | None = None
    message = ""
    if failure_limit >= 0 and r.failed > failure_limit:
        phase, message = "Failed", f"failed ({r.failed}) > failureLimit ({failure_limit})"
    if r.inconclusive > metric.inconclusive_limit:
        phase, message = "Inconclusive", f"inconclusive ({r.inconclusive}) > inconclusiveLimit " \
                                         f"({metric.inconclusive_limit})"
    if r.consecutive_error > metric.consecutive_error_limit:
        phase, message = "Error", f"consecutiveErrors ({r.consecutive_error}) > consecutiveErrorLimit " \
                                  f"({metric.consecutive_error_limit})"
    if phase is not None:
        return phase, message
    success_limit = metric.consecutive_success_limit
    if success_limit > 0 and r.consecutive_success >= success_limit:
        return "Successful", f"consecutiveSuccessLimit ({success_limit}) reached"
    count = metric.effective_count
    if count is not None and r.count >= count:
        if success_limit > 0:
            if failure_limit >= 0:
                return "Inconclusive", (f"consecutiveSuccessLimit ({success_limit}) not reached and failureLimit "
                                        f"({failure_limit}) not violated")
            return "Failed", f"consecutiveSuccessLimit ({success_limit}) not reached"
        return _unless_no_success(r, f"count ({count}) reached")
    if terminating:
        return _unless_no_success(r, "the run was terminated")
    return "Running", ""


def _unless_no_success(r: MetricResult, why: str) -> tuple[Phase, str]:
    if r.successful:
        return "Successful", f"{why}: {r.successful} successful, {r.failed} failed, {r.inconclusive} " \
                             f"inconclusive, {r.error} error"
    counts = f"{r.failed} failed, {r.inconclusive} inconclusive, {r.error} error"
    if r.failed:
        return "Failed", f"{why} without a single successful measurement ({counts})"
    if r.inconclusive:
        return "Inconclusive", f"{why} without a single successful measurement ({counts})"
    return "Error", f"{why} and every measurement errored ({r.error}); errors are never a success"


def summary(status: RunStatus) -> Mapping[str, Any]:
    """A compact view for logs and stage outputs: phase, message, and each metric's phase and last reason."""
    return {"phase": status.phase, "message": status.message,
            "metrics": {name: {"phase": r.phase, "last": r.measurements[-1].reason if r.measurements else ""}
                        for name, r in status.metrics.items()}}
