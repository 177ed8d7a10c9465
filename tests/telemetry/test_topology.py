import math

import pytest

from graylane.mesh.telemetry.health import health_of
from graylane.mesh.telemetry.quantile import histogram_quantile
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import parse_text
from graylane.mesh.telemetry.topology import GraphOptions, Workload, build_graph

from .istio_samples import GW, PP, R1, R2, canary_traffic, exposition, labels

KEPT = ("istio_requests_total", "istio_request_duration_milliseconds_bucket")


def graph_from(rows_before, rows_after, seconds=60.0, **opts):
    rec = Recorder()
    rec.add(parse_text(exposition(rows_before), KEPT), at=1000.0)
    rec.add(parse_text(exposition(rows_after), KEPT), at=1000.0 + seconds)
    reqs, covered = rec.increase("istio_requests_total", 60.0)
    buckets, _ = rec.increase("istio_request_duration_milliseconds_bucket", 60.0)
    deployed = opts.pop("deployed", ())
    return build_graph(reqs, buckets, covered, GraphOptions(**opts), deployed)


def edge(graph, source, target):
    found = [e for e in graph["edges"] if e["source"].endswith("/" + source) and e["target"].endswith("/" + target)]
    return found[0] if found else None


def test_article_canary_split_shows_both_versions_and_ratings_behind_v2():
    g = graph_from(canary_traffic(0), canary_traffic(200))
    to_v1, to_v2 = edge(g, "productpage-v1", "reviews-v1"), edge(g, "productpage-v1", "reviews-v2")
    assert to_v1["distribution"] == pytest.approx(50.0) and to_v2["distribution"] == pytest.approx(50.0)
    assert to_v1["rps"] == pytest.approx(100 / 60, rel=1e-3)
    assert edge(g, "reviews-v2", "ratings-v1") is not None
    assert edge(g, "reviews-v1", "ratings-v1") is None
    gw = [n for n in g["nodes"] if n["nodeType"] == "gateway"]
    assert [n["label"] for n in gw] == ["istio-ingressgateway"]
    assert edge(g, "istio-ingressgateway", "productpage-v1")["distribution"] == 100.0


def test_v1_only_has_no_edge_to_ratings_and_idle_ratings_is_a_hideable_node():
    rows = [(labels("source", GW, PP, "productpage", 200), 30, 20.0),
            (labels("source", PP, R1, "reviews", 200), 30, 4.0)]
    deployed = [Workload("default", "ratings-v1", "ratings", "v1"), Workload("default", "reviews-v1", "reviews", "v1")]
    g = graph_from([], rows, deployed=deployed)
    assert not [e for e in g["edges"] if "ratings" in e["target"]]
    ratings = [n for n in g["nodes"] if n["label"] == "ratings-v1"]
    assert ratings and ratings[0]["idle"] and ratings[0]["health"] == "NA"
    hidden = graph_from([], rows, deployed=deployed, include_idle=False)
    assert not [n for n in hidden["nodes"] if n["label"] == "ratings-v1"]


def test_latency_percentiles_follow_the_histogram():
    g = graph_from(canary_traffic(0), canary_traffic(200))
    v2 = edge(g, "productpage-v1", "reviews-v2")
    # every v2 request took 12 ms: inside the (10, 25] bucket, interpolated like histogram_quantile
    assert 10 < v2["p50"] <= 25 and v2["p95"] >= v2["p50"]
    assert edge(g, "productpage-v1", "reviews-v1")["p99"] <= 5


def test_errors_colour_edges_with_kiali_tolerances():
    ok = labels("source", PP, R2, "reviews", 200)
    bad = labels("source", PP, R2, "reviews", 503, "UF")
    g = graph_from([], [(ok, 95, 5.0), (bad, 5, 1.0)])
    e = edge(g, "productpage-v1", "reviews-v2")
    assert e["errorRate5xx"] == pytest.approx(5.0) and e["health"] == "Degraded"
    assert e["flags"] == {"UF": pytest.approx(5 / 60, rel=1e-3)}
    g = graph_from([], [(ok, 80, 5.0), (bad, 20, 1.0)])
    assert edge(g, "productpage-v1", "reviews-v2")["health"] == "Failure"


def test_unrouted_failures_end_at_the_service_node():
    nc = labels("source", PP, None, "reviews", 503, "NC")
    g = graph_from([], [(nc, 10, 0.2)])
    e = g["edges"][0]
    assert e["target"] == "default/svc/reviews" and e["health"] == "Failure"


def test_graph_types_and_service_node_injection():
    rows = canary_traffic(100)
    wl = graph_from([], rows, graph_type="workload")
    assert edge(wl, "productpage-v1", "reviews-v2") is not None
    app = graph_from([], rows, graph_type="app")
    assert edge(app, "productpage", "reviews")["distribution"] == 100.0
    svc = graph_from([], rows, graph_type="service")
    assert {e["target"] for e in svc["edges"]} >= {"default/svc/reviews", "default/svc/ratings"}
    injected = graph_from([], rows, inject_service_nodes=True)
    assert edge(injected, "productpage-v1", "reviews") is not None  # source -> service node
    assert edge(injected, "reviews", "reviews-v2")["distribution"] == pytest.approx(50.0)


def test_namespace_filter():
    rows = canary_traffic(10)
    assert graph_from([], rows, namespace="other")["edges"] == []
    assert graph_from([], rows, namespace="default")["edges"]


def test_counter_reset_counts_from_zero_and_baseline_excludes_old_traffic():
    rec = Recorder()
    lab = labels("source", PP, R1, "reviews", 200)
    text = lambda n: exposition([(lab, n, 1.0)])  # noqa: E731
    rec.add(parse_text(text(500), KEPT), at=0.0)  # before the window
    rec.add(parse_text(text(600), KEPT), at=100.0)  # window start baseline (window 60 from t=160)
    rec.add(parse_text(text(40), KEPT), at=160.0)  # data plane restarted: counter reset
    inc, covered = rec.increase("istio_requests_total", 60.0)
    assert list(inc.values()) == [40.0] and covered == 60.0


@pytest.mark.parametrize(("counts", "expected"), [
    ([100, 150, 20, 50], 100.0),  # +50 before the restart, then 50 from zero
    ([100, 5, 120], 120.0),  # restarted and grew past the old value: still a reset (not 120 - 100)
    ([100, None, 30], 30.0),  # the series vanished with its data plane, then came back
    ([100, 130, 160], 60.0),
])
def test_resets_anywhere_in_the_window_count_as_prometheus_does(counts, expected):
    rec = Recorder()
    lab = labels("source", PP, R1, "reviews", 200)
    other = labels("source", PP, R1, "reviews", 503)
    for i, n in enumerate(counts):
        rows = [(other, 7, 1.0)] + ([(lab, n, 1.0)] if n is not None else [])
        rec.add(parse_text(exposition(rows), KEPT), at=10.0 * i)
    inc, covered = rec.increase("istio_requests_total", 10.0 * (len(counts) - 1))
    assert inc == {tuple(sorted(lab.items())): expected} and covered == 10.0 * (len(counts) - 1)


def test_query_time_ends_the_window_at_the_last_scrape_before_it():
    rec = Recorder()
    lab = labels("source", PP, R1, "reviews", 200)
    for at, n in ((0.0, 100), (10.0, 200), (20.0, 260), (30.0, 400)):
        rec.add(parse_text(exposition([(lab, n, 1.0)]), KEPT), at=at)
    assert rec.increase("istio_requests_total", 10.0, now=21.0) == ({tuple(sorted(lab.items())): 60.0}, 10.0)
    assert rec.increase("istio_requests_total", 10.0, now=25.0)[0] == {tuple(sorted(lab.items())): 60.0}
    assert rec.increase("istio_requests_total", 10.0) == ({tuple(sorted(lab.items())): 140.0}, 10.0)
    assert rec.rate("istio_requests_total", 20.0, now=30.0) == {tuple(sorted(lab.items())): 10.0}


def test_histogram_quantile_matches_prometheus_interpolation():
    buckets = [(1, 0), (5, 10), (10, 10), (math.inf, 10)]
    assert histogram_quantile(0.5, buckets) == 3.0
    assert histogram_quantile(0.99, [(1, 0), (math.inf, 10)]) == 1.0
    assert histogram_quantile(0.5, []) is None


@pytest.mark.parametrize(("codes", "expected"), [
    ({}, "NA"), ({"200": 100}, "Healthy"), ({"200": 999, "500": 1}, "Degraded"),
    ({"200": 90, "503": 10}, "Failure"), ({"200": 89, "404": 11}, "Degraded"),
    ({"200": 90, "404": 10}, "Healthy"), ({"200": 80, "404": 20}, "Failure"),
])
def test_kiali_default_health(codes, expected):
    assert health_of(codes) == expected


def test_a_young_recorder_counts_from_the_data_plane_start_only_inside_the_window():
    """Requests between the data plane's start and the first scrape count when that start is in the window."""
    lab = labels("source", PP, R1, "reviews", 200)
    rec = Recorder()
    rec.origin = 95.0  # the data plane started 5 s before the first scrape, which already sees 30 requests
    rec.add(parse_text(exposition([(lab, 30, 1.0)]), KEPT), at=100.0)
    rec.add(parse_text(exposition([(lab, 32, 1.0)]), KEPT), at=101.0)
    inc, covered = rec.increase("istio_requests_total", 60.0)
    assert list(inc.values()) == [32.0] and covered == pytest.approx(6.0)
    # A data plane that has run for longer than the window: its old counts are not this window's.
    old = Recorder()
    old.origin = 0.0
    old.add(parse_text(exposition([(lab, 30, 1.0)]), KEPT), at=100.0)
    old.add(parse_text(exposition([(lab, 32, 1.0)]), KEPT), at=101.0)
    assert list(old.increase("istio_requests_total", 60.0)[0].values()) == [2.0]


def test_the_recorder_keeps_one_label_tuple_per_series_across_scrapes() -> None:
    """Memory: a second's scrape adds values, not another copy of every series' labels (benchmarks/promql.py
    measures what that saves); counting is unchanged."""
    rec = Recorder()
    for i in range(3):
        rec.add(parse_text(exposition([(labels("source", PP, R1, "reviews", 200), 10 * i, 5.0)]), KEPT),
                at=100.0 + i)
    _, scrapes = rec.snapshot()
    first, last = (next(iter(s["istio_requests_total"])) for s in (scrapes[0], scrapes[-1]))
    assert first == last and first is last
    increase, _ = rec.increase("istio_requests_total", 2.0)
    assert list(increase.values()) == [20.0]
