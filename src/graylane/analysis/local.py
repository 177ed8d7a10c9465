"""The `local` metric provider: the local mesh's own Istio standard metrics, no Prometheus needed.

The control plane's telemetry component scrapes the data plane every second into a
`graylane.mesh.telemetry.recorder.Recorder`, which keeps `istio_requests_total` and
`istio_request_duration_milliseconds_bucket` for 15 minutes. A LocalQuery names the Istio metric, a label
filter and an aggregation over a trailing window; the answer is a vector (one value per `by` group, or one
value), shaped like what the equivalent PromQL returns from a real Prometheus:

| aggregation    | PromQL equivalent                                                                  |
|----------------|------------------------------------------------------------------------------------|
| `rate`         | `sum(rate(istio_requests_total{F}[W]))`  (requests per second)                     |
| `increase`     | `sum(increase(istio_requests_total{F}[W]))`  (requests)                            |
| `success-rate` | `(sum(rate(..{F,code!~"5.*"}[W])) or T * 0) / T`, T = `sum(rate(..{F}[W]))`  (0..1)    |
| `error-rate`   | the 5xx share (0..1)                                                               |
| `quantile`     | `histogram_quantile(Q, sum by (le) (rate(istio_request_duration_milliseconds_bucket{F}[W])))` (ms) |

A scope with `start` (and `end`, `step`; the step defaults to the window) asks for a range: the query evaluated
at start, start + step, ... up to end, as a Prometheus range query would (what Kayenta's judge compares).

Filter values: `v` equals, `!v` differs, `~re` matches (the whole value), `!~re` does not match. They may
name `${scope}`, `${location}` and other scope variables. `reporter` defaults to `destination` (each request
is counted by both reporters; summing both would count it twice).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graylane.analysis.measurement import Measurement, Scope, TemplateTooLarge, classify, error, substitute
from graylane.mesh.telemetry.quantile import histogram_quantile
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import Labels
from graylane.resources.durations import format_window
from graylane.resources.durations import query_seconds as parse_duration

REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds"
METRICS = (REQUESTS, DURATION)
Aggregation = Literal["rate", "increase", "success-rate", "error-rate", "quantile"]
AGGREGATIONS: tuple[str, ...] = ("rate", "increase", "success-rate", "error-rate", "quantile")


@dataclass(frozen=True)
class LocalQuery:
    """One metric over the local mesh's recorded series (see the module docstring)."""

    metric: str = REQUESTS
    aggregation: Aggregation = "rate"
    filter: Mapping[str, str] = field(default_factory=dict)
    window: float = 60.0
    quantile: float = 0.99
    by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if (self.aggregation == "quantile") != (self.metric == DURATION):
            raise ValueError("the quantile aggregation goes with istio_request_duration_milliseconds, and only it")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile {self.quantile} is not between 0 and 1")
        if self.window <= 0:
            raise ValueError("window must be positive")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LocalQuery:
        """From a template's provider block: `{metric, aggregation, filter, window: 1m, quantile, by}`."""
        known = {"metric", "aggregation", "filter", "window", "quantile", "by"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}")
        by = spec.get("by") or ()
        return cls(metric=str(spec.get("metric", REQUESTS)), aggregation=spec.get("aggregation", "rate"),
                   filter={str(k): str(v) for k, v in (spec.get("filter") or {}).items()},
                   window=parse_duration(spec.get("window", "1m"), "window"),
                   quantile=float(spec.get("quantile", 0.99)),
                   by=(by,) if isinstance(by, str) else tuple(str(b) for b in by))

    def render(self, variables: Mapping[str, str]) -> str:
        """The PromQL this query stands for, with variables substituted (what a measurement shows)."""
        sel = _selector(self._matchers(variables))
        window = format_window(self.window)
        by = f" by ({', '.join(self.by)})" if self.by else ""
        if self.aggregation in ("rate", "increase"):
            return f"sum{by}({self.aggregation}({REQUESTS}{sel}[{window}]))"
        if self.aggregation in ("success-rate", "error-rate"):
            code = "!~5.*" if self.aggregation == "success-rate" else "~5.*"
            num = _selector({**self._matchers(variables), "response_code": code})
            total = f"sum{by}(rate({REQUESTS}{sel}[{window}]))"
            # A side that never answered (or always answered) 5xx has no series for the numerator: `or total * 0`
            # makes that share 0 instead of an empty result (which would read as "no data", not "no errors").
            return f"(sum{by}(rate({REQUESTS}{num}[{window}])) or {total} * 0) / {total}"
        by_le = f" by ({', '.join(('le', *self.by))})"
        return f"histogram_quantile({self.quantile:g}, sum{by_le}(rate({DURATION}_bucket{sel}[{window}])))"

    def _matchers(self, variables: Mapping[str, str]) -> dict[str, str]:
        out = {"reporter": "destination"}
        out.update({k: substitute(v, variables) for k, v in self.filter.items()})
        return out


RecorderSource = Recorder | Callable[[], Recorder | None]


class LocalProvider:
    """Reads the recorder the local telemetry component fills (or one a test fills)."""

    name = "local"

    def __init__(self, recorder: RecorderSource) -> None:
        self._recorder = recorder

    @classmethod
    def for_control_plane(cls, cp: Any) -> LocalProvider:
        """The running control plane's telemetry recorder (`cp.components["telemetry"].recorder`)."""
        def source() -> Recorder | None:
            telemetry = cp.components.get("telemetry")
            return getattr(telemetry, "recorder", None)
        return cls(source)

    def recorder(self) -> Recorder | None:
        return self._recorder if isinstance(self._recorder, Recorder) else self._recorder()

    async def measure(self, query: LocalQuery, scope: Scope, now: float) -> Measurement:
        variables = scope.values()
        try:
            text = query.render(variables)
            matchers = _compile(query._matchers(variables))
        except KeyError as exc:
            return error(self.name, query.metric, f"the filter names variable(s) without a value: {exc.args[0]}",
                         at=now)
        except re.error as exc:
            return error(self.name, query.metric, f"a filter's regular expression is invalid: {exc}", at=now)
        except TemplateTooLarge as exc:
            return error(self.name, query.metric, str(exc), at=now)
        recorder = self.recorder()
        if recorder is None or recorder.latest_time is None:
            return error(self.name, text, "the local mesh has recorded no metrics yet (is the data plane running "
                                          "and the control plane's telemetry scraping it?)", at=now)
        if scope.start is not None:  # a range: the query evaluated at start, start + step, ... <= end
            end = now if scope.end is None else scope.end
            step = scope.step or query.window
            if step <= 0 or end < scope.start:
                return error(self.name, text, "the range needs a positive step and an end after its start", at=now)
            values, labels_list = [], []
            for i in range(int((end - scope.start) // step) + 1):
                groups = _measure(recorder, query, matchers, scope.start + i * step)
                for k in sorted(groups):
                    values.append(groups[k])
                    labels_list.append(dict(zip(query.by, k, strict=True)))
            return classify(self.name, text, values, at=now, labels=tuple(labels_list) if query.by else (),
                            what=f"local {query.aggregation} every {step:g}s from {scope.start:.0f} to {end:.0f}")
        groups = _measure(recorder, query, matchers, now)
        keys = sorted(groups)
        values = [groups[k] for k in keys]
        labels = tuple(dict(zip(query.by, k, strict=True)) for k in keys) if query.by else ()
        return classify(self.name, text, values, at=now, labels=labels, what=f"local {query.aggregation}")


def _measure(recorder: Recorder, query: LocalQuery, matchers: list[Callable[[Labels], bool]],
             now: float) -> dict[tuple[str, ...], float]:
    """Per group (the `by` labels' values): the aggregated value. Groups without traffic are absent."""
    name = REQUESTS if query.metric == REQUESTS else f"{DURATION}_bucket"
    increases, covered = recorder.increase(name, query.window, now)
    span = covered if covered > 0 else query.window
    rows = [(lab, inc) for lab, inc in increases.items() if all(m(lab) for m in matchers)]

    def key(lab: Labels) -> tuple[str, ...]:
        d = dict(lab)
        return tuple(d.get(b, "") for b in query.by)

    out: dict[tuple[str, ...], float] = {}
    if query.aggregation == "quantile":
        buckets: dict[tuple[str, ...], dict[float, float]] = {}
        for lab, inc in rows:
            le = dict(lab).get("le")
            if le is None:
                continue
            per = buckets.setdefault(key(lab), {})
            bound = math.inf if le in ("+Inf", "Inf") else float(le)
            per[bound] = per.get(bound, 0.0) + inc / span
        # The recorder keeps only series that increased; a bucket below the first busy one still bounds the
        # interpolation (as in Prometheus, where it is there with a zero rate), so restore the empty ones.
        for lab in recorder.latest.get(name, {}):
            per = buckets.get(key(lab))
            le = dict(lab).get("le")
            if per is not None and le is not None and all(m(lab) for m in matchers):
                per.setdefault(math.inf if le in ("+Inf", "Inf") else float(le), 0.0)
        for k, per in buckets.items():
            q = histogram_quantile(query.quantile, per.items())
            out[k] = math.nan if q is None else q
        return out
    totals: dict[tuple[str, ...], list[float]] = {}
    for lab, inc in rows:
        t = totals.setdefault(key(lab), [0.0, 0.0])
        t[0] += inc
        if dict(lab).get("response_code", "").startswith("5"):
            t[1] += inc
    for k, (total, errors) in totals.items():
        if query.aggregation == "rate":
            out[k] = total / span
        elif query.aggregation == "increase":
            out[k] = total
        elif total <= 0:
            out[k] = math.nan
        else:
            share = errors / total
            out[k] = share if query.aggregation == "error-rate" else 1.0 - share
    return out


def _compile(matchers: Mapping[str, str]) -> list[Callable[[Labels], bool]]:
    out: list[Callable[[Labels], bool]] = []
    for label, raw in matchers.items():
        out.append(_matcher(label, raw))
    return out


def _matcher(label: str, raw: str) -> Callable[[Labels], bool]:
    negate = raw.startswith("!")
    body = raw[1:] if negate else raw
    if body.startswith("~"):
        pattern = re.compile(body[1:])

        def test(value: str) -> bool:
            return pattern.fullmatch(value) is not None
    else:
        def test(value: str) -> bool:
            return value == body

    def match(lab: Labels) -> bool:
        value = next((v for k, v in lab if k == label), "")
        return test(value) != negate
    return match


def _selector(matchers: Mapping[str, str]) -> str:
    parts = []
    for label, raw in matchers.items():
        negate = raw.startswith("!")
        body = raw[1:] if negate else raw
        if body.startswith("~"):
            parts.append(f'{label}{"!~" if negate else "=~"}"{body[1:]}"')
        else:
            parts.append(f'{label}{"!=" if negate else "="}"{body}"')
    return "{" + ",".join(parts) + "}"
