"""PromQL function calls and aggregations for the local query engine (graylane.mesh.telemetry.promql_engine).

The arithmetic of each function lives in promql_functions; here arguments are evaluated and typed, results
named as Prometheus names them (a function's result drops the metric name, except the label functions, `sort`
and `last_over_time`), and `by`/`without` groups formed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from graylane.mesh.telemetry import promql_functions as fn
from graylane.mesh.telemetry.promql_tree import Aggregate, Call, Evaluator, RangeSel, Selector
from graylane.mesh.telemetry.promql_values import (
    NAME,
    Labels,
    PromQLError,
    Sample,
    Scalar,
    Value,
    Vector,
    format_value,
    label,
    without_name,
)

_CLOCK = {
    "minute": lambda d: d.minute, "hour": lambda d: d.hour, "day_of_month": lambda d: d.day,
    "day_of_week": lambda d: (d.weekday() + 1) % 7, "day_of_year": lambda d: d.timetuple().tm_yday,
    "month": lambda d: d.month, "year": lambda d: d.year,
    "days_in_month": lambda d: (datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
                                - datetime(d.year, d.month, 1, tzinfo=UTC)).days,
}


def _clock(name: str, seconds: float) -> float:
    """minute(), hour(), ... of a unix time in UTC; NaN where there is no such date."""
    try:
        return float(_CLOCK[name](datetime.fromtimestamp(seconds, UTC)))
    except (OverflowError, OSError, ValueError):
        return math.nan


def _absent_labels(node: object) -> Labels:
    """What `absent` reports: the selector's equality matchers (other than the name) as labels."""
    sel = node.selector if isinstance(node, RangeSel) else node
    if not isinstance(sel, Selector):
        return ()
    seen: dict[str, str] = {}
    for m in sel.matchers:
        if m.op == "=" and m.name != NAME:
            seen[m.name] = m.value
    return tuple(sorted(seen.items()))


def _built(ev: Evaluator, vector: Vector, dst: str) -> Vector:
    """A label function's result, its new label values counted against the query's samples (each sample holds its
    own copy, and nested calls keep every level's)."""
    ev.count(sum(len(label(s.labels, dst)) for s in vector) // fn.LABEL_CHARS_PER_SAMPLE)
    return vector


def call(ev: Evaluator, node: Call, ts: float) -> Value:  # noqa: C901, PLR0911, PLR0912 (one dispatch table)
    name, args = node.name, node.args
    where = f"call to function \"{name}\""
    if name in ("rate", "increase", "delta"):
        matrix, start, end = ev.range(args[0], ts, where)
        out: Vector = []
        for s in matrix.series:
            v = fn.extrapolated(s.points, start, end, counter=name != "delta", rate=name == "rate")
            if v is not None:
                out.append(Sample(without_name(s.labels), v))
        return out
    if name in ("irate", "idelta"):
        matrix, _, _ = ev.range(args[0], ts, where)
        return [Sample(without_name(s.labels), v) for s in matrix.series
                if (v := fn.instant_change(s.points, counter=name == "irate", rate=name == "irate")) is not None]
    if name in ("deriv", "predict_linear"):
        matrix, _, end = ev.range(args[0], ts, where)
        seconds = ev.scalar(args[1], ts, where) if name == "predict_linear" else 0.0
        out = []
        for s in matrix.series:
            v = fn.deriv(s.points, end) if name == "deriv" else fn.predict_linear(s.points, end, seconds)
            if v is not None:
                out.append(Sample(without_name(s.labels), v))
        return out
    if name in fn.OVER_TIME or name == "quantile_over_time":
        q = ev.scalar(args[0], ts, where) if name == "quantile_over_time" else 0.0
        matrix, _, _ = ev.range(args[-1], ts, where)
        keep_name = name == "last_over_time"
        return [Sample(s.labels if keep_name else without_name(s.labels),
                       fn.quantile(q, [v for _, v in s.points]) if name == "quantile_over_time"
                       else fn.OVER_TIME[name]([v for _, v in s.points]))
                for s in matrix.series if s.points]
    if name == "absent_over_time":
        matrix, _, _ = ev.range(args[0], ts, where)
        return [] if any(s.points for s in matrix.series) else [Sample(_absent_labels(args[0]), 1.0)]
    if name == "absent":
        return [] if ev.vector(args[0], ts, where) else [Sample(_absent_labels(args[0]), 1.0)]
    if name in fn.MATH:
        return fn.map_values(ev.vector(args[0], ts, where), fn.MATH[name])
    if name == "round":
        to = ev.scalar(args[1], ts, where) if len(args) > 1 else 1.0
        return fn.rounded(ev.vector(args[0], ts, where), to)
    if name in ("clamp", "clamp_min", "clamp_max"):
        vector = ev.vector(args[0], ts, where)
        bounds = [ev.scalar(a, ts, where) for a in args[1:]]
        low, high = {"clamp": (bounds[0], bounds[-1]), "clamp_min": (bounds[0], math.inf),
                     "clamp_max": (-math.inf, bounds[0])}[name]
        return fn.clamp(vector, low, high)
    if name == "scalar":
        vector = ev.vector(args[0], ts, where)
        return Scalar(vector[0].value if len(vector) == 1 else math.nan)
    if name == "vector":
        return [Sample((), ev.scalar(args[0], ts, where))]
    if name == "time":
        return Scalar(ts)
    if name == "timestamp":
        return [Sample(without_name(s.labels), s.at if not math.isnan(s.at) else ts)
                for s in ev.vector(args[0], ts, where)]
    if name in ("sort", "sort_desc"):
        vector = ev.vector(args[0], ts, where)
        ordered = sorted((s for s in vector if not math.isnan(s.value)), key=lambda s: s.value,
                         reverse=name == "sort_desc")
        return ordered + [s for s in vector if math.isnan(s.value)]
    if name == "label_replace":
        dst, replacement, src, regex = (ev.string(a, ts, where) for a in args[1:5])
        return _built(ev, fn.label_replace(ev.vector(args[0], ts, where), dst, replacement, src, regex), dst)
    if name == "label_join":
        vector = ev.vector(args[0], ts, where)
        dst, sep, *sources = (ev.string(a, ts, where) for a in args[1:])
        return _built(ev, fn.label_join(vector, dst, sep, sources), dst)
    if name == "histogram_quantile":
        return fn.histogram_quantile(ev.scalar(args[0], ts, where), ev.vector(args[1], ts, where))
    if name in _CLOCK:
        vector = ev.vector(args[0], ts, where) if args else [Sample((), ts)]
        return [Sample(without_name(s.labels), _clock(name, s.value)) for s in vector]
    raise PromQLError(f"function \"{name}\" is not supported by Graylane's local query engine (supported: the rate, "
                      "*_over_time, math, clamp, label, sort, time and histogram_quantile functions)")


def _group(labels: Labels, node: Aggregate) -> Labels:
    if node.without:
        drop = set(node.labels) | {NAME}
        return tuple(p for p in labels if p[0] not in drop)
    if not node.grouped:
        return ()
    keep = set(node.labels)
    return tuple(p for p in labels if p[0] in keep)


def _sum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return sum(values)


def _extreme(values: list[float], *, largest: bool) -> float:
    real = [v for v in values if not math.isnan(v)]
    if not real:
        return math.nan
    return max(real) if largest else min(real)


def aggregate(ev: Evaluator, node: Aggregate, ts: float) -> Vector:
    op = node.op
    where = f"aggregation \"{op}\""
    param: float | str | None = None
    if op in ("topk", "bottomk", "quantile"):
        if node.param is None:
            raise PromQLError(f"{op}: a parameter is required")
        param = ev.scalar(node.param, ts, where)
    elif op == "count_values":
        if node.param is None:
            raise PromQLError("count_values: a label name is required")
        param = ev.string(node.param, ts, where)
        if not fn.LABEL_NAME.match(param):
            raise PromQLError(f"invalid label name {param!r}")
    vector = ev.vector(node.expr, ts, where)
    groups: dict[Labels, list[Sample]] = {}
    for s in vector:
        groups.setdefault(_group(s.labels, node), []).append(s)
    out: Vector = []
    for key, samples in groups.items():
        values = [s.value for s in samples]
        if op in ("topk", "bottomk"):
            assert isinstance(param, float)
            if math.isnan(param):
                raise PromQLError(f"Parameter value is NaN in {op}")
            k = int(min(max(param, 0), len(samples)))
            ranked = sorted(samples, key=lambda s: (math.isnan(s.value), -s.value if op == "topk" else s.value))
            out.extend(ranked[:k])
            continue
        if op == "count_values":
            assert isinstance(param, str)
            counts: dict[str, int] = {}
            for v in values:
                counts[format_value(v)] = counts.get(format_value(v), 0) + 1
            for text, n in counts.items():
                labels = tuple(sorted([p for p in key if p[0] != param] + [(param, text)]))
                out.append(Sample(labels, float(n)))
            continue
        if op == "sum":
            value = _sum(values)
        elif op == "avg":
            value = _sum(values) / len(values)
        elif op == "count":
            value = float(len(values))
        elif op == "group":
            value = 1.0
        elif op == "min":
            value = _extreme(values, largest=False)
        elif op == "max":
            value = _extreme(values, largest=True)
        elif op in ("stddev", "stdvar"):
            value = fn.stddev(values) if op == "stddev" else fn.stdvar(values)
        elif op == "quantile":
            assert isinstance(param, float)
            value = fn.quantile(param, values)
        else:
            raise PromQLError(f"aggregation \"{op}\" is not supported by Graylane's local query engine")
        out.append(Sample(key, value))
    return out

