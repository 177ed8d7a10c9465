"""Prometheus' query API over the local mesh (/prometheus/api/v1/...), through the real app and its auth.

The control plane's telemetry component is replaced by its recorder alone, fed scrapes as the component feeds
it (the scraping itself is tests/telemetry/test_component.py's business).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import labels_of

NOW = float(int(time.time()))


def _recorder() -> Recorder:
    recorder = Recorder()
    for i in range(120):
        recorder.add({"istio_requests_total": {
            labels_of({"reporter": "destination", "destination_service_name": "reviews", "destination_version": v,
                       "response_code": code}): per_s * i
            for v, code, per_s in (("v1", "200", 8.0), ("v2", "200", 3.0), ("v2", "503", 1.0))}},
            at=NOW - 120 + i)
    return recorder


@pytest.fixture
def prom(api: TestClient) -> TestClient:
    async def refresh() -> None:
        return None

    api.app.state.cp.components["telemetry"] = SimpleNamespace(recorder=_recorder(), refresh=refresh)  # type: ignore[attr-defined]
    return api


ERROR_RATE = ('sum by (destination_version) (rate(istio_requests_total{response_code=~"5.."}[30s])) / '
              'sum by (destination_version) (rate(istio_requests_total[30s]))')


def test_an_instant_query_gets_prometheus_envelope(prom: TestClient) -> None:
    resp = prom.get("/prometheus/api/v1/query", params={"query": ERROR_RATE, "time": NOW - 1})
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    [v2] = body["data"]["result"]
    assert v2["metric"] == {"destination_version": "v2"}
    assert v2["value"][0] == NOW - 1
    assert float(v2["value"][1]) == pytest.approx(0.25)  # a string, as Prometheus writes sample values


def test_a_range_query_posted_as_a_form_as_grafana_and_argo_send_it(prom: TestClient) -> None:
    resp = prom.post("/prometheus/api/v1/query_range",
                     data={"query": "sum(rate(istio_requests_total[30s]))", "start": str(NOW - 60),
                           "end": str(NOW - 1), "step": "15s"})
    assert resp.status_code == 200, resp.text
    [series] = resp.json()["data"]["result"]
    assert [t for t, _ in series["values"]] == [NOW - 60, NOW - 45, NOW - 30, NOW - 15]
    assert [float(v) for _, v in series["values"]] == pytest.approx([12.0] * 4)


def test_errors_are_prometheus_errors(prom: TestClient) -> None:
    resp = prom.get("/prometheus/api/v1/query", params={"query": "sum(rate(x[1m])"})
    assert resp.status_code == 400
    assert resp.json() == {"status": "error", "errorType": "bad_data",
                           "error": 'invalid parameter "query": unclosed left parenthesis'}
    resp = prom.get("/prometheus/api/v1/query_range", params={"query": "1", "start": "0", "end": "86400",
                                                               "step": "1"})
    assert resp.status_code == 400 and "11,000 points" in resp.json()["error"]
    resp = prom.get("/prometheus/api/v1/query_range", params={"query": "1", "start": "0", "end": "60", "step": "nan"})
    assert resp.status_code == 400 and '"step"' in resp.json()["error"]  # found by fuzzing: it was a 500
    resp = prom.get("/prometheus/api/v1/query", params={"query": "1", "time": "yesterday"})
    assert resp.status_code == 400 and '"time"' in resp.json()["error"]


def test_labels_values_and_series(prom: TestClient) -> None:
    assert "destination_version" in prom.get("/prometheus/api/v1/labels").json()["data"]
    assert prom.get("/prometheus/api/v1/label/destination_version/values").json()["data"] == ["v1", "v2"]
    found = prom.get("/prometheus/api/v1/series", params={"match[]": 'istio_requests_total{destination_version="v2"}',
                                                          "time": NOW - 1}).json()["data"]
    assert sorted(s["response_code"] for s in found) == ["200", "503"]


def test_what_grafana_asks_before_it_queries(prom: TestClient) -> None:
    assert prom.get("/prometheus/api/v1/status/buildinfo").json()["data"]["version"] == "2.42.0"
    meta = prom.get("/prometheus/api/v1/metadata").json()["data"]
    assert meta["istio_requests_total"][0]["type"] == "counter"
    assert set(meta) == {"istio_requests_total"}  # what the recorder holds, by family


def test_queries_are_reads_a_viewer_may_post_and_loopback_may_get(prom: TestClient, api_store: object) -> None:
    from graylane.server.auth import create_token

    app = prom.app
    viewer = create_token(api_store.engine, "vera", "viewer")  # type: ignore[attr-defined]
    with TestClient(app, base_url="http://127.0.0.1:7380") as anonymous:
        assert anonymous.get("/prometheus/api/v1/query", params={"query": "1"}).status_code == 200
        refused = anonymous.post("/prometheus/api/v1/query", data={"query": "1"})
        assert refused.status_code == 401  # not a login redirect: a machine API
    with TestClient(app, base_url="http://127.0.0.1:7380", headers={"Authorization": f"Bearer {viewer}"}) as c:
        assert c.post("/prometheus/api/v1/query", data={"query": "1"}).json()["data"]["result"][1] == "1"
        # a viewer's POST elsewhere is still refused
        assert c.post("/api/v1/apply", content="{}").status_code == 403


TOKENS = ["sum", "avg", "rate", "irate", "increase", "histogram_quantile", "topk", "label_replace", "absent",
          "vector", "scalar", "time()", "count_values", "quantile_over_time", "round", "clamp", "(", ")", "[1m]",
          "[5m:1s]", "[0s]", "{", "}", 'destination_version="v2"', 'response_code=~"5.*"', '__name__=~".+"', "=~",
          '"', "'", "`", "\\", "#", "\n", ",", "by", "without", "on", "ignoring", "group_left", "group_right",
          "bool", "or", "and", "unless", "+", "-", "*", "/", "%", "^", ">", "==", "offset", "-5m", "@", "start()",
          "1e309", "NaN", "Inf", "0.9", "2", "-1", "istio_requests_total", "x", "le", '"le"', '"(.*)"', '"$1"']
QUERIES = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30).map(" ".join) | st.text(max_size=60)
PARAMS = st.none() | st.sampled_from(["0", "-1", "1e20", "nan", "inf", "2026-12-06T10:00:00Z", "15s", "0s", "abc",
                                      str(NOW - 30), "-9999999999999"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(query=QUERIES, when=PARAMS, step=PARAMS, ranged=st.booleans(), post=st.booleans())
def test_any_query_gets_a_prometheus_answer_never_a_crash(prom: TestClient, query: str, when: str | None,
                                                          step: str | None, ranged: bool, post: bool) -> None:
    params = {"query": query}
    if ranged:
        params |= {"start": when or str(NOW - 60), "end": str(NOW), "step": step or "15"}
    elif when is not None:
        params["time"] = when
    path = "/prometheus/api/v1/query_range" if ranged else "/prometheus/api/v1/query"
    resp = prom.post(path, data=params) if post else prom.get(path, params=params)
    assert resp.status_code in (200, 400, 422, 503), resp.text
    body = resp.json()
    if resp.status_code == 200:
        assert body["status"] == "success" and "resultType" in body["data"]
    else:
        assert body["status"] == "error" and body["errorType"] and isinstance(body["error"], str)


@pytest.mark.parametrize("query", ["istio_requests_total @ -1", "rate(istio_requests_total[1m] @ -5)",
                                   "vector(1)[1m:1s] @ -1", "istio_requests_total @ 1e16",
                                   "istio_requests_total offset 1y @ 1e12", "istio_requests_total offset 1000000000y",
                                   "istio_requests_total offset -1000000000y", "vector(1)[100000000y:1s]",
                                   "vector(1)[1m:100000000y]", "vector(1)[1m:1s] offset 100000000y"])
def test_an_at_or_offset_out_of_range_is_bad_data_not_a_crash(prom: TestClient, query: str) -> None:
    # the parser's bindings raised ValueError or OverflowError, or panicked (a BaseException) converting these times
    resp = prom.get("/prometheus/api/v1/query", params={"query": query, "time": NOW - 1})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["errorType"] == "bad_data" and "out of range" in body["error"], body


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/query", {"query": "1", "time": "1e308"}, "time"),
    ("/query", {"query": "1", "time": "-1e300"}, "time"),
    ("/query_range", {"query": "1", "start": "1e308", "end": "1e308", "step": "1"}, "start"),
    ("/series", {"match[]": "istio_requests_total", "end": "1e308"}, "end"),
])
def test_a_time_beyond_what_prometheus_represents_is_refused_naming_it(prom: TestClient, path: str,
                                                                      params: dict[str, str], name: str) -> None:
    resp = prom.get("/prometheus/api/v1" + path, params=params)
    assert resp.status_code == 400, resp.text
    assert f'"{name}"' in resp.json()["error"]


def test_more_match_selectors_than_answered_are_refused_not_dropped(prom: TestClient) -> None:
    selectors = ['istio_requests_total{destination_version="v1"}'] * 64 + [
        'istio_requests_total{destination_version="v2"}']
    resp = prom.get("/prometheus/api/v1/series", params={"match[]": selectors, "time": NOW - 1})
    assert resp.status_code == 400, resp.text
    assert '"match[]"' in resp.json()["error"] and "64" in resp.json()["error"]
    resp = prom.get("/prometheus/api/v1/series", params={"match[]": selectors[-64:], "time": NOW - 1})
    assert resp.status_code == 200 and len(resp.json()["data"]) == 3


def test_label_functions_cannot_grow_a_label_without_bound(prom: TestClient) -> None:
    # each label_join repeats the label ten times: ten levels would be 10^10 characters per sample
    query = 'label_replace(vector(1), "a", "xxxxxxxxxx", "", "")'
    sources = ", ".join(['"a"'] * 10)
    for _ in range(10):
        query = f'label_join({query}, "a", "", {sources})'
    started = time.monotonic()
    resp = prom.get("/prometheus/api/v1/query", params={"query": query, "time": NOW - 1})
    assert time.monotonic() - started < 5
    assert resp.status_code == 422, resp.text
    assert "label_join" in resp.json()["error"] and '"a"' in resp.json()["error"]
    # label_replace's $1 repeated: the same bound
    query = 'label_replace(vector(1), "a", "xxxxxxxxxx", "", "")'
    replacement = "$1" * 10
    for _ in range(10):
        query = f'label_replace({query}, "a", "{replacement}", "a", "(.*)")'
    resp = prom.get("/prometheus/api/v1/query", params={"query": query, "time": NOW - 1})
    assert resp.status_code == 422 and "label_replace" in resp.json()["error"], resp.text
    # ordinary use is untouched
    ok = prom.get("/prometheus/api/v1/query", params={"query": 'label_join(istio_requests_total, "x", "-", '
                                                                '"destination_version", "response_code")',
                                                      "time": NOW - 1})
    assert sorted(s["metric"]["x"] for s in ok.json()["data"]["result"]) == ["v1-200", "v2-200", "v2-503"]
