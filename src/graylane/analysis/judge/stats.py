"""Descriptive statistics, ranks and effect sizes, computed as Kayenta's judge computes them.

Kayenta (kayenta-judge `stats/DescriptiveStatistics.scala`, `stats/EffectSizes.scala`) leans on
Apache commons-math; the same arithmetic is reproduced here so results agree to the last digit
where that matters (means use commons-math's two-pass correction, percentiles its R-7 estimate,
ranks its average-of-ties ranking with NaN ranked highest). Pure functions, standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean with commons-math's correction pass (`StatUtils.mean`); NaN when empty."""
    n = len(values)
    if n == 0:
        return math.nan
    xbar = sum(values) / n
    correction = 0.0
    for v in values:
        correction += v - xbar
    return xbar + correction / n


def variance(values: Sequence[float]) -> float:
    """Bias-corrected sample variance (`StatUtils.variance`): 0 for one value, NaN when empty."""
    n = len(values)
    if n == 0:
        return math.nan
    if n == 1:
        return 0.0
    m = mean(values)
    accum = 0.0
    accum2 = 0.0
    for v in values:
        dev = v - m
        accum += dev * dev
        accum2 += dev
    return (accum - (accum2 * accum2 / n)) / (n - 1.0)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) by the R-7 rule (linear interpolation), as commons-math's
    `Percentile().withEstimationType(R_7)`; NaN when empty.

    >>> percentile([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], 50)
    1.75
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is outside (0, 100]")
    n = len(values)
    if n == 0:
        return math.nan
    ordered = sorted(values, key=_nan_last)
    if n == 1:
        return ordered[0]
    q = p / 100
    pos = float(n) if q == 1.0 else 1 + (n - 1) * q
    if pos < 1:
        return ordered[0]
    if pos >= n:
        return ordered[n - 1]
    whole = math.floor(pos)
    lower = ordered[whole - 1]
    upper = ordered[whole]
    return lower + (pos - whole) * (upper - lower)


def _nan_last(v: float) -> float:
    return math.inf if math.isnan(v) else v


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank and NaN ranked highest (commons-math
    `NaturalRanking(NaNStrategy.MAXIMAL, TiesStrategy.AVERAGE)`).

    >>> average_ranks([3.0, 1.0, 3.0, 2.0])
    [3.5, 1.0, 3.5, 2.0]
    """
    keyed = [_nan_last(v) for v in values]
    order = sorted(range(len(keyed)), key=keyed.__getitem__)
    ranks = [0.0] * len(keyed)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and keyed[order[end + 1]] == keyed[order[start]]:
            end += 1
        # positions start..end (0-based) hold rank start+1 .. end+1; their average is exact in binary
        shared = (start + 1 + end + 1) / 2
        for i in range(start, end + 1):
            ranks[order[i]] = shared
        start = end + 1
    return ranks


def mean_ratio(control: Sequence[float], experiment: Sequence[float]) -> float:
    """Experiment mean over control mean; NaN when either mean is zero (`EffectSizes.meanRatio`)."""
    control_mean = mean(control)
    experiment_mean = mean(experiment)
    if control_mean == 0.0 or experiment_mean == 0.0:
        return math.nan
    return experiment_mean / control_mean


def cles(control: Sequence[float], experiment: Sequence[float]) -> float:
    """Common Language Effect Size: the share of (experiment, control) pairs where the experiment
    value is higher, ties counting half (Vargha and Delaney 2000, via ranks as `EffectSizes.cles`).

    >>> cles([1.0, 2.0], [3.0, 4.0])
    1.0
    """
    m = len(experiment)
    n = len(control)
    ranks = average_ranks([*experiment, *control])
    r1 = sum(ranks[:m])
    return (2 * r1 - m * (m + 1)) / (2 * n * m)


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """What a report shows of one side's values after cleaning (`MetricStatistics`)."""

    min: float
    max: float
    mean: float
    std: float
    count: int


def summary(values: Sequence[float]) -> SeriesStats:
    """min, max, mean, sample standard deviation and count; all zero for no values, as Kayenta does."""
    if not values:
        return SeriesStats(0.0, 0.0, 0.0, 0.0, 0)
    return SeriesStats(min(values), max(values), mean(values), math.sqrt(variance(values)), len(values))
