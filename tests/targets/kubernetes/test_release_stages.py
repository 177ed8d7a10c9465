"""trafficShift and a lockstep canaryRollout on the emulated Kubernetes + Istio account: the same stages as on the
local mesh with only `account` changed; the stage waits for Istio's status when Istio reports one."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
import sqlalchemy as sa
import yaml
from tests import system
from tests.pipelines.test_cli import api  # noqa: F401  (the control plane API fixture)
from tests.targets.kubernetes.executors import started_executor

from graylane.demos.bookinfo.demo import BASELINE, RELEASES, load_pipeline, prepare_repository
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tables import metadata
from graylane.pipelines.triggers import build_trigger, start_manual
from graylane.resources.document import ResourceKey
from graylane.resources.load import load_text
from graylane.targets import accounts

_spec = importlib.util.spec_from_file_location("release_stages_local",
                                               Path(__file__).parents[2] / "pipelines" / "test_release_stages.py")
assert _spec and _spec.loader
_local = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_local)
REVIEWS, RATINGS, USER_VS = _local.REVIEWS, _local.RATINGS, _local.USER_VS

pytestmark = [pytest.mark.asyncio]
VS = "networking.istio.io/v1/virtualservices"


@pytest_asyncio.fixture
async def executor(cluster: Any, state_dir: Path, tmp_path: Path) -> AsyncIterator[Executor]:
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pipelines.db'}")
    metadata.create_all(engine)

    class ControlPlane:
        settings: dict[str, Any] = {}

    cp = ControlPlane()

    async def get_target(account: str | None, namespace: str | None) -> Any:
        return accounts.get_target(account or "local", cp, namespace=namespace)

    target = await get_target("staging", None)
    await target.apply(load_text(REVIEWS + RATINGS + USER_VS), actor="user:setup")
    await target.wait_ready([d.key for d in load_text(REVIEWS + RATINGS) if d.kind == "Deployment"], timeout=30)
    ex = Executor(engine, services=TaskServices(get_target=get_target))
    await ex.start()
    try:
        yield ex
    finally:
        await ex.stop()
        engine.dispose()


async def run(ex: Executor, stage: dict[str, Any]) -> str:
    body = {"application": "bookinfo", "name": f"k{len(ex.pipelines.list())}",
            "stages": [{"refId": "0", "name": "s0", "account": "staging", **stage}]}
    config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
    trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {}, "artifacts": []}, ex)
    return (await ex.start_execution(config, trigger, user="t")).id


def weights(cluster: Any, name: str) -> list[tuple[str, int]]:
    vs = cluster.api.object(VS, "default", name)
    return [(r["destination"]["subset"], r.get("weight", 100)) for r in vs["spec"]["http"][-1]["route"]]


async def test_traffic_shift_on_kubernetes(cluster: Any, executor: Executor) -> None:
    done = await executor.wait_until_complete(await run(executor, {
        "type": "trafficShift", "service": "reviews", "weights": {"v1": 90, "v2": 10}}), timeout=30)
    assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
    vs = cluster.api.object(VS, "default", "reviews")
    assert vs["spec"]["http"][0]["fault"]["abort"]["httpStatus"] == 500  # the user's rule is untouched
    assert vs["spec"]["http"][1]["timeout"] == "3s"
    assert weights(cluster, "reviews") == [("v1", 90), ("v2", 10)]
    refused = await executor.wait_until_complete(await run(executor, {
        "type": "trafficShift", "service": "reviews", "weights": {"v1": 50, "v3": 50}}), timeout=30)
    assert refused.status == S.TERMINAL
    assert "IST0173" in refused.stage("0").context["exception"]["details"]["error"]  # v3 has no ready pods
    assert weights(cluster, "reviews") == [("v1", 90), ("v2", 10)]


async def test_lockstep_rollout_on_kubernetes(cluster: Any, executor: Executor) -> None:
    exe = await run(executor, {"type": "canaryRollout", "stableSubset": "v1", "canarySubset": "v2",
                               "services": [{"service": "reviews"}, {"service": "ratings"}],
                               "steps": [{"setWeight": 20}, {"pause": {}}]})
    for _ in range(200):
        st = executor.get(exe).stage("0").context.get("rollout") or {}
        if st.get("phase") == "Paused":
            break
        await asyncio.sleep(0.05)
    assert weights(cluster, "reviews") == weights(cluster, "ratings") == [("v1", 80), ("v2", 20)]
    assert cluster.api.object(VS, "default", "ratings")["metadata"]["annotations"]["graylane.io/managed-by"] \
        == "graylane"
    await executor.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
    assert weights(cluster, "reviews") == weights(cluster, "ratings") == [("v2", 100)]


async def test_the_stage_waits_for_istio_to_reconcile(cluster: Any, executor: Executor) -> None:
    """Istio writes status.observedGeneration when status reporting is on: the stage ends only once it caught up."""
    key = (kmock.resource(VS), "default", "reviews")
    generation = int(cluster.api.object(VS, "default", "reviews")["metadata"]["generation"])
    reconciled = [{"type": "Reconciled", "status": "True"}]
    assert await cluster.api._set_status(key, generation, {"observedGeneration": generation,
                                                           "conditions": reconciled})
    exe = await run(executor, {"type": "trafficShift", "service": "reviews", "weights": {"v1": 70, "v2": 30}})
    for _ in range(200):
        vs = cluster.api.object(VS, "default", "reviews")
        if int(vs["metadata"]["generation"]) > generation:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # give a wrong implementation time to finish early
    assert executor.get(exe).status == S.RUNNING
    new = int(vs["metadata"]["generation"])
    assert await cluster.api._set_status(key, new, {"observedGeneration": new, "conditions": reconciled})
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")


async def test_a_lockstep_shift_waits_until_istio_reconciled_every_member(cluster: Any, executor: Executor) -> None:
    """reviews and ratings moved in one pass: the stage ends only once Istio reports both VirtualServices."""
    target = accounts.get_target("staging", None, namespace=None)
    await target.apply(load_text("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings, subset: v1}}]}]
"""), actor="user:setup")
    reconciled = [{"type": "Reconciled", "status": "True"}]
    keys = {name: (kmock.resource(VS), "default", name) for name in ("reviews", "ratings")}
    generations = {name: int(cluster.api.object(VS, "default", name)["metadata"]["generation"]) for name in keys}
    for name, key in keys.items():
        assert await cluster.api._set_status(key, generations[name], {"observedGeneration": generations[name],
                                                                       "conditions": reconciled})
    exe = await run(executor, {"type": "trafficShift", "services": [
        {"service": "reviews", "weights": {"v1": 60, "v2": 40}},
        {"service": "ratings", "weights": {"v1": 60, "v2": 40}}]})
    for _ in range(200):
        now = {name: int(cluster.api.object(VS, "default", name)["metadata"]["generation"]) for name in keys}
        if all(now[n] > generations[n] for n in keys):
            break
        await asyncio.sleep(0.05)
    assert weights(cluster, "reviews") == weights(cluster, "ratings") == [("v1", 60), ("v2", 40)]
    assert await cluster.api._set_status(keys["reviews"], now["reviews"], {"observedGeneration": now["reviews"],
                                                                           "conditions": reconciled})
    await asyncio.sleep(0.5)  # give a wrong implementation time to finish early
    assert executor.get(exe).status == S.RUNNING  # ratings not reconciled yet
    assert await cluster.api._set_status(keys["ratings"], now["ratings"], {"observedGeneration": now["ratings"],
                                                                           "conditions": reconciled})
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")


async def test_shipped_release_pipelines_with_only_the_account_changed(cluster: Any, state_dir: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """bookinfo-baseline, then reviews-ratings-lockstep and reviews-progressive as shipped, `account` -> staging."""
    system.require_program("git", "git")
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    repo = tmp_path / "bookinfo"
    prepare_repository(repo)
    monkeypatch.setenv("GRAYLANE_ARTIFACT_FILE_ROOTS", str(tmp_path))  # the demo repository, as the operator allows
    run = await started_executor(tmp_path)
    engine, ex = run.engine, run.ex
    try:
        ids = {}
        for name in (BASELINE, *RELEASES):
            body = load_pipeline(name, repo)
            for stage in body["stages"]:
                if "account" in stage:
                    stage["account"] = "staging"
            ids[name] = PipelineRepository(engine).save(body, actor="user:a").id
        done = await ex.wait_until_complete((await start_manual(ex, ids[BASELINE], user="a")).id, timeout=60)
        assert done.status == S.SUCCEEDED, done.to_json()["stages"]

        lockstep = (await start_manual(ex, ids["reviews-ratings-lockstep"], user="a")).id
        for _ in range(400):  # the first step, then the 30 s pause
            st = (ex.get(lockstep).stage("2").context.get("rollout") or {}) if ex.get(lockstep).stage("2") else {}
            if st.get("phase") == "Paused":
                break
            assert not ex.get(lockstep).status.is_complete, ex.get(lockstep).to_json()["stages"]
            await asyncio.sleep(0.05)
        assert weights(cluster, "reviews") == weights(cluster, "ratings") == [("v1", 80), ("v2", 20)]
        env = cluster.api.object("apps/v1/deployments", "default", "ratings-v2")["spec"]["template"]["spec"]
        assert {"name": "RATINGS_LOCAL_DB", "value": "true"} in env["containers"][0]["env"]
        await ex.update_stage(lockstep, "2", {"judgmentInput": "Abort"}, user="a")
        done = await ex.wait_until_complete(lockstep, timeout=30)
        assert done.status == S.TERMINAL
        assert weights(cluster, "reviews") == weights(cluster, "ratings") == [("v1", 100), ("v2", 0)]

        progressive = (await start_manual(ex, ids["reviews-progressive"], user="a")).id
        for _ in range(400):
            st = (ex.get(progressive).stage("2").context.get("rollout") or {}) if ex.get(progressive).stage("2") \
                else {}
            if st.get("phase") == "Paused":
                break
            await asyncio.sleep(0.05)
        http = cluster.api.object(VS, "default", "reviews")["spec"]["http"]
        assert http[0]["name"] == "jason" and weights(cluster, "reviews") == [("v1", 90), ("v2", 10)]
        await ex.update_stage(progressive, "2", {"judgmentInput": "Promote full"}, user="a")
        for _ in range(400):
            if (ex.get(progressive).stage("2").context.get("rollout") or {}).get("phase") == "Promoted":
                break
            await asyncio.sleep(0.05)
        assert weights(cluster, "reviews") == [("v2", 100)]
        assert [r.get("name") for r in cluster.api.object(VS, "default", "reviews")["spec"]["http"]] == [None]
        await ex.cancel(progressive, user="a")
    finally:
        await run.close()


async def test_traffic_shift_through_an_httproute_with_deploys_cluster_role(cluster: Any, executor: Executor,
                                                                           tmp_path: Path) -> None:
    """A Graylane running in the cluster under deploy/rbac.yaml's ClusterRole applies Gateway API kinds unchanged
    and moves an HTTPRoute's backendRef weights; the stage ends once every parent's Accepted condition has seen
    the new generation."""
    from tests.pipelines.test_release_httproute import HTTPROUTE, services
    from tests.targets.kubernetes.test_deploy import cluster_role

    cluster.api.install_gateway_api()
    cluster.api.tokens["sa-token"] = cluster_role()
    accounts.add_account("in-cluster", kubeconfig=cluster.write_kubeconfig(tmp_path / "sa", token="sa-token"),
                         namespace="default")
    target = accounts.get_target("in-cluster", None, namespace=None)
    await target.apply(load_text(services() + HTTPROUTE), actor="user:setup")
    routes = "gateway.networking.k8s.io/v1/httproutes"
    key = (kmock.resource(routes), "default", "reviews")

    def accept(generation: int) -> dict[str, Any]:
        return {"parents": [{"parentRef": {"group": "", "kind": "Service", "name": "reviews", "port": 9080},
                             "controllerName": "istio.io/gateway-controller",
                             "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                             "observedGeneration": generation}]}]}

    generation = int(cluster.api.object(routes, "default", "reviews")["metadata"]["generation"])
    assert await cluster.api._set_status(key, generation, accept(generation))
    exe = await run(executor, {"type": "trafficShift", "service": "reviews", "httpRoute": "reviews",
                               "account": "in-cluster", "weights": {"reviews-v1": 90, "reviews-v2": 10}})
    for _ in range(200):
        route = cluster.api.object(routes, "default", "reviews")
        if int(route["metadata"]["generation"]) > generation:
            break
        await asyncio.sleep(0.05)
    assert route["spec"]["rules"][1]["backendRefs"] == [{"name": "reviews-v1", "port": 9080, "weight": 90},
                                                        {"name": "reviews-v2", "port": 9080, "weight": 10}]
    assert route["spec"]["rules"][0]["matches"] == [{"headers": [{"name": "end-user", "value": "tester"}]}]
    await asyncio.sleep(0.5)  # give a wrong implementation time to finish early
    assert executor.get(exe).status == S.RUNNING  # Istio has not accepted the new generation yet
    new = int(route["metadata"]["generation"])
    assert await cluster.api._set_status(key, new, accept(new))
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
    assert ("gateway.networking.k8s.io", "httproutes", "patch") in cluster.api.used
    # ReferenceGrant is served at v1beta1 only, beside v1 for the routes: found by key without a version too.
    grant = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "allow-gateways", "namespace": "default"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                "namespace": "istio-ingress"}], "to": [{"group": "", "kind": "Service"}]}}
    await target.apply(load_text(yaml.safe_dump(grant)), actor="user:setup")
    got = await target.get(ResourceKey("gateway.networking.k8s.io", "ReferenceGrant", "default", "allow-gateways"))
    assert got is not None and got["spec"]["to"] == [{"group": "", "kind": "Service"}]


async def test_set_canary_scale_on_kubernetes_then_abort_scales_it_down(cluster: Any, executor: Executor) -> None:
    """The same setCanaryScale steps as on the local mesh: the cluster's canary Deployment is scaled (and ready)
    before the step ends; an abort puts traffic back on v1, then scales the canary to 0."""
    deployments = "apps/v1/deployments"
    exe = await run(executor, {"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                               "canarySubset": "v2", "steps": [{"setCanaryScale": {"replicas": 3}}, {"setWeight": 20},
                                                               {"pause": {}}]})
    for _ in range(400):
        st = executor.get(exe).stage("0").context.get("rollout") or {}
        if st.get("phase") == "Paused":
            break
        assert not executor.get(exe).status.is_complete, executor.get(exe).stage("0").context
        await asyncio.sleep(0.05)
    canary = cluster.api.object(deployments, "default", "reviews-v2")
    assert canary["spec"]["replicas"] == 3 and canary["status"]["readyReplicas"] == 3  # waited for
    assert weights(cluster, "reviews") == [("v1", 80), ("v2", 20)]
    assert st["canaryScale"]["deployments"]["default/reviews-v2"]["desired"] == 3
    await executor.update_stage(exe, "0", {"judgmentInput": "Abort"}, user="bob")
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.TERMINAL and done.stage("0").context["rollout"]["phase"] == "Aborted"
    assert weights(cluster, "reviews") == [("v1", 100), ("v2", 0)]
    assert cluster.api.object(deployments, "default", "reviews-v2")["spec"]["replicas"] == 0
    assert cluster.api.object(deployments, "default", "reviews-v1")["spec"]["replicas"] == 1


async def test_release_status_reads_the_canary_from_the_cluster(cluster: Any, state_dir: Path,
                                                                api: str, tmp_path: Path) -> None:  # noqa: F811
    """`graylane release status` of a release on a Kubernetes account: the canary's desired and ready replicas (and
    the pods' readiness) are the cluster's Deployments', read through the account."""
    from tests.pipelines.test_release_cli import cli

    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    target = accounts.get_target("staging", None, namespace=None)
    await target.apply(load_text(REVIEWS + USER_VS), actor="user:setup")
    await target.wait_ready([d.key for d in load_text(REVIEWS) if d.kind == "Deployment"], timeout=30)
    pipeline = {"application": "bookinfo", "name": "reviews-staging", "stages": [
        {"refId": "1", "type": "canaryRollout", "name": "reviews canary", "account": "staging", "service": "reviews",
         "stableSubset": "v1", "canarySubset": "v2",
         "steps": [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}, {"pause": {}}]}]}
    (tmp_path / "p.json").write_text(json.dumps(pipeline))
    assert (await asyncio.to_thread(cli, "pipeline", "import", str(tmp_path / "p.json")))[0] == 0
    assert (await asyncio.to_thread(cli, "pipeline", "run", "reviews-staging"))[0] == 0
    for _ in range(400):
        code, out = await asyncio.to_thread(cli, "release", "status", "reviews", "-o", "json")
        assert code == 0, out
        s = json.loads(out)
        if s["phase"] == "Paused":
            break
        await asyncio.sleep(0.05)
    assert s["canary"]["deployments"] == [{"deployment": "default/reviews-v2", "desired": 2, "replicas": 2,
                                           "ready": 2}]
    assert {p["name"]: (p["ready"], p["replicas"]) for p in s["pods"]} == {
        "reviews-v1": (1, 1), "reviews-v2": (2, 2), "reviews-v3": (0, 0)}
    code, out = await asyncio.to_thread(cli, "release", "status", "reviews")
    assert 'Canary:    default/reviews-v2  desired 2  ready 2  (setCanaryScale {"replicas": 2})' in out
    assert (await asyncio.to_thread(cli, "release", "abort", "reviews"))[0] == 0
