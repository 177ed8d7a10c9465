"""Observability on a real local mesh: Bookinfo behind `graylane up`, a real Prometheus, a real OTLP receiver.

Everything is a real process on loopback: the control plane and the data plane (`graylane up` in a private state
folder), the five Bookinfo workloads the article deploys (`image: docker.io/istio/examples-bookinfo-*` resolve to
our Python services), Debian's `/usr/bin/prometheus` scraping the control plane's `/metrics` every second, and a
small OTLP/HTTP receiver that decodes what the control plane exports. Traffic goes through the gateway listener.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests import system
from tests.e2e.test_article import page_kind
from tests.e2e.test_local_mesh import Mesh, deployment, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BOOKINFO = Path(__file__).resolve().parents[2] / "src" / "graylane" / "demos" / "bookinfo"
WINDOW_S = 15  # the window the graph and PromQL are compared over (steady traffic fills it)


def reviews_vs(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}
"""


def web(gateway_port: int, v1: int, v2: int) -> str:
    """A small fast two-version app (tests/runtime/echo_app.py) behind its own gateway port: enough requests per
    second on a busy machine for rates to be compared to the percent."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: web-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: web}}
spec:
  host: web
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: ["*"]
  gateways: [web-gateway]
  http:
  - route:
    - {{destination: {{host: web, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: web, subset: v2}}, weight: {v2}}}
"""


# ---- an OTLP/HTTP receiver (what a Jaeger or Tempo collector accepts) -----------------------------------------

class OtlpReceiver:
    """Accepts POST /v1/traces (protobuf ExportTraceServiceRequest) and keeps every span it decodes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, Any]] = []
        self.posts = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's spelling)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                with lock:
                    receiver.posts += 1
                    for rs in req.resource_spans:
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                receiver.spans.append({"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(),
                                                       "parentSpanId": s.parent_span_id.hex(), "name": s.name,
                                                       "kind": s.kind})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- a real Prometheus -----------------------------------------------------------------------------------------

class Prometheus:
    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "- job_name: graylane\n"
            "  scrape_interval: 1s\n"
            "  metrics_path: /metrics\n"
            f"  static_configs: [{{targets: ['{target}']}}]\n")
        self.log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 (closed in stop)
        prometheus = system.require_program("prometheus", "prometheus")
        self.proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, (folder / "prometheus.log").read_text()
            try:
                if self.api.get("/-/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        resp = self.api.get("/api/v1/query", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def by(self, promql: str, label: str, at: float | None = None) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(promql, at)}

    def wait_for(self, promql: str, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not (result := self.query(promql)):
            assert time.monotonic() < deadline, f"prometheus has no {promql}"
            time.sleep(0.25)
        return result

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.api.close()
        self.log.close()


# ---- traffic -----------------------------------------------------------------------------------------------------

class PacedLoad:
    """Page loads through the gateway at a steady `rps` (so any trailing window sees the same rate)."""

    def __init__(self, url: str, rps: float, threads: int = 2, kind: Any = None) -> None:
        self.url = url
        self.kind = kind or (lambda resp: page_kind(resp.text))
        self.interval = threads / rps
        self.kinds: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            due = time.monotonic() + i * self.interval / len(self._threads)
            while not self._stop.is_set():
                time.sleep(max(0.0, due - time.monotonic()))
                due += self.interval
                try:
                    resp = client.get(self.url)
                    kind = self.kind(resp) if resp.status_code == 200 else f"HTTP {resp.status_code}"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                with self._lock:
                    self.kinds[kind] += 1
                    if kind not in ("none", "black", "v1", "v2"):
                        self.failures.append(kind)

    def __enter__(self) -> PacedLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


# ---- the mesh --------------------------------------------------------------------------------------------------

class Observed(Mesh):
    def __init__(self, state: Path, otlp: OtlpReceiver) -> None:
        super().__init__(state)
        self.env["GRAYLANE_OTLP_ENDPOINT"] = otlp.url
        self.env["GRAYLANE_SCRAPE_INTERVAL"] = "1"
        self.otlp = otlp
        self.productpage = f"http://127.0.0.1:{self.gateway_port}/productpage"
        self.http = httpx.Client(trust_env=False, timeout=30)
        self.prometheus: Prometheus | None = None
        self.web_port = free_port()
        self.web = f"http://127.0.0.1:{self.web_port}/"
        self.folder = state.parent

    def prom(self) -> Prometheus:
        """The test's Prometheus, started on first use (after the traffic whose series it must see from zero)."""
        if self.prometheus is None:
            self.prometheus = Prometheus(self.folder / "prometheus", f"127.0.0.1:{self.server_port}")
        return self.prometheus

    def graph(self, window: str = "1m", **params: str) -> dict[str, Any]:
        resp = self.api.get("/api/v1/graph", params={"window": window, **params})
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def admin(self, path: str) -> Any:
        return httpx.get(f"http://127.0.0.1:{self.admin_port}{path}", trust_env=False, timeout=10).json()

    def page(self, request_id: str | None = None) -> tuple[str, str]:
        rid = request_id or str(uuid.uuid4())
        resp = self.http.get(self.productpage, headers={"x-request-id": rid})
        assert resp.status_code == 200, resp.text[:300]
        return rid, page_kind(resp.text)

    def wait_scraped(self, requests_total: float, timeout: float = 15) -> None:
        """Until the control plane's view of the data plane has `requests_total` gateway requests or more."""
        deadline = time.monotonic() + timeout
        while True:
            graph = self.graph("15m")
            done = sum(e["requests"] for e in graph["edges"] if e["source"] == "istio-system/istio-ingressgateway")
            if done >= requests_total:
                return
            assert time.monotonic() < deadline, f"telemetry saw {done} gateway requests, wanted {requests_total}"
            time.sleep(0.2)


def labelled(graph: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    nodes = {n["id"]: n for n in graph["nodes"]}
    by_label = {n["label"]: n for n in graph["nodes"]}
    edges = {(nodes[e["source"]]["label"], nodes[e["target"]]["label"]): e for e in graph["edges"]}
    return by_label, edges


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[Observed]:
    state = tmp_path_factory.mktemp("observability") / "state"
    state.mkdir()
    m = Observed(state, otlp)
    # The demo's mesh settings: every request traced (Istio's default is 1 %), access log on as JSON.
    (state / "mesh-options.json").write_text(json.dumps({"trace_sampling": 100.0, "access_log": "json"}))
    try:
        m.up()
        files = [BOOKINFO / "platform/kube/bookinfo-reviews-v1.yaml",
                 BOOKINFO / "platform/kube/bookinfo-reviews-v2.yaml", BOOKINFO / "networking/bookinfo-gateway.yaml",
                 BOOKINFO / "networking/destination-rule-all.yaml", BOOKINFO / "networking/virtual-service-all-v1.yaml"]
        docs = [f.read_text() for f in files] + [web(m.web_port, 70, 30), deployment("web-v1", "v1", 1),
                                                 deployment("web-v2", "v2", 1)]
        m.apply("\n---\n".join(docs), "bookinfo.yaml")
        for name in ("productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "ratings-v1", "web-v1", "web-v2"):
            m.rollout(name)
        yield m
    finally:
        if m.prometheus is not None:
            m.prometheus.stop()
        m.cli("down", check=False)
        m.api.close()
        m.http.close()


# ---- tests -------------------------------------------------------------------------------------------------------

def test_reviews_v1_only_has_no_edge_to_ratings(mesh: Observed) -> None:
    kinds = Counter(mesh.page()[1] for _ in range(10))
    assert kinds == {"none": 10}
    mesh.wait_scraped(10)
    nodes, edges = labelled(mesh.graph("1m"))
    assert {("istio-ingressgateway", "productpage-v1"), ("productpage-v1", "details-v1"),
            ("productpage-v1", "reviews-v1")} <= set(edges), sorted(edges)
    assert not [e for e in edges if e[1].startswith("ratings")], sorted(edges)
    assert edges[("productpage-v1", "reviews-v1")]["distribution"] == 100.0
    assert edges[("productpage-v1", "reviews-v1")]["requests"] == pytest.approx(10, abs=0.01)
    # Deployed but without traffic: idle nodes (and hidden on request).
    assert nodes["ratings-v1"]["idle"] and nodes["reviews-v2"]["idle"]
    assert not nodes["reviews-v1"]["idle"] and nodes["reviews-v1"]["health"] == "Healthy"
    hidden = {n["label"] for n in mesh.graph("1m", idle="false")["nodes"]}
    assert "ratings-v1" not in hidden and "reviews-v1" in hidden


def edge_rate(reporter: str, source: str, service: str) -> str:
    """Kiali's edge query: requests/s from one workload to one service, per destination version."""
    return (f'sum(rate(istio_requests_total{{reporter="{reporter}",source_workload="{source}",'
            f'destination_service_name="{service}"}}[{WINDOW_S}s])) by (destination_version)')


def test_canary_50_graph_and_prometheus_split(mesh: Observed) -> None:
    mesh.apply_api(reviews_vs(50, 50), "reviews-50.yaml")
    # Both versions' series exist before Prometheus's first scrape, so rate() sees every later request.
    assert Counter(mesh.page()[1] for _ in range(4)) == {"none": 2, "black": 2}
    mesh.wait_scraped(10 + 4)  # the graph asks for a fresh scrape: it has seen the warm-up pages
    time.sleep(0.2)
    started = time.time()  # the canary window starts here: after phase one and the warm-up
    prom = mesh.prom()
    prom.wait_for('istio_requests_total{reporter="destination",destination_version="v2"}')
    prom.wait_for('graylane_route_weight{virtual_service="reviews",subset="v2"} == 50')

    # Pages one after another: queued behind each other on this busy machine, a reviews call could pass
    # productpage's 3 s timeout and be retried (Bookinfo's second attempt), which a page's stars do not show.
    with PacedLoad(mesh.productpage, rps=100, threads=1) as load:
        time.sleep(10)
    assert load.failures == []
    seen = load.kinds
    total = sum(seen.values())
    mesh.wait_scraped(10 + 4 + total)  # phase one, the warm-up and this load
    time.sleep(1.5)  # one more Prometheus scrape
    split = prom.by('sum(rate(istio_requests_total{reporter="destination",destination_service_name="reviews"}'
                    '[1m])) by (destination_version)', "destination_version")
    # Kiali's PromQL returns the split the traffic produced (pages with black stars came from reviews-v2).
    assert set(split) == {"v1", "v2"}
    assert split["v2"] / (split["v1"] + split["v2"]) == pytest.approx(seen["black"] / total, abs=0.01), (split, seen)

    # The article's check over the canary's traffic only (the window starts after phase one and the warm-up):
    # productpage-v1 -> reviews-v1 and -> reviews-v2 at ~50 % each, reviews-v2 -> ratings-v1.
    nodes, edges = labelled(mesh.graph(f"{time.time() - started:.1f}s"))
    to_v1, to_v2 = edges[("productpage-v1", "reviews-v1")], edges[("productpage-v1", "reviews-v2")]
    assert to_v1["requests"] + to_v2["requests"] == pytest.approx(total)
    assert to_v2["distribution"] == pytest.approx(100 * seen["black"] / total, abs=5)
    assert to_v1["distribution"] == pytest.approx(50, abs=5) and to_v2["distribution"] == pytest.approx(50, abs=5)
    assert to_v1["distribution"] + to_v2["distribution"] == pytest.approx(100)
    assert ("reviews-v2", "ratings-v1") in edges and ("reviews-v1", "ratings-v1") not in edges
    assert edges[("reviews-v2", "ratings-v1")]["requests"] == pytest.approx(to_v2["requests"])
    assert not nodes["ratings-v1"]["idle"]
    for e in (to_v1, to_v2, edges[("reviews-v2", "ratings-v1")]):
        assert e["health"] == "Healthy" and e["errorRate5xx"] == 0
        assert e["p50"] is not None and e["p50"] <= e["p95"] <= e["p99"]
    # Graylane's own series are in Prometheus too.
    assert prom.by('graylane_route_weight{virtual_service="reviews"}', "subset") == {"v1": 50.0, "v2": 50.0}


def test_graph_edge_rates_agree_with_promql_on_steady_traffic(mesh: Observed) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:  # both versions' series exist before the window
        assert {client.get(mesh.web).json()["version"] for _ in range(10)} == {"v1", "v2"}
    prom = mesh.prom()
    with PacedLoad(mesh.web, rps=20, threads=4, kind=lambda resp: resp.json()["version"]) as load:
        time.sleep(WINDOW_S + 4)
        # One window for both, [at - 15s, at], `at` a little in the past so both have scraped up to it.
        at = time.time() - 2.0
        graph = mesh.graph(f"{WINDOW_S}s", queryTime=f"{at:.3f}")
        rates = prom.by(edge_rate(graph["reporter"], "istio-ingressgateway", "web"), "destination_version", at)
    assert load.failures == []
    _, edges = labelled(graph)
    got = {v: edges[("istio-ingressgateway", f"web-{v}")]["rps"] for v in ("v1", "v2")}
    print(f"graph edge rps {got}, PromQL rate {rates}, responses {dict(load.kinds)}")
    assert set(rates) == {"v1", "v2"}
    for v in ("v1", "v2"):
        assert got[v] == pytest.approx(rates[v], rel=0.05), (v, got, rates)
    assert got["v2"] / (got["v1"] + got["v2"]) == pytest.approx(0.3, abs=0.02)  # the VirtualService's 70/30


def find_trace(mesh: Observed, request_id: str, kind: str, timeout: float = 15) -> dict[str, Any]:
    """The one trace whose spans carry `request_id`, once all its spans are in (a client and a server span per
    hop: gateway, details, reviews, and ratings when the page came from reviews-v2)."""
    want = 8 if kind == "black" else 6
    deadline = time.monotonic() + timeout
    while True:
        listed = mesh.api.get("/api/v1/traces", params={"tag": f"guid:x-request-id={request_id}"}).json()["traces"]
        if listed and sum(t["spanCount"] for t in listed) >= want:
            assert len(listed) == 1, f"request {request_id} is in {len(listed)} traces"
            spans = mesh.api.get(f"/api/v1/traces/{listed[0]['traceId']}").json()["spans"]
            assert all(s["tags"]["guid:x-request-id"] == request_id for s in spans)
            return {"traceId": listed[0]["traceId"], "spans": spans}
        assert time.monotonic() < deadline, f"no complete trace for request {request_id}: {listed}"
        time.sleep(0.3)


def test_one_page_is_one_trace_with_nested_hops(mesh: Observed) -> None:
    while True:  # 50/50 round robin: the next page or the one after comes from reviews-v2
        rid, kind = mesh.page()
        if kind == "black":
            break
    trace = find_trace(mesh, rid, kind)
    spans = trace["spans"]
    by_id = {s["spanId"]: s for s in spans}
    assert all(s["traceId"] == trace["traceId"] for s in spans)

    def app(s: dict[str, Any]) -> str:
        return s["service"].split(".")[0]

    # Each hop is a client span (caller's proxy) and a server span (callee's), the server's parent the client.
    hops = []
    for s in spans:
        if s["kind"] == "client":
            [server] = [c for c in spans if c["parentSpanId"] == s["spanId"] and c["kind"] == "server"]
            hops.append((app(s), app(server)))
    assert sorted(hops) == sorted([("istio-ingressgateway", "productpage"), ("productpage", "details"),
                                   ("productpage", "reviews"), ("reviews", "ratings")])
    [root] = [s for s in spans if s["parentSpanId"] not in by_id]
    assert app(root) == "istio-ingressgateway" and root["kind"] == "client"
    # A hop made by an app hangs off the server span of the request that app was serving.
    for s in spans:
        if s is root:
            continue
        parent = by_id[s["parentSpanId"]]
        if s["kind"] == "client":
            assert parent["kind"] == "server" and app(parent) == app(s)
        # Durations nest: a child starts after and ends before its parent (1 ms rounding slack).
        assert s["startUs"] >= parent["startUs"] - 1000, (parent, s)
        assert s["startUs"] + s["durationUs"] <= parent["startUs"] + parent["durationUs"] + 1000, (parent, s)
        assert s["tags"]["http.status_code"] == "200"
    urls = {(app(s), s["tags"]["http.url"].split("/")[3]) for s in spans if s["kind"] == "server"}
    assert urls == {("productpage", "productpage"), ("details", "details"), ("reviews", "reviews"),
                    ("ratings", "ratings")}

    # The same trace leaves over OTLP/HTTP to the receiver, span for span, parents intact.
    deadline = time.monotonic() + 15
    while len(got := [s for s in mesh.otlp.spans if s["traceId"] == trace["traceId"]]) < len(spans):
        assert time.monotonic() < deadline, f"OTLP receiver has {len(got)} of {len(spans)} spans"
        time.sleep(0.2)
    assert sorted((s["spanId"], s["parentSpanId"]) for s in got) == sorted(
        (s["spanId"], s["parentSpanId"] or "") for s in spans)


def test_traces_api_filters_and_cli_shows_graph_and_waterfall(mesh: Observed) -> None:
    rid, kind = mesh.page()
    trace = find_trace(mesh, rid, kind)
    by_service = mesh.api.get("/api/v1/traces", params={"service": "ratings", "limit": 500}).json()["traces"]
    assert by_service and all("ratings.default" in t["services"] for t in by_service)
    slow = mesh.api.get("/api/v1/traces", params={"minDuration": "1h"}).json()["traces"]
    assert slow == []
    assert mesh.api.get("/api/v1/traces/0123456789abcdef0123456789abcdef").status_code == 404
    assert mesh.api.get("/api/v1/traces", params={"tag": "no-equals-sign"}).status_code == 422
    bad = mesh.api.get("/api/v1/graph", params={"window": "soon"})
    assert bad.status_code == 422 and "window" in bad.text

    tree = mesh.cli("graph", "--window", "5m").stdout
    assert "istio-ingressgateway" in tree and "productpage-v1" in tree and "reviews-v2" in tree
    services = mesh.graph("5m", type="service")
    assert {n["label"] for n in services["nodes"] if n["nodeType"] == "service"} >= {"productpage", "reviews",
                                                                                     "ratings"}
    listed = mesh.cli("traces", "--tag", f"guid:x-request-id={rid}").stdout
    assert trace["traceId"] in listed and "productpage" in listed
    waterfall = mesh.cli("trace", trace["traceId"]).stdout
    for service in ("istio-ingressgateway", "productpage", "details", "reviews"):
        assert service in waterfall


def test_access_log_records_flags_upstream_and_durations(mesh: Observed) -> None:
    rid, _ = mesh.page()
    missing = mesh.http.get(f"http://127.0.0.1:{mesh.gateway_port}/nowhere", headers={"x-request-id": "nr-" + rid})
    assert missing.status_code == 404
    log = mesh.admin("/access_log")
    assert log["enabled"] is True
    mine = [e for e in log["entries"] if e["request_id"] == rid]
    # The page is four requests through the data plane: gateway, details, reviews (and ratings from v2 only).
    assert {e["authority"].split(":")[0] for e in mine} >= {"productpage", "details", "reviews"} or \
        {e["path"].split("/")[1] for e in mine} >= {"productpage", "details", "reviews"}
    for e in mine:
        assert e["status"] == 200 and e["flags"] == "-"
        assert e["upstream_host"].startswith("127.0.0.1:") and e["duration_ms"] > 0
    [nr] = [e for e in log["entries"] if e["request_id"] == "nr-" + rid]
    assert nr["status"] == 404 and nr["flags"] == "NR" and nr["upstream_host"] == "-"
    # ...and one line per request in the data plane's log.
    lines = (mesh.state / "logs" / "dataplane.log").read_text().splitlines()
    # The mesh runs with access_log "json": Istio's JSON keys, one object per line.
    records = [json.loads(line[line.index("{"):]) for line in lines if "graylane.access" in line and "{" in line]
    assert any(r["path"] == "/nowhere" and r["response_code"] == 404 and r["response_flags"] == "NR"
               and r["upstream_host"] == "-" and r["request_id"] == "nr-" + rid for r in records)
