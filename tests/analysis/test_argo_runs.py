"""Argo Rollouts AnalysisTemplates from Argo's documentation, loaded unchanged and run (prometheus against a REAL
Prometheus, web against a real HTTP server), the AnalysisRun phase rules as a table, and the Flagger built-ins.
Time is a ManualClock: intervals of minutes pass instantly."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from tests.analysis.test_providers import LOOPBACK, T0, Handler, Prom, record, start_prometheus

from graylane.analysis.argo import Metric, ResolvedRun, load_template, resolve
from graylane.analysis.argo_run import AnalysisRun, ManualClock, Providers, judge
from graylane.analysis.builtins import flagger_checks, request_duration, request_success_rate
from graylane.analysis.local import LocalProvider
from graylane.analysis.measurement import Measurement, Scope, classify, error
from graylane.analysis.prometheus_provider import PrometheusProvider
from graylane.analysis.web import WebProvider
from graylane.errors import ValidationError
from graylane.mesh.proxy.stats import Stats
from graylane.mesh.telemetry.component import KEPT
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import parse_text

# docs/analysis/prometheus.md, verbatim
SUCCESS_RATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 5m
    # NOTE: prometheus queries return results in the form of a vector.
    # So it is common to access the index 0 of the returned array to obtain the value
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        # timeout is expressed in seconds
        timeout: 40
        headers:
        - key: X-Scope-OrgID
          value: tenant_a
        query: |
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code!~"5.*"}[5m]
          )) /
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}"}[5m]
          ))
"""
# docs/analysis/prometheus.md "Range queries", verbatim
RANGE_QUERY = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: range-query-example
spec:
  args:
  - name: service-name
  - name: lookback-duration
    value: 5m
  metrics:
  - name: success-rate
    # checks that all returned values are under 1000ms
    successCondition: "all(result, # < 1000)"
    failureLimit: 3
    provider:
      prometheus:
        rangeQuery:
          # See https://expr-lang.org/docs/language-definition#date-functions
          # for value date functions
          # The start point to query from
          start: 'now() - duration("{{args.lookback-duration}}")'
          # The end point to query to
          end: 'now()'
          # Query resolution width
          step: 1m
        address: http://prometheus.example.com:9090
        query: http_latency_ms{service="{{args.service-name}}"}
"""
# docs/features/analysis.md "Failure Conditions and Failure Limit", wrapped in a ClusterAnalysisTemplate
TOTAL_ERRORS = """
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata:
  name: total-errors
spec:
  args:
  - name: service-name
  metrics:
  - name: total-errors
    interval: 5m
    failureCondition: result[0] >= 10
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code=~"5.*"}[5m]
          ))
"""
# docs/analysis/web.md, with the token from a secret as in "Referencing Secrets"
WEB = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: webmetric
spec:
  args:
  - name: service-name
  - name: api-token
    valueFrom:
      secretKeyRef:
        name: token-secret
        key: apiToken
  metrics:
  - name: webmetric
    successCondition: "result.ok && result.successPercent >= 0.90"
    provider:
      web:
        url: "http://my-server.com/measure?service={{ args.service-name }}"
        headers:
          - key: Authorization
            value: "Bearer {{ args.api-token }}"
        jsonPath: "{$.data}"
"""
SERVICE = "reviews.bookinfo.svc.cluster.local"


def doc(text: str, **replace: str) -> dict[str, Any]:
    for old, new in replace.items():
        text = text.replace(old, new)
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    yield from start_prometheus(tmp_path_factory.mktemp("prom"))


@pytest.mark.asyncio
async def test_argo_success_rate_template_fails_on_a_real_prometheus(prometheus: Prom) -> None:
    template = load_template(doc(SUCCESS_RATE, **{"http://prometheus.example.com:9090": prometheus.url}))
    assert template.metrics[0].interval == 300 and template.metrics[0].effective_count is None
    resolved = resolve([template], {"service-name": SERVICE})
    clock = ManualClock(prometheus.end - 20 * 60)
    status = await AnalysisRun(resolved, Providers(), clock=clock).run()
    # reviews answers 17.9 of 20 req/s without a 5xx: 0.895 < 0.95, four times (> failureLimit 3), 5 m apart
    assert status.phase == "Failed"
    result = status.metrics["success-rate"]
    assert (result.count, result.failed, result.successful) == (4, 4, 0)
    assert [t.started_at for t in result.measurements] == [prometheus.end - 1200 + 300 * i for i in range(4)]
    last = result.measurements[-1]
    assert last.measurement.value == [pytest.approx(0.895, rel=1e-3)]
    assert f'destination_service=~"{SERVICE}"' in last.measurement.query  # the resolved query
    assert "successCondition `result[0] >= 0.95` is false" in last.reason and "0.895" in last.reason
    assert status.message.startswith('Metric "success-rate" assessed Failed due to failed (4) > failureLimit (3)')
    assert "result = [0.895" in status.message  # the value and the condition, not just the count (#3008)


@pytest.mark.asyncio
async def test_argo_failure_condition_template_passes_until_terminated(prometheus: Prom) -> None:
    template = load_template(doc(TOTAL_ERRORS, **{"http://prometheus.example.com:9090": prometheus.url}))
    assert template.kind == "ClusterAnalysisTemplate"
    clock = ManualClock(prometheus.end - 15 * 60)
    run = AnalysisRun(resolve([template], {"service-name": SERVICE}), Providers(), clock=clock,
                      until=prometheus.end)
    status = await run.run()
    assert status.phase == "Successful"
    result = status.metrics["total-errors"]
    assert result.successful == 3 and result.failed == 0  # at -15, -10 and -5 minutes; terminated at 0
    assert result.measurements[0].measurement.value == [pytest.approx(2.1, rel=1e-3)]
    assert "failureCondition `result[0] >= 10` is false" in result.measurements[0].reason
    assert "the run was terminated" in result.message


@pytest.mark.asyncio
async def test_argo_range_query_template(prometheus: Prom) -> None:
    template = load_template(doc(RANGE_QUERY, **{"http://prometheus.example.com:9090": prometheus.url}))

    async def run(args: dict[str, str]) -> Any:
        return await AnalysisRun(resolve([template], args), Providers(), clock=ManualClock(prometheus.end)).run()

    steady = await run({"service-name": "reviews"})
    assert steady.phase == "Successful", steady.message
    taken = steady.metrics["success-rate"].measurements[0]
    assert len(taken.measurement.values) == 6  # 5m back at a 1m step, both ends
    assert "range query (5m ending at" in taken.measurement.message
    spiky = await run({"service-name": "ratings", "lookback-duration": "3m"})
    # Argo would call this Successful (failed 1 <= failureLimit 3); with no successful measurement it is not (#4479)
    assert spiky.phase == "Failed"
    assert "without a single successful measurement" in spiky.message
    assert "1500" in spiky.metrics["success-rate"].measurements[0].reason
    json.dumps(spiky.to_json())  # the whole status is JSON


@pytest.mark.asyncio
async def test_argo_web_template_with_a_secret_header(web_server: str) -> None:
    template = load_template(doc(WEB, **{"http://my-server.com": web_server}))
    secrets = {("token-secret", "apiToken"): "t0ken"}
    resolved = resolve([template], {"service-name": "reviews"}, secrets=lambda n, k: secrets[(n, k)])
    status = await AnalysisRun(resolved, Providers(web=WebProvider(allowed_networks=LOOPBACK)),
                               clock=ManualClock()).run()
    assert status.phase == "Successful", status.message
    taken = status.metrics["webmetric"].measurements
    assert len(taken) == 1 and taken[0].measurement.value["successPercent"] == 0.95
    assert Handler.seen[-1]["headers"]["Authorization"] == "Bearer t0ken"
    assert Handler.seen[-1]["path"] == "/measure?service=reviews"
    # the same template where loopback is not trusted: an Error that says why, never a success
    blocked = await AnalysisRun(resolved, Providers(), clock=ManualClock()).run()
    assert blocked.phase == "Error"
    assert "loopback" in blocked.metrics["webmetric"].measurements[0].reason
    assert "t0ken" not in str(blocked.to_json())


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- phase rules -----------------------------------------------------------------------------------------------

class Scripted:
    """A provider answering from a list: a number, a list, None (empty), "E" (a provider error)."""

    name = "local"

    def __init__(self, answers: Sequence[Any]) -> None:
        self.answers = list(answers)
        self.calls: list[float] = []

    async def measure(self, query: Any, scope: Scope, now: float) -> Measurement:
        self.calls.append(now)
        answer = self.answers.pop(0) if self.answers else self.answers_exhausted()
        if answer == "E":
            return error("local", "q", "connection refused", at=now)
        if answer is None:
            return classify("local", "q", [], at=now)
        if isinstance(answer, list):
            return classify("local", "q", [float(a) for a in answer], at=now)
        return classify("local", "q", [float(answer)], value=float(answer), at=now)

    @staticmethod
    def answers_exhausted() -> Any:
        raise AssertionError("measured more often than the rules allow")


def metric(name: str = "m", **kw: Any) -> Metric:
    return Metric(name=name, provider="local", spec={"metric": "istio_requests_total"}, **kw)


async def run_rules(answers: Sequence[Any], until: float | None = None, **kw: Any) -> tuple[Any, Scripted]:
    provider = Scripted(answers)
    clock = ManualClock(0.0)
    status = await AnalysisRun(ResolvedRun((metric(**kw),), {}), Providers(local=provider), clock=clock,
                               until=until).run()
    return status, provider


NAN = math.nan
RULES: list[tuple[str, list[Any], dict[str, Any], str, str]] = [
    # (case, answers, metric fields, run phase, words in the metric's message or last reason)
    ("no condition is a success", [0.1], {}, "Successful", "no condition"),
    ("success only, false: Failed", [0.5], {"success_condition": "result >= 0.95"}, "Failed", "is false"),
    ("failure only, false: Successful", [0.5], {"failure_condition": "result >= 0.95"}, "Successful", "is false"),
    ("both, neither holds: Inconclusive", [0.7],
     {"success_condition": "result >= 0.9", "failure_condition": "result < 0.5"}, "Inconclusive", "neither"),
    ("NaN fails a comparison", [NAN], {"success_condition": "result >= 0.95"}, "Failed", "NaN"),
    ("NaN allowed by isNaN", [NAN], {"success_condition": "isNaN(result) || result >= 0.95"}, "Successful", ""),
    ("NaN with both conditions", [NAN],
     {"success_condition": "result >= 0.95", "failure_condition": "result < 0.95"}, "Inconclusive", ""),
    ("empty result indexed: Error, no index panic", [None] * 5, {"success_condition": "result[0] >= 0.95"},
     "Error", "metric result is nil or empty"),
    ("empty allowed by len", [None], {"success_condition": "len(result) == 0 || result[0] >= 0.95"},
     "Successful", ""),
    ("empty refused by len", [None], {"success_condition": "len(result) > 0 && result[0] >= 0.95"},
     "Failed", ""),
    ("failureLimit 1 allows one failure", [0.1, 0.99, 0.99],
     {"success_condition": "result > 0.5", "count": 3, "interval": 60.0, "failure_limit": 1}, "Successful", ""),
    ("failureLimit 1 exceeded", [0.1, 0.99, 0.1],
     {"success_condition": "result > 0.5", "count": 3, "interval": 60.0, "failure_limit": 1}, "Failed",
     "failed (2) > failureLimit (1)"),
    ("failureLimit -1 never fails on failures, but needs a success", [0.1, 0.99, 0.1],
     {"success_condition": "result > 0.5", "count": 3, "interval": 60.0, "failure_limit": -1}, "Successful", ""),
    ("inconclusiveLimit exceeded", [0.7, 0.7],
     {"success_condition": "result >= 0.9", "failure_condition": "result < 0.5", "count": 3, "interval": 60.0,
      "inconclusive_limit": 1}, "Inconclusive", "inconclusive (2) > inconclusiveLimit (1)"),
    ("five consecutive errors: Error", ["E"] * 5, {"success_condition": "result > 0.5"}, "Error",
     "consecutiveErrors (5) > consecutiveErrorLimit (4)"),
    ("errors do not count towards count", ["E", "E", 0.9, "E", 0.9],
     {"success_condition": "result > 0.5", "count": 2, "interval": 60.0}, "Successful", "count (2) reached"),
    ("#4479: failures within failureLimit and errors, no success, is not a success", [0.1, "E", 0.1],
     {"success_condition": "result > 0.5", "count": 2, "interval": 60.0, "failure_limit": 2}, "Failed",
     "without a single successful measurement"),
    ("consecutiveSuccessLimit reached", [0.9, 0.1, 0.9, 0.9],
     {"success_condition": "result > 0.5", "count": 4, "interval": 60.0, "failure_limit": -1,
      "consecutive_success_limit": 2}, "Successful", "consecutiveSuccessLimit (2) reached"),
    ("consecutiveSuccessLimit missed, failureLimit -1", [0.9, 0.1, 0.9, 0.1],
     {"success_condition": "result > 0.5", "count": 4, "interval": 60.0, "failure_limit": -1,
      "consecutive_success_limit": 2}, "Failed", "not reached"),
    ("consecutiveSuccessLimit missed, failureLimit 3", [0.9, 0.1, 0.9, 0.1],
     {"success_condition": "result > 0.5", "count": 4, "interval": 60.0, "failure_limit": 3,
      "consecutive_success_limit": 2}, "Inconclusive", "not violated"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("case", "answers", "fields", "phase", "words"), RULES, ids=[r[0] for r in RULES])
async def test_phase_rules(case: str, answers: list[Any], fields: dict[str, Any], phase: str, words: str) -> None:
    status, provider = await run_rules(answers, **fields)
    assert status.phase == phase, (case, status.message)
    result = status.metrics["m"]
    assert result.phase == phase
    assert not provider.answers, "every scripted answer was measured"
    text = result.message + " " + " ".join(t.reason for t in result.measurements)
    assert words in text
    for taken in result.measurements:  # every measurement explains itself
        assert taken.reason and taken.condition and taken.measurement.query


@pytest.mark.asyncio
async def test_all_errors_until_terminated_is_an_error_never_a_success() -> None:
    """argo-rollouts #4479: an indefinite metric whose every measurement errored, when the run ends."""
    status, provider = await run_rules(["E", "E", "E"], until=25.0, success_condition="result > 0.5",
                                       interval=60.0)
    assert provider.calls == [0.0, 10.0, 20.0]  # retried every 10 s after an error
    assert status.phase == "Error"
    assert "every measurement errored (3); errors are never a success" in status.metrics["m"].message
    assert "connection refused" in status.message


@pytest.mark.asyncio
async def test_schedule_initial_delay_interval_and_count() -> None:
    status, provider = await run_rules([0.9, 0.9, 0.9], initial_delay=30.0, interval=60.0, count=3,
                                       success_condition="result > 0.5")
    assert provider.calls == [30.0, 90.0, 150.0]
    assert status.phase == "Successful" and status.finished_at == 150.0


@pytest.mark.asyncio
async def test_a_failed_metric_terminates_the_others_and_dry_run_does_not_count() -> None:
    fails, watches, dry = Scripted([0.1]), Scripted([0.9] * 3), Scripted([0.1])

    class Router:
        name = "local"

        async def measure(self, query: Any, scope: Scope, now: float) -> Measurement:
            return await {"a": fails, "b": watches, "c": dry}[query.filter["who"]].measure(query, scope, now)

    def m(name: str, **kw: Any) -> Metric:
        return Metric(name=name, provider="local", spec={"filter": {"who": name}}, **kw)

    resolved = ResolvedRun((m("a", success_condition="result > 0.5", initial_delay=120.0),
                            m("b", success_condition="result > 0.5", interval=60.0),
                            m("c", success_condition="result > 0.5", dry_run=True)), {})
    status = await AnalysisRun(resolved, Providers(local=Router()), clock=ManualClock(0.0)).run()
    assert status.phase == "Failed"
    assert status.metrics["c"].phase == "Failed" and status.metrics["c"].dry_run
    assert status.metrics["b"].phase == "Successful" and len(watches.calls) == 3  # at 0, 60, 120, then stopped
    assert status.message.startswith('Metric "a" assessed Failed')
    assert "Dry-run summary: count=1, successful=0, failed=1" in status.message
    # only the dry-run metric failing: the run passes
    dry_only = ResolvedRun((m("c", success_condition="result > 0.5", dry_run=True),
                            m("b", success_condition="result > 0.5")), {})
    dry.answers, watches.answers = [0.1], [0.9]
    assert (await AnalysisRun(dry_only, Providers(local=Router()), clock=ManualClock(0.0)).run()).phase == \
        "Successful"


def test_judge_explains_one_measurement() -> None:
    m = metric(success_condition="result[0] >= 0.95")
    phase, condition, reason = judge(m, classify("prometheus", "sum(x)", [0.973]), now=0.0)
    assert (phase, condition) == ("Successful", "successCondition `result[0] >= 0.95`")
    assert reason == "result = [0.973]; successCondition `result[0] >= 0.95` is true, so the measurement is Successful"


# -- template loading ------------------------------------------------------------------------------------------

def template(**metric_fields: Any) -> dict[str, Any]:
    base = {"name": "m", "provider": {"prometheus": {"address": "http://p:9090", "query": "up"}}}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "t"},
            "spec": {"args": [{"name": "x"}], "metrics": [{**base, **metric_fields}]}}


@pytest.mark.parametrize(("fields", "message"), [
    ({"provider": {"datadog": {"query": "q"}}}, "datadog is not supported"),
    ({"provider": {"plugin": {"argoproj-labs/foo": {}}}}, "unknown plugin"),
    ({"count": 3}, "count > 1 needs an interval"),
    ({"successCondition": "result[0] >="}, "successCondition"),
    ({"interval": "five minutes"}, "interval"),
    ({"provider": {"web": {"url": "http://x", "jsonPath": "{$..x}"}}}, "jsonPath"),
    ({"provider": {"prometheus": {"query": "up", "authentication": {}}}}, "authentication is not supported"),
    ({"provider": {"plugin": {"graylane.io/local": {"aggregation": "median"}}}}, "aggregation"),
    ({"succesCondition": "true"}, "unknown field(s) succesCondition"),
])
def test_templates_refused_with_the_field_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="t: spec.metrics") as info:
        load_template(template(**fields))
    assert message in info.value.message


def test_args_and_merging() -> None:
    t = load_template(template(successCondition="result[0] > {{ args.x }}"))
    assert resolve([t], {"x": "3"}).metrics[0].success_condition == "result[0] > 3"
    with pytest.raises(ValidationError, match="args.x was not resolved"):
        resolve([t], {})
    with pytest.raises(ValidationError, match="not declared"):
        resolve([t], {"x": "1", "y": "2"})
    with pytest.raises(ValidationError, match="same name"):
        resolve([t, t], {"x": "1"})
    dry = template()
    dry["spec"]["dryRun"] = [{"metricName": "nomatch"}]
    with pytest.raises(ValidationError, match="didn't match"):
        load_template(dry)
    scheduled = load_template(template(interval="{{args.x}}m", count="{{ args.x }}", failureLimit="{{args.x}}"))
    m = resolve([scheduled], {"x": "3"}).metrics[0]
    assert (m.interval, m.count, m.failure_limit) == (180.0, 3, 3)
    with pytest.raises(ValidationError, match="'threem' is not a duration"):
        resolve([scheduled], {"x": "three"})
    local = load_template(template(provider={"plugin": {"graylane.io/local": {
        "aggregation": "success-rate", "filter": {"destination_version": "{{args.x}}"}, "window": "2m"}}}))
    assert resolve([local], {"x": "v2"}).metrics[0].spec["filter"] == {"destination_version": "v2"}


def test_args_cannot_grow_a_metric_without_bound() -> None:
    """A template naming a long arg many times is refused, not expanded into gigabytes."""
    query = " or ".join(['up{x="{{args.x}}"}'] * 2000)
    t = load_template(template(provider={"prometheus": {"address": "http://p:9090", "query": query}}))
    with pytest.raises(ValidationError, match="grows past 1,048,576 characters"):
        resolve([t], {"x": "9" * 1000})
    assert resolve([t], {"x": "9"}).metrics[0].spec["query"].count('up{x="9"}') == 2000


# -- Flagger built-ins on the local mesh and on Prometheus -----------------------------------------------------

@pytest.fixture
def mesh() -> Recorder:
    stats, rec = Stats(), Recorder()
    rec.add(parse_text(stats.render(), KEPT), T0)
    record(stats, "v1", "200", 8.0, 100)
    record(stats, "v2", "200", 20.0, 90)
    record(stats, "v2", "503", 300.0, 10)
    rec.add(parse_text(stats.render(), KEPT), T0 + 60)
    return rec


@pytest.mark.asyncio
async def test_flagger_builtins_on_the_local_mesh(mesh: Recorder) -> None:
    providers = Providers(local=LocalProvider(mesh))

    async def run(resolved: ResolvedRun) -> Any:
        return await AnalysisRun(resolved, providers, clock=ManualClock(T0 + 60)).run()

    v2 = {"destination_service_name": "reviews", "destination_version": "v2"}
    canary = await run(flagger_checks(v2, count=1))
    assert canary.phase == "Failed"
    rate = canary.metrics["request-success-rate"].measurements[0]
    assert rate.measurement.value == [pytest.approx(0.9)] and "result[0] * 100 >= 99" in rate.reason
    assert canary.metrics["request-duration"].measurements[0].measurement.value == [pytest.approx(475.0)]
    assert canary.metrics["request-duration"].phase == "Successful"
    baseline = await run(flagger_checks({"destination_version": "v1"}, count=1))
    assert baseline.phase == "Successful"
    slow = await run(ResolvedRun((request_duration(v2, 400, count=1),), {}))
    assert slow.phase == "Failed" and "result[0] <= 400" in slow.metrics["request-duration"].measurements[0].reason
    idle = await run(ResolvedRun((request_success_rate({"destination_version": "v9"}, count=1,
                                                       interval=10.0),), {}))
    assert idle.phase == "Error"  # no traffic is never a pass
    assert "no data" in idle.metrics["request-success-rate"].measurements[0].reason


@pytest.mark.asyncio
async def test_flagger_builtins_on_prometheus(prometheus: Prom) -> None:
    resolved = flagger_checks({"destination_version": "v2"}, count=1, prometheus_address=prometheus.url)
    status = await AnalysisRun(resolved, Providers(prometheus=PrometheusProvider()),
                               clock=ManualClock(prometheus.end)).run()
    assert status.phase == "Failed"
    assert status.metrics["request-success-rate"].measurements[0].measurement.value == [pytest.approx(0.8)]
    assert status.metrics["request-duration"].measurements[0].measurement.value == [pytest.approx(487.5)]


# -- the condition language ------------------------------------------------------------------------------------

CONDITIONS: list[tuple[str, Any, Any]] = [
    ("result[0] >= 0.95", [0.97], True),
    ("result[-1] < 1", [5.0, 0.5], True),
    ("result < 500", 412.0, True),
    ("result == 'true'", "true", True),
    ('result == "I am OK"', "I am OK", True),
    ("result == true", True, True),
    ("result['a-b'] == 1", {"a-b": 1}, True),
    ("result.missing == nil", {"a": 1}, True),
    ("len(result) > 0 and not (result[0] > 1)", [0.5], True),
    ("asInt(result) + 1 == 4", "3", True),
    ("asFloat(result) * 2 == 1.5", "0.75", True),
    ("isInf(result)", math.inf, True),
    ("result >= 0.95", math.inf, True),
    ("result != result", math.nan, True),  # NaN is not equal to itself
    ("any(result, # > 2) && none(result, # > 9) && count(result, # > 1) == 2", [1, 2, 3], True),
    ("one(result, {# == 2})", [1, 2, 3], True),
    ("len(filter(result, # > 1)) == 2 && map(result, # * 2)[2] == 6", [1, 2, 3], True),
    ("max(result) == 3 && min(result) == 1 && sum(result) == 6 && mean(result) == 2", [1, 2, 3], True),
    ("'ok' in result && result[0] contains 'o' || false", ["ok"], True),
    ("result.status startsWith 'heal' && result.status matches '^h.*y$'", {"status": "healthy"}, True),
    ("result > 1 ? result < 10 : false", 5, True),
    ("(result ?? 7) == 7", None, True),
    ("isNil(result)", None, True),
    ("2 ** 3 == 8 && 7 % 3 == 1 && -result == -1", 1, True),
]


@pytest.mark.parametrize(("text", "result", "expected"), CONDITIONS, ids=[c[0] for c in CONDITIONS])
def test_conditions(text: str, result: Any, expected: Any) -> None:
    from graylane.analysis.conditions import evaluate_condition

    assert evaluate_condition(text, result) is expected


@pytest.mark.parametrize(("text", "result", "message"), [
    ("result[0] > 1", [], "metric result is nil or empty"),
    ("result > 1", None, "metric result is nil or empty"),
    ("result > 1", "x", "mismatched types string and int"),
    ("result", 1.0, "expected bool"),
    ("result.a > 1", [1], "array index must be an integer"),
    ("result.a.b > 1", {"a": 2}, "cannot fetch"),
    ("open('x')", 1, "unknown function open()"),
    ("__import__", 1, "unknown name"),
    ("result[0] >=", [1], "expected"),
    ("result @ 1", 1, "unexpected character"),
    ("asInt(result) > 0", "x", "not an integer"),
    ("x" * 5000, 1, "longer than"),
])
def test_condition_errors(text: str, result: Any, message: str) -> None:
    from graylane.analysis.conditions import ConditionError, evaluate_condition

    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_condition(text, result)


LOCAL_TEMPLATE = """
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: reviews-canary
spec:
  args:
  - name: canary-version
  - name: max-p99
    value: "500"
  metrics:
  - name: success-rate
    interval: 30s
    count: 2
    successCondition: result[0] >= 0.99
    provider:
      plugin:
        graylane.io/local:
          aggregation: success-rate
          window: 1m
          filter: {destination_service_name: reviews, destination_version: "{{args.canary-version}}"}
  - name: p99
    successCondition: "len(result) > 0 && result[0] <= {{args.max-p99}}"
    provider:
      plugin:
        graylane.io/local:
          metric: istio_request_duration_milliseconds
          aggregation: quantile
          quantile: 0.99
          filter: {destination_version: "{{args.canary-version}}"}
"""


@pytest.mark.asyncio
async def test_a_template_on_the_local_mesh(mesh: Recorder) -> None:
    class ControlPlane:  # what LocalProvider.for_control_plane reads: the telemetry component's recorder
        components = {"telemetry": type("Telemetry", (), {"recorder": mesh})()}

    template = load_template(doc(LOCAL_TEMPLATE))
    providers = Providers(local=LocalProvider.for_control_plane(ControlPlane()))
    good = await AnalysisRun(resolve([template], {"canary-version": "v1"}), providers,
                             clock=ManualClock(T0 + 60)).run()
    assert good.phase == "Successful", good.message
    assert [t.started_at for t in good.metrics["success-rate"].measurements] == [T0 + 60, T0 + 90]
    bad = await AnalysisRun(resolve([template], {"canary-version": "v2", "max-p99": "400"}), providers,
                            clock=ManualClock(T0 + 60)).run()
    assert bad.phase == "Failed"
    assert bad.metrics["success-rate"].phase == "Failed" and bad.metrics["p99"].phase == "Failed"
    p99 = bad.metrics["p99"].measurements[0]
    assert "result[0] <= 400" in p99.condition and "475" in p99.reason
    assert p99.measurement.query.startswith("histogram_quantile(0.99, sum by (le)(rate(")
