"""Metric providers against real sources: the local mesh's recorder fed by the data plane's own counters, a REAL
Prometheus loaded with baseline and canary series by promtool, and a real HTTP server for `web`."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.prometheus_server import backfilled_prometheus, free_port

from graylane.analysis.local import DURATION, LocalProvider, LocalQuery
from graylane.analysis.measurement import Scope, TemplateTooLarge, substitute
from graylane.analysis.prometheus_provider import PrometheusProvider, PrometheusQuery
from graylane.analysis.web import WebProvider, WebQuery, parse_jsonpath
from graylane.mesh.proxy.stats import LABELS, Stats
from graylane.mesh.telemetry.component import KEPT
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import parse_text

LOOPBACK = ("127.0.0.0/8",)
T0 = 1_700_000_000.0




# -- local: the data plane's Stats -> its /stats/prometheus text -> the telemetry recorder ----------------------

def istio_labels(version: str, code: str, *, reporter: str = "destination", flags: str = "-") -> tuple[str, ...]:
    values = {"reporter": reporter, "source_workload": "productpage-v1", "source_workload_namespace": "bookinfo",
              "source_app": "productpage", "source_version": "v1", "destination_workload": f"reviews-{version}",
              "destination_workload_namespace": "bookinfo", "destination_app": "reviews",
              "destination_version": version, "destination_service": "reviews.bookinfo.svc.cluster.local",
              "destination_service_name": "reviews", "destination_service_namespace": "bookinfo",
              "request_protocol": "http", "response_flags": flags, "response_code": code}
    return tuple(values.get(name, "unknown") for name in LABELS)


def record(stats: Stats, version: str, code: str, duration_ms: float, n: int, **kw: str) -> None:
    for _ in range(n):
        stats.record(istio_labels(version, code, **kw), duration_ms, 100, 200)


@pytest.fixture
def recorder() -> Recorder:
    """A minute of traffic: v1 (baseline) all 200 at 8 ms; v2 (canary) 10% 503, 90 fast and 10 slow requests;
    plus 5 `UH` (no healthy upstream) answers the source reporter counted."""
    stats, rec = Stats(), Recorder()
    rec.add(parse_text(stats.render(), KEPT), T0)
    for half in (1, 2):
        record(stats, "v1", "200", 8.0, 50)
        record(stats, "v2", "200", 20.0, 45)
        record(stats, "v2", "503", 300.0, 5)
        if half == 2:
            record(stats, "v2", "503", 0.0, 5, reporter="source", flags="UH")
        rec.add(parse_text(stats.render(), KEPT), T0 + 30 * half)
    return rec


CANARY = Scope(scope="v2", location="bookinfo")


@pytest.mark.asyncio
async def test_local_rates_success_and_errors(recorder: Recorder) -> None:
    provider = LocalProvider(recorder)
    flt = {"destination_version": "${scope}", "destination_workload_namespace": "${location}"}
    rate = await provider.measure(LocalQuery(filter=flt, window=60), CANARY, T0 + 60)
    assert rate.outcome == "ok" and rate.value == [pytest.approx(100 / 60)]
    assert rate.query == ('sum(rate(istio_requests_total{reporter="destination",destination_version="v2",'
                          'destination_workload_namespace="bookinfo"}[1m]))')
    ok = await provider.measure(LocalQuery(aggregation="success-rate", filter=flt), CANARY, T0 + 60)
    assert ok.values == (pytest.approx(0.9),) and 'response_code!~"5.*"' in ok.query
    base = await provider.measure(LocalQuery(aggregation="success-rate", filter=flt),
                                  Scope(scope="v1", location="bookinfo"), T0 + 60)
    assert base.values == (1.0,)
    errors = await provider.measure(LocalQuery(aggregation="error-rate", filter=flt), CANARY, T0 + 60)
    assert errors.values == (pytest.approx(0.1),)
    by = await provider.measure(LocalQuery(aggregation="increase", by=("destination_version", "response_code"),
                                           filter={"destination_service_name": "reviews"}), CANARY, T0 + 60)
    assert dict(zip([tuple(d.values()) for d in by.labels], by.values, strict=True)) == {
        ("v1", "200"): 100.0, ("v2", "200"): 90.0, ("v2", "503"): 10.0}
    # the last 30 s only: half the traffic
    recent = await provider.measure(LocalQuery(aggregation="increase", filter=flt, window=30), CANARY, T0 + 60)
    assert recent.values == (50.0,)


@pytest.mark.asyncio
async def test_local_response_flags_and_reporter(recorder: Recorder) -> None:
    provider = LocalProvider(recorder)
    uh = await provider.measure(LocalQuery(aggregation="increase", filter={"reporter": "source",
                                                                           "response_flags": "UH"}), CANARY, T0 + 60)
    assert uh.values == (5.0,) and 'reporter="source"' in uh.query
    not_dash = await provider.measure(LocalQuery(aggregation="increase", filter={"reporter": "~.*",
                                                                                 "response_flags": "!-"}),
                                      CANARY, T0 + 60)
    assert not_dash.values == (5.0,)


@pytest.mark.asyncio
async def test_local_quantile_of_the_canary(recorder: Recorder) -> None:
    provider = LocalProvider(recorder)
    flt = {"destination_version": "${scope}"}
    p99 = await provider.measure(LocalQuery(metric=DURATION, aggregation="quantile", filter=flt), CANARY, T0 + 60)
    # 90 requests <= 25 ms, 10 in (250, 500]: rank 99 interpolates to 250 + 250 * 9/10
    assert p99.outcome == "ok" and p99.values == (pytest.approx(475.0),)
    assert p99.query.startswith("histogram_quantile(0.99, sum by (le)(rate(istio_request_duration_milliseconds_bucket")
    p50 = await provider.measure(LocalQuery(metric=DURATION, aggregation="quantile", quantile=0.5, filter=flt),
                                 CANARY, T0 + 60)
    assert p50.values == (pytest.approx(10 + 15 * 50 / 90),)
    baseline = await provider.measure(LocalQuery(metric=DURATION, aggregation="quantile", filter=flt),
                                      Scope(scope="v1"), T0 + 60)
    assert baseline.values[0] < 10


@pytest.mark.asyncio
async def test_local_empty_nan_and_error_are_outcomes(recorder: Recorder) -> None:
    provider = LocalProvider(recorder)
    nobody = await provider.measure(LocalQuery(aggregation="success-rate", filter={"destination_version": "v9"}),
                                    CANARY, T0 + 60)
    assert nobody.outcome == "empty" and nobody.value == [] and "no data" in nobody.message
    # long after the traffic: the window holds no increase
    later = await provider.measure(LocalQuery(filter={"destination_version": "v2"}), CANARY, T0 + 600)
    assert later.outcome == "empty"
    missing = await provider.measure(LocalQuery(filter={"destination_version": "${canary}"}), CANARY, T0 + 60)
    assert missing.outcome == "error" and "canary" in missing.message
    unscraped = await LocalProvider(Recorder()).measure(LocalQuery(), CANARY, T0)
    assert unscraped.outcome == "error" and "no metrics yet" in unscraped.message
    absent = await LocalProvider(lambda: None).measure(LocalQuery(), CANARY, T0)
    assert absent.outcome == "error"
    with pytest.raises(ValueError, match="quantile aggregation"):
        LocalQuery(aggregation="quantile")
    with pytest.raises(ValueError, match="unknown field"):
        LocalQuery.from_spec({"metric": "istio_requests_total", "windw": "1m"})


def test_substitute_names_missing_variables() -> None:
    assert substitute("a{${scope}}{{ args.x-y }}", {"scope": "v2", "x-y": "1"}) == "a{v2}1"
    with pytest.raises(KeyError, match="location"):
        substitute("${location}", {})


@pytest.mark.asyncio
async def test_a_query_that_grows_past_the_bound_is_an_error_measurement(web_server: str) -> None:
    """`${scope}` named 2,000 times with a 1,000-character scope would be 2 MB of query: an error outcome naming
    the bound, from every provider."""
    with pytest.raises(TemplateTooLarge, match="1,048,576"):
        substitute("${scope}" * 2000, {"scope": "x" * 1000})
    huge = Scope(scope="x" * 1000)
    for provider, query in ((PrometheusProvider(default_address="http://127.0.0.1:9"),
                             PrometheusQuery(query="up{v='${scope}'}" * 2000)),
                            (WebProvider(allowed_networks=LOOPBACK),
                             WebQuery(url=web_server + "/?q=" + "${scope}" * 2000)),
                            (LocalProvider(Recorder()), LocalQuery(filter={"destination_version": "${scope}" * 2000}))):
        m = await provider.measure(query, huge, T0)  # type: ignore[attr-defined]
        assert m.outcome == "error" and "grows past 1,048,576 characters" in m.message, (provider, m.message)


# -- prometheus: a real server over promtool-created blocks --------------------------------------------------------

STEP = 15
SPAN = 30 * 60
# (version, code, requests per second) for reviews, as both reporters count them
TRAFFIC = [("v1", "200", 9.9), ("v1", "503", 0.1), ("v2", "200", 8.0), ("v2", "503", 2.0)]
# cumulative per-second rate per le bucket: v1 fast, v2 slow
LATENCY = {"v1": [("10", 8.0), ("25", 10.0), ("100", 10.0), ("250", 10.0), ("500", 10.0), ("+Inf", 10.0)],
           "v2": [("10", 1.0), ("25", 4.0), ("100", 6.0), ("250", 8.0), ("500", 10.0), ("+Inf", 10.0)]}


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _labels(version: str, reporter: str) -> dict[str, str]:
    return {"reporter": reporter, "destination_service": "reviews.bookinfo.svc.cluster.local",
            "destination_service_name": "reviews", "destination_workload": f"reviews-{version}",
            "destination_workload_namespace": "bookinfo", "destination_version": version,
            "source_workload": "productpage-v1"}


def openmetrics(end: int) -> str:
    start = end - SPAN
    lines = ["# TYPE istio_requests counter"]
    for version, code, rps in TRAFFIC:
        for reporter in ("source", "destination"):
            labels = dict(_labels(version, reporter), response_code=code)
            for t in range(start, end + 1, STEP):
                lines.append(f"istio_requests_total{_fmt(labels)} {rps * (t - start):.1f} {t}")
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for version, buckets in LATENCY.items():
        for le, per_s in buckets:
            labels = dict(_labels(version, "destination"), le=le)
            for t in range(start, end + 1, STEP):
                lines.append(f"istio_request_duration_milliseconds_bucket{_fmt(labels)} {per_s * (t - start):.1f} {t}")
    # Argo's range-query example reads a latency gauge: ratings spikes above 1000 ms two minutes before the end
    lines.append("# TYPE http_latency_ms gauge")
    for t in range(start, end + 1, STEP):
        lines.append(f'http_latency_ms{{service="reviews"}} {100 + (t // STEP) % 7} {t}')
        lines.append(f'http_latency_ms{{service="ratings"}} {1500 if t == end - 120 else 200} {t}')
    # a gauge that is NaN at the end: a provider must report it, not drop it
    lines.append("# TYPE canary_ratio gauge")
    for t in range(start, end + 1, STEP):
        lines.append(f'canary_ratio{{app="reviews"}} {"NaN" if t == end else "0.5"} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class Prom:
    url: str
    end: float


def start_prometheus(root: Path) -> Iterator[Prom]:
    end = (int(time.time()) // STEP) * STEP - 5 * 60
    with backfilled_prometheus(root, openmetrics(end)) as url:
        yield Prom(url, float(end))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    yield from start_prometheus(tmp_path_factory.mktemp("prom"))


SUCCESS_RATE = ('sum(rate(istio_requests_total{reporter="destination",destination_version="${scope}",'
                'destination_workload_namespace="${location}",response_code!~"5.*"}[1m])) / '
                'sum(rate(istio_requests_total{reporter="destination",destination_version="${scope}",'
                'destination_workload_namespace="${location}"}[1m]))')


@pytest.mark.asyncio
async def test_prometheus_instant_baseline_and_canary(prometheus: Prom) -> None:
    provider = PrometheusProvider()
    query = PrometheusQuery("PromQL:" + SUCCESS_RATE, address=prometheus.url)
    canary = await provider.measure(query, CANARY, prometheus.end)
    assert canary.outcome == "ok" and canary.value == [pytest.approx(0.8, rel=1e-3)]
    assert 'destination_version="v2"' in canary.query and "${" not in canary.query
    baseline = await provider.measure(query, Scope(scope="v1", location="bookinfo"), prometheus.end)
    assert baseline.values == (pytest.approx(0.99, rel=1e-3),)
    p99 = await provider.measure(PrometheusQuery(
        'histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket'
        '{destination_version="{{args.version}}"}[1m])))', address=prometheus.url),
        Scope(variables={"version": "v2"}), prometheus.end)
    assert p99.values == (pytest.approx(250 + 250 * (9.9 - 8) / 2, rel=1e-3),)
    scalar = await provider.measure(PrometheusQuery("scalar(vector(42))", address=prometheus.url), CANARY,
                                    prometheus.end)
    assert scalar.value == 42.0


@pytest.mark.asyncio
async def test_prometheus_range_query(prometheus: Prom) -> None:
    provider = PrometheusProvider(default_address=prometheus.url)
    q = PrometheusQuery('sum(rate(istio_requests_total{reporter="source",destination_version="${scope}"}[1m]))',
                        lookback=300, step=60)
    m = await provider.measure(q, CANARY, prometheus.end)
    assert m.outcome == "ok" and len(m.values) == 6  # 5 minutes at 1 m steps, both ends included
    assert all(v == pytest.approx(10.0, rel=1e-3) for v in m.values)
    assert "range query" in m.message
    scoped = await provider.measure(PrometheusQuery(q.query, step=120),
                                    Scope(scope="v1", start=prometheus.end - 240, end=prometheus.end),
                                    prometheus.end)
    assert len(scoped.values) == 3


@pytest.mark.asyncio
async def test_prometheus_empty_nan_and_errors(prometheus: Prom) -> None:
    provider = PrometheusProvider(default_address=prometheus.url)
    empty = await provider.measure(PrometheusQuery(SUCCESS_RATE), Scope(scope="v9", location="bookinfo"),
                                   prometheus.end)
    assert empty.outcome == "empty" and empty.value == [] and "no data" in empty.message
    nan = await provider.measure(PrometheusQuery('canary_ratio{app="${scope}"}'), Scope(scope="reviews"),
                                 prometheus.end)
    assert nan.outcome == "nan" and math.isnan(nan.value[0])
    bad = await provider.measure(PrometheusQuery("sum(rate(istio_requests_total[1m])"), CANARY, prometheus.end)
    assert bad.outcome == "error" and "rejected the query" in bad.message and "bad_data" in bad.message
    down = await PrometheusProvider().measure(PrometheusQuery("up", address=f"http://127.0.0.1:{free_port()}"),
                                              CANARY, prometheus.end)
    assert down.outcome == "error" and "cannot reach" in down.message
    unset = await provider.measure(PrometheusQuery("up{job='${job}'}"), CANARY, prometheus.end)
    assert unset.outcome == "error" and "job" in unset.message
    guarded = await PrometheusProvider(allowed_networks=()).measure(PrometheusQuery("up", address=prometheus.url),
                                                                    CANARY, prometheus.end)
    assert guarded.outcome == "error" and "loopback" in guarded.message


# -- web: a real HTTP server ------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def do_GET(self) -> None:  # noqa: N802
        Handler.seen.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if self.path.startswith("/measure"):
            self._answer(200, json.dumps({"data": {"ok": True, "successPercent": 0.95,
                                                   "items": [{"v": 3}, {"v": 4}], "nothing": None}}).encode())
        elif self.path == "/text":
            self._answer(200, b"I am OK", "text/plain")
        elif self.path == "/slow":
            time.sleep(1.5)  # the server is slow; the provider's timeout is what is tested
            self._answer(200, b"{}")
        else:
            self._answer(503, b'{"error": "down"}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        Handler.seen.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.startswith("/malformed/"):  # /malformed/<n>/api/v1/query: a hostile "Prometheus"
            self._answer(200, json.dumps({"status": "success", "data": MALFORMED[int(self.path.split("/")[2])]})
                         .encode())
            return
        self._answer(200, json.dumps({"echo": json.loads(body or b"null")}).encode())


MALFORMED: list[Any] = [{"resultType": "scalar", "result": None}, {"resultType": "vector", "result": [{"metric": {}}]},
                        {"resultType": "matrix", "result": [{"values": [3]}]}, {"resultType": "vector", "result": 7}]


@pytest.mark.asyncio
@pytest.mark.parametrize("case", range(len(MALFORMED)))
async def test_a_malformed_prometheus_answer_is_an_error_measurement(web_server: str, case: int) -> None:
    taken = await PrometheusProvider().measure(PrometheusQuery("up", address=f"{web_server}/malformed/{case}"),
                                               Scope(), time.time())
    assert taken.outcome == "error"
    assert "is not a Prometheus result" in taken.message


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.asyncio
async def test_web_get_json_path_and_headers(web_server: str) -> None:
    provider = WebProvider(allowed_networks=LOOPBACK)
    q = WebQuery(f"{web_server}/measure?service={{{{args.service}}}}", json_path="{$.data.ok}",
                 headers={"Authorization": "Bearer {{args.token}}"})
    m = await provider.measure(q, Scope(variables={"service": "reviews", "token": "s3cret"}), T0)
    assert m.outcome == "ok" and m.value is True
    assert m.query == f"GET {web_server}/measure?service=reviews {{$.data.ok}}"
    assert Handler.seen[-1]["headers"]["Authorization"] == "Bearer s3cret"
    whole = await provider.measure(WebQuery(f"{web_server}/measure", json_path="{.data}"), CANARY, T0)
    assert whole.value["successPercent"] == 0.95
    item = await provider.measure(WebQuery(f"{web_server}/measure", json_path="{$.data.items[1].v}"), CANARY, T0)
    assert item.values == (4.0,)
    first = await provider.measure(WebQuery(f"{web_server}/measure", json_path="{$.data.items[*].v}"), CANARY, T0)
    assert first.value == 3
    text = await provider.measure(WebQuery(f"{web_server}/text"), CANARY, T0)
    assert text.outcome == "ok" and text.value == "I am OK"


@pytest.mark.asyncio
async def test_web_post_json_body(web_server: str) -> None:
    provider = WebProvider(allowed_networks=LOOPBACK)
    m = await provider.measure(WebQuery(f"{web_server}/check", method="POST", json_body={"service": "reviews"},
                                        json_path="{$.echo.service}"), CANARY, T0)
    assert m.value == "reviews"
    assert Handler.seen[-1]["headers"]["Content-Type"] == "application/json"


@pytest.mark.asyncio
async def test_web_failures_are_outcomes(web_server: str) -> None:
    provider = WebProvider(allowed_networks=LOOPBACK)
    down = await provider.measure(WebQuery(f"{web_server}/down"), CANARY, T0)
    assert down.outcome == "error" and "non 2xx response code: 503" in down.message
    missing = await provider.measure(WebQuery(f"{web_server}/measure", json_path="{$.data.nope}"), CANARY, T0)
    assert missing.outcome == "error" and "could not find" in missing.message
    null = await provider.measure(WebQuery(f"{web_server}/measure", json_path="{$.data.nothing}"), CANARY, T0)
    assert null.outcome == "empty"
    slow = await provider.measure(WebQuery(f"{web_server}/slow", timeout=0.3), CANARY, T0)
    assert slow.outcome == "error" and "within 0.3s" in slow.message
    body_on_get = await provider.measure(WebQuery(f"{web_server}/measure", body="x"), CANARY, T0)
    assert body_on_get.outcome == "error" and "POST or PUT" in body_on_get.message
    refused = await WebProvider().measure(WebQuery(f"{web_server}/measure"), CANARY, T0)
    assert refused.outcome == "error" and "loopback" in refused.message
    local_name = await WebProvider().measure(WebQuery("http://metadata.internal/x"), CANARY, T0)
    assert local_name.outcome == "error" and "not allowed" in local_name.message


def test_jsonpath_subset() -> None:
    assert parse_jsonpath("{$.data.ok}") == ["data", "ok"]
    assert parse_jsonpath("{.items[0]['a-b']}") == ["items", 0, "a-b"]
    assert parse_jsonpath("") == [] and parse_jsonpath("{$}") == []
    with pytest.raises(ValueError, match="cannot read"):
        parse_jsonpath("{$..data}")


# -- Kayenta: both scopes of a canary config fetched through the providers, then judged ------------------------

def canary_config(error_query: dict[str, Any], latency_query: dict[str, Any]) -> Any:
    from graylane.analysis.judge import parse_canary_config

    return parse_canary_config({
        "name": "reviews canary", "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [
            {"name": "error-rate", "query": error_query, "groups": ["errors"],
             "analysisConfigurations": {"canary": {"direction": "increase", "critical": True,
                                                   "nanStrategy": "replace"}}},
            {"name": "latency-p99", "query": latency_query, "groups": ["latency"],
             "analysisConfigurations": {"canary": {"direction": "increase"}}}],
        "classifier": {"groupWeights": {"errors": 60, "latency": 40}}})


@pytest.mark.asyncio
async def test_kayenta_interval_on_a_real_prometheus(prometheus: Prom) -> None:
    from graylane.analysis.argo_run import Providers
    from graylane.analysis.kayenta import run_interval

    sel = 'reporter="destination",destination_version="${scope}",destination_workload_namespace="${location}"'
    config = canary_config(
        {"type": "prometheus", "customInlineTemplate":
         f'PromQL:sum(rate(istio_requests_total{{{sel},response_code=~"5.*"}}[1m])) / '
         f'sum(rate(istio_requests_total{{{sel}}}[1m]))'},
        {"type": "prometheus", "customInlineTemplate":
         f"PromQL:histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{sel}}}"
         "[1m])))"})
    interval = await run_interval(config, Scope("v1", "bookinfo"), Scope("v2", "bookinfo"),
                                  Providers(prometheus=PrometheusProvider(default_address=prometheus.url)),
                                  start=prometheus.end - 600, end=prometheus.end, step=60)
    errors = interval.series["error-rate"]
    assert len(errors.control) == 11 and len(errors.experiment) == 11
    assert errors.control[0] == pytest.approx(0.01, rel=1e-3) and errors.experiment[0] == pytest.approx(0.2, rel=1e-3)
    results = {r.name: r for r in interval.report.results}
    assert str(results["error-rate"].classification) == "High"
    assert interval.report.score.score == 0 and str(interval.report.score.verdict) == "Fail"
    assert 'destination_version="v2"' in interval.explain("error-rate")
    # a metric the provider cannot answer is no data for the judge, and says why
    broken = canary_config({"type": "prometheus", "customInlineTemplate": "PromQL:sum(rate(x[1m])"},
                           {"type": "datadog"})
    failed = await run_interval(broken, Scope("v1"), Scope("v2"),
                                Providers(prometheus=PrometheusProvider(default_address=prometheus.url)),
                                start=prometheus.end - 600, end=prometheus.end)
    # as Kayenta: no data with nanStrategy replace counts as Pass; without it, Nodata
    assert {r.name: str(r.classification) for r in failed.report.results} == {"error-rate": "Pass",
                                                                              "latency-p99": "Nodata"}
    assert "rejected the query" in failed.explain("error-rate")
    assert "not prometheus or local" in failed.explain("latency-p99")


@pytest.mark.asyncio
async def test_kayenta_metric_name_queries_are_built_as_kayenta_builds_them(prometheus: Prom) -> None:
    """Without `PromQL:`, Kayenta's custom filter (inline, or a named template of the config) is label matchers:
    avg(metricName{filter tokens, labelBindings}) by (groupByFields)."""
    from graylane.analysis.argo_run import Providers
    from graylane.analysis.judge import parse_canary_config
    from graylane.analysis.kayenta import run_interval

    canary = {"canary": {"direction": "increase"}}
    config = parse_canary_config({
        "name": "latency", "templates": {"by-service": 'service="${scope}"'},
        "metrics": [
            {"name": "inline-filter", "groups": ["latency"], "analysisConfigurations": canary,
             "query": {"type": "prometheus", "metricName": "http_latency_ms",
                       "customInlineTemplate": 'service="${scope}"'}},
            {"name": "named-filter", "groups": ["latency"], "analysisConfigurations": canary,
             "query": {"type": "prometheus", "metricName": "http_latency_ms", "customFilterTemplate": "by-service",
                       "labelBindings": ['service!=""'], "groupByFields": ["service"]}}],
        "classifier": {"groupWeights": {"latency": 100}}})
    interval = await run_interval(config, Scope("reviews"), Scope("ratings"),
                                  Providers(prometheus=PrometheusProvider(default_address=prometheus.url)),
                                  start=prometheus.end - 600, end=prometheus.end, step=60)
    assert 'avg(http_latency_ms{service="ratings"}) -> ok' in interval.explain("inline-filter")
    assert 'avg(http_latency_ms{service="reviews",service!=""}) by (service) -> ok' in interval.explain("named-filter")
    latency = interval.series["inline-filter"]
    assert len(latency.control) == 11 and all(100 <= v <= 106 for v in latency.control)
    assert max(latency.experiment) == 1500.0  # ratings' spike two minutes before the end


def test_kayenta_query_errors_name_the_metric_and_the_rule() -> None:
    from graylane.analysis.judge import parse_canary_config
    from graylane.analysis.kayenta import query_for
    from graylane.errors import GraylaneError

    def config(query: dict[str, Any]) -> Any:
        return parse_canary_config({"name": "c", "metrics": [{"name": "m", "query": query, "groups": ["g"],
                                                              "analysisConfigurations": {}}]})

    for query, said in [({"type": "prometheus", "metricName": "x"}, "either a resource type or a custom filter"),
                        ({"type": "prometheus", "metricName": "x", "customFilterTemplate": "nope"},
                         "custom filter template 'nope' was not found"),
                        ({"type": "prometheus", "customFilter": "a=b"}, "customFilter is deprecated"),
                        ({"type": "prometheus"}, "needs metricName")]:
        c = config(query)
        with pytest.raises(GraylaneError, match=said):
            query_for(c.metrics[0], c.templates)
    ec2 = config({"type": "prometheus", "metricName": "cpu", "resourceType": "aws_ec2_instance"})
    _, built = query_for(ec2.metrics[0], ec2.templates)
    assert built.query == 'avg(cpu{asg_groupName="${scope}",zone=~"${location}.{1}"})'  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_local_range_and_a_kayenta_interval_on_the_local_mesh(recorder: Recorder) -> None:
    from graylane.analysis.argo_run import Providers
    from graylane.analysis.kayenta import run_interval

    provider = LocalProvider(recorder)
    ranged = await provider.measure(LocalQuery(aggregation="increase", window=30,
                                               filter={"destination_version": "${scope}"}),
                                    Scope("v2", start=T0 + 30, end=T0 + 60, step=30), T0 + 60)
    assert ranged.values == (50.0, 50.0) and "every 30s" in ranged.message
    config = canary_config({"type": "local", "aggregation": "error-rate", "window": "30s",
                            "filter": {"destination_version": "${scope}"}},
                           {"type": "local", "metric": DURATION, "aggregation": "quantile", "window": "30s",
                            "filter": {"destination_version": "${scope}"}})
    interval = await run_interval(config, Scope("v1"), Scope("v2"), Providers(local=provider),
                                  start=T0 + 30, end=T0 + 60, step=30)
    assert interval.series["error-rate"].control == (0.0, 0.0)
    assert interval.series["error-rate"].experiment == (pytest.approx(0.1), pytest.approx(0.1))
    assert interval.series["latency-p99"].experiment == (pytest.approx(475.0), pytest.approx(475.0))


@pytest.mark.parametrize(("query", "said"), [
    ({"type": "prometheus", "metricName": "cpu", "resourceType": "aws_ec2_instance", "customInlineTemplate": ["a"]},
     "customInlineTemplate must be a string, not a list"),
    ({"type": "prometheus", "metricName": "cpu", "resourceType": "gce_instance", "customFilterTemplate": {"a": 1}},
     "customFilterTemplate must be a string, not an object"),
    ({"type": "prometheus", "metricName": 5, "customInlineTemplate": 'a="b"'}, "metricName must be a string, not a "
                                                                                "number"),
    ({"type": "prometheus", "metricName": "cpu", "customInlineTemplate": 'a="b"',
      "labelBindings": ['c="' + "d" * 20_000 + '"']}, "the query built for metric m is 20"),
    ({"type": "prometheus", "metricName": "cpu", "customInlineTemplate": 'a="b"',
      "groupByFields": ["g"] * 10_000}, "the query built for metric m is"),
])
def test_kayenta_query_fields_of_the_wrong_type_or_size_are_refused_naming_them(query: dict[str, Any],
                                                                                said: str) -> None:
    # before: a wrong-typed template was ignored (the resourceType's default filter was used instead), a number
    # metricName was reported as missing, and a query of any size was built
    from graylane.analysis.judge import parse_canary_config
    from graylane.analysis.kayenta import query_for
    from graylane.errors import GraylaneError

    c = parse_canary_config({"name": "c", "metrics": [{"name": "m", "query": query, "groups": ["g"]}]})
    with pytest.raises(GraylaneError, match=re.escape(said)):
        query_for(c.metrics[0], c.templates)
