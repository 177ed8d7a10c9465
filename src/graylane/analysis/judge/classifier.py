"""Classify one metric, canary against baseline: Pass, High, Low, Nodata, NodataFailMetric or Error.

Kayenta's `MannWhitneyClassifier` (kayenta-judge `classifiers/metric/MannWhitneyClassifier.scala`):
no data first, identical data and a single distinct value pass, otherwise the Mann-Whitney interval
of the shift must clear +/- tolerance x |Hodges-Lehmann estimate| in a direction the metric cares
about and the effect size must reach the allowed increase/decrease; a critical metric fails the
canary when the effect also reaches its critical threshold. Each result carries Kayenta's terse
reason and one sentence of our own saying why.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from graylane.analysis.judge.config import EffectSize, EffectSizeMeasure, MetricDirection, NanStrategy
from graylane.analysis.judge.mannwhitney import ShiftInterval, shift_interval
from graylane.analysis.judge.stats import cles, mean_ratio
from graylane.analysis.judge.transforms import add_gaussian_noise

_NOISE_SCALE = 1e-5  # Kayenta: noise stdev = the single value x 1e-5 when both sides are constant


class Classification(enum.StrEnum):
    """Per-metric labels, spelled as Kayenta reports them."""

    PASS = "Pass"
    HIGH = "High"
    LOW = "Low"
    NODATA_FAIL_METRIC = "NodataFailMetric"
    NODATA = "Nodata"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class ShiftTest:
    """The Mann-Whitney comparison behind a verdict: interval, estimate, bounds and effect size."""

    interval: ShiftInterval
    lower_bound: float  # -tolerance x |estimate|
    upper_bound: float  # +tolerance x |estimate|
    effect_size: float  # NaN when it cannot be computed (a mean of zero, for meanRatio)
    measure: EffectSizeMeasure
    noise_added: bool  # both sides were constant: Gaussian noise broke the ties


@dataclass(frozen=True, slots=True)
class MetricClassification:
    classification: Classification
    critical: bool  # this result fails the whole canary when it is not Pass
    reason: str | None  # Kayenta's classificationReason
    deviation: float  # experiment mean / control mean (NaN when a mean is zero)
    explanation: str  # one sentence: why
    test: ShiftTest | None = None


class ClassificationFailed(Exception):
    """The test could not run (every observation tied after the shift); the judge reports Error."""


@dataclass(frozen=True, slots=True)
class MannWhitneyClassifier:
    """The classifier with its knobs; NetflixACAJudge builds it with tolerance 0.25 and confidence 0.98."""

    tolerance: float = 0.25
    confidence_level: float = 0.95
    effect_size: EffectSize = EffectSize()

    def classify(
        self,
        control: Sequence[float],
        experiment: Sequence[float],
        *,
        name: str = "metric",
        direction: MetricDirection = MetricDirection.EITHER,
        nan_strategy: NanStrategy = NanStrategy.REMOVE,
        critical: bool = False,
        must_have_data: bool = False,
        rng: random.Random | None = None,
        control_label: str = "Baseline",
        experiment_label: str = "Canary",
    ) -> MetricClassification:
        """Classify cleaned values (NaNs and outliers already handled). Raises `ClassificationFailed`."""
        if not experiment or not control:
            return _no_data(control, experiment, name, nan_strategy, critical, must_have_data)
        if sorted(experiment) == sorted(control):
            return MetricClassification(
                Classification.PASS, False, f"The {experiment_label} and {control_label} data are identical", 1.0,
                "the canary and baseline values are identical")
        distinct = set(experiment) | set(control)
        if len(distinct) == 1:
            return MetricClassification(Classification.PASS, False, None, 1.0,
                                        f"every value on both sides is {_fmt(next(iter(distinct)))}")
        label, reason, test, deviation = self._compare(control, experiment, name, direction, rng or random.Random(0))
        explanation = _explain(label, test, direction, self.effect_size, self.confidence_level)
        if critical and label is not Classification.PASS:
            effect = test.effect_size
            if label is Classification.HIGH:
                bound_name, threshold = "criticalIncrease", self.effect_size.critical_increase
                beyond = math.isnan(effect) or effect >= threshold
            else:
                bound_name, threshold = "criticalDecrease", self.effect_size.critical_decrease
                beyond = math.isnan(effect) or effect <= threshold
            if beyond:
                return MetricClassification(
                    label, True, f"The metric {name} was classified as {label} (Critical)", deviation,
                    f"{explanation}; the metric is critical and {_effect_phrase(test)} reaches {bound_name} "
                    f"{_fmt(threshold)}, so the canary fails", test)
            explanation += (f"; critical, but {_effect_phrase(test)} does not reach {bound_name} "
                            f"{_fmt(threshold)}, so the canary does not fail outright")
        return MetricClassification(label, False, reason, deviation, explanation, test)

    def _compare(self, control: Sequence[float], experiment: Sequence[float], name: str,
                 direction: MetricDirection, rng: random.Random,
                 ) -> tuple[Classification, str | None, ShiftTest, float]:
        # Both sides constant (but different): the rank test has nothing to rank, so add tiny noise.
        noise = len(set(experiment)) == 1 and len(set(control)) == 1
        if noise:
            experiment = add_gaussian_noise(experiment, experiment[0] * _NOISE_SCALE, rng)
            control = add_gaussian_noise(control, control[0] * _NOISE_SCALE, rng)
        try:
            interval = shift_interval(experiment, control, self.confidence_level)
        except ValueError as exc:
            raise ClassificationFailed(str(exc)) from exc
        measure = self.effect_size.measure
        effect = cles(control, experiment) if measure is EffectSizeMeasure.CLES else mean_ratio(control, experiment)
        deviation = mean_ratio(control, experiment)
        critical_value = self.tolerance * abs(interval.estimate)
        test = ShiftTest(interval, -critical_value, critical_value, effect, measure, noise)
        # An effect size that cannot be computed does not block a High or Low (Kayenta).
        is_high = (direction in (MetricDirection.INCREASE, MetricDirection.EITHER)
                   and interval.lower > test.upper_bound
                   and (math.isnan(effect) or effect >= self.effect_size.allowed_increase))
        is_low = (direction in (MetricDirection.DECREASE, MetricDirection.EITHER)
                  and interval.upper < test.lower_bound
                  and (math.isnan(effect) or effect <= self.effect_size.allowed_decrease))
        if is_high:
            return Classification.HIGH, f"{name} was classified as High", test, deviation
        if is_low:
            return Classification.LOW, f"{name} was classified as Low", test, deviation
        return Classification.PASS, None, test, deviation


def _no_data(control: Sequence[float], experiment: Sequence[float], name: str, nan_strategy: NanStrategy,
             critical: bool, must_have_data: bool) -> MetricClassification:
    missing = ("neither the canary nor the baseline" if not control and not experiment
               else "the canary" if not experiment else "the baseline")
    what = f"{missing} has no values"
    if nan_strategy is NanStrategy.REPLACE:
        # Kayenta: with nanStrategy replace, missing data passes.
        return MetricClassification(Classification.PASS, False, None, 1.0,
                                    f"{what}; with nanStrategy replace Kayenta counts that as Pass")
    reason = f"Missing data for {name}"
    if must_have_data and not critical:
        return MetricClassification(Classification.NODATA_FAIL_METRIC, False, reason, 1.0,
                                    f"{what} and mustHaveData is set, so it counts as a failure in its groups")
    if critical:
        return MetricClassification(Classification.NODATA, True, reason, 1.0,
                                    f"{what}; the metric is critical, so the canary fails")
    return MetricClassification(Classification.NODATA, False, reason, 1.0,
                                f"{what}, so it is left out of its groups' scores")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}"


def _effect_phrase(test: ShiftTest) -> str:
    label = "CLES" if test.measure is EffectSizeMeasure.CLES else "the mean ratio"
    if math.isnan(test.effect_size):
        return f"{label} (not computable: a mean is zero)"
    return f"{label} {_fmt(test.effect_size)}"


def _explain(label: Classification, test: ShiftTest, direction: MetricDirection, effect: EffectSize,
             confidence_level: float) -> str:
    iv = test.interval
    interval = f"the {confidence_level * 100:g}% interval of the shift [{_fmt(iv.lower)}, {_fmt(iv.upper)}]"
    above = iv.lower > test.upper_bound
    below = iv.upper < test.lower_bound
    bound_up = f"+{_fmt(test.upper_bound)}"
    bound_down = f"{_fmt(test.lower_bound)}" if test.lower_bound else "-0"
    if label is Classification.HIGH:
        return (f"the canary is higher: {interval} lies above {bound_up} and {_effect_phrase(test)} "
                f"reaches allowedIncrease {_fmt(effect.allowed_increase)}")
    if label is Classification.LOW:
        return (f"the canary is lower: {interval} lies below {bound_down} and {_effect_phrase(test)} "
                f"reaches allowedDecrease {_fmt(effect.allowed_decrease)}")
    if above and direction is MetricDirection.DECREASE:
        return f"the canary is higher ({interval} lies above {bound_up}), but only a decrease fails this metric"
    if below and direction is MetricDirection.INCREASE:
        return f"the canary is lower ({interval} lies below {bound_down}), but only an increase fails this metric"
    if above:
        return (f"the canary is higher ({interval} lies above {bound_up}), but {_effect_phrase(test)} "
                f"is below allowedIncrease {_fmt(effect.allowed_increase)}")
    if below:
        return (f"the canary is lower ({interval} lies below {bound_down}), but {_effect_phrase(test)} "
                f"is above allowedDecrease {_fmt(effect.allowed_decrease)}")
    return (f"no significant shift: {interval} does not lie entirely beyond "
            f"+/-{_fmt(test.upper_bound)} (tolerance x |estimate {_fmt(iv.estimate)}|)")
