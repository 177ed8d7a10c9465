"""A judge report as JSON: Kayenta's `CanaryJudgeResult` field names, plus the statistic and the why.

`results[]` keep Kayenta's `classification`, `classificationReason`, `critical`, `groups`,
`resultMetadata.ratio` and `controlMetadata`/`experimentMetadata.stats`; Graylane adds
`explanation`, `statistic` (interval, estimate, bounds, effect size) and what cleaning removed.
NaN (a ratio with a zero mean) becomes null, so the output is strict JSON.
"""

from __future__ import annotations

import math
from typing import TypedDict

from graylane.analysis.judge.config import JsonValue
from graylane.analysis.judge.netflix_aca import Cleaning, JudgeReport, MetricResult
from graylane.analysis.judge.scorer import effective_weights
from graylane.analysis.judge.stats import SeriesStats


class ReportJson(TypedDict):
    judgeName: str
    config: str
    score: dict[str, JsonValue]
    groupScores: list[JsonValue]
    results: list[JsonValue]


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def _side(stats: SeriesStats, cleaning: Cleaning) -> dict[str, JsonValue]:
    return {"stats": {"min": stats.min, "max": stats.max, "mean": stats.mean, "std": stats.std,
                      "count": stats.count},
            "cleaning": {"received": cleaning.received, "nans": cleaning.nans,
                         "outliersRemoved": cleaning.outliers_removed}}


def _result(result: MetricResult) -> dict[str, JsonValue]:
    statistic: JsonValue = None
    if result.test is not None:
        test = result.test
        statistic = {"test": "Mann-Whitney U", "confidenceLevel": test.interval.confidence_level,
                     "lower": test.interval.lower, "upper": test.interval.upper,
                     "estimate": test.interval.estimate,
                     "lowerBound": test.lower_bound, "upperBound": test.upper_bound,
                     "effectSize": {"measure": test.measure.value, "value": _num(test.effect_size)},
                     "noiseAdded": test.noise_added}
    return {"name": result.name, "classification": result.classification.value,
            "classificationReason": result.reason, "critical": result.critical, "muted": result.muted,
            "groups": list(result.groups), "direction": result.direction.value,
            "explanation": result.explanation, "statistic": statistic,
            "resultMetadata": {"ratio": _num(result.deviation)},
            "controlMetadata": _side(result.control, result.control_cleaning),
            "experimentMetadata": _side(result.experiment, result.experiment_cleaning)}


def report_json(report: JudgeReport) -> ReportJson:
    weights = effective_weights(report.group_scores, report.group_weights)
    groups: list[JsonValue] = [
        {"name": g.name, "score": g.score, "noData": g.no_data, "weight": weights[g.name],
         "labelCounts": dict(g.label_counts), "numMetrics": g.num_metrics}
        for g in report.group_scores]
    return {
        "judgeName": report.judge_name,
        "config": report.config_name,
        "score": {"score": report.score.score, "classification": report.score.verdict.value,
                  "classificationReason": report.score.reason or "",
                  "thresholds": {"pass": report.thresholds.pass_score, "marginal": report.thresholds.marginal},
                  "confidenceLevel": report.confidence_level, "tolerance": report.tolerance},
        "groupScores": groups,
        "results": [_result(r) for r in report.results],
    }
