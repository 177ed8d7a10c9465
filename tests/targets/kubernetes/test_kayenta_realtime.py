"""The `reviews-canary-auto`-style realTime kayentaCanary stage on the emulated Kubernetes + Istio account, with
only `account` changed, against a real Prometheus that scrapes a live exporter every second (Istio's reviews
series as a sidecar would export them, counted as time passes): a healthy canary passes; once v2 starts answering
503s the next real-time run fails and rolls back on the cluster."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.prometheus_server import scraping_prometheus
from tests.targets.kubernetes.test_kayenta_account import (
    CONFIG,
    DEPLOYMENTS,
    ROLLBACK,
    canary_runs,
    canary_stage,
    weights,
)

from graylane.pipelines.status import ExecutionStatus as S

INTERVAL_S = 6  # one real-time interval, one value a second: enough points for the judge's Mann-Whitney test


class LiveReviews:
    """reviews v1 and v2 as a sidecar counts them: 10 requests/s answered 200 and 0.2/s 503 each, v2's 503s
    rising to 3/s once `bad` is set; counters integrate the rates between scrapes, so they only ever grow."""

    def __init__(self) -> None:
        self.bad = False
        self.lock = threading.Lock()
        self.at = time.time()
        self.counts = {(v, code): 0.0 for v in ("v1", "v2") for code in ("200", "503")}

    def rate(self, version: str, code: str) -> float:
        if code == "200":
            return 10.0
        return 3.0 if version == "v2" and self.bad else 0.2

    def render(self) -> str:
        with self.lock:
            now = time.time()
            for (version, code) in self.counts:
                self.counts[(version, code)] += self.rate(version, code) * (now - self.at)
            self.at = now
            counts = dict(self.counts)
        out = ["# TYPE istio_requests_total counter"]
        for (version, code), n in counts.items():
            out.append(f"istio_requests_total{labels(version, response_code=code)} {n:.3f}")
        out.append("# TYPE istio_request_duration_milliseconds histogram")
        for version in ("v1", "v2"):
            total = counts[(version, "200")] + counts[(version, "503")]
            for le, share in (("10", 0.4), ("25", 0.7), ("50", 0.9), ("100", 1.0), ("+Inf", 1.0)):
                out.append(f"istio_request_duration_milliseconds_bucket{labels(version, le=le)} {share * total:.3f}")
            out.append(f"istio_request_duration_milliseconds_count{labels(version)} {total:.3f}")
        return "\n".join(out) + "\n"


def labels(version: str, **more: str) -> str:
    values = {"reporter": "destination", "destination_service_name": "reviews", "destination_app": "reviews",
              "destination_version": version, "destination_workload": f"reviews-{version}",
              "destination_service_namespace": "default", **more}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(values.items())) + "}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveReviews, str]]:
    mesh = LiveReviews()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = mesh.render().encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with scraping_prometheus(tmp_path_factory.mktemp("prom"), f"127.0.0.1:{server.server_address[1]}") as url:
            # the first interval's rate windows reach back before it starts: enough scrapes first
            seen(url, f"min(count_over_time(istio_requests_total[5m])) >= {INTERVAL_S + 5}")
            yield mesh, url
    finally:
        server.shutdown()
        server.server_close()


def seen(url: str, promql: str, timeout: float = 60) -> None:
    """Until the PromQL answers something."""
    query = urllib.parse.urlencode({"query": promql})
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as resp:
            if json.load(resp)["data"]["result"]:
                return
        assert time.monotonic() < deadline, f"prometheus never answered {promql}"
        time.sleep(0.5)


def config() -> dict[str, Any]:
    """test_canary_stages' canary config with 5 s rate windows (a 1 s scrape puts ~5 samples in each)."""
    out = copy.deepcopy(CONFIG)
    for metric in out["metrics"]:
        metric["query"]["window"] = "5s"
    return out


@pytest.mark.asyncio
async def test_real_time_kayenta_canary_on_a_kubernetes_account(cluster: Any, state_dir: Path, tmp_path: Path,
                                                                live: tuple[LiveReviews, str]) -> None:
    mesh, url = live
    stage = {**canary_stage(lifetimeDuration=f"PT{INTERVAL_S}S", canaryAnalysisIntervalSeconds=INTERVAL_S),
             "rollback": ROLLBACK, "account": "staging"}
    async with canary_runs(cluster, tmp_path, url, config()) as run:
        healthy = await run(stage)
        [canary] = healthy.stages
        assert healthy.status == S.SUCCEEDED, canary.context.get("exception")
        assert canary.outputs["canaryScores"] == [100.0]
        first = canary.outputs["canaryIntervals"][0]
        errors = next(m for m in first["measurements"] if m["side"] == "experiment" and m["metric"] == "error-rate")
        assert errors["provider"] == "prometheus" and errors["outcome"] == "ok", errors
        assert len(errors["values"]) >= 5, errors  # measured live, a value a second
        assert weights(cluster) == [("v1", 90), ("v2", 10)]

        mesh.bad = True  # v2 starts failing 3 requests in 13: once Prometheus's 5 s windows see only that, judge
        await asyncio.to_thread(seen, url, 'min_over_time(rate(istio_requests_total{destination_version="v2",'
                                           'response_code="503"}[5s])[2s:1s]) > 2.5')
        failing = await run(stage)
        [canary] = failing.stages
        assert failing.status == S.TERMINAL
        assert canary.outputs["canaryScores"] == [0.0]
        error = canary.context["exception"]["details"]["error"]
        assert "error-rate High (critical)" in error and "rolled back" in error, error
        assert weights(cluster) == [("v1", 100)]
        assert cluster.api.object(DEPLOYMENTS, "default", "reviews-v2") is None
