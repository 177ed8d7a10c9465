"""dynamicStableScale and abortScaleDownDelaySeconds on the emulated Kubernetes + Istio account: the same canaryRollout
as on the local mesh with only `account` changed. The cluster's stable Deployment shrinks with the canary's weight
and is back at its full count, ready, before traffic returns on abort; the canary goes to 0 after the delay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.targets.kubernetes.test_release_stages import executor, run, weights  # noqa: F401  (fixture reused)

from graylane.pipelines.executor import Executor
from graylane.pipelines.status import ExecutionStatus as S
from graylane.resources.document import ResourceKey
from graylane.targets import accounts

pytestmark = [pytest.mark.asyncio]
DEPLOYMENTS = "apps/v1/deployments"


async def test_dynamic_stable_scale_on_kubernetes_then_abort_after_the_delay(cluster: Any,
                                                                            executor: Executor) -> None:  # noqa: F811
    target = accounts.get_target("staging", None, namespace=None)
    stable = ResourceKey("apps", "Deployment", "default", "reviews-v1")
    await target.patch(stable, {"spec": {"replicas": 4}}, "merge", actor="user:setup")
    await target.wait_ready([stable], timeout=30)
    exe = await run(executor, {"type": "canaryRollout", "service": "reviews", "stableSubset": "v1",
                               "canarySubset": "v2", "dynamicStableScale": True, "abortScaleDownDelaySeconds": 1,
                               "steps": [{"setCanaryScale": {"matchTrafficWeight": True}}, {"setWeight": 75},
                                         {"pause": {}}]})
    for _ in range(400):
        st = executor.get(exe).stage("0").context.get("rollout") or {}
        if st.get("phase") == "Paused":
            break
        assert not executor.get(exe).status.is_complete, executor.get(exe).stage("0").context
        await asyncio.sleep(0.05)
    v1 = cluster.api.object(DEPLOYMENTS, "default", "reviews-v1")
    v2 = cluster.api.object(DEPLOYMENTS, "default", "reviews-v2")
    assert weights(cluster, "reviews") == [("v1", 25), ("v2", 75)]
    assert (v1["spec"]["replicas"], v1["status"]["readyReplicas"]) == (1, 1)  # ceil(25% of 4), waited for
    assert (v2["spec"]["replicas"], v2["status"]["readyReplicas"]) == (3, 3)  # ceil(75% of 4)
    assert st["stableScale"] == {"default/reviews-v1": {"desired": 1, "replicas": 4}}

    await executor.update_stage(exe, "0", {"judgmentInput": "Abort"}, user="bob")
    done = await executor.wait_until_complete(exe, timeout=30)
    assert done.status == S.TERMINAL and done.stage("0").context["rollout"]["phase"] == "Aborted"
    assert weights(cluster, "reviews") == [("v1", 100), ("v2", 0)]
    v1 = cluster.api.object(DEPLOYMENTS, "default", "reviews-v1")
    assert (v1["spec"]["replicas"], v1["status"]["readyReplicas"]) == (4, 4)
    assert cluster.api.object(DEPLOYMENTS, "default", "reviews-v2")["spec"]["replicas"] == 0
