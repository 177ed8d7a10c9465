"""The Mann-Whitney U (Wilcoxon rank-sum) interval and Hodges-Lehmann estimate of a location shift.

Kayenta's `kayenta-mannwhitney` ports R's `wilcox.test(x, y, conf.int = TRUE)` for the normal
approximation only (no exact small-sample branch): the standardised rank-sum statistic with R's
tie and continuity corrections is a decreasing function of the shift mu, and the interval ends
and the estimate are its roots at the normal quantiles and at zero, found by Brent's method
(R's `zeroin`, tolerance 1e-4). This module reproduces that arithmetic step for step, so the
intervals agree with Kayenta's (and R's) to the tolerances their own tests use.
Pure functions; knows nothing of metrics, configs or scores.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

from graylane.analysis.judge.stats import average_ranks

# kayenta-mannwhitney BrentSolver: R's zeroin with these constants.
_BRENT_MAX_ITERATIONS = 1000
_BRENT_TOLERANCE = 1e-4
_EPSILON = 2.220446049250313e-16
_SMALLEST_DOUBLE = math.ulp(0.0)


class AllTiedError(ValueError):
    """The rank-sum variance is zero (every observation tied), so no interval exists."""

    def __init__(self) -> None:
        super().__init__("cannot compute confidence interval when all observations are tied")


@dataclass(frozen=True, slots=True)
class ShiftInterval:
    """Confidence interval and point estimate of the shift x - y (experiment minus control)."""

    lower: float
    upper: float
    estimate: float
    confidence_level: float


def wilcoxon_diff(mu: float, quantile: float, x: Sequence[float], y: Sequence[float]) -> float:
    """Standardised rank-sum statistic of (x - mu) against y, minus `quantile`.

    The numerator is the rank sum of x less its expectation, moved half a unit towards zero
    (continuity correction); the variance subtracts sum(t^3 - t) over tie groups (R's
    `wilcox.test`, `correct = TRUE`). Raises `AllTiedError` when that variance is zero.
    """
    nx = float(len(x))
    ny = float(len(y))
    ranks = average_ranks([v - mu for v in x] + list(y))
    dz = sum(ranks[: len(x)]) - nx * (nx + 1) / 2 - nx * ny / 2
    correction = math.copysign(0.5, dz) if dz != 0 else 0.0
    # tie groups: values sharing a rank share a tie group (ranks are averages, so equal iff tied)
    tie_term = 0.0
    for size in Counter(ranks).values():
        tie_term += float(size) ** 3 - size
    sigma = math.sqrt((nx * ny / 12) * ((nx + ny + 1) - tie_term / ((nx + ny) * (nx + ny - 1))))
    if sigma == 0:
        raise AllTiedError()
    return (dz - correction) / sigma - quantile


def normal_quantile(p: float) -> float:
    """Inverse of the standard normal distribution function."""
    return NormalDist().inv_cdf(p)


def shift_interval(x: Sequence[float], y: Sequence[float], confidence_level: float = 0.95) -> ShiftInterval:
    """Two-sided interval and estimate of the location shift of x relative to y.

    The search runs between min(x) - max(y) and max(x) - min(y); an interval end whose root lies
    outside (the statistic never crosses the quantile) is clamped to that end of the range, as
    R and Kayenta do. The estimate is searched without that check, as Kayenta does.

    >>> r = shift_interval([10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0])
    >>> (r.lower, r.upper, r.estimate)
    (6.0, 39.0, 22.5)
    """
    if not x or not y:
        raise ValueError("both samples need at least one value")
    mu_min = min(x) - max(y)
    mu_max = max(x) - min(y)

    def statistic(quantile: float) -> Callable[[float], float]:
        return lambda mu: wilcoxon_diff(mu, quantile, x, y)

    def interval_end(quantile: float) -> float:
        f_low = wilcoxon_diff(mu_min, quantile, x, y)
        f_high = wilcoxon_diff(mu_max, quantile, x, y)
        if f_low <= 0:
            return mu_min
        if f_high >= 0:
            return mu_max
        return brent_root(mu_min, mu_max, f_low, f_high, statistic(quantile))

    alpha = 1.0 - confidence_level
    z = normal_quantile(alpha / 2)  # negative: the lower tail's quantile
    lower = interval_end(-z)
    upper = interval_end(z)
    estimate = brent_root(mu_min, mu_max, wilcoxon_diff(mu_min, 0, x, y), wilcoxon_diff(mu_max, 0, x, y),
                          statistic(0.0))
    return ShiftInterval(lower, upper, estimate, confidence_level)


def _is_zero(value: float) -> bool:
    # commons-math Precision.equals(value, 0): equal within one ulp of zero
    return abs(value) <= _SMALLEST_DOUBLE


def brent_root(a: float, b: float, fa: float, fb: float, f: Callable[[float], float]) -> float:
    """A zero of f in [a, b] by Brent's method (R's `zeroin`): inverse quadratic or secant steps
    when they stay inside the bracket and shrink it fast enough, bisection otherwise. Stops when
    the bracket is within 2*eps*|b| + 1e-4/2; after 1000 steps it returns its best guess, as Kayenta does.
    """
    if _is_zero(fa):
        return a
    if _is_zero(fb):
        return b
    c, fc = a, fa
    for _ in range(_BRENT_MAX_ITERATIONS + 1):
        previous_step = b - a
        if abs(fc) < abs(fb):
            # keep b the best guess: swap it with c (a follows as the previous b)
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tolerance = 2 * _EPSILON * abs(b) + _BRENT_TOLERANCE / 2
        step = (c - b) / 2
        if abs(step) <= tolerance or _is_zero(fb):
            return b
        if abs(previous_step) >= tolerance and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # two points: secant step
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # three points: inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tolerance * q) / 2) and p < abs(previous_step * q / 2):
                step = p / q
        if abs(step) < tolerance:
            step = tolerance if step > 0 else -tolerance
        a, fa = b, fb
        b += step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b
