"""The local PromQL engine answers as a real Prometheus does over the same samples.

Fifteen minutes of Istio-standard series (one scrape a second, a counter reset, a series that appears
mid-way) go both into a Recorder, as the control plane's telemetry fills it, and through promtool into a
real Prometheus; the queries peers ship (Flagger's built-in checks, Argo Rollouts' and Kayenta's examples,
Kiali's and Istio's Grafana dashboards' queries) must give the same series and values from both, instant
and range. Then what Prometheus refuses, and hostile queries, are refused with a reason and in bounded time.
"""

from __future__ import annotations

import json
import math
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.prometheus_server import backfilled_prometheus

from graylane.mesh.telemetry.promql_engine import Engine
from graylane.mesh.telemetry.promql_values import PromQLError
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import labels_of

SPAN = 15 * 60
LE = ("5", "10", "25", "100", "500", "+Inf")
NS = "bookinfo"


def _base(version: str, reporter: str) -> dict[str, str]:
    return {"reporter": reporter, "source_workload": "productpage-v1", "source_workload_namespace": NS,
            "destination_service": f"reviews.{NS}.svc.cluster.local", "destination_service_name": "reviews",
            "destination_workload": f"reviews-{version}", "destination_workload_namespace": NS,
            "destination_version": version}


@dataclass
class Recording:
    start: float
    end: float
    scrapes: list[tuple[float, dict[str, dict[tuple[tuple[str, str], ...], float]]]]

    def openmetrics(self) -> str:
        families: dict[str, dict[tuple[tuple[str, str], ...], list[str]]] = {}
        for t, series in self.scrapes:
            for name, rows in series.items():
                for labels, value in rows.items():
                    families.setdefault(name, {}).setdefault(labels, []).append(f"{value!r} {t:.3f}")
        lines = []
        for name, rows in families.items():
            lines.append(f"# TYPE {name} gauge")  # the type does not change PromQL's answers
            for labels, samples in rows.items():
                text = "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
                lines.extend(f"{name}{text} {s}" for s in samples)
        return "\n".join(lines + ["# EOF"]) + "\n"


def record(end_at: float) -> Recording:
    rnd = random.Random(7)
    start = math.floor(end_at - SPAN) + 0.25  # samples at .25 of a second, queries at .75: no sample on an edge
    counts: dict[tuple[str, str, str], float] = {}
    buckets: dict[tuple[str, str], float] = {}
    sums: dict[str, float] = {}
    scrapes = []
    for i in range(SPAN):
        t = start + i
        for version, code, rate in (("v1", "200", 9.0), ("v1", "503", 0.2), ("v2", "200", 6.0), ("v2", "503", 1.5)):
            if version == "v2" and code == "503" and i < 200:
                continue  # the canary starts failing after 200 s: a series that appears mid-recording
            for reporter in ("source", "destination"):
                key = (version, code, reporter)
                if reporter == "destination":
                    counts[key] = counts.get(key, 0.0) + rnd.randint(0, int(rate * 2))
                else:
                    counts[key] = counts.get((version, code, "destination"), 0.0)
            if version == "v1" and code == "200" and i == 500:
                counts[(version, code, "destination")] = 3.0  # a restarted data plane: the counter reset
        for version, slow in (("v1", 0.1), ("v2", 0.5)):
            n = rnd.randint(5, 12)
            for k, le in enumerate(LE):
                share = 1.0 if le == "+Inf" else min(1.0, (k + 1) * (0.35 - slow * 0.3))
                buckets[(version, le)] = buckets.get((version, le), 0.0) + round(n * share)
            sums[version] = sums.get(version, 0.0) + n * (4 + 40 * slow)
        series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
            "istio_requests_total": {labels_of(dict(_base(v, r), response_code=c)): value
                                     for (v, c, r), value in counts.items()},
            "istio_request_duration_milliseconds_bucket": {
                labels_of(dict(_base(v, "destination"), le=le)): value for (v, le), value in buckets.items()},
            "istio_request_duration_milliseconds_sum": {labels_of(_base(v, "destination")): value
                                                        for v, value in sums.items()},
            "istio_request_duration_milliseconds_count": {
                labels_of(_base(v, "destination")): buckets[(v, "+Inf")] for v in sums},
        }
        scrapes.append((t, series))
    return Recording(start, start + SPAN - 1, scrapes)


@pytest.fixture(scope="module")
def recording() -> Recording:
    return record(float(int(time.time()) - 10 * 60))


@pytest.fixture(scope="module")
def engine(recording: Recording) -> Engine:
    recorder = Recorder(retention=2 * SPAN)
    for t, series in recording.scrapes:
        recorder.add(series, at=t)
    return Engine(recorder)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, recording: Recording) -> Iterator[str]:
    with backfilled_prometheus(tmp_path_factory.mktemp("promql"), recording.openmetrics()) as url:
        yield url


def ask(url: str, path: str, **params: Any) -> dict[str, Any]:
    body = urllib.parse.urlencode({k: str(v) for k, v in params.items()}).encode()
    with urllib.request.urlopen(url + path, data=body, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert answer["status"] == "success", answer
    return dict(answer["data"])


def same_value(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def assert_same(theirs: dict[str, Any], ours: dict[str, Any], query: str) -> None:
    assert ours["resultType"] == theirs["resultType"], query
    if theirs["resultType"] == "scalar":
        assert same_value(theirs["result"][1], ours["result"][1]), (query, theirs, ours)
        return
    key = "values" if theirs["resultType"] == "matrix" else "value"

    def by_labels(data: dict[str, Any]) -> dict[str, Any]:
        return {json.dumps(item["metric"], sort_keys=True): item[key] for item in data["result"]}

    them, us = by_labels(theirs), by_labels(ours)
    assert sorted(us) == sorted(them), query
    assert them or "absent" in query, f"Prometheus found nothing for {query}: the comparison would prove nothing"
    for labels, expected in them.items():
        got = us[labels]
        if key == "value":
            expected, got = [expected], [got]
        assert [round(float(t), 3) for t, _ in got] == [round(float(t), 3) for t, _ in expected], (query, labels)
        assert all(same_value(a[1], b[1]) for a, b in zip(expected, got, strict=True)), (query, labels, expected, got)


SELECT = f'reporter="destination",destination_workload_namespace="{NS}"'
# Flagger's built-in request-success-rate and request-duration checks (Istio provider), as it renders them.
FLAGGER_SUCCESS = (f'sum(rate(istio_requests_total{{{SELECT},destination_workload=~"reviews-v2",'
                   f'response_code!~"5.*"}}[1m])) / sum(rate(istio_requests_total{{{SELECT},'
                   f'destination_workload=~"reviews-v2"}}[1m])) * 100')
FLAGGER_DURATION = (f'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{{SELECT},'
                    f'destination_workload=~"reviews-v2"}}[1m])) by (le))')
# Argo Rollouts' Istio success-rate AnalysisTemplate example.
ARGO_SUCCESS = ('sum(irate(istio_requests_total{reporter="source",'
                'destination_service=~"reviews.bookinfo.svc.cluster.local",response_code!~"5.*"}[5m])) / '
                'sum(irate(istio_requests_total{reporter="source",'
                'destination_service=~"reviews.bookinfo.svc.cluster.local"}[5m]))')
QUERIES = [
    FLAGGER_SUCCESS, FLAGGER_DURATION, ARGO_SUCCESS,
    # Kiali's graph: requests per edge and code over a window
    'sum by (source_workload, destination_workload, response_code) '
    '(increase(istio_requests_total{reporter="source"}[2m]))',
    # Istio's Grafana mesh dashboard
    'round(sum(irate(istio_requests_total{reporter="destination"}[1m])), 0.001)',
    'sum(rate(istio_request_duration_milliseconds_sum[1m])) by (destination_version) / '
    'sum(rate(istio_request_duration_milliseconds_count[1m])) by (destination_version)',
    'histogram_quantile(0.5, sum by (le, destination_version) (rate(istio_request_duration_milliseconds_bucket[2m])))',
    # Kayenta-style per-version error ratio with vector matching
    'sum by (destination_version) (rate(istio_requests_total{response_code=~"5..",reporter="destination"}[1m])) / '
    'on(destination_version) sum by (destination_version) (rate(istio_requests_total{reporter="destination"}[1m]))',
    'rate(istio_requests_total{response_code="503"}[1m]) / ignoring(response_code) group_left '
    'sum without(response_code) (rate(istio_requests_total[1m]))',
    # the reset counter, over a window that holds the reset
    'increase(istio_requests_total{destination_version="v1",response_code="200",reporter="destination"}[5m])',
    'resets(istio_requests_total{destination_version="v1",response_code="200"}[10m])',
    'max_over_time(sum(rate(istio_requests_total{reporter="destination"}[1m]))[5m:30s])',
    'topk(2, sum by (destination_version, response_code) (rate(istio_requests_total[1m])))',
    'sum(rate(istio_requests_total{reporter="destination"}[1m] offset 2m))',
    'sum by (destination_version) (rate(istio_requests_total{response_code=~"5.*"}[1m])) or '
    'sum by (destination_version) (rate(istio_requests_total[1m])) * 0',
    'count(istio_requests_total) by (reporter)',
    'absent(istio_requests_total{destination_version="v3"})',
    'sum(rate(istio_requests_total[1m])) > bool 20',
    'rate(istio_requests_total[1m]) > 5',
    'avg_over_time(istio_request_duration_milliseconds_count[30s])',
    'quantile(0.9, rate(istio_requests_total[1m]))',
    'stddev(rate(istio_requests_total[1m]))',
    'label_replace(sum by (destination_version) (rate(istio_requests_total[1m])), "track", "canary-$1", '
    '"destination_version", "v(2)")',
    'clamp_max(sum by (destination_version) (rate(istio_requests_total[1m])), 10)',
    'delta(istio_request_duration_milliseconds_sum{destination_version="v1"}[90s])',
    'irate(istio_requests_total{reporter="source",response_code="200"}[1m])',
    'istio_requests_total{response_code!="200",reporter="source"}',
    'sum(istio_requests_total) - sum(istio_requests_total offset 1m)',
    'scalar(sum(rate(istio_requests_total[1m]))) * 2',
    'vector(1) + 1',
    '2 ^ 10 % 7',
]


@pytest.mark.parametrize("query", QUERIES)
def test_an_instant_query_answers_as_prometheus(query: str, prometheus: str, engine: Engine,
                                                 recording: Recording) -> None:
    for at in (recording.end - 0.5, recording.end - 300.5, recording.start + 250.5):
        assert_same(ask(prometheus, "/api/v1/query", query=query, time=f"{at:.3f}"), engine.query(query, at),
                    f"{query} @ {at}")


@pytest.mark.parametrize("query", [FLAGGER_SUCCESS, FLAGGER_DURATION, ARGO_SUCCESS,
                                   'sum by (destination_version) (rate(istio_requests_total[1m]))'])
def test_a_range_query_answers_as_prometheus(query: str, prometheus: str, engine: Engine,
                                             recording: Recording) -> None:
    start, end = recording.end - 400.5, recording.end - 0.5
    theirs = ask(prometheus, "/api/v1/query_range", query=query, start=f"{start:.3f}", end=f"{end:.3f}", step="15")
    assert_same(theirs, engine.query_range(query, start, end, 15), query)


def test_what_prometheus_refuses_is_refused_with_its_reason(engine: Engine, recording: Recording) -> None:
    at = recording.end
    for query, reason in [("sum(rate(istio_requests_total[1m])", "unclosed left parenthesis"),
                          ('istio_requests_total{response_code=~"("}', "regex"),
                          ("rate(istio_requests_total)", "expected type matrix"),
                          ("holt_winters(istio_requests_total[5m], 0.5, 0.5)", "holt_winters"),
                          ("istio_requests_total / on() istio_requests_total", "many-to-many")]:
        with pytest.raises(PromQLError) as caught:
            engine.query(query, at)
        assert reason in caught.value.message, (query, caught.value.message)
    with pytest.raises(PromQLError, match="more than 10,000 points"):  # every series, every second: the answer
        Engine(engine.recorder, max_points=10_000).query_range('{__name__=~".+"}', recording.end - 890,
                                                               recording.end, 1)
    with pytest.raises(PromQLError, match="11,000 points"):
        engine.query_range("vector(1)", at - 86_400, at, 1)
    with pytest.raises(PromQLError, match="invalid expression type \"range vector\""):
        engine.query_range("istio_requests_total[1m]", at - 60, at, 15)


@pytest.mark.timeout(60)
def test_hostile_queries_are_refused_before_parsing(engine: Engine, recording: Recording) -> None:
    """A long operator chain takes the parser seconds and a few thousand crash it; deep nesting is quadratic."""
    at = recording.end
    for query, reason in [("+".join(["x"] * 5000), "operators"),
                          ("(" * 5000 + "1" + ")" * 5000, "nests"),
                          ("sum(" * 400 + "x" + ")" * 400, "nests"),
                          ("x" * 100_000, "bytes")]:
        with pytest.raises(PromQLError, match=reason):
            engine.query(query, at)
    # a regex that backtracks catastrophically elsewhere is linear in RE2
    assert engine.query('istio_requests_total{source_workload=~"(p*)*' + "(p*)*" * 50 + 'x"}', at)["result"] == []
    # a query that would load more samples than the engine's bound is refused as Prometheus refuses it
    small = Engine(engine.recorder, max_samples=100_000)
    with pytest.raises(PromQLError, match="too many samples"):
        small.query('count_over_time(count_over_time({__name__=~"istio.*"}[15m])[15m:1s])', at)
    assert small.query("count(istio_requests_total)", at)["result"][0]["value"][1] == "8"
    # within the bounds, a long but legal query still runs
    legal = " + ".join(["sum(rate(istio_requests_total[1m]))"] * 150)
    assert engine.query(legal, at)["resultType"] == "vector"


def test_results_are_named_as_prometheus_names_them(engine: Engine, recording: Recording) -> None:
    at = recording.end - 0.5
    raw = engine.query('istio_requests_total{reporter="source",response_code="200",destination_version="v1"}', at)
    assert raw["result"][0]["metric"]["__name__"] == "istio_requests_total"
    rated = engine.query('rate(istio_requests_total{reporter="source",response_code="200"}[1m])', at)
    assert all("__name__" not in item["metric"] for item in rated["result"])
    assert engine.query("1/0", at)["result"][1] == "+Inf"
    assert engine.query("0/0", at)["result"][1] == "NaN"
    assert engine.query("0.00001", at)["result"][1] == "0.00001"


def test_labels_and_series_for_dashboards(engine: Engine, recording: Recording) -> None:
    assert "destination_version" in engine.label_names()
    assert engine.label_values("destination_version") == ["v1", "v2"]
    assert "istio_requests_total" in engine.label_values("__name__")
    found = engine.series(['istio_requests_total{reporter="source",destination_version="v2"}'], recording.end)
    assert {s["response_code"] for s in found} == {"200", "503"}
    meta = engine.metadata()  # a histogram's _bucket, _sum and _count are one family
    assert meta["istio_request_duration_milliseconds"] == [{"type": "histogram", "unit": "",
                                                            "help": "Duration of requests, in milliseconds."}]
    assert set(meta) == {"istio_requests_total", "istio_request_duration_milliseconds"}


def test_a_recording_holds_what_the_engine_is_fed(recording: Recording) -> None:
    """The fixture itself: a reset and a late series are in it, so the comparisons above cover both."""
    v1 = [s["istio_requests_total"][labels_of(dict(_base("v1", "destination"), response_code="200"))]
          for _, s in recording.scrapes]
    assert any(b < a for a, b in zip(v1, v1[1:], strict=False))
    late = labels_of(dict(_base("v2", "destination"), response_code="503"))
    assert late not in recording.scrapes[0][1]["istio_requests_total"]
    assert late in recording.scrapes[-1][1]["istio_requests_total"]


FUNCS = ["rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes",
         "avg_over_time", "sum_over_time", "quantile_over_time", "last_over_time", "stddev_over_time", "absent",
         "absent_over_time", "abs", "ceil", "floor", "round", "sqrt", "exp", "ln", "log2", "clamp", "clamp_min",
         "clamp_max", "scalar", "vector", "time", "timestamp", "sort", "sort_desc", "label_replace", "label_join",
         "histogram_quantile", "minute", "hour", "day_of_week", "days_in_month", "year", "sgn"]
AGGS = ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
        "count_values"]
OPS = ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless", "atan2"]
LEAVES = ["istio_requests_total", 'istio_requests_total{destination_version="v2"}',
          "istio_request_duration_milliseconds_bucket", "1", "0", "-1", "NaN", "Inf", "0.5", "1e308", '"s"', '"le"',
          '"(.*)"', "time()", "istio_requests_total[1m]", "istio_request_duration_milliseconds_sum[30s]",
          "istio_requests_total[2m:10s]", "istio_requests_total offset 1m", 'nope{a="b"}']


def _random_query(rnd: random.Random, depth: int = 0) -> str:
    r = rnd.random()
    if depth > 3 or r < 0.2:
        return rnd.choice(LEAVES)
    if r < 0.45:
        args = ", ".join(_random_query(rnd, depth + 1) for _ in range(rnd.randint(0, 4)))
        return f"{rnd.choice(FUNCS)}({args})"
    if r < 0.7:
        grouping = rnd.choice(["", " by (destination_version)", " without (le)", " by ()"])
        args = ", ".join(_random_query(rnd, depth + 1) for _ in range(rnd.randint(1, 2)))
        return f"{rnd.choice(AGGS)}{grouping}({args})"
    op = rnd.choice(OPS)
    matching = "" if op in ("and", "or", "unless") else rnd.choice(
        ["", " bool", " on(destination_version)", " ignoring(le)", " on(destination_version) group_left(le)",
         " ignoring(response_code) group_right"])
    return f"({_random_query(rnd, depth + 1)} {op}{matching} {_random_query(rnd, depth + 1)})"


def test_any_well_formed_or_ill_typed_query_gets_an_answer_or_a_reason(engine: Engine, recording: Recording) -> None:
    """Random compositions of every function, aggregation and operator over the recorded series (ill-typed
    ones included: NaN rounding, overflowing exponents, huge clock values): a result or a PromQLError, never
    another exception."""
    rnd = random.Random(20261206)
    found_by_fuzzing = ["minute(exp(istio_requests_total))", "round(istio_requests_total, NaN)",
                        "round(istio_requests_total, Inf)", "stddev(exp(istio_request_duration_milliseconds_sum))",
                        "stddev(quantile without (le)(-1, istio_request_duration_milliseconds_bucket))"]
    answered = refused = 0
    for query in found_by_fuzzing + [_random_query(rnd) for _ in range(1500)]:
        try:
            engine.query(query, recording.end - 0.5)
            answered += 1
        except PromQLError:
            refused += 1
    assert answered > 200 and refused > 200  # both paths were exercised



def test_the_deadline_stops_a_range_selector_within_a_scrape(engine: Engine, recording: Recording,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A range selector over fifteen minutes of a big recorder reads every scrape; the deadline must not wait for
    the whole range (a selector matching nothing loads no samples, so the sample bound never stops it)."""
    from types import SimpleNamespace

    from graylane.mesh.telemetry import promql_engine

    times, scrapes = engine.recorder.snapshot()
    read: list[int] = []

    class Counted(list):  # type: ignore[type-arg]
        def __getitem__(self, i: Any) -> Any:
            read.append(i)
            return super().__getitem__(i)

    counted = Engine(SimpleNamespace(snapshot=lambda: (times, Counted(scrapes))))  # type: ignore[arg-type]
    clock = iter([0.0] + [100.0] * 10_000)  # the evaluation starts at 0; every later look is past its deadline
    monkeypatch.setattr(promql_engine.time, "monotonic", lambda: next(clock))
    with pytest.raises(PromQLError, match="timed out"):
        counted.query('count_over_time({__name__=~"nothing_matches"}[15m])', recording.end)
    assert len(read) <= 2, f"{len(read)} scrapes read after the deadline passed"


def test_label_text_built_counts_against_the_samples(engine: Engine, recording: Recording) -> None:
    """Every sample label_replace rewrites holds its own copy of the new value: long values count as samples."""
    small = Engine(engine.recorder, max_samples=1_000)
    long_value = "x" * 16_000  # 250 samples' worth for each of the 8 series
    with pytest.raises(PromQLError, match="too many samples"):
        small.query(f'label_replace(istio_requests_total, "big", "{long_value}", "", "")', recording.end)
    assert len(small.query('label_replace(istio_requests_total, "big", "short", "", "")',
                           recording.end)["result"]) == 8
