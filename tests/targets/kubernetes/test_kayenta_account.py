"""The kayentaCanary stage on the emulated Kubernetes + Istio account, with only `account` changed: its `local`
queries go as PromQL to the account's Prometheus (a real one, loaded with promtool blocks of reviews v1 and v2
series); a healthy window passes, a window where v2 answers 503s fails and rolls back on the cluster."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.prometheus_server import backfilled_prometheus

from graylane.analysis.resources import wrap_canary_config
from graylane.pipelines.executor import Executor
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tables import metadata
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import Document, Source
from graylane.resources.load import load_text
from graylane.store import Store
from graylane.targets import accounts


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


PIPELINES = Path(__file__).parents[2] / "pipelines"
_canary = _load("kayenta_account_canary_stages", PIPELINES / "test_canary_stages.py")
_release = _load("kayenta_account_release_stages", PIPELINES / "test_release_stages.py")
canary_stage, CONFIG, ROLLBACK = _canary.canary_stage, _canary.CONFIG, _canary.ROLLBACK
REVIEWS = _release.REVIEWS + """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""
DEPLOYMENTS = "apps/v1/deployments"
VS = "networking.istio.io/v1/virtualservices"
SPAN = 10 * 60  # seconds recorded, one sample a second; v2 starts failing halfway
BUCKETS = [("10", 0.4), ("25", 0.7), ("50", 0.9), ("100", 1.0), ("+Inf", 1.0)]  # share of requests within


def _labels(version: str, **more: str) -> str:
    labels = {"reporter": "destination", "destination_service_name": "reviews", "destination_app": "reviews",
              "destination_version": version, "destination_workload": f"reviews-{version}",
              "destination_service_namespace": "default", **more}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def openmetrics(end: int) -> str:
    start, half = end - SPAN, end - SPAN // 2
    lines = ["# TYPE istio_requests counter"]
    for version, code in (("v1", "200"), ("v2", "200"), ("v1", "503"), ("v2", "503")):
        for t in range(start, end + 1):
            # 10 requests a second answered 200 and one every 5 s a 503 (the 5xx series exist on both sides:
            # without one, Prometheus answers the error-rate division with no data); v2's 503s rise to 3 a
            # second halfway
            count = 10.0 * (t - start) if code == "200" else 0.2 * (t - start)
            if version == "v2" and code == "503":
                count += 2.8 * max(0, t - half)
            lines.append(f"istio_requests_total{_labels(version, response_code=code)} {count:.1f} {t}")
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for version in ("v1", "v2"):
        for le, share in BUCKETS:
            for t in range(start, end + 1):
                lines.append(f"istio_request_duration_milliseconds_bucket{_labels(version, le=le)} "
                             f"{10.0 * share * (t - start):.1f} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"




@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    """A real Prometheus over promtool blocks (as test_prometheus.py here); (url, last sample time)."""
    end = int(time.time()) - 5 * 60
    with backfilled_prometheus(tmp_path_factory.mktemp("prom"), openmetrics(end)) as url:
        yield url, float(end)


def weights(cluster: Any) -> list[tuple[str, int]]:
    vs = cluster.api.object(VS, "default", "reviews")
    assert vs is not None
    return [(r["destination"]["subset"], r.get("weight", 100)) for r in vs["spec"]["http"][-1]["route"]]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _stage(start: float, end: float) -> dict[str, Any]:
    """test_canary_stages' retrospective stage, `account` set to the Kubernetes one."""
    stage = canary_stage(scopes=[{"controlScope": "v1", "experimentScope": "v2", "step": 2,
                                  "startTimeIso": _iso(start), "endTimeIso": _iso(end)}],
                         canaryAnalysisIntervalSeconds=20)
    return {**stage, "analysisType": "retrospective", "rollback": ROLLBACK, "account": "staging"}


@contextlib.asynccontextmanager
async def canary_runs(cluster: Any, tmp_path: Path, prometheus_url: str,
                      config: dict[str, Any]) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Any]]]:
    """Account `staging` (the emulated cluster, with `prometheus_url`), the reviews world applied and rolled out,
    the canary config stored, an executor running: yields run(stage) -> the finished execution."""
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default", prometheus=prometheus_url)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pipelines.db'}")
    metadata.create_all(engine)
    store = Store.open(f"sqlite:///{tmp_path / 'local.db'}")  # the stored CanaryConfig the stage names
    store.apply([Document(wrap_canary_config(config), Source("cc", 1, 0))], "user:t")

    class ControlPlane:
        settings: dict[str, Any] = {}

        def __init__(self) -> None:
            self.store = store

        def component(self, name: str) -> None:
            return None

    cp = ControlPlane()

    async def get_target(account: str | None, namespace: str | None) -> Any:
        return accounts.get_target(account or "local", cp, namespace=namespace)

    target = await get_target("staging", None)
    await target.apply(load_text(REVIEWS), actor="user:setup")
    await target.wait_ready([d.key for d in load_text(REVIEWS) if d.kind == "Deployment"], timeout=30)
    ex = Executor(engine, services=TaskServices(get_target=get_target))
    await ex.start()

    async def run(stage: dict[str, Any]) -> Any:
        body = {"application": "bookinfo", "name": f"k{len(ex.pipelines.list())}", "stages": [stage]}
        saved = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
        trigger = build_trigger(saved, {"type": "manual", "user": "t", "parameters": {}}, ex)
        exe = await ex.start_execution(saved, trigger, user="t")
        return await ex.wait_until_complete(exe.id, timeout=90)

    try:
        yield run
    finally:
        await ex.stop()
        engine.dispose()
        store.close()


@pytest.mark.asyncio
async def test_kayenta_canary_on_a_kubernetes_account(cluster: Any, state_dir: Path, tmp_path: Path,
                                                      prometheus: tuple[str, float]) -> None:
    url, end = prometheus
    async with canary_runs(cluster, tmp_path, url, CONFIG) as run:
        healthy = await run(_stage(end - SPAN + 60, end - SPAN + 100))  # before v2's 503s
        [stage] = healthy.stages
        assert healthy.status == S.SUCCEEDED, stage.context.get("exception")
        assert stage.outputs["canaryScores"] == [100.0, 100.0]
        first = stage.outputs["canaryIntervals"][0]
        assert first["account"] == "staging"
        experiment = next(m for m in first["measurements"] if m["side"] == "experiment" and m["metric"] == "error-rate")
        assert experiment["provider"] == "prometheus" and experiment["outcome"] == "ok", experiment
        assert 'destination_version="v2"' in experiment["query"] and 'reporter="destination"' in experiment["query"]
        latency = next(m for m in first["measurements"] if m["side"] == "control" and m["metric"] == "latency-p99")
        assert latency["outcome"] == "ok" and all(0 < v <= 100 for v in latency["values"]), latency
        assert cluster.api.object(DEPLOYMENTS, "default", "reviews-v2") is not None
        assert weights(cluster) == [("v1", 90), ("v2", 10)]

        failing = await run(_stage(end - 100, end - 60))  # v2 answers 3 of 13 requests with 503, v1 1 in 51
        [stage] = failing.stages
        assert failing.status == S.TERMINAL, [(m["metric"], m["side"], m["query"], m["values"][:4])
                                              for m in stage.outputs["canaryIntervals"][0]["measurements"]]
        assert stage.outputs["canaryScores"] == [0.0]
        error = stage.context["exception"]["details"]["error"]
        assert "error-rate High (critical)" in error and "rolled back" in error, error
        assert weights(cluster) == [("v1", 100)]
        assert cluster.api.object(DEPLOYMENTS, "default", "reviews-v2") is None
