"""PromQL over the local mesh's recorded scrapes: the answers a Prometheus scraping the data plane would give.

Canary analysis, Grafana panels, Argo AnalysisTemplates and Kayenta configs are written in PromQL against
Istio's standard metrics. With this engine they run on a laptop with no Prometheus: the control plane's
Recorder already holds every scrape of the last 15 minutes (one a second), and a query is evaluated over
those scrapes with Prometheus' semantics: a 5-minute lookback for instant selectors, the range `(t - w, t]`
for range selectors, extrapolated `rate`/`increase`, vector matching with `on`/`ignoring`/`group_left`,
set operators, aggregations with `by`/`without`, subqueries, `offset` and `@`.

The query is bounded and parsed by graylane.mesh.telemetry.promql_tree; functions and aggregations are in
promql_calls. A range query has at most 11,000 steps (Prometheus' limit) and every evaluation has a deadline.
"""

from __future__ import annotations

import bisect
import math
import operator
import time
from collections.abc import Callable, Iterator
from typing import Any

from graylane.mesh.telemetry.promql_calls import aggregate, call
from graylane.mesh.telemetry.promql_functions import divide
from graylane.mesh.telemetry.promql_tree import (
    Aggregate,
    Binary,
    Call,
    Neg,
    Node,
    Num,
    RangeSel,
    Selector,
    Str,
    Subquery,
    parse,
)
from graylane.mesh.telemetry.promql_values import (
    NAME,
    Labels,
    Matrix,
    PromQLError,
    Sample,
    Scalar,
    Series,
    String,
    Value,
    Vector,
    label,
    matrix_json,
    to_json,
    type_name,
    without_name,
)
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import Series as Scrape

MAX_POINTS = 11_000
LOOKBACK_S = 300.0
DEADLINE_S = 10.0
MAX_RESULT_POINTS = 1_000_000  # points a range query or subquery may answer
MAX_SAMPLES = 5_000_000  # samples a query may load or produce (Prometheus' --query.max-samples is 50M on a server)


# ---- binary operators ------------------------------------------------------------------------------------------

def _mod(a: float, b: float) -> float:
    return math.nan if b == 0 or math.isinf(a) else math.fmod(a, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf
    except ValueError:
        return math.nan


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": divide, "%": _mod, "^": _pow, "atan2": math.atan2,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le,
}


def _signature(labels: Labels, on: bool | None, names: tuple[str, ...]) -> Labels:
    if on:
        return tuple((n, label(labels, n)) for n in sorted(names))
    drop = set(names) | {NAME}
    return tuple(p for p in labels if p[0] not in drop)


# ---- evaluation --------------------------------------------------------------------------------------------------

class Evaluation:
    """One query over one snapshot of the recorder; `start`/`end` are what `@ start()`/`@ end()` mean."""

    def __init__(self, times: list[float], scrapes: list[Scrape], *, start: float, end: float,
                 lookback: float = LOOKBACK_S, deadline: float = DEADLINE_S, max_samples: int = MAX_SAMPLES,
                 max_points: int = MAX_RESULT_POINTS) -> None:
        self.times, self.scrapes = times, scrapes
        self.max_samples = max_samples
        self.max_points = max_points
        self.start, self.end, self.lookback = start, end, lookback
        self.deadline = time.monotonic() + deadline
        # (selector, metric name, id of a label tuple) -> the series' labels with its name, or None when the selector
        # does not match it. Ids are stable while this evaluation's snapshot holds the scrapes, and the recorder
        # shares one tuple per series across scrapes, so each series is matched once per query.
        self._labels: dict[tuple[int, str, int], Labels | None] = {}
        self.samples = 0

    def count(self, n: int) -> None:
        self.samples += n
        if self.samples > self.max_samples:
            raise PromQLError("query processing would load too many samples into memory in query execution",
                              "execution")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise PromQLError("query timed out in expression evaluation", "timeout")

    def _time(self, at: tuple[str, float] | None, offset: float, ts: float) -> float:
        if at is not None:
            ts = {"start": self.start, "end": self.end}.get(at[0], at[1])
        return ts - offset

    # selectors
    def _rows(self, sel: Selector, scrape: Scrape) -> Iterator[tuple[Labels, float]]:
        names = [sel.name] if sel.name else list(scrape)
        for name in names:
            rows = scrape.get(name)
            if not rows:
                continue
            for labels, value in rows.items():
                key = (id(sel), name, id(labels))
                full = self._labels.get(key, ())
                if full == ():
                    full = tuple(sorted(labels + ((NAME, name),)))
                    if not all(m.matches(label(full, m.name)) for m in sel.matchers):
                        full = None
                    self._labels[key] = full
                if full is not None:
                    yield full, value

    def select(self, sel: Selector, ts: float) -> Vector:
        ts = self._time(sel.at, sel.offset, ts)
        i = bisect.bisect_right(self.times, ts) - 1
        if i < 0 or self.times[i] < ts - self.lookback:
            return []
        out = [Sample(full, v, self.times[i]) for full, v in self._rows(sel, self.scrapes[i])]
        self.count(len(out))
        return out

    def select_range(self, node: RangeSel, ts: float) -> Matrix:
        sel = node.selector
        ts = self._time(sel.at, sel.offset, ts)
        lo = bisect.bisect_right(self.times, ts - node.range)
        hi = bisect.bisect_right(self.times, ts)
        series: dict[Labels, list[tuple[float, float]]] = {}
        for i in range(lo, hi):
            self.check_time()  # each scrape may hold many series, and a range reads up to the recorder's 15 minutes
            points = 0
            for full, v in self._rows(sel, self.scrapes[i]):
                series.setdefault(full, []).append((self.times[i], v))
                points += 1
            self.count(points)
        return Matrix([Series(k, pts) for k, pts in series.items()])

    def subquery(self, node: Subquery, ts: float) -> Matrix:
        ts = self._time(node.at, node.offset, ts)
        step = node.step or 60.0
        first = math.floor((ts - node.range) / step) * step
        if first <= ts - node.range:
            first += step
        if node.range / step > MAX_POINTS:
            raise PromQLError(f"the subquery would take {node.range / step:.0f} steps; at most {MAX_POINTS}")
        count = int(math.floor((ts - first) / step + 1e-9)) + 1 if first <= ts else 0
        return self.stepped(node.expr, [first + k * step for k in range(count)], "subquery")

    def stepped(self, node: Node, times: list[float], what: str) -> Matrix:
        """`node` evaluated at each of `times` (a range query, a subquery): one series per label set."""
        series: dict[Labels, list[tuple[float, float]]] = {}
        points = 0
        for t in times:
            value = self.eval(node, t)
            if isinstance(value, Scalar):
                series.setdefault((), []).append((t, value.value))
                points += 1
            elif isinstance(value, list):
                for s in value:
                    series.setdefault(s.labels, []).append((t, s.value))
                points += len(value)
            else:
                raise PromQLError(f"invalid expression type \"{type_name(value)}\" for {what}, must be Scalar or "
                                  "instant Vector")
            if points > self.max_points:  # the answer itself (JSON of ~30 bytes a point) stays tens of MB
                raise PromQLError(f"the {what} would answer more than {self.max_points:,} points; ask for fewer "
                                  "series or a coarser step", "execution")
            self.check_time()
        return Matrix([Series(k, pts) for k, pts in series.items()])

    # the tree
    def eval(self, node: Node, ts: float) -> Value:
        if isinstance(node, Num):
            return Scalar(node.value)
        if isinstance(node, Str):
            return String(node.value)
        if isinstance(node, Selector):
            return self.select(node, ts)
        if isinstance(node, RangeSel):
            return self.select_range(node, ts)
        if isinstance(node, Subquery):
            return self.subquery(node, ts)
        if isinstance(node, Neg):
            inner = self.eval(node.expr, ts)
            if isinstance(inner, Scalar):
                return Scalar(-inner.value)
            if isinstance(inner, list):
                return [Sample(without_name(s.labels), -s.value) for s in inner]
            raise PromQLError(f"unary expression only allowed on expressions of type scalar or instant vector, "
                              f"got {type_name(inner)}")
        if isinstance(node, Call):
            return call(self, node, ts)
        if isinstance(node, Aggregate):
            return aggregate(self, node, ts)
        return self.binary(node, ts)

    def vector(self, node: Node, ts: float, where: str) -> Vector:
        value = self.eval(node, ts)
        if not isinstance(value, list):
            raise PromQLError(f"expected type instant vector in {where}, got {type_name(value)}")
        return value

    def scalar(self, node: Node, ts: float, where: str) -> float:
        value = self.eval(node, ts)
        if not isinstance(value, Scalar):
            raise PromQLError(f"expected type scalar in {where}, got {type_name(value)}")
        return value.value

    def string(self, node: Node, ts: float, where: str) -> str:
        value = self.eval(node, ts)
        if not isinstance(value, String):
            raise PromQLError(f"expected type string in {where}, got {type_name(value)}")
        return value.value

    def range(self, node: Node, ts: float, where: str) -> tuple[Matrix, float, float]:
        """A range argument and the range it covers, `(end - range, end]`."""
        if isinstance(node, RangeSel):
            end = self._time(node.selector.at, node.selector.offset, ts)
            return self.select_range(node, ts), end - node.range, end
        if isinstance(node, Subquery):
            end = self._time(node.at, node.offset, ts)
            return self.subquery(node, ts), end - node.range, end
        raise PromQLError(f"expected type range vector in {where}")


    def binary(self, node: Binary, ts: float) -> Value:
        lhs, rhs = self.eval(node.lhs, ts), self.eval(node.rhs, ts)
        op = node.op
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            if op in COMPARISON:
                return Scalar(float(COMPARISON[op](lhs.value, rhs.value)))
            return Scalar(ARITHMETIC[op](lhs.value, rhs.value))
        if isinstance(lhs, list) and isinstance(rhs, list):
            return self._vectors(node, lhs, rhs)
        if isinstance(lhs, list) and isinstance(rhs, Scalar):
            return self._with_scalar(node, lhs, rhs.value, scalar_left=False)
        if isinstance(lhs, Scalar) and isinstance(rhs, list):
            return self._with_scalar(node, rhs, lhs.value, scalar_left=True)
        raise PromQLError(f"binary expression must contain only scalar and instant vector types, "
                          f"got {type_name(lhs)} {op} {type_name(rhs)}")

    @staticmethod
    def _with_scalar(node: Binary, vector: Vector, scalar: float, *, scalar_left: bool) -> Vector:
        op = node.op
        if op in ("and", "or", "unless"):
            raise PromQLError(f"set operator \"{op}\" not allowed in binary scalar expression")
        out: Vector = []
        for s in vector:
            a, b = (scalar, s.value) if scalar_left else (s.value, scalar)
            if op in COMPARISON:
                keep = COMPARISON[op](a, b)
                if node.return_bool:
                    out.append(Sample(without_name(s.labels), float(keep)))
                elif keep:
                    out.append(Sample(s.labels, s.value))  # the vector's value, whichever side it is on
            else:
                out.append(Sample(without_name(s.labels), ARITHMETIC[op](a, b)))
        return out

    def _vectors(self, node: Binary, lhs: Vector, rhs: Vector) -> Vector:
        op, on, names = node.op, node.on, node.matching
        if op in ("and", "or", "unless"):
            right = {_signature(s.labels, on, names) for s in rhs}
            if op == "and":
                return [s for s in lhs if _signature(s.labels, on, names) in right]
            if op == "unless":
                return [s for s in lhs if _signature(s.labels, on, names) not in right]
            left = {_signature(s.labels, on, names) for s in lhs}
            return lhs + [s for s in rhs if _signature(s.labels, on, names) not in left]
        swap = node.card == "one-to-many"
        many, one = (rhs, lhs) if swap else (lhs, rhs)
        ones: dict[Labels, Sample] = {}
        for s in one:
            sig = _signature(s.labels, on, names)
            if sig in ones:
                side = "left" if swap else "right"
                raise PromQLError(f"found duplicate series for the match group {dict(sig)} on the {side} hand-side "
                                  "of the operation; many-to-many matching not allowed: matching labels must be "
                                  "unique on one side", "execution")
            ones[sig] = s
        drop_name = op in ARITHMETIC or node.return_bool
        out: Vector = []
        seen: dict[Labels, Labels] = {}
        for s in many:
            sig = _signature(s.labels, on, names)
            other = ones.get(sig)
            if other is None:
                continue
            a, b = (other.value, s.value) if swap else (s.value, other.value)
            if op in COMPARISON:
                keep = COMPARISON[op](a, b)
                if not node.return_bool and not keep:
                    continue
                value = float(keep) if node.return_bool else a
            else:
                value = ARITHMETIC[op](a, b)
            result = self._result_labels(node, s.labels, other.labels, drop_name)
            if result in seen:
                if node.card == "one-to-one":
                    raise PromQLError("multiple matches for labels: many-to-one matching must be explicit "
                                      "(group_left/group_right)", "execution")
                raise PromQLError("vector cannot contain metrics with the same labelset", "execution")
            seen[result] = sig
            out.append(Sample(result, value))
        return out

    @staticmethod
    def _result_labels(node: Binary, many: Labels, one: Labels, drop_name: bool) -> Labels:
        labels = dict(many)
        if drop_name:
            labels.pop(NAME, None)
        if node.card == "one-to-one":
            if node.on:
                labels = {k: v for k, v in labels.items() if k in node.matching}
            else:
                for k in node.matching:
                    labels.pop(k, None)
        else:
            other = dict(one)
            for k in node.include:
                if other.get(k):
                    labels[k] = other[k]
                else:
                    labels.pop(k, None)
        return tuple(sorted(labels.items()))


# Istio's standard metrics as its docs describe them (/api/v1/metadata: Grafana's metrics browser shows these).
ISTIO_HELP = {
    "istio_requests_total": ("counter", "Requests handled by an Istio proxy (both reporters count each one)."),
    "istio_request_duration_milliseconds": ("histogram", "Duration of requests, in milliseconds."),
    "istio_request_bytes": ("histogram", "HTTP request body sizes."),
    "istio_response_bytes": ("histogram", "HTTP response body sizes."),
    "istio_tcp_sent_bytes_total": ("counter", "Bytes sent during a response in a TCP connection."),
    "istio_tcp_received_bytes_total": ("counter", "Bytes received during a request in a TCP connection."),
    "istio_tcp_connections_opened_total": ("counter", "TCP connections opened."),
    "istio_tcp_connections_closed_total": ("counter", "TCP connections closed."),
}


# ---- the engine --------------------------------------------------------------------------------------------

class Engine:
    """Instant and range queries over a Recorder, answered in Prometheus' HTTP API `data` shapes."""

    def __init__(self, recorder: Recorder, *, lookback: float = LOOKBACK_S, deadline: float = DEADLINE_S,
                 max_samples: int = MAX_SAMPLES, max_points: int = MAX_RESULT_POINTS) -> None:
        self.recorder = recorder
        self.lookback = lookback
        self.deadline = deadline
        self.max_samples = max_samples
        self.max_points = max_points

    def _evaluation(self, start: float, end: float) -> Evaluation:
        times, scrapes = self.recorder.snapshot()
        return Evaluation(times, scrapes, start=start, end=end, lookback=self.lookback, deadline=self.deadline,
                          max_samples=self.max_samples, max_points=self.max_points)

    def evaluate(self, query: str, at: float) -> Value:
        node = parse(query)
        return self._evaluation(at, at).eval(node, at)

    def query(self, query: str, at: float) -> dict[str, Any]:
        return to_json(self.evaluate(query, at), at)

    def query_range(self, query: str, start: float, end: float, step: float) -> dict[str, Any]:
        if not (math.isfinite(step) and math.isfinite(start) and math.isfinite(end)):
            raise PromQLError("start, end and step must be finite numbers")
        if step <= 0:
            raise PromQLError("zero or negative query resolution step widths are not accepted. Try a positive "
                              "integer")
        if end < start:
            raise PromQLError("end timestamp must not be before start time")
        if (end - start) / step + 1 > MAX_POINTS:
            raise PromQLError(f"exceeded maximum resolution of {MAX_POINTS:,} points per timeseries. Try "
                              "decreasing the query resolution (?step=XX)")
        node = parse(query)
        steps = int(math.floor((end - start) / step + 1e-9)) + 1
        matrix = self._evaluation(start, end).stepped(node, [start + k * step for k in range(steps)], "range query")
        return matrix_json(Matrix(sorted(matrix.series, key=lambda s: s.labels)))

    def label_names(self) -> list[str]:
        latest = self.recorder.latest
        names = {NAME} if latest else set()
        for rows in latest.values():
            for labels in rows:
                names.update(k for k, _ in labels)
        return sorted(names)

    def label_values(self, name: str) -> list[str]:
        latest = self.recorder.latest
        if name == NAME:
            return sorted(latest)
        return sorted({v for rows in latest.values() for labels in rows for k, v in labels if k == name})

    def metadata(self) -> dict[str, list[dict[str, str]]]:
        """Prometheus' /api/v1/metadata for the families the recorder holds (a histogram's _bucket, _sum and _count
        samples are one family)."""
        out: dict[str, list[dict[str, str]]] = {}
        for name in self.recorder.latest:
            family = next((f for f in ISTIO_HELP if name == f or name.removeprefix(f) in ("_bucket", "_sum",
                                                                                           "_count")), None)
            if family is not None:
                kind, text = ISTIO_HELP[family]
                out[family] = [{"type": kind, "help": text, "unit": ""}]
        return out

    def series(self, selectors: list[str], at: float) -> list[dict[str, str]]:
        out: dict[Labels, None] = {}
        for text in selectors:
            node = parse(text)
            if not isinstance(node, Selector):
                raise PromQLError(f"invalid parameter \"match[]\": {text!r} is not a series selector")
            for s in self._evaluation(at, at).select(node, at):
                out[s.labels] = None
        return [dict(k) for k in out]


__all__ = ["Engine", "PromQLError"]
