"""NetflixACAJudge-v1.0: clean each metric's two series, classify them, score the classifications.

As kayenta-judge `NetflixACAJudge.scala` does: per metric, NaNs (remove or replace by 0) then IQR
outliers (remove, factor 3 by default, with reduced sensitivity), statistics of what is left, then
the Mann-Whitney classifier at confidence 0.98 and tolerance 0.25 (the judge's values, not the
classifier's 0.95 default) with the metric's effect-size thresholds; a classification that cannot
be computed is an Error. Scoring and the verdict are `scorer.py`'s. Knows no provider, stage or file.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graylane.analysis.judge.classifier import (
    Classification,
    ClassificationFailed,
    MannWhitneyClassifier,
    MetricClassification,
    ShiftTest,
)
from graylane.analysis.judge.config import (
    CanaryAnalysis,
    CanaryConfig,
    MetricConfig,
    MetricDirection,
    NanStrategy,
    OutlierStrategy,
    ScoreThresholds,
)
from graylane.analysis.judge.scorer import GroupScore, ScoreClassification, ScoredMetric, classify_score, score
from graylane.analysis.judge.stats import SeriesStats, summary
from graylane.analysis.judge.transforms import remove_nans, remove_outliers, replace_nans

log = logging.getLogger(__name__)

JUDGE_CONFIDENCE_LEVEL = 0.98
JUDGE_TOLERANCE = 0.25


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One metric's recorded values: control (baseline) and experiment (canary)."""

    control: tuple[float, ...]
    experiment: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Cleaning:
    """What cleaning did to one side: values received, NaNs removed or replaced, outliers removed."""

    received: int
    nans: int
    outliers_removed: int
    nan_strategy: NanStrategy = NanStrategy.REMOVE


@dataclass(frozen=True, slots=True)
class MetricResult:
    name: str
    groups: tuple[str, ...]
    direction: MetricDirection
    muted: bool
    classification: Classification
    critical: bool
    reason: str | None  # Kayenta's classificationReason
    explanation: str
    deviation: float  # experiment mean / control mean; NaN when a mean is zero
    test: ShiftTest | None
    control: SeriesStats
    experiment: SeriesStats
    control_cleaning: Cleaning
    experiment_cleaning: Cleaning


@dataclass(frozen=True, slots=True)
class JudgeReport:
    judge_name: str
    config_name: str
    results: tuple[MetricResult, ...]
    group_scores: tuple[GroupScore, ...]
    group_weights: Mapping[str, float]
    score: ScoreClassification
    thresholds: ScoreThresholds
    confidence_level: float = JUDGE_CONFIDENCE_LEVEL
    tolerance: float = JUDGE_TOLERANCE


def clean(values: Sequence[float], canary: CanaryAnalysis) -> tuple[list[float], Cleaning]:
    """NaN strategy, then outlier removal (`NetflixACAJudge.transformMetric`)."""
    nans = sum(1 for v in values if math.isnan(v))
    cleaned = remove_nans(values) if canary.nan_strategy is NanStrategy.REMOVE else replace_nans(values)
    kept = cleaned
    if canary.outliers.strategy is OutlierStrategy.REMOVE:
        kept = remove_outliers(cleaned, canary.outliers.factor, reduce_sensitivity=True)
    return kept, Cleaning(len(values), nans, len(cleaned) - len(kept), canary.nan_strategy)


def classify_metric(metric: MetricConfig, series: MetricSeries, rng: random.Random) -> MetricResult:
    """Clean both sides of one metric and classify the canary against the baseline."""
    canary = metric.canary
    control, control_cleaning = clean(series.control, canary)
    experiment, experiment_cleaning = clean(series.experiment, canary)
    classifier = MannWhitneyClassifier(tolerance=JUDGE_TOLERANCE, confidence_level=JUDGE_CONFIDENCE_LEVEL,
                                       effect_size=canary.effect_size)
    try:
        result = classifier.classify(control, experiment, name=metric.name, direction=canary.direction,
                                     nan_strategy=canary.nan_strategy, critical=canary.critical,
                                     must_have_data=canary.must_have_data, rng=rng)
    except ClassificationFailed as exc:
        # Kayenta logs and reports Error ("Metric Classification Failed"); the canary goes on.
        log.warning("metric %s: classification failed: %s", metric.name, exc)
        result = MetricClassification(Classification.ERROR, False, "Metric Classification Failed", math.nan,
                                      f"the test could not run: {exc}")
    return MetricResult(name=metric.name, groups=metric.groups, direction=canary.direction, muted=canary.muted,
                        classification=result.classification, critical=result.critical, reason=result.reason,
                        explanation=result.explanation, deviation=result.deviation, test=result.test,
                        control=summary(control), experiment=summary(experiment),
                        control_cleaning=control_cleaning, experiment_cleaning=experiment_cleaning)


def judge(config: CanaryConfig, series: Mapping[str, MetricSeries], thresholds: ScoreThresholds | None = None,
          rng: random.Random | None = None) -> JudgeReport:
    """Judge every metric of the config (a metric with no series has no data) and score the canary.

    `thresholds` defaults to the config's `classifier.scoreThresholds`, then to 75/50; `rng` draws
    the noise that breaks ties when both sides are constant (seeded 0 by default, so a report repeats).
    """
    rng = rng or random.Random(0)
    empty = MetricSeries((), ())
    results = tuple(classify_metric(m, series.get(m.name, empty), rng) for m in config.metrics)
    scored = [ScoredMetric(r.name, r.classification, r.groups, r.critical, r.reason) for r in results if not r.muted]
    thresholds = thresholds or config.score_thresholds or ScoreThresholds()
    scores = score(scored, config.group_weights)
    return JudgeReport(judge_name=config.judge_name, config_name=config.name, results=results,
                       group_scores=scores.group_scores, group_weights=dict(config.group_weights),
                       score=classify_score(scores, thresholds), thresholds=thresholds)
