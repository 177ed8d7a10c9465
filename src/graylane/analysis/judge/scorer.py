"""From per-metric classifications to group scores, one summary score and a Pass/Marginal/Fail verdict.

Kayenta's `WeightedSumScorer` and `ThresholdScoreClassifier` (kayenta-judge `scorers/`,
`classifiers/score/`): a group scores the share of its Pass among Pass, High, Low and
NodataFailMetric (Nodata and Error do not count); the summary is the weighted sum of group scores,
groups without a weight sharing what the weights leave of 100, a group with nothing countable
counting as 100, rounded half-up to 2 decimals. Any critical metric that is not Pass, or Nodata for
half of the metrics or more, makes the score 0. Muted metrics are left out before scoring.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from graylane.analysis.judge.classifier import Classification
from graylane.analysis.judge.config import ScoreThresholds

NODATA_THRESHOLD = 50  # percent of metrics with Nodata that fails the canary


class Verdict(enum.StrEnum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"


@dataclass(frozen=True, slots=True)
class ScoredMetric:
    """What the scorer needs of one metric's result."""

    name: str
    classification: Classification
    groups: tuple[str, ...]
    critical: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class GroupScore:
    name: str
    score: float  # 0..100; 0 when the group has nothing countable (no_data)
    no_data: bool
    label_counts: Mapping[str, int]
    num_metrics: int


@dataclass(frozen=True, slots=True)
class ScoreResult:
    group_scores: tuple[GroupScore, ...]
    summary_score: float
    num_metrics: int
    reason: str | None  # why the score was forced to 0


@dataclass(frozen=True, slots=True)
class ScoreClassification:
    verdict: Verdict
    score: float
    reason: str | None


def group_score(name: str, labels: Sequence[Classification]) -> GroupScore:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label.value] = counts.get(label.value, 0) + 1
    passed = counts.get(Classification.PASS, 0)
    total = passed + sum(counts.get(k, 0) for k in (Classification.HIGH, Classification.LOW,
                                                     Classification.NODATA_FAIL_METRIC))
    no_data = total == 0
    return GroupScore(name, 0.0 if no_data else passed / total * 100, no_data, counts, len(labels))


def group_scores(results: Sequence[ScoredMetric]) -> tuple[GroupScore, ...]:
    """One score per group, in the order groups first appear; a metric counts in each of its groups."""
    labels: dict[str, list[Classification]] = {}
    for result in results:
        for group in result.groups:
            labels.setdefault(group, []).append(result.classification)
    return tuple(group_score(name, group_labels) for name, group_labels in labels.items())


def round_half_up(value: float, places: int = 2) -> float:
    """commons-math `Precision.round(x, 2)`: half-up on the decimal text of the double.

    >>> round_half_up(0.125)
    0.13
    """
    if not math.isfinite(value):
        return value
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def effective_weights(groups: Sequence[GroupScore], weights: Mapping[str, float]) -> dict[str, float]:
    """Each group's weight: its own, or an equal share of what the weights leave of 100."""
    unweighted = [g for g in groups if g.name not in weights]
    shared = (100 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    return {g.name: weights.get(g.name, shared) for g in groups}


def summary_score(groups: Sequence[GroupScore], weights: Mapping[str, float]) -> float:
    per_group = effective_weights(groups, weights)
    total = 0.0
    for group in groups:
        effective = 100.0 if group.no_data else group.score
        total += effective * (per_group[group.name] / 100)
    return round_half_up(total, 2)


def critical_failures(results: Sequence[ScoredMetric]) -> list[ScoredMetric]:
    return [r for r in results if r.critical and r.classification is not Classification.PASS]


def too_many_nodata(results: Sequence[ScoredMetric]) -> bool:
    if not results:
        return False  # Kayenta divides 0 by 0 here, and NaN >= 50 is false
    nodata = sum(1 for r in results if r.classification is Classification.NODATA)
    return nodata / len(results) * 100 >= NODATA_THRESHOLD


def score(results: Sequence[ScoredMetric], weights: Mapping[str, float]) -> ScoreResult:
    """Score the (unmuted) results with the classifier's group weights."""
    groups = group_scores(results)
    failures = critical_failures(results)
    if failures:
        return ScoreResult(groups, 0.0, len(results), f"Canary Failed: {failures[0].reason}")
    if too_many_nodata(results):
        return ScoreResult(groups, 0.0, len(results),
                           f"Canary Failed: {NODATA_THRESHOLD}% or more metrics returned NODATA")
    return ScoreResult(groups, summary_score(groups, weights), len(results), None)


def classify_score(result: ScoreResult, thresholds: ScoreThresholds) -> ScoreClassification:
    """At or above pass: Pass; at or above marginal: Marginal; else Fail."""
    value = result.summary_score
    if value >= thresholds.pass_score:
        verdict = Verdict.PASS
    elif value >= thresholds.marginal:
        verdict = Verdict.MARGINAL
    else:
        verdict = Verdict.FAIL
    return ScoreClassification(verdict, value, result.reason)
