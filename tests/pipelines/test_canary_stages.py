"""The kayentaCanary and analysis stages through the engine, on the local target, with the local mesh's telemetry
recorder fed by the data plane's own counters (no waiting: intervals of a fraction of a second, or retrospective).

What a user sees: the stage's status, its `canaryScores` and message, every interval's report and measurements,
the VirtualService and Deployments after a failed analysis rolled back, and `graylane canary report`'s text."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from graylane.analysis.report_text import stage_lines
from graylane.analysis.resources import wrap_canary_config
from graylane.mesh.proxy.stats import LABELS, Stats
from graylane.mesh.telemetry.component import KEPT
from graylane.mesh.telemetry.metrics import ControlPlaneMetrics
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import parse_text
from graylane.pipelines import metrics as pipelines_metrics
from graylane.pipelines.component import ControlPlaneAnalysis
from graylane.pipelines.executor import Executor
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import Document, ResourceKey, Source
from graylane.resources.load import load_text
from graylane.store import Store
from graylane.targets.local import LocalTarget

ISTIO = "networking.istio.io"
CONFIG = {
    "name": "reviews-canary",
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "error-rate", "groups": ["errors"],
         "query": {"type": "local", "metric": "istio_requests_total", "aggregation": "error-rate", "window": "2s",
                   "filter": {"destination_service_name": "reviews", "destination_version": "${scope}"}},
         "analysisConfigurations": {"canary": {"direction": "increase", "critical": True,
                                               "nanStrategy": "replace"}}},
        {"name": "latency-p99", "groups": ["latency"],
         "query": {"type": "local", "metric": "istio_request_duration_milliseconds", "aggregation": "quantile",
                   "quantile": 0.99, "window": "2s",
                   "filter": {"destination_service_name": "reviews", "destination_version": "${scope}"}},
         "analysisConfigurations": {"canary": {"direction": "increase", "effectSize": {"allowedIncrease": 3}}}},
    ],
    "classifier": {"groupWeights": {"errors": 60, "latency": 40}},
}


def labels(version: str, code: str) -> tuple[str, ...]:
    values = {"reporter": "destination", "source_workload": "productpage-v1", "source_app": "productpage",
              "destination_workload": f"reviews-{version}", "destination_workload_namespace": "default",
              "destination_app": "reviews", "destination_version": version,
              "destination_service": "reviews.default.svc.cluster.local", "destination_service_name": "reviews",
              "destination_service_namespace": "default", "request_protocol": "http", "response_flags": "-",
              "response_code": code}
    return tuple(values.get(name, "unknown") for name in LABELS)


@dataclass
class Traffic:
    """Bookinfo's reviews traffic as the data plane counts it, scraped into a recorder every half second."""

    canary_error_share: float = 0.0
    recorder: Recorder = field(default_factory=Recorder)
    stats: Stats = field(default_factory=Stats)

    def fill(self, start: float, end: float) -> None:
        t = start
        while t <= end:
            for _ in range(9):
                self.stats.record(labels("v1", "200"), 8.0, 100, 200)
            for i in range(10):
                bad = i < round(10 * self.canary_error_share)
                self.stats.record(labels("v2", "500" if bad else "200"), 8.0, 100, 200)
            self.recorder.add(parse_text(self.stats.render(), KEPT), t)
            t += 0.5


@dataclass
class FakeTelemetry:
    recorder: Recorder


@dataclass
class FakeControlPlane:
    components: dict[str, Any]


@dataclass
class Targets:
    """As pipelines.targets.TargetRegistry: the targets of a control plane."""

    cp: FakeControlPlane
    local: LocalTarget

    async def get(self, account: str | None, namespace: str | None = None) -> Any:
        return self.local


DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-VERSION, labels: {app: reviews, version: VERSION}}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: VERSION}}
  template:
    metadata: {labels: {app: reviews, version: VERSION}}
    spec: {containers: [{name: reviews, image: docker.io/istio/examples-bookinfo-reviews-VERSION:1.20.2}]}
"""
MESH = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "labels": {"app": "reviews"}},
     "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}},
    {"apiVersion": f"{ISTIO}/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
     "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                             {"name": "v2", "labels": {"version": "v2"}}]}},
    {"apiVersion": f"{ISTIO}/v1", "kind": "VirtualService", "metadata": {"name": "reviews"},
     "spec": {"hosts": ["reviews"], "http": [{"route": [
         {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
         {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]}]}},
]


def _setup(tmp_path: Path, traffic: Traffic) -> tuple[Store, Executor]:
    import yaml

    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    docs = [Document(yaml.safe_load(DEPLOY.replace("VERSION", f"v{n}")), Source("t", 1, i))
            for i, n in enumerate((1, 2))]
    docs += [Document(b, Source("mesh", 1, i)) for i, b in enumerate(MESH)]
    docs.append(Document(wrap_canary_config(CONFIG), Source("cc", 1, 0)))
    store.apply(docs, "user:t")
    cp = FakeControlPlane({"telemetry": FakeTelemetry(traffic.recorder)})
    registry = Targets(cp, LocalTarget(store))
    services = TaskServices(get_target=registry.get, analysis=ControlPlaneAnalysis(cp))
    return store, Executor(store.engine, services=services)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def canary_stage(**cfg: Any) -> dict[str, Any]:
    base = {"canaryConfigName": "reviews-canary", "scoreThresholds": {"pass": 75, "marginal": 50},
            "scopes": [{"scopeName": "default", "controlScope": "v1", "experimentScope": "v2",
                        "controlLocation": "default", "experimentLocation": "default", "step": 1}]}
    return {"refId": "1", "type": "kayentaCanary", "name": "canary 10%", "analysisType": "realTime",
            "canaryConfig": {**base, **cfg}}


ROLLBACK = {"virtualService": "reviews", "baseline": "v1", "canary": "v2",
            "deleteManifests": ["deployment reviews-v2"]}


async def _run(ex: Executor, stages: list[dict[str, Any]]) -> Any:
    body = {"application": "bookinfo", "name": "canary-test", "stages": stages}
    config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
    trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {}}, ex)
    exe = await ex.start_execution(config, trigger, user="t")
    return await ex.wait_until_complete(exe.id, timeout=60)


def _routes(store: Store) -> list[tuple[str, int]]:
    vs = store.get(ResourceKey(ISTIO, "VirtualService", "default", "reviews"))
    assert vs is not None
    return [(r["destination"]["subset"], r.get("weight", 100)) for r in vs.body["spec"]["http"][0]["route"]]


def _deployment(store: Store, name: str) -> bool:
    return store.get(ResourceKey("apps", "Deployment", "default", name)) is not None


def scrape(store: Store, stage: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The analysis series of `stage` on the control plane's /metrics (the pipelines' tables as assembly.py registers
    them), parsed as Prometheus parses a scrape: {(name, labels but `stage`): value}."""
    exposition = ControlPlaneMetrics()
    exposition.add_source(partial(pipelines_metrics.collect, store.engine))
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "stage"))): s.value
            for family in text_string_to_metric_families(exposition.render()) for s in family.samples
            if s.name.startswith(("graylane_canary_", "graylane_analysis_")) and s.labels.get("stage") == stage}


def test_realtime_intervals_pass_and_each_keeps_its_score(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)

    async def go() -> None:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            done = await _run(ex, [{**canary_stage(lifetimeDuration="PT3S", canaryAnalysisIntervalSeconds=1),
                                    "rollback": ROLLBACK}])
        finally:
            feeder.cancel()
            await ex.stop()
        [stage] = done.stages
        assert done.status == S.SUCCEEDED, stage.context.get("exception")
        assert [t.name for t in stage.tasks] == ["runCanary #1", "runCanary #2", "runCanary #3",
                                                 "rollbackOnFailure", "completeCanaryAnalysis"]
        assert stage.outputs["canaryScores"] == [100.0, 100.0, 100.0]
        assert stage.outputs["canaryScoreMessage"].startswith("Final canary score 100")
        intervals = stage.outputs["canaryIntervals"]
        assert [i["index"] for i in intervals] == [1, 2, 3]
        assert intervals[2]["end"] - intervals[2]["start"] == pytest.approx(3.0)
        sides = {(m["metric"], m["side"]) for m in intervals[0]["measurements"]}
        assert sides == {(n, s) for n in ("error-rate", "latency-p99") for s in ("control", "experiment")}
        assert 'destination_version="v2"' in next(m["query"] for m in intervals[0]["measurements"]
                                                  if m["side"] == "experiment")
        assert stage.outputs["lastReport"]["score"]["classification"] == "Pass"
        assert _routes(store) == [("v1", 90), ("v2", 10)] and _deployment(store, "reviews-v2")

    asyncio.run(go())
    store.close()


async def _feed(traffic: Traffic) -> None:
    traffic.fill(time.time() - 5, time.time())
    while True:
        await asyncio.sleep(0.25)
        now = time.time()
        traffic.fill(now, now)


def test_failing_canary_rolls_back_then_the_stage_is_terminal(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic(canary_error_share=0.3)
    end = time.time() - 1
    traffic.fill(end - 60, end)
    store, ex = _setup(tmp_path, traffic)

    async def go() -> None:
        await ex.start()
        try:
            stage = canary_stage(scopes=[{"controlScope": "v1", "experimentScope": "v2", "step": 2,
                                          "startTimeIso": _iso(end - 40), "endTimeIso": _iso(end)}],
                                 canaryAnalysisIntervalSeconds=20)
            done = await _run(ex, [{**stage, "analysisType": "retrospective", "rollback": ROLLBACK},
                                   {"refId": "2", "requisiteStageRefIds": ["1"], "type": "wait", "name": "promote",
                                    "waitTime": 0}])
        finally:
            await ex.stop()
        canary, promote = done.stages
        assert done.status == S.TERMINAL and canary.status == S.TERMINAL and promote.status == S.NOT_STARTED
        assert canary.outputs["canaryScores"] == [0.0]  # the first interval fails: the second never runs
        error = canary.context["exception"]["details"]["error"]
        assert "below the marginal score threshold 50" in error
        assert "error-rate High (critical)" in error
        assert "rolled back: step 1/1: VirtualService default/reviews -> v1 100%" in error
        assert "deleted deployment reviews-v2" in error
        assert _routes(store) == [("v1", 100)]
        assert not _deployment(store, "reviews-v2") and _deployment(store, "reviews-v1")

        # `graylane canary report` and /metrics read the same stage JSON
        stage_json = next(s for s in done.to_json()["stages"] if s["name"] == "canary 10%")
        text = "\n".join(stage_lines(stage_json))
        assert "canary 10% (kayentaCanary): TERMINAL" in text
        assert "baseline v1 vs canary v2, scores 0" in text
        assert "error-rate   High (critical)" in text
        assert ('error-rate canary: (sum(rate(istio_requests_total{reporter="destination",destination_service_name='
                '"reviews",destination_version="v2",response_code=~"5.*"}[2s]))') in text
        assert "-> ok [0.3, 0.3, 0.3" in text
        assert "failed: Canary score 0 of interval 1/2 is below the marginal score threshold 50" in text

        # /metrics: the score, each metric's last value (the canary's mean in the last interval) and its
        # classification, one phase per metric
        kayenta = (("type", "kayentaCanary"),)
        assert scrape(store, "canary 10%") == {
            ("graylane_canary_score", (("execution", done.id),)): 0.0,
            ("graylane_analysis_metric_value", (("metric", "error-rate"), *kayenta)): pytest.approx(0.3),
            # every request took 8 ms: the p99 is the 5-10 ms bucket interpolated, as histogram_quantile does
            ("graylane_analysis_metric_value", (("metric", "latency-p99"), *kayenta)): pytest.approx(9.95),
            ("graylane_analysis_metric_phase", (("metric", "error-rate"), ("phase", "High"), *kayenta)): 1.0,
            ("graylane_analysis_metric_phase", (("metric", "latency-p99"), ("phase", "Pass"), *kayenta)): 1.0}

    asyncio.run(go())
    store.close()


def test_a_stepwise_rollback_moves_traffic_back_in_steps(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic(canary_error_share=0.4)
    end = time.time() - 1
    traffic.fill(end - 30, end)
    store, ex = _setup(tmp_path, traffic)
    seen: list[list[tuple[str, int]]] = []
    store.subscribe(lambda keys: seen.append(_routes(store)) if any(k.kind == "VirtualService" for k in keys)
                    else None)

    async def go() -> Any:
        await ex.start()
        try:
            stage = canary_stage(scopes=[{"controlScope": "v1", "experimentScope": "v2", "step": 2,
                                          "startTimeIso": _iso(end - 20), "endTimeIso": _iso(end)}])
            return await _run(ex, [{**stage, "analysisType": "retrospective",
                                    "rollback": {**ROLLBACK, "durationSeconds": 0.6, "steps": 3,
                                                 "scaleDownManifests": ["deployment reviews-v2"],
                                                 "deleteManifests": [], "removeSubset": True}}])
        finally:
            await ex.stop()

    done = asyncio.run(go())
    [canary] = done.stages
    assert done.status == S.TERMINAL
    assert seen == [[("v1", 93), ("v2", 7)], [("v1", 97), ("v2", 3)], [("v1", 100)]]
    summary = canary.outputs["rollbackSummary"]
    assert summary.startswith("step 1/3: VirtualService default/reviews -> v1 93%, v2 7%; step 2/3: ")
    assert summary.endswith("step 3/3: VirtualService default/reviews -> v1 100%; scaled deployment reviews-v2 to 0; "
                            "removed subset v2 from DestinationRule default/reviews")
    v2 = store.get(ResourceKey("apps", "Deployment", "default", "reviews-v2"))
    assert v2 is not None and v2.body["spec"]["replicas"] == 0
    store.close()


def test_ignore_the_failure_is_respected(tmp_path: Path, state_dir: Path) -> None:
    """Spinnaker #2697: a canary below marginal went TERMINAL despite "ignore the failure"."""
    traffic = Traffic(canary_error_share=0.5)
    end = time.time() - 1
    traffic.fill(end - 30, end)
    store, ex = _setup(tmp_path, traffic)

    async def go() -> None:
        await ex.start()
        try:
            stage = canary_stage(scopes=[{"controlScope": "version=v1", "experimentScope": "version=v2",
                                          "step": 2, "startTimeIso": _iso(end - 20), "endTimeIso": _iso(end)}])
            done = await _run(ex, [{**stage, "analysisType": "retrospective", "continuePipeline": True,
                                    "failPipeline": False},
                                   {"refId": "2", "requisiteStageRefIds": ["1"], "type": "wait", "name": "after",
                                    "waitTime": 0}])
        finally:
            await ex.stop()
        canary, after = done.stages
        assert canary.status == S.FAILED_CONTINUE and after.status == S.SUCCEEDED
        assert done.status == S.SUCCEEDED
        assert _routes(store) == [("v1", 90), ("v2", 10)]  # no rollback option: nothing moved

    asyncio.run(go())
    store.close()


def test_stepwise_rollback_never_routes_to_a_baseline_without_pods(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic(canary_error_share=0.5)
    store, ex = _setup(tmp_path, traffic)
    store.delete([ResourceKey("apps", "Deployment", "default", "reviews-v1")], "user:t")

    async def go() -> None:
        await ex.start()
        try:
            done = await _run(ex, [{"refId": "1", "type": "analysis", "name": "gate",
                                    "builtins": {"canary": {"destination_service_name": "reviews",
                                                            "destination_version": "v2"},
                                                 "minSuccessPercent": 99, "maxDurationMs": None,
                                                 "interval": "1s", "count": 1, "window": "5s"},
                                    "rollback": {**ROLLBACK, "durationSeconds": 1, "steps": 2,
                                                 "readyTimeoutSeconds": 0.5}}])
        finally:
            await ex.stop()
        [gate] = done.stages
        assert done.status == S.TERMINAL
        error = gate.context["exception"]["details"]["error"]
        assert "AnalysisRun Failed" in error and "request-success-rate" in error
        assert "the rollback stopped: the baseline v1 has no ready endpoints" in error
        assert _routes(store) == [("v1", 90), ("v2", 10)]  # left as it was
        assert _deployment(store, "reviews-v2")

    traffic.fill(time.time() - 10, time.time())
    asyncio.run(go())
    store.close()


TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "success-rate"},
    "spec": {"args": [{"name": "version"}], "metrics": [{
        "name": "success-rate", "successCondition": "result[0] >= 0.95",
        "provider": {"plugin": {"graylane.io/local": {
            "metric": "istio_requests_total", "aggregation": "success-rate", "window": "5s",
            "filter": {"destination_service_name": "reviews", "destination_version": "{{args.version}}"}}}}}]}}


def test_analysis_stage_runs_a_stored_template_with_its_args(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)
    store.apply([Document(TEMPLATE, Source("t.yaml", 1, 0))], "user:t")
    traffic.fill(time.time() - 10, time.time())

    async def go() -> None:
        await ex.start()
        try:
            done = await _run(ex, [{"refId": "1", "type": "analysis", "name": "gate",
                                    "templates": [{"templateName": "success-rate"}],
                                    "args": [{"name": "version", "value": "v2"}], "rollback": ROLLBACK}])
        finally:
            await ex.stop()
        [gate] = done.stages
        assert done.status == S.SUCCEEDED, gate.context.get("exception")
        run = gate.outputs["analysisRun"]
        assert run["phase"] == "Successful"
        [taken] = run["metricResults"][0]["measurements"]
        assert taken["phase"] == "Successful" and taken["value"] == [1.0]
        assert 'destination_version="v2"' in taken["query"]
        assert "successCondition `result[0] >= 0.95` is true" in taken["reason"]
        assert _routes(store) == [("v1", 90), ("v2", 10)]  # passed: no rollback

    asyncio.run(go())
    store.close()


# Argo Rollouts' Istio success-rate template as its docs write it for a cluster's Prometheus: no address, so on the
# local account the local mesh's PromQL engine answers it (graylane.mesh.telemetry.promql_engine).
PROMQL_TEMPLATE = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "istio-success-rate"},
    "spec": {"args": [{"name": "service-name"}, {"name": "version"}], "metrics": [{
        "name": "success-rate", "successCondition": "result[0] >= 0.95",
        "provider": {"prometheus": {"query": (
            'sum(irate(istio_requests_total{reporter="destination",destination_service=~"{{args.service-name}}",'
            'destination_version="{{args.version}}",response_code!~"5.*"}[5m])) / '
            'sum(irate(istio_requests_total{reporter="destination",destination_service=~"{{args.service-name}}",'
            'destination_version="{{args.version}}"}[5m]))')}}}]}}


@pytest.mark.parametrize(("errors", "phase", "status", "value"),
                         [(0.0, "Successful", S.SUCCEEDED, 1.0), (0.5, "Failed", S.TERMINAL, 0.5)])
def test_a_prometheus_template_runs_on_the_local_mesh_without_a_prometheus(
        tmp_path: Path, state_dir: Path, errors: float, phase: str, status: S, value: float) -> None:
    traffic = Traffic(canary_error_share=errors)
    store, ex = _setup(tmp_path, traffic)
    store.apply([Document(PROMQL_TEMPLATE, Source("t.yaml", 1, 0))], "user:t")
    traffic.fill(time.time() - 10, time.time())

    async def go() -> None:
        await ex.start()
        try:
            done = await _run(ex, [{"refId": "1", "type": "analysis", "name": "gate",
                                    "templates": [{"templateName": "istio-success-rate"}],
                                    "args": [{"name": "service-name", "value": "reviews.default.svc.cluster.local"},
                                             {"name": "version", "value": "v2"}], "rollback": ROLLBACK}])
        finally:
            await ex.stop()
        [gate] = done.stages
        assert done.status == status, gate.context.get("exception")
        run = gate.outputs.get("analysisRun") or gate.context.get("analysisRun")
        assert run, (sorted(gate.outputs), sorted(gate.context))
        [taken] = run["metricResults"][0]["measurements"]
        assert taken["phase"] == phase
        assert taken["value"] == [pytest.approx(value)]
        assert 'destination_service=~"reviews.default.svc.cluster.local"' in taken["query"]
        # /metrics: the metric's last measured value and its phase (no canary score: that is Kayenta's)
        metric, argo = ("metric", "success-rate"), ("type", "analysis")
        assert scrape(store, "gate") == {("graylane_analysis_metric_value", (metric, argo)): pytest.approx(value),
                                         ("graylane_analysis_metric_phase", (metric, ("phase", phase), argo)): 1.0}

    asyncio.run(go())
    store.close()


def test_stored_configs_are_checked_when_applied(tmp_path: Path) -> None:
    from graylane.errors import ValidationError

    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        bad = wrap_canary_config({**CONFIG, "metrics": [{**CONFIG["metrics"][0], "analysisConfigurations": {
            "canary": {"direction": "up"}}}]})
        with pytest.raises(ValidationError, match='direction: "up" is not one of increase, decrease, either'):
            store.apply([Document(bad, Source("cc.json", 1, 0))], "user:t")
        typo = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "metrics": [{"name": "m", "succesCondition": "true",
                                                                       "provider": {"web": {"url": "http://x"}}}]}}
        with pytest.raises(ValidationError, match="unknown field"):
            store.apply([Document(typo, Source("t.yaml", 1, 0))], "user:t")
    finally:
        store.close()


@pytest.mark.parametrize(("fault", "errors", "status"), [("errors", 0.5, S.TERMINAL), ("none", 0.0, S.SUCCEEDED)])
def test_the_demo_pipeline_promotes_a_good_canary_and_rolls_back_a_bad_one(
        tmp_path: Path, state_dir: Path, fault: str, errors: float, status: S) -> None:
    import graylane.demos.bookinfo as bookinfo
    from graylane.cli.pipelines import load_pipeline_file

    demo = Path(bookinfo.__file__).parent
    traffic = Traffic(canary_error_share=errors)
    store, ex = _setup(tmp_path, traffic)
    store.apply(load_text((demo / "analysis/reviews-canary-auto.yaml").read_text(), file="cc.yaml"), "user:t")
    store.delete([ResourceKey("apps", "Deployment", "default", "reviews-v2")], "user:t")
    [body] = load_pipeline_file(demo / "coding-cd-template/reviews-canary-auto.json")

    async def go() -> Any:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
            trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {
                "fault": fault, "interval_seconds": "1", "intervals": "2", "warmup_seconds": "0"}}, ex)
            exe = await ex.start_execution(config, trigger, user="t")
            return await ex.wait_until_complete(exe.id, timeout=60)
        finally:
            feeder.cancel()
            await ex.stop()

    done = asyncio.run(go())
    stages = {s.name: s for s in done.stages}
    assert done.status == status, [s.context.get("exception") for s in done.stages]
    [canary] = stages["deploy the canary"].outputs["manifests"]
    env = {e["name"]: e["value"] for e in canary["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FAULT_ERROR_PERCENT"] == ("50" if fault == "errors" else "0") and env["FAULT_DELAY_MS"] == "0"
    dr = store.get(ResourceKey(ISTIO, "DestinationRule", "default", "reviews"))
    assert dr is not None
    if fault == "errors":
        assert stages["canary analysis at 10%"].status == S.TERMINAL
        assert stages["50% to the canary"].status == S.NOT_STARTED
        assert _routes(store) == [("v1", 100)]
        assert not _deployment(store, "reviews-v2") and _deployment(store, "reviews-v1")
        assert [s["name"] for s in dr.body["spec"]["subsets"]] == ["v1"]
    else:
        assert stages["canary analysis at 50%"].outputs["canaryScores"] == [100.0, 100.0]
        assert _routes(store) == [("v2", 100)]
        assert _deployment(store, "reviews-v2") and not _deployment(store, "reviews-v1")
    store.close()


def test_a_kubernetes_account_sends_local_queries_to_its_prometheus_as_promql() -> None:
    """The same canary config on a Kubernetes account: each `local` query becomes the PromQL it stands for, sent
    (as a range) to the account's Prometheus; a selector scope becomes label matchers."""
    from graylane.analysis.canary_run import LocalAsPrometheus
    from graylane.analysis.local import LocalQuery
    from graylane.analysis.measurement import Measurement, Scope

    sent: list[Any] = []

    class Prometheus:
        name = "prometheus"

        async def measure(self, query: Any, scope: Scope, now: float) -> Measurement:
            sent.append((query, scope))
            return Measurement("prometheus", query.query, "ok", [0.0], (0.0,))

    provider = LocalAsPrometheus("prod", Prometheus())  # type: ignore[arg-type]
    query = LocalQuery.from_spec({
        k: v for k, v in CONFIG["metrics"][0]["query"].items() if k != "type"})
    scope = Scope("version=v2,app=reviews", "default", start=100.0, end=160.0, step=10.0)
    asyncio.run(provider.measure(query, scope, 160.0))
    [(promql, seen)] = sent
    assert promql.account == "prod" and seen.start == 100.0 and seen.step == 10.0
    total = ('sum(rate(istio_requests_total{reporter="destination",destination_service_name="reviews",'
             'destination_version="v2",destination_app="reviews"}[2s]))')
    assert promql.query == ('(sum(rate(istio_requests_total{reporter="destination",destination_service_name="reviews",'
                            'destination_version="v2",destination_app="reviews",response_code=~"5.*"}[2s])) or '
                            f'{total} * 0) / {total}')


@pytest.mark.parametrize("stage_type", ["kayentaCanary", "analysis"])
def test_aborting_a_running_analysis_runs_its_rollback(tmp_path: Path, state_dir: Path, stage_type: str) -> None:
    """What an alert (or a person) does through `PATCH {"abortAnalysis": ...}`: the analysis stops, the rollback
    runs, the stage ends TERMINAL saying who aborted it and why."""
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)
    if stage_type == "kayentaCanary":
        stage = {**canary_stage(lifetimeDuration="PT10M", canaryAnalysisIntervalMins=5), "rollback": ROLLBACK}
    else:
        stage = {"refId": "1", "type": "analysis", "name": "canary 10%", "rollback": ROLLBACK,
                 "builtins": {"canary": {"destination_version": "v2"}, "interval": "1m", "count": 10}}

    async def go() -> Any:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            body = {"application": "bookinfo", "name": "abort-test", "stages": [stage]}
            config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
            exe = await ex.start_execution(config, build_trigger(config, {"type": "manual", "user": "t"}, ex),
                                           user="t")
            await ex.wait_for_stage(exe.id, "canary 10%", {S.RUNNING}, timeout=10)
            began = time.monotonic()
            await ex.update_stage(exe.id, "canary 10%", {"abortAnalysis": "alert ReviewsCanaryErrors firing"},
                                  user="alertmanager")
            done = await ex.wait_until_complete(exe.id, timeout=30)
            return done, time.monotonic() - began
        finally:
            feeder.cancel()
            await ex.stop()

    done, took = asyncio.run(go())
    [aborted] = done.stages
    assert done.status == S.TERMINAL and took < 10
    error = aborted.context["exception"]["details"]["error"]
    assert error.startswith("analysis aborted by alertmanager: alert ReviewsCanaryErrors firing; rolled back: ")
    assert _routes(store) == [("v1", 100)] and not _deployment(store, "reviews-v2")
    store.close()


@pytest.mark.parametrize(("started", "aborted"), [(-3600, False), (+5, True)], ids=["older-alert", "new-alert"])
def test_abort_on_alert_reads_the_marker_an_alert_pipeline_writes(tmp_path: Path, state_dir: Path, started: int,
                                                                   aborted: bool) -> None:
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)
    marker = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reviews-canary-alert"},
              "data": {"status": "firing", "alertname": "ReviewsCanaryErrors", "summary": "reviews v2 answers 5xx",
                       "startsAt": _iso(time.time() + started)}}

    async def go() -> Any:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            store.apply([Document(marker, Source("alert", 1, 0))], "pipeline:alert")
            return await _run(ex, [{**canary_stage(lifetimeDuration="PT2S", canaryAnalysisIntervalSeconds=2),
                                    "rollback": ROLLBACK, "abortOnAlert": {"configMap": "reviews-canary-alert"}}])
        finally:
            feeder.cancel()
            await ex.stop()

    done = asyncio.run(go())
    [stage] = done.stages
    if aborted:
        assert done.status == S.TERMINAL
        assert stage.context["exception"]["details"]["error"].startswith(
            "analysis aborted by alert ReviewsCanaryErrors firing since ")
        assert _routes(store) == [("v1", 100)]
    else:
        assert done.status == S.SUCCEEDED, stage.context.get("exception")  # an alert older than the stage
        assert _routes(store) == [("v1", 90), ("v2", 10)]
    store.close()
