"""Cleaning one side's values before classification: NaN handling, IQR outliers, tie-breaking noise.

As Kayenta's judge does (kayenta-judge `preprocessing/Transforms.scala`, `detectors/IQRDetector.scala`,
`NetflixACAJudge.transformMetric`): NaNs first (removed, or replaced by 0), then outliers.
Randomness is a parameter: the caller passes the `random.Random` that draws the noise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from graylane.analysis.judge.stats import percentile


def remove_nans(values: Sequence[float]) -> list[float]:
    """The values without their NaNs, in order.

    >>> remove_nans([0.0, 1.0, float("nan"), 1.0])
    [0.0, 1.0, 1.0]
    """
    return [v for v in values if not math.isnan(v)]


def replace_nans(values: Sequence[float], value: float = 0.0) -> list[float]:
    """Each NaN replaced by `value` (0 for `nanStrategy: replace`).

    >>> replace_nans([float("nan"), 10.1])
    [0.0, 10.1]
    """
    return [value if math.isnan(v) else v for v in values]


def iqr_fences(values: Sequence[float], factor: float, *, reduce_sensitivity: bool) -> tuple[float, float]:
    """Tukey's fences Q1 - factor*IQR and Q3 + factor*IQR (R-7 quartiles).

    With `reduce_sensitivity` (what the judge uses) the fences widen to at least the 1st and 99th
    percentiles, so a few extreme-but-common values are kept. NaN fences (no values) flag nothing.
    """
    if factor <= 0:
        raise ValueError("the outlier factor must be greater than zero")
    q1 = percentile(values, 25)
    q3 = percentile(values, 75)
    iqr = q3 - q1
    lower = q1 - factor * iqr
    upper = q3 + factor * iqr
    if reduce_sensitivity:
        lower = min(percentile(values, 1), lower)
        upper = max(percentile(values, 99), upper)
    return lower, upper


def iqr_outliers(values: Sequence[float], factor: float = 1.5, *, reduce_sensitivity: bool = False) -> list[bool]:
    """Which values lie outside the fences (`IQRDetector.detect`).

    >>> iqr_outliers([21.0, 23.0, 24.0, 25.0, 50.0, 29.0, 23.0, 21.0])
    [False, False, False, False, True, False, False, False]
    """
    if not values:
        return []
    lower, upper = iqr_fences(values, factor, reduce_sensitivity=reduce_sensitivity)
    return [v > upper or v < lower for v in values]


def remove_outliers(values: Sequence[float], factor: float, *, reduce_sensitivity: bool = True) -> list[float]:
    """The values the detector keeps, in their order (the judge detects with reduced sensitivity)."""
    flags = iqr_outliers(values, factor, reduce_sensitivity=reduce_sensitivity)
    return [v for v, outlier in zip(values, flags, strict=True) if not outlier]


def add_gaussian_noise(values: Sequence[float], stdev: float, rng: random.Random, mean: float = 0.0) -> list[float]:
    """Each value plus an independent normal draw (`Transforms.addGaussianNoise`)."""
    return [v + (rng.gauss(0.0, 1.0) * stdev + mean) for v in values]
