import pytest
import sqlalchemy as sa

from graylane.errors import ValidationError
from graylane.mesh.telemetry.metrics import ControlPlaneMetrics, route_weights
from graylane.mesh.telemetry.otlp import to_readable
from graylane.mesh.telemetry.series import parse_text
from graylane.mesh.telemetry.traces import TraceStore, metadata, waterfall
from graylane.resources.durations import query_seconds as parse_duration


def vs(name, routes, match_first=None):
    http = []
    if match_first:
        http.append({"match": [{"headers": {"end-user": {"exact": "jason"}}}],
                     "route": [{"destination": {"host": name, "subset": match_first}}]})
    http.append({"route": routes})
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"hosts": [name], "http": http}}


def test_route_weight_metric_uses_the_default_rule_and_normalises():
    m = ControlPlaneMetrics()
    m.add_source(lambda: [route_weights([
        vs("reviews", [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 1},
                       {"destination": {"host": "reviews", "subset": "v2"}, "weight": 3}], match_first="v2"),
        vs("ratings", [{"destination": {"host": "ratings", "subset": "v1"}}]),
    ])])
    series = parse_text(m.render())["graylane_route_weight"]
    got = {dict(k)["virtual_service"] + "/" + dict(k)["subset"]: v for k, v in series.items()}
    assert got == {"reviews/v1": 25.0, "reviews/v2": 75.0, "ratings/v1": 100.0}


def test_a_broken_metric_source_does_not_break_the_endpoint():
    m = ControlPlaneMetrics()
    m.add_source(lambda: 1 / 0)
    m.add_source(lambda: [route_weights([])])
    assert "graylane_route_weight" in m.render()


@pytest.mark.parametrize(("text", "seconds"), [("1m", 60), ("90s", 90), ("1h30m", 5400), ("250ms", 0.25), ("2", 2)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration_names_the_field():
    with pytest.raises(ValidationError, match="window: '5 minutes' is not a duration"):
        parse_duration("5 minutes", "window")


def spans(trace="a" * 32, shift=0):
    out = [
        {"traceId": trace, "spanId": "1" * 16, "parentSpanId": None, "name": "productpage:9080/productpage",
         "kind": "server", "service": "productpage.default", "startUs": 1_000_000, "durationUs": 50_000,
         "tags": {"http.status_code": "200"}},
        {"traceId": trace, "spanId": "2" * 16, "parentSpanId": "1" * 16, "name": "reviews:9080/*",
         "kind": "client", "service": "productpage.default", "startUs": 1_010_000, "durationUs": 20_000,
         "tags": {"http.status_code": "503"}},
        {"trace_id": trace, "span_id": "3" * 16, "parent_span_id": "2" * 16, "name": "reviews:9080/*",
         "kind": "server", "service": "reviews.default", "start": 1.011, "duration": 0.018, "tags": {}},
    ]
    for s in out:
        if "startUs" in s:
            s["startUs"] += shift
    return out


def test_trace_store_groups_filters_and_bounds(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    metadata.create_all(engine)
    store = TraceStore(engine, max_spans=5)
    assert store.add(spans()) == 3
    assert store.add(spans("b" * 32, shift=5_000_000)[:2]) == 2
    listed = store.traces()
    assert [t["traceId"] for t in listed] == ["b" * 32, "a" * 32]
    a = store.traces(service="reviews")[0]
    assert a["traceId"] == "a" * 32 and a["spanCount"] == 3 and a["errors"] == 1 and a["durationUs"] == 50_000
    assert store.traces(min_duration_us=40_000, service="reviews")[0]["rootService"] == "productpage.default"
    assert store.traces(min_duration_us=60_000) == []
    assert [t["traceId"] for t in store.traces(tags={"http.status_code": "503"})] == ["b" * 32, "a" * 32]
    assert [t["traceId"] for t in store.traces(tags={"http.status_code": "503"}, service="reviews")] == ["a" * 32]
    assert store.traces(tags={"http.status_code": "404"}) == []
    tree = waterfall(store.trace("a" * 32))
    assert [(d, s["spanId"][0]) for d, s in tree] == [(0, "1"), (1, "2"), (2, "3")]
    store.add(spans("c" * 32))
    store.trim()
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from trace_spans")).scalar_one() == 5


def test_spans_convert_to_opentelemetry():
    span = to_readable({**spans()[1], "tags": {"http.status_code": "503"}})
    assert span.parent.span_id == int("1" * 16, 16)
    assert span.end_time - span.start_time == 20_000_000
    assert span.status.status_code.name == "ERROR"
    assert span.resource.attributes["service.name"] == "productpage.default"
