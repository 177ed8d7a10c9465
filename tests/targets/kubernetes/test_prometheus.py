"""Istio traffic from a REAL Prometheus: recorded Istio series loaded with promtool, queried through our client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.prometheus_server import backfilled_prometheus, free_port

from graylane.errors import GraylaneError, ValidationError
from graylane.promql import PrometheusClient, totals
from graylane.targets.accounts import prometheus_client

STEP = 15  # seconds between recorded samples, like a default scrape interval
SPAN = 30 * 60

BASE = {"connection_security_policy": "mutual_tls", "request_protocol": "http", "response_flags": "-",
        "destination_service_namespace": "bookinfo", "destination_workload_namespace": "bookinfo",
        "source_workload_namespace": "bookinfo"}


def edge(src: str, src_ver: str, dst: str, dst_ver: str, code: str, *, reporter: str = "destination",
         ns: str = "bookinfo") -> dict[str, str]:
    labels = dict(BASE, reporter=reporter, response_code=code,
                  source_workload=f"{src}-{src_ver}" if src_ver else src, source_app=src,
                  source_version=src_ver or "unknown",
                  destination_workload=f"{dst}-{dst_ver}", destination_app=dst, destination_version=dst_ver,
                  destination_service_name=dst, destination_service=f"{dst}.{ns}.svc.cluster.local",
                  destination_service_namespace=ns, destination_workload_namespace=ns, source_workload_namespace=ns)
    if code.startswith("5"):
        labels["response_flags"] = "-"
    return labels


# (labels, requests per second): what Bookinfo's sidecars would have reported for 30 minutes.
TRAFFIC: list[tuple[dict[str, str], float]] = [
    (edge("istio-ingressgateway", "", "productpage", "v1", "200"), 10.0),
    (edge("productpage", "v1", "details", "v1", "200"), 10.0),
    (edge("productpage", "v1", "reviews", "v1", "200"), 5.0),
    (edge("productpage", "v1", "reviews", "v2", "200"), 4.0),
    (edge("productpage", "v1", "reviews", "v2", "503"), 1.0),
    (edge("reviews", "v2", "ratings", "v1", "200"), 4.0),
    # the client side of the same call: must not be double counted with reporter="destination"
    (edge("productpage", "v1", "details", "v1", "200", reporter="source"), 10.0),
    # another namespace: filtered out
    (edge("sleep", "v1", "httpbin", "v1", "200", ns="other"), 3.0),
]
# productpage -> reviews-v2 latency: per second, 2 requests <=10ms, 2 more <=50ms, 1 more <=100ms.
BUCKETS = [("10", 2.0), ("25", 2.0), ("50", 4.0), ("100", 5.0), ("250", 5.0), ("+Inf", 5.0)]


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def openmetrics(end: int) -> str:
    start = end - SPAN
    lines = ["# TYPE istio_requests counter"]
    for labels, rps in TRAFFIC:
        for t in range(start, end + 1, STEP):
            lines.append(f"istio_requests_total{_fmt(labels)} {rps * (t - start):.1f} {t}")
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    hist = {k: v for k, v in edge("productpage", "v1", "reviews", "v2", "200").items()
            if k not in ("response_code", "response_flags")}
    for le, per_s in BUCKETS:
        for t in range(start, end + 1, STEP):
            lines.append(f"istio_request_duration_milliseconds_bucket{_fmt(dict(hist, le=le))} "
                         f"{per_s * (t - start):.1f} {t}")
    for t in range(start, end + 1, STEP):
        lines.append(f"istio_request_duration_milliseconds_count{_fmt(hist)} {5.0 * (t - start):.1f} {t}")
        lines.append(f"istio_request_duration_milliseconds_sum{_fmt(hist)} {150.0 * (t - start):.1f} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class Prom:
    url: str
    end: float


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    yield from _start(tmp_path_factory.mktemp("prom"), free_port())


def _start(root: Path, port: int) -> Iterator[Prom]:
    # The guide's recipe (docs/kubernetes.md): record, convert to TSDB blocks, point Prometheus at them.
    end = (int(time.time()) // STEP) * STEP - 5 * 60
    with backfilled_prometheus(root, openmetrics(end), port) as url:
        yield Prom(url, float(end))


@pytest.mark.asyncio
async def test_istio_traffic_per_edge_and_code(prometheus: Prom) -> None:
    client = PrometheusClient(prometheus.url)
    samples = await client.istio_traffic("bookinfo", window="1m", at=prometheus.end)

    assert {s.labels["reporter"] for s in samples} == {"destination"}
    assert {s.labels["destination_service_namespace"] for s in samples} == {"bookinfo"}
    failing = [s for s in samples if s.labels.get("destination_workload") == "reviews-v2"
               and s.labels["response_code"] == "503"]
    assert len(failing) == 1
    assert failing[0].requests == pytest.approx(60.0, rel=0.02)  # 1 req/s over 1m
    assert failing[0].errors == failing[0].requests
    assert failing[0].labels["source_workload"] == "productpage-v1"

    reviews = [s for s in samples if s.labels["destination_service_name"] == "reviews"]
    split = totals(reviews, by="destination_version")
    assert split["v1"][0] == pytest.approx(300.0, rel=0.02)
    assert split["v2"][0] == pytest.approx(300.0, rel=0.02)
    assert split["v1"][1] == 0.0
    assert split["v2"][1] == pytest.approx(60.0, rel=0.02)
    details = [s for s in samples if s.labels["destination_service_name"] == "details"]
    assert sum(s.requests for s in details) == pytest.approx(600.0, rel=0.02)  # not doubled by reporter=source


@pytest.mark.asyncio
async def test_all_namespaces_and_source_reporter(prometheus: Prom) -> None:
    client = PrometheusClient(prometheus.url)
    everything = await client.istio_traffic(None, window="5m", at=prometheus.end)
    assert {s.labels["destination_service_namespace"] for s in everything} == {"bookinfo", "other"}
    httpbin = [s for s in everything if s.labels["destination_service_name"] == "httpbin"]
    assert sum(s.requests for s in httpbin) == pytest.approx(900.0, rel=0.02)  # 3 req/s over 5m
    source = await client.istio_traffic("bookinfo", window="1m", reporter="source", at=prometheus.end)
    assert [s.labels["destination_service_name"] for s in source] == ["details"]


@pytest.mark.asyncio
async def test_graph_series_feed_the_topology_graph(prometheus: Prom) -> None:
    from graylane.mesh.telemetry.topology import GraphOptions, build_graph

    series = await PrometheusClient(prometheus.url).graph_series("bookinfo", window="1m", at=prometheus.end)
    assert series.covered == 60.0
    assert series.duration_buckets  # latency histogram came through
    graph = build_graph(series.requests, series.duration_buckets, series.covered,
                        GraphOptions(namespace="bookinfo", graph_type="versionedApp"))
    to_reviews = {e["target"]: e for e in graph["edges"] if e["service"] == "reviews"}
    assert len(to_reviews) == 2  # v1 and v2 of reviews
    v2 = next(e for t, e in to_reviews.items() if "v2" in t)
    v1 = next(e for t, e in to_reviews.items() if "v1" in t)
    assert v2["rps"] == pytest.approx(5.0, rel=0.02) and v1["rps"] == pytest.approx(5.0, rel=0.02)
    assert v2["distribution"] == pytest.approx(50.0, abs=1.0)
    assert v2["errorRate5xx"] > 0 and v1["errorRate5xx"] == 0
    # 2 of 5 requests/s within 25ms, 4 within 50ms: the median interpolates to 25 + 25 * 0.5/2 = 31.25ms
    assert v2["p50"] == pytest.approx(31.25, rel=0.01)
    assert not any("httpbin" in n["id"] for n in graph["nodes"])


@pytest.mark.asyncio
async def test_prometheus_errors_are_clear(prometheus: Prom) -> None:
    with pytest.raises(GraylaneError, match="rejected the query"):
        await PrometheusClient(prometheus.url).query("sum(rate(istio_requests_total[1m])")  # unbalanced
    with pytest.raises(GraylaneError, match="cannot reach"):
        await PrometheusClient(f"http://127.0.0.1:{free_port()}").query("up")
    with pytest.raises(ValidationError):
        await PrometheusClient(prometheus.url).istio_traffic('bookinfo"} or vector(1) #')
    with pytest.raises(ValidationError):
        await PrometheusClient(prometheus.url).istio_traffic("bookinfo", window="one minute")


@pytest.mark.asyncio
async def test_account_prometheus(prometheus: Prom, state_dir: Path, tmp_path: Path) -> None:
    from graylane.targets.accounts import add_account

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": '
                          '[{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}], "users": [{"name": "u", '
                          '"user": {}}], "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}')
    add_account("staging", kubeconfig=kubeconfig, prometheus=prometheus.url + "/")
    add_account("noprom", kubeconfig=kubeconfig)
    samples = await prometheus_client("staging").istio_traffic("bookinfo", at=prometheus.end)
    assert samples
    with pytest.raises(GraylaneError, match="has no Prometheus"):
        prometheus_client("noprom")


@pytest.mark.asyncio
async def test_a_kubernetes_targets_traffic_query_reads_its_accounts_prometheus(prometheus: Prom, state_dir: Path,
                                                                              tmp_path: Path) -> None:
    """Target.traffic: what the topology and analysis ask any account; a Kubernetes account answers from the
    Prometheus it was added with, the split by version as a user reads it on the graph."""
    from graylane.targets.accounts import add_account, get_target
    from graylane.targets.base import Target

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text('{"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": '
                          '[{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}], "users": [{"name": "u", '
                          '"user": {}}], "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}')
    add_account("staging", kubeconfig=kubeconfig, prometheus=prometheus.url)
    add_account("noprom", kubeconfig=kubeconfig)
    target = get_target("staging")
    assert isinstance(target, Target)
    samples = await target.traffic("bookinfo", window="1m", at=prometheus.end)
    split = totals([s for s in samples if s.labels["destination_service_name"] == "reviews"],
                   by="destination_version")
    assert split["v2"][0] == pytest.approx(300.0, rel=0.02)
    assert split["v2"][1] == pytest.approx(60.0, rel=0.02)
    with pytest.raises(GraylaneError, match="has no Prometheus"):
        await get_target("noprom").traffic("bookinfo")
    with pytest.raises(ValidationError, match="window"):
        await target.traffic("bookinfo", window="1 minute")


def test_the_graph_api_serves_a_kubernetes_account_from_its_prometheus(prometheus: Prom, state_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`GET /api/v1/graph?account=NAME` builds the same Kiali-like graph from the cluster's Istio series."""
    from fastapi.testclient import TestClient

    from graylane.server.app import create_app
    from graylane.server.context import ControlPlane
    from graylane.store import Store
    from graylane.targets.accounts import add_account

    monkeypatch.setenv("GRAYLANE_BIND_HOST", "127.0.0.1")
    add_account("prod", prometheus=prometheus.url)
    store = Store.open()
    client = TestClient(create_app(ControlPlane(store=store), start_components=False), base_url="http://127.0.0.1")
    resp = client.get("/api/v1/graph", params={"account": "prod", "namespace": "bookinfo", "window": "1m",
                                               "queryTime": prometheus.end})
    assert resp.status_code == 200, resp.text
    graph = resp.json()
    assert graph["account"] == "prod"
    split = {e["target"].rsplit("/", 1)[-1]: e["distribution"] for e in graph["edges"]
             if e["source"].endswith("productpage-v1") and e["service"] == "reviews"}
    assert split == {"reviews-v1": pytest.approx(50.0, abs=1.0), "reviews-v2": pytest.approx(50.0, abs=1.0)}
    missing = client.get("/api/v1/graph", params={"account": "nowhere"})
    assert missing.status_code >= 400 and "nowhere" in missing.json()["error"]["message"]
    store.close()
