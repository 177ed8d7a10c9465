"""canaryRollout's setCanaryScale step on the local target: the canary Deployment's replicas apart from the weight
(`replicas`, `weight` of the stable's replicas, `matchTrafficWeight` following later setWeight steps), the stable's
replicas at promotion, 0 on abort, and refusals naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_release_stages import USER_VS, Rig, run_rig, world

from graylane.pipelines.status import ExecutionStatus as S
from graylane.resources.document import ResourceKey

REVIEWS = world("reviews", {"v1": 4, "v2": 1}, ["v1", "v2"])
ROLLOUT = {"type": "canaryRollout", "service": "reviews", "stableSubset": "v1", "canarySubset": "v2"}


def replicas(rig: Rig, name: str) -> int:
    got = rig.store.get(ResourceKey("apps", "Deployment", "default", name))
    assert got is not None, name
    return int(got.body["spec"]["replicas"])


def test_replicas_then_weight_then_match_traffic_weight_then_promote(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "steps": [
            {"setCanaryScale": {"replicas": 3}}, {"setWeight": 10}, {"pause": {}},
            {"setCanaryScale": {"weight": 30}}, {"pause": {}},
            {"setCanaryScale": {"matchTrafficWeight": True}}, {"pause": {}},
            {"setWeight": 60}, {"pause": {}}]})
        st = await rig.rollout(exe, "Paused", 2)
        assert replicas(rig, "reviews-v2") == 3 and rig.weights() == [("v1", 90), ("v2", 10)]
        assert st["canaryScale"] == {"mode": {"replicas": 3}, "deployments": {
            "default/reviews-v2": {"desired": 3, "stable": "default/reviews-v1", "stableReplicas": 4}}}
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        await rig.rollout(exe, "Paused", 4)
        assert replicas(rig, "reviews-v2") == 2  # ceil(30% of 4)
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        await rig.rollout(exe, "Paused", 6)
        assert replicas(rig, "reviews-v2") == 1  # ceil(10% of 4): the traffic weight again
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        await rig.rollout(exe, "Paused", 8)
        assert replicas(rig, "reviews-v2") == 3 and rig.weights() == [("v1", 40), ("v2", 60)]  # ceil(60% of 4)
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert replicas(rig, "reviews-v2") == 4 and rig.weights() == [("v2", 100)]  # the stable's replicas
        assert replicas(rig, "reviews-v1") == 4

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_without_set_canary_scale_the_canary_keeps_its_own_replicas(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        done = await rig.done(await rig.run({**ROLLOUT, "steps": [{"setWeight": 50}]}))
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert replicas(rig, "reviews-v2") == 1 and "canaryScale" not in done.stage("0").context["rollout"]

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_abort_scales_the_canary_down_after_traffic_is_back(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "steps": [{"setCanaryScale": {"weight": 50}}, {"setWeight": 20},
                                                  {"pause": {}}]})
        await rig.rollout(exe, "Paused", 2)
        assert replicas(rig, "reviews-v2") == 2
        order: list[str] = []
        rig.store.subscribe(lambda keys: order.extend(k.kind for k in keys))
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert replicas(rig, "reviews-v2") == 0 and rig.weights() == [("v1", 100), ("v2", 0)]
        assert order == ["VirtualService", "Deployment"]  # traffic first, then the scale-down
        st = done.stage("0").context["rollout"]
        assert st["phase"] == "Aborted" and st["canaryScale"]["deployments"]["default/reviews-v2"]["desired"] == 0

    run_rig(tmp_path, REVIEWS + USER_VS, test)


TWIN = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2-twin}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {containers: [{name: reviews, image: docker.io/istio/examples-bookinfo-reviews-v2:1.20.2}]}
---
"""


@pytest.mark.parametrize(("fields", "message"), [
    ({"canaryDeployment": "reviews-v9"}, "setCanaryScale: Deployment default/reviews-v9 not found"),
    ({}, "setCanaryScale: 2 Deployments (reviews-v2, reviews-v2-twin) in default with pod labels app=reviews, "
         "version=v2 (subset 'v2' of reviews)"),
])
def test_a_canary_deployment_that_cannot_be_told_fails_the_step(tmp_path: Path, state_dir: Path,
                                                                 fields: dict[str, Any], message: str) -> None:
    async def test(rig: Rig) -> None:
        done = await rig.done(await rig.run({**ROLLOUT, **fields, "steps": [{"setCanaryScale": {"replicas": 2}}]}))
        assert done.status == S.TERMINAL
        assert message in done.stage("0").context["exception"]["details"]["error"]
        assert replicas(rig, "reviews-v2") == 1

    run_rig(tmp_path, REVIEWS + TWIN + USER_VS, test)


def test_a_named_canary_deployment_is_scaled(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "canaryDeployment": "reviews-v2-twin", "stableDeployment": "reviews-v1",
                             "steps": [{"setCanaryScale": {"replicas": 2}}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 1)
        assert replicas(rig, "reviews-v2-twin") == 2 and replicas(rig, "reviews-v2") == 1
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        assert (await rig.done(exe)).status == S.TERMINAL
        assert replicas(rig, "reviews-v2-twin") == 0

    run_rig(tmp_path, REVIEWS + TWIN + USER_VS, test)


@pytest.mark.parametrize(("raw", "message"), [
    ({"replicas": 2, "weight": 50}, "exactly one of replicas, weight, matchTrafficWeight (got replicas, weight)"),
    ({}, "exactly one of replicas, weight, matchTrafficWeight (got none)"),
    ({"replicas": -1}, "setCanaryScale.replicas must be a whole number from 0 to 10000 (got -1)"),
    ({"replicas": "2"}, "setCanaryScale.replicas must be a whole number"),
    ({"replicas": True}, "setCanaryScale.replicas must be a whole number"),
    ({"weight": 101}, "setCanaryScale.weight must be a whole percent from 0 to 100 (got 101)"),
    ({"weight": 12.5}, "setCanaryScale.weight must be a whole percent"),
    ({"matchTrafficWeight": False}, "setCanaryScale.matchTrafficWeight must be true"),
    ({"replica": 2}, "setCanaryScale has no field 'replica'"),
    (3, "setCanaryScale is an object"),
])
def test_set_canary_scale_refused_at_import_naming_the_field(raw: Any, message: str) -> None:
    from graylane.pipelines.model import find_problems

    body = {"application": "a", "name": "p", "stages": [{"refId": "1", "name": "release", **ROLLOUT,
                                                          "steps": [{"setWeight": 10}, {"setCanaryScale": raw}]}]}
    problems = [str(p) for p in find_problems(body)]
    assert any(message in p and "steps[1]" in p for p in problems), problems


def test_through_an_httproute_the_deployments_are_found_by_the_version_services(tmp_path: Path,
                                                                                state_dir: Path) -> None:
    """With `httpRoute` the versions are Services (reviews-v1, reviews-v2): their selectors find the Deployments."""
    from tests.pipelines.test_release_httproute import HTTPROUTE, services
    from tests.pipelines.test_release_stages import deployment

    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "httpRoute": "reviews",
                             "stableService": "reviews-v1", "canaryService": "reviews-v2",
                             "steps": [{"setCanaryScale": {"weight": 50}}, {"setWeight": 25}, {"pause": {}}]})
        st = await rig.rollout(exe, "Paused", 2)
        assert replicas(rig, "reviews-v2") == 2  # ceil(50% of 3)
        assert st["canaryScale"]["deployments"]["default/reviews-v2"]["stable"] == "default/reviews-v1"
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote full"}, user="bob")
        assert (await rig.done(exe)).status == S.SUCCEEDED
        assert replicas(rig, "reviews-v2") == 3

    run_rig(tmp_path, deployment("reviews", "v1", 3) + deployment("reviews", "v2") + services() + HTTPROUTE, test)
