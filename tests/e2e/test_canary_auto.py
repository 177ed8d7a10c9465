"""reviews-canary-auto end to end on the local mesh: `graylane demo bookinfo`, then the automated canary of reviews v2
with a bad canary (fault=errors: rolled back) and a good one (fault=none: promoted), while a reader keeps loading the
product page through the gateway. Short analysis intervals (pipeline parameters), one installation for the module.

What a user sees: the execution's status, the reviews VirtualService and Deployments, `graylane canary report`, the
product page (never a failed load; after the rollback never the canary), and /metrics.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests import system
from tests.e2e.test_article import Local, free_port, page_kind

import graylane.demos.bookinfo as bookinfo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DEMO = Path(bookinfo.__file__).parent
PIPELINE = "reviews-canary-auto"
REVIEWS_ERROR = "product reviews are currently unavailable"


class Reader:
    """Loads the product page over and over (two browsers) and counts what each load showed, by phase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "before"
        self.seen: Counter[tuple[str, str]] = Counter()
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(2)]

    def __enter__(self) -> Reader:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _loop(self) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self._stop.is_set():
                phase = self.phase
                try:
                    resp = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.failed.append(f"{phase}: {type(exc).__name__}: {exc}")
                    continue
                if resp.status_code != 200:
                    self.failed.append(f"{phase}: HTTP {resp.status_code}: {resp.text[:200]}")
                    continue
                kind = "reviews-error" if REVIEWS_ERROR in resp.text else page_kind(resp.text)
                self.seen[(phase, kind)] += 1

    def count(self, phase: str) -> Counter[str]:
        return Counter({kind: n for (p, kind), n in self.seen.items() if p == phase})


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("canary-auto") / "state"
    state.mkdir()
    env = Local(state)
    try:
        env.cli("demo", "bookinfo", "--port", str(env.server_port), "--admin-port", str(env.admin_port),
                "--gateway-port", f"80={env.gateway_port}")
        yield env
    finally:
        env.cli("down", check=False)
        env.api.close()


def _run(local: Local, fault: str) -> str:
    out = local.cli("pipeline", "run", PIPELINE, "-p", "base_version=v1", "-p", "canary_version=v2",
                    "-p", f"fault={fault}", "-p", "interval_seconds=5", "-p", "intervals=2",
                    "-p", "warmup_seconds=8").stdout
    print(out)
    match = re.search(r"execution (\w+)", out)
    assert match, out
    return match.group(1)


def _routes(local: Local) -> list[tuple[str, int]]:
    vs = local.api.get("/api/v1/resources/VirtualService/reviews", params={"namespace": "default"}).json()
    return [(r["destination"]["subset"], r.get("weight", 100)) for r in vs["spec"]["http"][0]["route"]]


def _wait_done(local: Local, execution: str, reader: Reader, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        exe = local.execution(execution)
        statuses = {s["name"]: s["status"] for s in exe["stages"]}
        if any(s["status"] == "RUNNING" and s["type"] == "kayentaCanary" for s in exe["stages"]):
            reader.phase = "analysis"
        if exe["status"] not in ("RUNNING", "NOT_STARTED", "BUFFERED"):
            return exe
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)


def test_the_demo_imports_the_automated_canary(local: Local, tmp_path: Path) -> None:
    pipelines = {p["name"] for p in local.api.get("/api/v1/pipelines").json()}
    assert PIPELINE in pipelines
    assert "reviews-canary-auto" in local.cli("get", "canaryconfigs").stdout
    # a bare Kayenta config file, imported as a CanaryConfig; a typo is refused naming the field
    spec = yaml.safe_load((DEMO / "analysis/reviews-canary-auto.yaml").read_text())["spec"]
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({**spec, "name": "Reviews Mine"}))
    out = local.cli("canary", "config", "import", str(mine)).stdout
    assert out.strip() == "canaryconfig.graylane.io/reviews-mine created (2 metrics)"
    spec["metrics"][0]["analysisConfigurations"]["canary"]["direction"] = "up"
    mine.write_text(json.dumps(spec))
    refused = local.cli("canary", "config", "import", str(mine), check=False)
    assert refused.returncode != 0 and 'direction: "up" is not one of increase, decrease, either' in refused.stderr


def test_a_canary_with_errors_is_rolled_back(local: Local) -> None:
    with Reader(local.productpage) as reader:
        while sum(reader.count("before").values()) < 10:
            time.sleep(0.1)
        execution = _run(local, "errors")
        done = _wait_done(local, execution, reader)
        reader.phase = "after"
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            time.sleep(0.1)  # page loads after the rollback, counted below
    print(local.cli("canary", "report", execution).stdout)
    assert done["status"] == "TERMINAL", json.dumps(done["stages"], indent=1)[:3000]
    stages = {s["name"]: s for s in done["stages"]}
    analysis = stages["canary analysis at 10%"]
    assert analysis["status"] == "TERMINAL"
    assert stages["50% to the canary"]["status"] == "NOT_STARTED"
    error = analysis["context"]["exception"]["details"]["error"]
    assert "error-rate High (critical)" in error and "rolled back:" in error, error
    assert _routes(local) == [("v1", 100)]
    assert not local.deployment_exists("reviews-v2") and local.deployment_exists("reviews-v1")

    assert reader.failed == []  # no page load failed, the rollback's included
    assert reader.count("analysis")["black"] > 0  # the canary served pages (productpage retries its 500s)
    after = reader.count("after")
    assert after and set(after) == {"none"}, after  # after the rollback: only v1, no errors

    report = local.cli("canary", "report", execution, "--stage", "canary analysis at 10%").stdout
    assert "canary analysis at 10% (kayentaCanary): TERMINAL" in report
    assert "error-rate   High (critical)" in report
    assert 'destination_version="v2",response_code=~"5.*"' in report
    assert "rolled back: step 1/1: VirtualService default/reviews -> v1 100%" in report
    data = json.loads(local.cli("canary", "report", execution, "-o", "json").stdout)
    assert [s["name"] for s in data] == ["canary analysis at 10%", "canary analysis at 50%"]
    [interval] = data[0]["canaryIntervals"]
    assert interval["report"]["score"]["score"] == 0
    judged = interval["judgedAt"]
    restored = analysis["context"]["rollbackState"]["endedMs"] / 1000
    print(f"\nbenchmark: failing interval judged -> traffic restored and canary removed: {restored - judged:.2f} s")

    metrics = local.api.get("/metrics").text
    score = re.search(r'graylane_canary_score\{[^}]*stage="canary analysis at 10%"[^}]*\} (\S+)', metrics)
    assert score and float(score.group(1)) == 0.0, metrics[-2000:]
    assert ('graylane_analysis_metric_phase{metric="error-rate",phase="High",stage="canary analysis at 10%",'
            'type="kayentaCanary"} 1.0') in metrics


def test_a_slow_canary_is_rolled_back(local: Local) -> None:
    with Reader(local.productpage) as reader:
        execution = _run(local, "latency")
        done = _wait_done(local, execution, reader)
    print(local.cli("canary", "report", execution).stdout)
    assert done["status"] == "TERMINAL", json.dumps(done["stages"], indent=1)[:3000]
    failed = next(s for s in done["stages"] if s["type"] == "kayentaCanary" and s["status"] == "TERMINAL")
    error = failed["context"]["exception"]["details"]["error"]
    assert "latency-p99 High" in error and "rolled back:" in error, error
    assert _routes(local) == [("v1", 100)]
    assert not local.deployment_exists("reviews-v2") and local.deployment_exists("reviews-v1")
    assert reader.failed == []


def test_a_healthy_canary_is_promoted(local: Local) -> None:
    with Reader(local.productpage) as reader:
        execution = _run(local, "none")
        done = _wait_done(local, execution, reader)
    print(local.cli("canary", "report", execution).stdout)
    assert done["status"] == "SUCCEEDED", json.dumps(done["stages"], indent=1)[:3000]
    stages = {s["name"]: s for s in done["stages"]}
    for name in ("canary analysis at 10%", "canary analysis at 50%"):
        scores = stages[name]["outputs"]["canaryScores"]
        assert len(scores) == 2 and all(s >= 75 for s in scores), (name, stages[name]["outputs"])
    assert _routes(local) == [("v2", 100)]
    assert local.deployment_exists("reviews-v2") and not local.deployment_exists("reviews-v1")
    assert reader.failed == []
    assert "reviews-error" not in reader.count("analysis")
    assert local.pages(10) == {"black": 10}


# ---- Alertmanager: a firing alert aborts the running analysis ---------------------------------------------------

ALERT_PIPELINE = {
    "application": "bookinfo", "name": "reviews-canary-alert",
    "triggers": [{"type": "webhook", "enabled": True, "source": "alertmanager",
                  "payloadConstraints": {"status": "firing", "commonLabels.service": "reviews"}}],
    "stages": [{"refId": "1", "type": "deployManifest", "name": "mark the alert", "account": "local",
                "source": "text", "manifests": [{
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reviews-canary-alert"},
                    "data": {"status": "${trigger.payload.status}",
                             "alertname": "${trigger.payload.commonLabels.alertname}",
                             "startsAt": "${trigger.payload.alerts[0].startsAt}",
                             "summary": "${trigger.payload.commonAnnotations.summary}"}}]}]}
RULES = """groups:
- name: canary
  interval: 1s
  rules:
  - alert: ReviewsCanaryErrors
    expr: >-
      sum(rate(istio_requests_total{reporter="destination",destination_service_name="reviews",
      destination_version="v3",response_code=~"5.."}[5s])) > 0
    labels: {service: reviews, severity: page}
    annotations: {summary: "reviews v3 answers 5xx"}
"""


class Daemon:
    def __init__(self, folder: Path, argv: list[str], ready: str, port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                if self.api.get(ready).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{argv[0]} did not become ready: {self.log_path.read_text()}"
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        self.api.close()


def test_a_firing_alert_aborts_the_analysis_and_rolls_back(local: Local, tmp_path: Path) -> None:
    """Real Prometheus scraping the control plane's Istio series, a rule on the canary's 5xx, real Alertmanager with
    a webhook receiver pointing at Graylane, and the webhook-triggered pipeline that marks the alert."""
    prometheus_bin = system.require_program("prometheus", "prometheus")
    alertmanager_bin = system.require_program("prometheus", "prometheus-alertmanager")
    (tmp_path / "alert.json").write_text(json.dumps(ALERT_PIPELINE))
    local.cli("pipeline", "import", str(tmp_path / "alert.json"))
    base = "v2" if local.deployment_exists("reviews-v2") else "v1"  # v2 when the promotion above ran
    am_port, prom_port = free_port(), free_port()
    (tmp_path / "am.yml").write_text(
        "route: {receiver: graylane, group_by: [alertname, service], group_wait: 0s, group_interval: 1s,"
        " repeat_interval: 1h}\n"
        "receivers:\n- name: graylane\n  webhook_configs:\n"
        f"  - url: http://127.0.0.1:{local.server_port}/api/v1/webhooks/webhook/alertmanager\n"
        "    send_resolved: false\n")
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{tmp_path / 'rules.yml'}]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]}}\n"
        "scrape_configs:\n- job_name: graylane\n  metrics_path: /metrics\n"
        f"  static_configs: [{{targets: ['127.0.0.1:{local.server_port}']}}]\n")
    am = Daemon(tmp_path / "am", [alertmanager_bin, f"--config.file={tmp_path / 'am.yml'}",
                                  f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                  "--cluster.listen-address="], "/-/ready", am_port)
    prom = Daemon(tmp_path / "prom", [prometheus_bin, f"--config.file={tmp_path / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                      f"--web.listen-address=127.0.0.1:{prom_port}"], "/-/ready", prom_port)
    try:
        with Reader(local.productpage) as reader:
            out = local.cli("pipeline", "run", PIPELINE, "-p", f"base_version={base}", "-p", "canary_version=v3",
                            "-p", "fault=errors", "-p", "interval_seconds=120", "-p", "intervals=1",
                            "-p", "warmup_seconds=0").stdout
            match = re.search(r"execution (\w+)", out)
            assert match, out
            began = time.monotonic()
            done = _wait_done(local, match.group(1), reader, timeout=110)
            took = time.monotonic() - began
    finally:
        prom.stop()
        am.stop()
    print(local.cli("canary", "report", match.group(1)).stdout)
    assert done["status"] == "TERMINAL", json.dumps(done["stages"], indent=1)[:3000]
    assert took < 100  # the 120 s interval never ended: the alert aborted it
    analysis = next(s for s in done["stages"] if s["name"] == "canary analysis at 10%")
    error = analysis["context"]["exception"]["details"]["error"]
    assert error.startswith("analysis aborted by alert ReviewsCanaryErrors firing since "), error
    assert "reviews v3 answers 5xx; rolled back: " in error
    assert _routes(local) == [(base, 100)]
    assert not local.deployment_exists("reviews-v3") and local.deployment_exists(f"reviews-{base}")
    assert reader.failed == []
    alerts = [e for e in local.api.get("/api/v1/executions", params={"pipeline": "reviews-canary-alert"}).json()]
    assert alerts and alerts[0]["status"] == "SUCCEEDED"
    print(f"\nalert: canary started -> rolled back in {took:.1f} s")
