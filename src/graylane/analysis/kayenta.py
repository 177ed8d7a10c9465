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
from graylane.mesh.telemetry.promql_tree import MAX_QUERY_BYTES


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


def query_for(metric: MetricConfig, templates: Mapping[str, str] | None = None,
              ) -> tuple[str, PrometheusQuery | LocalQuery]:
    """The provider kind and query for a config metric's `query` block (GraylaneError when not usable).

    A prometheus query is built as Kayenta's PrometheusMetricsService builds it: the custom filter is
    `customInlineTemplate`, else the config's `templates[customFilterTemplate]`; one starting with `PromQL:` is
    the whole query; otherwise `avg(metricName{filter tokens split on commas, labelBindings...}) by
    (groupByFields)`. `${scope}`, `${location}` and extendedScopeParams are substituted by the provider.
    """
    q = dict(metric.query)
    kind = str(q.pop("type", "") or "")
    if kind == "prometheus":
        address, account = q.get("address"), q.get("account")
        return kind, PrometheusQuery(_promql(metric, q, templates or {}), address=str(address) if address else None,
                                     account=str(account) if account else None)
    if kind == "local":
        for key in ("metricName", "serviceType", "scopeName"):
            q.pop(key, None)
        try:
            return kind, LocalQuery.from_spec(q)
        except (ValueError, GraylaneError) as exc:
            raise GraylaneError(f"metric {metric.name}: local query: {exc}") from None
    raise GraylaneError(f"metric {metric.name}: query type {kind or '(none)'!r} is not prometheus or local")


def _strings(value: Any, where: str) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GraylaneError(f"{where} must be a list of strings")
    return list(value)


def _string(q: Mapping[str, Any], key: str, where: str) -> str | None:
    value = q.get(key)
    if value is not None and not isinstance(value, str):
        kind = {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), "a number")
        raise GraylaneError(f"{where}: {key} must be a string, not {kind}")
    return value


def _promql(metric: MetricConfig, q: Mapping[str, Any], templates: Mapping[str, str]) -> str:
    query = _built_promql(metric, q, templates)
    size = len(query.encode())
    if size > MAX_QUERY_BYTES:
        raise GraylaneError(f"the query built for metric {metric.name} is {size} bytes; at most {MAX_QUERY_BYTES} "
                            "are accepted (its metricName, custom filter, labelBindings and groupByFields)")
    return query


def _built_promql(metric: MetricConfig, q: Mapping[str, Any], templates: Mapping[str, str]) -> str:
    where = f"metric {metric.name}"
    if q.get("customFilter"):
        raise GraylaneError(f"{where}: customFilter is deprecated in Kayenta; use customInlineTemplate")
    inline, named = _string(q, "customInlineTemplate", where), _string(q, "customFilterTemplate", where)
    custom: str | None = None
    if isinstance(inline, str) and inline.strip():
        custom = inline.strip()
    elif isinstance(named, str) and named:
        if named not in templates:
            raise GraylaneError(f"{where}: custom filter template {named!r} was not found"
                                + ("" if templates else " (the config defines no templates)"))
        custom = templates[named].strip()
    name = _string(q, "metricName", where)
    if custom is not None and (custom.startswith("PromQL:") or not name):
        return custom  # a whole query (Graylane also takes one without the prefix when no metricName is given)
    if not isinstance(name, str) or not name:
        raise GraylaneError(f"{where}: a prometheus query needs metricName, or customInlineTemplate "
                            "\"PromQL:<query>\" (with ${scope} and ${location})")
    filters = [t for t in (custom.split(",") if custom else []) if t.strip()]
    if not filters:
        resource = str(q.get("resourceType") or "")
        if resource == "aws_ec2_instance":
            filters = ['asg_groupName="${scope}"', 'zone=~"${location}.{1}"']
        elif resource == "gce_instance":
            filters = ['instance=~"${scope}-.{4}"', 'zone=~".+/zones/${location}-.{1}"']
        elif resource:
            raise GraylaneError(f"{where}: there is no explicit support for resourceType {resource!r}; use "
                                "labelBindings and a custom filter template")
        else:
            raise GraylaneError(f"{where}: either a resource type or a custom filter is required (Kayenta's rule)")
    filters += _strings(q.get("labelBindings"), f"{where}: labelBindings")
    query = f"avg({name}{{{','.join(filters)}}})"
    group_by = _strings(q.get("groupByFields"), f"{where}: groupByFields")
    return query + (f" by ({','.join(group_by)})" if group_by else "")


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
                kind, query = query_for(metric, config.templates)
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
