"""One Kayenta canary interval: fetch both scopes of every metric of a canary config, then judge them.

What Kayenta's `runCanary` does between the stage and the judge: for each metric of the config, the control
(baseline) and experiment (canary) scopes are fetched over the interval `[start, end]` at `step` through the
metric's provider, and the two series go to `graylane.analysis.judge.judge` (NetflixACAJudge-v1.0, used
as is). Query types in the config's `metrics[].query`:

- `{"type": "prometheus", "customInlineTemplate": "PromQL:...${scope}...${location}..."}` (Kayenta's own
  shape; `metricsAccountName` style addresses come from the provider, or `"address"`/`"account"` here);
- `{"type": "local", "metric": ..., "aggregation": ..., "filter": {...}, "window": "1m"}` (Graylane's local
  mesh; filters name `${scope}` / `${location}`).

A side whose fetch failed or came back empty is judged as no data (Kayenta's Nodata), and the measurement
that says why is kept next to the report, so "why did the canary fail?" has an answer per metric and side.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graylane.analysis.argo_run import Providers
from graylane.analysis.judge import CanaryConfig, JudgeReport, MetricConfig, MetricSeries, ScoreThresholds, judge
from graylane.analysis.local import LocalQuery
from graylane.analysis.measurement import Measurement, Scope, error
from graylane.analysis.prometheus_provider import PrometheusQuery
from graylane.errors import GraylaneError


@dataclass(frozen=True)
class SideMeasurement:
    metric: str
    side: str  # control | experiment
    measurement: Measurement

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "side": self.side, **self.measurement.to_json()}


@dataclass(frozen=True)
class CanaryInterval:
    """The judge's report and every measurement behind it."""

    report: JudgeReport
    series: Mapping[str, MetricSeries]
    measurements: tuple[SideMeasurement, ...]

    def explain(self, metric: str) -> str:
        """One line per side: what was asked and what came back."""
        return " | ".join(f"{m.side}: {m.measurement.query} -> {m.measurement.outcome}: {m.measurement.message}"
                          for m in self.measurements if m.metric == metric)


def query_for(metric: MetricConfig) -> tuple[str, PrometheusQuery | LocalQuery]:
    """The provider kind and query for a config metric's `query` block (GraylaneError when not usable)."""
    q = dict(metric.query)
    kind = str(q.pop("type", "") or "")
    if kind == "prometheus":
        template = q.get("customInlineTemplate")
        if not isinstance(template, str) or not template.strip():
            raise GraylaneError(f"metric {metric.name}: a prometheus query needs customInlineTemplate (PromQL with "
                                "${scope} and ${location}); metricName-only queries are not supported")
        return kind, PrometheusQuery(template, address=q.get("address") or None, account=q.get("account") or None)
    if kind == "local":
        for key in ("metricName", "serviceType", "scopeName"):
            q.pop(key, None)
        try:
            return kind, LocalQuery.from_spec(q)
        except (ValueError, GraylaneError) as exc:
            raise GraylaneError(f"metric {metric.name}: local query: {exc}") from None
    raise GraylaneError(f"metric {metric.name}: query type {kind or '(none)'!r} is not prometheus or local")


async def run_interval(config: CanaryConfig, control: Scope, experiment: Scope, providers: Providers, *,
                       start: float, end: float, step: float = 60.0, thresholds: ScoreThresholds | None = None,
                       rng: random.Random | None = None) -> CanaryInterval:
    """Fetch control and experiment over `[start, end]` for every metric and judge the canary."""
    series: dict[str, MetricSeries] = {}
    taken: list[SideMeasurement] = []
    for metric in config.metrics:
        sides: dict[str, tuple[float, ...]] = {}
        for side, scope in (("control", control), ("experiment", experiment)):
            ranged = Scope(scope.scope, scope.location, scope.variables, start=start, end=end, step=step)
            try:
                kind, query = query_for(metric)
            except GraylaneError as exc:
                m = error("kayenta", str(metric.query), exc.message, at=end)
            else:
                provider = providers.get(kind)
                if provider is None:
                    m = error(kind, str(metric.query), f"no {kind} provider here", at=end)
                else:
                    try:
                        m = await provider.measure(query, ranged, end)
                    except Exception as exc:  # a provider bug is a failed fetch, not a pass
                        m = error(kind, str(metric.query), f"{type(exc).__name__}: {exc}", at=end)
            taken.append(SideMeasurement(metric.name, side, m))
            sides[side] = m.values if m.outcome in ("ok", "nan") else ()
        series[metric.name] = MetricSeries(sides["control"], sides["experiment"])
    report = judge(config, series, thresholds, rng)
    return CanaryInterval(report, series, tuple(taken))
