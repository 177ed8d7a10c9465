"""Analysis series for the control plane's `/metrics` (argo-rollouts #2276: watch a release's analysis).

From the stored pipeline stages (the rows pipelines/metrics.py reads: status, body, execution id), the latest
analysis stage of each name (by start time) gives:

- `graylane_canary_score{stage, execution}`: the kayentaCanary stage's last interval score (0..100);
- `graylane_analysis_metric_value{stage, type, metric}`: each metric's last value (an `analysis` stage: the last
  measurement's first value; a `kayentaCanary` stage: the canary mean of the last interval);
- `graylane_analysis_metric_phase{stage, type, metric, phase}`: 1 for the metric's phase now (Argo's phases, or
  the judge's classification Pass/High/Low/Nodata/...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

ANALYSIS_TYPES = ("kayentaCanary", "analysis")


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def latest_stages(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """The newest analysis stage of each (type, name) among `(status, body JSON[, execution id])` rows (a stage's
    body does not carry its execution's id: the row's third column gives it)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        raw = row[1]
        try:
            stage = json.loads(raw) if isinstance(raw, str | bytes) else raw
        except ValueError:
            continue
        if not isinstance(stage, dict) or stage.get("type") not in ANALYSIS_TYPES:
            continue
        if len(row) > 2 and row[2] and not stage.get("executionId"):
            stage = {**stage, "executionId": str(row[2])}
        key = (str(stage["type"]), str(stage.get("name") or ""))
        if key not in latest or (stage.get("startTime") or 0) >= (latest[key].get("startTime") or 0):
            latest[key] = stage
    return list(latest.values())


def analysis_metrics(rows: Iterable[Sequence[Any]]) -> Iterator[Metric]:
    score = GaugeMetricFamily("graylane_canary_score", "Latest canary score of a kayentaCanary stage (0-100)",
                              labels=["stage", "execution"])
    value = GaugeMetricFamily("graylane_analysis_metric_value", "Last value of each analysis metric",
                              labels=["stage", "type", "metric"])
    phase = GaugeMetricFamily("graylane_analysis_metric_phase", "Phase (Argo) or classification (Kayenta) of "
                              "each analysis metric; 1 for the current one", labels=["stage", "type", "metric",
                                                                                     "phase"])
    for stage in latest_stages(rows):
        name, kind = str(stage.get("name") or ""), str(stage["type"])
        outputs = stage.get("outputs") or {}
        if kind == "kayentaCanary":
            scores = outputs.get("canaryScores") or []
            last = _float(scores[-1]) if scores else None
            if last is not None:
                score.add_metric([name, str(stage.get("executionId") or stage.get("execution") or "")], last)
            report = outputs.get("lastReport") or {}
            for r in report.get("results") or []:
                mean = _float(((r.get("experimentMetadata") or {}).get("stats") or {}).get("mean"))
                if mean is not None:
                    value.add_metric([name, kind, str(r.get("name"))], mean)
                phase.add_metric([name, kind, str(r.get("name")), str(r.get("classification"))], 1)
            continue
        run = outputs.get("analysisRun") or {}
        for metric in run.get("metricResults") or []:
            measurements = metric.get("measurements") or []
            if measurements:
                values = measurements[-1].get("values") or []
                first = _float(values[0]) if values else None
                if first is not None:
                    value.add_metric([name, kind, str(metric.get("name"))], first)
            phase.add_metric([name, kind, str(metric.get("name")), str(metric.get("phase"))], 1)
    yield score
    yield value
    yield phase
