"""The execution page explains a canary verdict: a real installation runs a short `kayentaCanary` stage (three
intervals of two seconds, the third failing) after an `analysis` stage of two measurements, against a small
Prometheus-compatible HTTP endpoint with baseline (v1) and canary (v2) series. The page shows each interval's score
against the thresholds, each metric's chart with its table alternative, classification and reason, and each
measurement's value, condition and phase; axe-core finds no serious or critical violation on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

from tests.ui.console_server import ARTIFACTS, Browser, ConsoleServer, chromium, running_server  # noqa: E402
from tests.ui.test_console_a11y import AXE, serious_violations  # noqa: E402

STAGE, GATE = "canary analysis", "success gate"


def template(address: str) -> dict[str, Any]:
    """An Argo AnalysisTemplate whose one metric asks the same endpoint, twice, a second apart."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
            "spec": {"metrics": [{"name": "success-rate", "successCondition": "result[0] >= 0.95", "count": 2,
                                  "interval": "1s", "provider": {"prometheus": {
                                      "address": address, "query": 'reviews_success_ratio{version="v2"}'}}}]}}


class Series(BaseHTTPRequestHandler):
    """/api/v1/query_range: error ratio around 1% for v1; for v2 the same in the first two intervals, then around
    30% (the canary starts failing in its third interval); latency the same for both."""

    calls: dict[str, int] = {}

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
        query = form["query"]
        if "start" not in form:  # an instant query (the analysis stage's template): the success ratio now
            self._answer({"resultType": "vector", "result": [{"metric": {}, "value": [time.time(), "0.99"]}]})
            return
        start, end = float(form["start"]), float(form["end"])
        Series.calls[query] = n = Series.calls.get(query, 0) + 1
        failing = 'version="v2"' in query and n > 2
        base = (0.30 if failing else 0.01) if "errors" in query else 120.0
        values = [[start + (end - start) * i / 9, str(base * (1 + 0.05 * ((i * 7) % 5 - 2)))] for i in range(10)]
        self._answer({"resultType": "matrix", "result": [{"metric": {}, "values": values}]})

    def _answer(self, data: dict[str, Any]) -> None:
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def prometheus() -> Iterator[str]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), Series)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def pipeline(address: str) -> dict[str, Any]:
    def metric(name: str, promql: str, group: str, critical: bool) -> dict[str, Any]:
        return {"name": name, "groups": [group],
                "query": {"type": "prometheus", "address": address, "customInlineTemplate": promql},
                "analysisConfigurations": {"canary": {"direction": "increase", "critical": critical}}}

    config = {"name": "reviews-canary", "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
              "metrics": [metric("error-rate", 'reviews_errors_ratio{version="${scope}"}', "errors", True),
                          metric("latency-p99", 'reviews_latency_p99{version="${scope}"}', "latency", False)],
              "classifier": {"groupWeights": {"errors": 60, "latency": 40}}}
    stage = {"refId": "1", "type": "kayentaCanary", "name": STAGE, "analysisType": "realTime",
             "requisiteStageRefIds": ["2"],
             "canaryConfig": {"config": config, "scoreThresholds": {"pass": 75, "marginal": 50},
                              "lifetimeDuration": "PT6S", "canaryAnalysisIntervalSeconds": 2,
                              "scopes": [{"scopeName": "default", "controlScope": "v1", "experimentScope": "v2",
                                          "controlLocation": "default", "experimentLocation": "default",
                                          "step": 1}]}}
    gate = {"refId": "2", "type": "analysis", "name": GATE, "templates": [{"templateName": "success-rate"}]}
    return {"application": "bookinfo", "name": "analysis-console", "stages": [stage, gate], "triggers": [],
            "limitConcurrent": False}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, prometheus: str) -> Iterator[ConsoleServer]:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci`", pytrace=False)
    state = tmp_path_factory.mktemp("analysis") / "state"
    state.mkdir()
    with running_server(state) as s:
        resp = s.api.post("/api/v1/apply", content=json.dumps(template(prometheus)))
        assert resp.status_code == 200, resp.text
        s.execution_id = s.start_pipeline(s.import_pipeline(pipeline(prometheus)))  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while s.execution(s.execution_id)["status"] in ("NOT_STARTED", "RUNNING"):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the canary did not finish in 60s"
            time.sleep(0.2)
        yield s


def test_the_execution_page_explains_the_verdict(server: ConsoleServer) -> None:
    stage = server.stage(server.execution_id, STAGE)  # type: ignore[attr-defined]
    assert stage["status"] == "TERMINAL", stage.get("context", {}).get("exception")
    scores = stage["outputs"]["canaryScores"]
    reason = next(r for r in stage["outputs"]["lastReport"]["results"] if r["name"] == "error-rate")["explanation"]
    assert scores and reason
    with chromium() as b:
        page = Browser(b, server).new_page()
        page.goto(f"{server.base}/executions/{server.execution_id}")  # type: ignore[attr-defined]
        box = page.locator(f"#analysis-{stage['id']}")
        box.wait_for()
        assert "Pass threshold 75, marginal threshold 50." in box.inner_text()
        shown = box.locator("table.analysis-scores td.score").all_inner_texts()
        assert shown == [f"{s:.4g}" for s in scores]
        assert len(scores) == 3 and scores[-1] < 50 <= scores[0]
        assert box.locator("table.analysis-scores .band-fail").count() == 1
        error_rate = box.locator('[data-metric="error-rate"]')
        assert "High" in error_rate.locator("h4").inner_text()
        assert error_rate.locator(".reason").inner_text() == reason
        assert error_rate.get_by_role("img").count() == 1  # the chart, named, beside its table
        rows = error_rate.locator("table.metric-table tbody tr")
        assert rows.count() == len(scores)
        baseline, canary = (float(x) for x in rows.last.locator("td").all_inner_texts()[1:3])
        assert canary > baseline
        box.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "analysis.png"), full_page=True)
        gate = server.stage(server.execution_id, GATE)  # type: ignore[attr-defined]
        assert gate["status"] == "SUCCEEDED", gate.get("context", {}).get("exception")
        argo = page.locator(f"#analysis-{gate['id']}")
        assert "Analysis run: Successful" in argo.locator("h3").inner_text()
        rows = argo.locator("tbody tr")
        assert rows.count() == 2
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[2] == "successCondition `result[0] >= 0.95`" and cells[3] == "Successful", cells
        assert "0.99" in cells[1], cells
        assert serious_violations(page) == []
