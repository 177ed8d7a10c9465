"""The article's Bookinfo pipelines, unchanged except `account`, drive the emulated Kubernetes + Istio cluster."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kmock
import pytest
from tests import system
from tests.targets.kubernetes.executors import started_executor

from graylane.targets import accounts

pytestmark = [pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def _git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system.require_program("git", "git")  # the demo's artifacts are git files
    monkeypatch.setenv("GRAYLANE_ARTIFACT_FILE_ROOTS", str(tmp_path))  # in a local repository the operator allows


def with_account(pipeline: dict[str, Any], account: str) -> dict[str, Any]:
    """The only change from the shipped pipeline: every stage's `account`."""
    out = copy.deepcopy(pipeline)
    changed = 0
    for stage in out["stages"]:
        if "account" in stage:
            stage["account"] = account
            changed += 1
    assert changed, "the pipeline names no account"
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def route_weights(vs: dict[str, Any]) -> dict[str, int]:
    return {r["destination"].get("subset", ""): int(r.get("weight", 100)) for r in vs["spec"]["http"][-1]["route"]}


async def test_baseline_then_canary_on_kubernetes(cluster: Any, state_dir: Path, tmp_path: Path) -> None:
    from graylane.demos.bookinfo.demo import BASELINE, CANARY, load_pipeline, prepare_repository
    from graylane.pipelines.repository import PipelineRepository
    from graylane.pipelines.status import ExecutionStatus as S
    from graylane.pipelines.triggers import start_manual

    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    repo = tmp_path / "bookinfo"
    prepare_repository(repo)
    run = await started_executor(tmp_path)
    engine, ex = run.engine, run.ex
    try:
        configs = {}
        for name in (BASELINE, CANARY):
            shipped = load_pipeline(name, repo)
            body = with_account(shipped, "staging")
            assert {d.rsplit(".", 1)[-1] for d in differences(shipped, body)} == {"account"}
            saved = PipelineRepository(engine).save(body, actor="user:alice")
            configs[name] = PipelineRepository(engine).get(saved.id)

        # 1. the baseline: Deployments, gateway, DestinationRules, VirtualServices
        exe = await start_manual(ex, configs[BASELINE]["id"], user="alice")
        done = await ex.wait_until_complete(exe.id, timeout=60)
        assert str(done.status) == "SUCCEEDED", json.dumps(done.to_json(), default=str)[:3000]
        api = cluster.api
        for name in ("details-v1", "productpage-v1", "ratings-v1", "reviews-v1"):
            dep = api.object("apps/v1/deployments", "default", name)
            assert dep is not None and dep["status"]["availableReplicas"] >= 1, name  # waited for the rollout
        assert api.object("networking.istio.io/v1/gateways", "default", "bookinfo-gateway") is not None
        assert route_weights(api.object("networking.istio.io/v1/virtualservices", "default", "reviews")) == {"v1": 100}
        assert all(r.params.get("fieldManager") == "graylane" for r in list(api) if r.method.value == "PATCH")

        # 2. the canary: deploy v2, judge a 20% ratio, then release fully
        exe = await start_manual(ex, configs[CANARY]["id"], user="alice",
                                 parameters={"base_version": "v1", "canary_version": "v2"})
        await ex.wait_for_stage(exe.id, "3", {S.RUNNING}, timeout=60)
        assert api.object("apps/v1/deployments", "default", "reviews-v2") is not None
        subsets = api.object("networking.istio.io/v1/destinationrules", "default", "reviews")["spec"]["subsets"]
        assert {"v1", "v2"} <= {s["name"] for s in subsets}
        await ex.update_stage(exe.id, "3", {"judgmentStatus": "continue", "customParams": {"canary_ratio": 20}},
                              user="alice")
        await ex.wait_for_stage(exe.id, "5", {S.RUNNING}, timeout=60)
        assert route_weights(api.object("networking.istio.io/v1/virtualservices", "default", "reviews")) == {
            "v1": 80, "v2": 20}
        await ex.update_stage(exe.id, "5", {"judgmentStatus": "continue", "judgmentInput": "全量发布"},
                              user="alice")
        done = await ex.wait_until_complete(exe.id, timeout=60)
        assert str(done.status) == "SUCCEEDED", json.dumps(done.to_json(), default=str)[:3000]
        assert route_weights(api.object("networking.istio.io/v1/virtualservices", "default", "reviews")) == {"v2": 100}
        assert api.object("apps/v1/deployments", "default", "reviews-v1") is None
        assert api.deletions[-1]["name"] == "reviews-v1"
        assert api.deletions[-1]["propagationPolicy"] == "Background"
    finally:
        await run.close()


async def test_stuck_canary_rollout_fails_the_stage_with_the_reason(cluster: Any, state_dir: Path,
                                                                    tmp_path: Path) -> None:
    from graylane.demos.bookinfo.demo import CANARY, load_pipeline, prepare_repository
    from graylane.pipelines.repository import PipelineRepository
    from graylane.pipelines.triggers import start_manual

    cluster.api.rollouts["reviews-v2"] = "stuck"  # e.g. an image that never becomes ready
    base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v1", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reviews", "version": "v1"}}}}
    # the base version runs already (the canary pipeline checks it first)
    cluster.api.objects[kmock.resource("apps/v1/deployments"), "default", "reviews-v1"] = cluster.api._stamp(base, None)
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    repo = tmp_path / "bookinfo"
    prepare_repository(repo)
    run = await started_executor(tmp_path)
    engine, ex = run.engine, run.ex
    try:
        saved = PipelineRepository(engine).save(with_account(load_pipeline(CANARY, repo), "staging"), actor="user:a")
        exe = await start_manual(ex, saved.id, user="alice", parameters={"base_version": "v1", "canary_version": "v2"})
        done = await ex.wait_until_complete(exe.id, timeout=60)
        assert str(done.status) == "TERMINAL"
        stage = next(s for s in done.to_json()["stages"] if s["refId"] == "1")
        assert stage["status"] == "TERMINAL"
        text = json.dumps(stage, ensure_ascii=False)
        assert "exceeded its progress deadline" in text and 'ReplicaSet \\"reviews-v2-1\\" has timed out' in text
        assert cluster.api.object("apps/v1/deployments", "default", "reviews-v2") is not None
        assert cluster.api.object("networking.istio.io/v1/virtualservices", "default", "reviews") is None  # no route
    finally:
        await run.close()
