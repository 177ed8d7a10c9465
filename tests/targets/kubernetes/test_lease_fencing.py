"""Lease fencing of stages' writes to a Kubernetes account (graylane.pipelines.fencing), with two replicas' leases
on one PostgreSQL and the emulated API server: a replica that lost an execution's lease sends no apply, patch or
delete for it; applied objects name the execution and the fencing token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from tests.pipelines.test_replicas import fresh_schema

from graylane.errors import GraylaneError
from graylane.pipelines.execution import new_execution
from graylane.pipelines.executor import Executor
from graylane.pipelines.fencing import EXECUTION_ANNOTATION, TOKEN_ANNOTATION, fencing_lookup, lease_guard
from graylane.pipelines.leases import Leases
from graylane.pipelines.repository import ExecutionRepository
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import Document, ResourceKey, Source
from graylane.targets import accounts
from graylane.targets.kubernetes import KubernetesTarget

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]
CM_KEY = ResourceKey("", "ConfigMap", "default", "fenced")


def configmap(value: str) -> Document:
    return Document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fenced", "namespace": "default"},
                     "data": {"value": value}}, source=Source("cm.yaml", 1))


@pytest.fixture
def pg() -> Iterator[sa.Engine]:
    from graylane.store import Store

    with fresh_schema() as url:
        store = Store.open(url)
        yield store.engine
        store.close()


@pytest_asyncio.fixture
async def targets(cluster: Any) -> AsyncIterator[tuple[KubernetesTarget, KubernetesTarget]]:
    """The same account as replica a and replica b each connect to it."""
    async with KubernetesTarget("staging", kubeconfig=cluster.kubeconfig) as ta, \
            KubernetesTarget("staging", kubeconfig=cluster.kubeconfig) as tb:
        yield ta, tb


async def test_a_replica_that_lost_the_lease_changes_nothing_in_the_cluster(
        pg: sa.Engine, targets: tuple[KubernetesTarget, KubernetesTarget]) -> None:
    a, b = Leases(pg, replica="a", ttl_s=30), Leases(pg, replica="b", ttl_s=30)
    repo = ExecutionRepository(pg)
    repo.guard = a
    exe = new_execution({"application": "x", "name": "p", "stages": []},
                        {"type": "manual", "user": "ci", "parameters": {}}, 1000)
    repo.insert(exe)  # replica a holds the lease, token 1
    ta, tb = targets
    ta.before_write, tb.before_write = lease_guard(lambda: a), lease_guard(lambda: b)
    actor = f"pipeline:{exe.id}/deploy"

    [applied] = await ta.apply([configmap("one")], actor=actor)
    assert applied.action == "created"
    annotations = (await ta.get(CM_KEY) or {})["metadata"]["annotations"]
    assert annotations[EXECUTION_ANNOTATION] == exe.id and annotations[TOKEN_ANNOTATION] == "1"

    with pg.begin() as conn:  # a hangs past its lease; b takes the execution over (token 2)
        conn.exec_driver_sql("UPDATE pipeline_executions SET lease_expires = 0")
    assert b.claim(exe.id) and b.held[exe.id] == 2

    lost = f"execution {exe.id}: this replica \\(a\\) no longer holds its lease .* the change was not sent"
    with pytest.raises(GraylaneError, match=lost):
        await ta.apply([configmap("stale")], actor=actor)
    with pytest.raises(GraylaneError, match=lost):
        await ta.patch(CM_KEY, {"data": {"value": "stale"}}, "merge", actor=actor)
    with pytest.raises(GraylaneError, match=lost):
        await ta.delete([CM_KEY], actor=actor)
    live = await tb.get(CM_KEY)
    assert live is not None and live["data"] == {"value": "one"}  # nothing a sent reached the cluster
    assert exe.id not in a.held

    [applied] = await tb.apply([configmap("two")], actor=actor)  # the owner's write goes through
    live = await tb.get(CM_KEY) or {}
    assert applied.action == "configured" and live["data"] == {"value": "two"}
    assert live["metadata"]["annotations"][TOKEN_ANNOTATION] == "2"
    # A person's write is not a stage's: not fenced, not annotated by the guard.
    await ta.patch(CM_KEY, {"data": {"value": "by-hand"}}, "merge", actor="user:ann")
    assert (await tb.get(CM_KEY) or {})["data"] == {"value": "by-hand"}


async def test_a_deploy_stage_on_a_kubernetes_account_is_annotated_with_its_lease(
        pg: sa.Engine, cluster: Any, state_dir: Path) -> None:
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")

    class ControlPlane:
        settings: dict[str, Any] = {}

    cp = ControlPlane()

    async def get_target(account: str | None, namespace: str | None) -> Any:
        return accounts.get_target(account or "local", cp, namespace=namespace)

    ex: Executor | None = None
    ex = Executor(pg, services=TaskServices(get_target=fencing_lookup(get_target, lambda: ex and ex.leases)))
    Leases(pg, replica="one", ttl_s=30, poll_s=0.05).install(ex)
    await ex.start()
    try:
        body = {"application": "x", "name": "deploy", "stages": [
            {"refId": "0", "name": "deploy", "type": "deployManifest", "account": "staging", "source": "text",
             "manifests": [configmap("v").body]}]}
        config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
        trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {}, "artifacts": []}, ex)
        exe = await ex.start_execution(config, trigger, user="t")
        done = await ex.wait_until_complete(exe.id, timeout=30)
        assert done.status == S.SUCCEEDED, [s.context.get("exception") for s in done.stages]
        with pg.connect() as conn:
            token = conn.exec_driver_sql("SELECT lease_token FROM pipeline_executions").scalar_one()
        live = cluster.api.object("v1/configmaps", "default", "fenced")
        assert live["metadata"]["annotations"] == {EXECUTION_ANNOTATION: exe.id, TOKEN_ANNOTATION: str(token)}
    finally:
        await ex.stop()
        for target in cp.settings.get("kubernetes_targets", {}).values():
            await target.close()
