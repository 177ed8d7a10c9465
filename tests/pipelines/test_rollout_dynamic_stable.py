"""canaryRollout's Argo Rollouts options beside setCanaryScale, on the local target: `dynamicStableScale` (the
stable Deployment shrinks as the canary's weight grows, after the traffic moved; restored in full on abort before
any traffic returns) and `abortScaleDownDelaySeconds` (a managed canary keeps its replicas that long after an
abort; 0 keeps them; absent, at once), and refusals naming the field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_release_stages import USER_VS, Rig, run_rig
from tests.pipelines.test_rollout_canary_scale import REVIEWS, ROLLOUT, replicas

from graylane.pipelines.status import ExecutionStatus as S
from graylane.resources.document import ResourceKey


def record(rig: Rig) -> list[tuple[float, str, str, int | None]]:
    """Every committed change of a VirtualService or Deployment: (when, kind, name, its replicas)."""
    seen: list[tuple[float, str, str, int | None]] = []

    def on(keys: Any) -> None:
        for k in keys:
            if k.kind in ("VirtualService", "Deployment"):
                got = rig.store.get(ResourceKey(k.group, k.kind, k.namespace, k.name)) if k.kind == "Deployment" \
                    else None
                seen.append((time.monotonic(), k.kind, k.name,
                             int(got.body["spec"]["replicas"]) if got is not None else None))

    rig.store.subscribe(on)
    return seen


def test_dynamic_stable_scale_shrinks_the_stable_after_traffic_and_restores_it_before_abort(
        tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "dynamicStableScale": True, "steps": [
            {"setCanaryScale": {"matchTrafficWeight": True}}, {"setWeight": 25}, {"pause": {}},
            {"setWeight": 75}, {"pause": {}}]})
        st = await rig.rollout(exe, "Paused", 2)
        assert rig.weights() == [("v1", 75), ("v2", 25)]
        assert (replicas(rig, "reviews-v1"), replicas(rig, "reviews-v2")) == (3, 1)  # ceil(75%, 25% of 4)
        assert st["stableScale"] == {"default/reviews-v1": {"desired": 3, "replicas": 4}}

        seen = record(rig)
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        await rig.rollout(exe, "Paused", 4)
        # the canary follows 75% of the stable's 4 replicas before the rollout, not of its 1 replica now
        assert (replicas(rig, "reviews-v1"), replicas(rig, "reviews-v2")) == (1, 3)
        assert [(k, n, r) for _, k, n, r in seen] == [("Deployment", "reviews-v2", 3),  # its pods, then traffic
                                                     ("VirtualService", "reviews", None),
                                                     ("Deployment", "reviews-v1", 1)]  # after the traffic moved

        seen.clear()
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert rig.weights() == [("v1", 100), ("v2", 0)]
        assert (replicas(rig, "reviews-v1"), replicas(rig, "reviews-v2")) == (4, 0)
        assert [(k, n, r) for _, k, n, r in seen] == [("Deployment", "reviews-v1", 4),  # the stable first
                                                     ("VirtualService", "reviews", None),
                                                     ("Deployment", "reviews-v2", 0)]
        assert done.stage("0").context["rollout"]["stableScale"]["default/reviews-v1"]["desired"] == 4

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_dynamic_stable_scale_promotion_gives_the_canary_the_stables_replicas_then_the_stable_goes(
        tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "dynamicStableScale": True, "steps": [{"setWeight": 50}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 1)
        assert (replicas(rig, "reviews-v1"), replicas(rig, "reviews-v2")) == (2, 1)  # the canary: its own
        seen = record(rig)
        await rig.ex.update_stage(exe, "0", {"judgmentInput": "Promote"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert rig.weights() == [("v2", 100)]
        assert (replicas(rig, "reviews-v1"), replicas(rig, "reviews-v2")) == (0, 4)
        assert [(k, n, r) for _, k, n, r in seen] == [("Deployment", "reviews-v2", 4),
                                                     ("VirtualService", "reviews", None),
                                                     ("Deployment", "reviews-v1", 0)]

    run_rig(tmp_path, REVIEWS + USER_VS, test)


def test_abort_scale_down_delay_keeps_the_canary_then_scales_it_down(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({**ROLLOUT, "abortScaleDownDelaySeconds": 3,
                             "steps": [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 2)
        seen = record(rig)
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        st = await rig.rollout(exe, "Aborted", showing=lambda s: "scales down in" in s.get("message", ""))
        assert "all traffic is back on v1; the canary scales down in 3s (abortScaleDownDelaySeconds)" \
            in st["message"]
        done = await rig.done(exe)
        assert done.status == S.TERMINAL
        assert replicas(rig, "reviews-v2") == 0 and rig.weights() == [("v1", 100), ("v2", 0)]
        (t_route, *_), (t_scale, kind, name, count) = seen
        assert (kind, name, count) == ("Deployment", "reviews-v2", 0) and len(seen) == 2
        assert t_scale - t_route >= 3  # kept at least the delay after traffic was back
        assert done.stage("0").context["rollout"]["message"].endswith("all traffic is back on v1")

    run_rig(tmp_path, REVIEWS + USER_VS, test)


@pytest.mark.parametrize(("delay", "kept"), [(0, 2), (None, 0)])
def test_abort_scale_down_delay_zero_keeps_the_canary_and_absent_scales_at_once(
        tmp_path: Path, state_dir: Path, delay: int | None, kept: int) -> None:
    async def test(rig: Rig) -> None:
        extra = {} if delay is None else {"abortScaleDownDelaySeconds": delay}
        exe = await rig.run({**ROLLOUT, **extra,
                             "steps": [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 2)
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "stop"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.TERMINAL and rig.weights() == [("v1", 100), ("v2", 0)]
        assert replicas(rig, "reviews-v2") == kept
        message = done.stage("0").context["rollout"]["message"]
        assert ("the canary keeps its replicas (abortScaleDownDelaySeconds: 0)" in message) == (delay == 0)

    run_rig(tmp_path, REVIEWS + USER_VS, test)


@pytest.mark.parametrize(("fields", "message"), [
    ({"abortScaleDownDelaySeconds": -1}, "abortScaleDownDelaySeconds must be whole seconds from 0 to 86400 (got -1)"),
    ({"abortScaleDownDelaySeconds": "30s"}, "abortScaleDownDelaySeconds must be whole seconds"),
    ({"abortScaleDownDelaySeconds": True}, "abortScaleDownDelaySeconds must be whole seconds"),
    ({"dynamicStableScale": "yes"}, "dynamicStableScale must be true or false (got 'yes')"),
    ({"dynamicStableScale": True, "scaleDownDelay": "30s"}, "dynamicStableScale cannot be used with scaleDownDelay"),
])
def test_options_refused_at_import_naming_the_field(fields: dict[str, Any], message: str) -> None:
    from graylane.pipelines.model import find_problems

    body = {"application": "a", "name": "p", "stages": [{"refId": "1", "name": "release", **ROLLOUT, **fields,
                                                          "steps": [{"setWeight": 10}]}]}
    problems = [str(p) for p in find_problems(body)]
    assert any(message in p and "stages[0]" in p for p in problems), problems
    ok = {**body, "stages": [{**body["stages"][0], "abortScaleDownDelaySeconds": 30, "dynamicStableScale": False,
                              "scaleDownDelay": "30s"}]}
    assert find_problems(ok) == []
