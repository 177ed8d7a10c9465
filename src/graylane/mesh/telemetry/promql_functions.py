"""PromQL's functions as Prometheus defines them, over graylane.mesh.telemetry.promql_values.

Range-vector functions take one series' points inside the range; `rate`, `increase` and `delta` extrapolate
to the range's edges exactly as Prometheus does (so a local answer and a Prometheus answer over the same
samples agree); instant-vector functions map samples. Label functions (`label_replace`, `label_join`) use
RE2, full-match, as Prometheus' anchored Go regexps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import re2

from graylane.mesh.telemetry.promql_values import NAME, Labels, PromQLError, Sample, Vector, label
from graylane.mesh.telemetry.quantile import histogram_quantile as _bucket_quantile

Points = list[tuple[float, float]]
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
MAX_LABEL_VALUE = 16_384  # characters of one label value label_replace/label_join build (as long as a query may be)
LABEL_CHARS_PER_SAMPLE = 64  # built label text counts against the query's samples: a sample per this many characters


# ---- over a range -----------------------------------------------------------------------------------------

def extrapolated(points: Points, start: float, end: float, *, counter: bool, rate: bool) -> float | None:
    """rate / increase / delta: the change over the samples, extrapolated towards the range's edges (by at most
    half an average sample interval past the samples, and for a counter never below zero)."""
    if len(points) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = points[0], points[-1]
    change = last_v - first_v
    if counter:
        previous = first_v
        for _, v in points[1:]:
            if v < previous:
                change += previous  # a reset: the counter restarted from zero
            previous = v
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    to_start, to_end = first_t - start, end - last_t
    average = sampled / (len(points) - 1)
    if counter and change > 0 and first_v >= 0:
        to_start = min(to_start, sampled * (first_v / change))
    threshold = average * 1.1
    span = sampled + (to_start if to_start < threshold else average / 2)
    span += to_end if to_end < threshold else average / 2
    change *= span / sampled
    return change / (end - start) if rate else change


def instant_change(points: Points, *, counter: bool, rate: bool) -> float | None:
    """irate / idelta: from the last two samples."""
    if len(points) < 2:
        return None
    (t0, v0), (t1, v1) = points[-2], points[-1]
    change = v1 if counter and v1 < v0 else v1 - v0
    if not rate:
        return change
    return change / (t1 - t0) if t1 > t0 else None


def _regression(points: Points, at: float) -> tuple[float, float]:
    """Least-squares slope and intercept, time measured from `at`."""
    n = len(points)
    xs = [t - at for t, _ in points]
    ys = [v for _, v in points]
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) * (x - mx) for x in xs)
    slope = math.nan if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return slope, my - slope * mx


def deriv(points: Points, at: float) -> float | None:
    return _regression(points, at)[0] if len(points) >= 2 else None


def predict_linear(points: Points, at: float, seconds: float) -> float | None:
    if len(points) < 2:
        return None
    slope, intercept = _regression(points, at)
    return intercept + slope * seconds


def stdvar(values: list[float]) -> float:
    """Population variance in IEEE arithmetic (an infinity or NaN among the values gives NaN, as in Go)."""
    if not values:
        return math.nan
    mean = sum(values) / len(values)
    return sum((v - mean) * (v - mean) for v in values) / len(values)


def stddev(values: list[float]) -> float:
    var = stdvar(values)
    return var if math.isnan(var) or math.isinf(var) else math.sqrt(var)


OVER_TIME: dict[str, Callable[[list[float]], float]] = {
    "avg_over_time": lambda vs: math.fsum(vs) / len(vs),
    "sum_over_time": math.fsum,
    "min_over_time": lambda vs: min((v for v in vs if not math.isnan(v)), default=math.nan),
    "max_over_time": lambda vs: max((v for v in vs if not math.isnan(v)), default=math.nan),
    "count_over_time": lambda vs: float(len(vs)),
    "last_over_time": lambda vs: vs[-1],
    "present_over_time": lambda vs: 1.0,
    "stdvar_over_time": stdvar,
    "stddev_over_time": stddev,
    "changes": lambda vs: float(sum(1 for a, b in zip(vs, vs[1:], strict=False) if a != b
                                    and not (math.isnan(a) and math.isnan(b)))),
    "resets": lambda vs: float(sum(1 for a, b in zip(vs, vs[1:], strict=False) if b < a)),
}


def quantile(q: float, values: list[float]) -> float:
    """Prometheus' `quantile` / `quantile_over_time`: linear interpolation between the closest ranks."""
    if not values:
        return math.nan
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


# ---- over an instant vector ----------------------------------------------------------------------------------

def divide(a: float, b: float) -> float:
    """IEEE division as Go does it: x/0 is +-Inf, 0/0 and NaN/0 are NaN (Python raises instead)."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _floor(v: float) -> float:
    """Go's math.Floor: NaN and infinities are their own floor."""
    return v if math.isnan(v) or math.isinf(v) else float(math.floor(v))


def _ceil(v: float) -> float:
    return v if math.isnan(v) or math.isinf(v) else float(math.ceil(v))


def _round(v: float, to: float) -> float:
    """Prometheus' round(v, to_nearest): floor(v / to + 0.5) * to, in IEEE arithmetic (to 0 or NaN gives NaN)."""
    if to == 0 or math.isnan(to):
        return math.nan
    inverse = 1 / to
    return divide(_floor(v * inverse + 0.5), inverse)


def _safe(fn: Callable[[float], float]) -> Callable[[float], float]:
    def call(v: float) -> float:
        try:
            return fn(v)
        except (ValueError, OverflowError):
            if math.isnan(v):
                return math.nan
            return -math.inf if v == 0 and fn in (math.log, math.log2, math.log10) else math.nan
    return call


MATH: dict[str, Callable[[float], float]] = {
    "abs": abs, "ceil": _ceil, "floor": _floor,
    "exp": _safe(lambda v: math.inf if v > 709 else math.exp(v)), "sqrt": _safe(math.sqrt),
    "ln": _safe(math.log), "log2": _safe(math.log2), "log10": _safe(math.log10),
    "sgn": lambda v: v if math.isnan(v) else float((v > 0) - (v < 0)),
    "deg": math.degrees, "rad": math.radians,
}


def map_values(vector: Vector, fn: Callable[[float], float]) -> Vector:
    """A math function over each sample: the metric name goes, as Prometheus drops it."""
    return [Sample(tuple(p for p in s.labels if p[0] != NAME), fn(s.value)) for s in vector]


def clamp(vector: Vector, low: float, high: float) -> Vector:
    if low > high:
        return []
    return map_values(vector, lambda v: v if math.isnan(v) else max(low, min(high, v)))


def rounded(vector: Vector, to: float) -> Vector:
    return map_values(vector, lambda v: _round(v, to))


def histogram_quantile(q: float, vector: Vector) -> Vector:
    """Per label set without `le`: the q-quantile from the cumulative buckets (NaN without a +Inf bucket)."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for s in vector:
        le = label(s.labels, "le")
        try:
            bound = float(le)
        except ValueError:
            continue  # not a bucket: Prometheus ignores it
        key = tuple(p for p in s.labels if p[0] not in ("le", NAME))
        groups.setdefault(key, []).append((bound, s.value))
    out: Vector = []
    for key, buckets in groups.items():
        buckets.sort()
        if math.isnan(q):
            value = math.nan
        elif q < 0:
            value = -math.inf
        elif q > 1:
            value = math.inf
        elif len(buckets) < 2 or not math.isinf(buckets[-1][0]):
            value = math.nan
        else:
            monotonic, highest = [], -math.inf
            for bound, count in buckets:  # as Prometheus: a count lower than the one below it is raised to it
                highest = max(highest, count)
                monotonic.append((bound, highest))
            found = _bucket_quantile(q, monotonic)
            value = math.nan if found is None else found
        out.append(Sample(key, value))
    return out


def _too_long(function: str, dst: str, size: int) -> PromQLError:
    return PromQLError(f"{function}(): the value of label \"{dst}\" would be {size} characters or more; at most "
                       f"{MAX_LABEL_VALUE} are accepted", "execution")


def _expand(template: str, match: Any, dst: str) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name, ${name}; $$ is a dollar; an unknown group expands to nothing.
    Stops as soon as the value would pass MAX_LABEL_VALUE (`$1` repeated copies the group each time)."""
    size = len(template)

    def one(m: re.Match[str]) -> str:
        nonlocal size
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(2)
        try:
            group = match.group(int(name) if name.isdigit() else name)
        except (IndexError, KeyError, ValueError, re2.error):
            return ""
        size += len(group or "")
        if size > MAX_LABEL_VALUE:
            raise _too_long("label_replace", dst, size)
        return group or ""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))|\$\$", one, template)


def _checked_label(name: str, what: str) -> str:
    if not LABEL_NAME.match(name):
        raise PromQLError(f"invalid {what} label name in {'label_replace' if what == 'destination' else 'label_join'}"
                          f"(): {name}")
    return name


def _set(labels: Labels, name: str, value: str) -> Labels:
    kept = [p for p in labels if p[0] != name]
    if value:
        kept.append((name, value))
    return tuple(sorted(kept))


def label_replace(vector: Vector, dst: str, replacement: str, src: str, regex: str) -> Vector:
    _checked_label(dst, "destination")
    try:
        pattern = re2.compile(f"^(?:{regex})$")
    except re2.error as exc:
        raise PromQLError(f"invalid regular expression in label_replace(): {regex}: {exc}") from None
    out: Vector = []
    for s in vector:
        m = pattern.search(label(s.labels, src))
        out.append(Sample(_set(s.labels, dst, _expand(replacement, m, dst)), s.value, s.at) if m else s)
    _unique(out, "label_replace")
    return out


def label_join(vector: Vector, dst: str, sep: str, sources: list[str]) -> Vector:
    _checked_label(dst, "destination")
    out: Vector = []
    for s in vector:
        values = [label(s.labels, n) for n in sources]
        size = sum(map(len, values)) + len(sep) * max(len(values) - 1, 0)
        if size > MAX_LABEL_VALUE:
            raise _too_long("label_join", dst, size)
        out.append(Sample(_set(s.labels, dst, sep.join(values)), s.value, s.at))
    _unique(out, "label_join")
    return out


def _unique(vector: Vector, where: str) -> None:
    seen: set[Labels] = set()
    for s in vector:
        if s.labels in seen:
            raise PromQLError(f"vector cannot contain metrics with the same labelset (after {where})", "execution")
        seen.add(s.labels)
