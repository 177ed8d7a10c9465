"""A canaryRollout's background analysis (Argo Rollouts' `strategy.canary.analysis` with `startingStep`): it starts
at its step, keeps measuring across the later steps and pauses, aborts the whole rollout back to the stable subset
when it fails, and is stopped when the rollout is promoted. Flagger's built-in success-rate check over the local
mesh's recorder, fed as the data plane counts (tests/pipelines/test_canary_stages.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.pipelines.test_canary_stages import Traffic, _feed, _routes, _setup

from graylane.pipelines.executor import Executor
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger

GATE = {"builtins": {"canary": {"destination_service_name": "reviews", "destination_version": "v2"},
                     "minSuccessPercent": 99, "maxDurationMs": None, "interval": "0.3s", "window": "2s",
                     "count": 1000}}


def rollout(steps: list[dict[str, Any]], starting_step: int) -> dict[str, Any]:
    return {"refId": "1", "type": "canaryRollout", "name": "reviews canary", "service": "reviews",
            "stableSubset": "v1", "canarySubset": "v2", "steps": steps,
            "analysis": {**GATE, "startingStep": starting_step}}


async def start(ex: Executor, stage: dict[str, Any]) -> str:
    body = {"application": "bookinfo", "name": "bg", "stages": [stage]}
    config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
    trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {}}, ex)
    return (await ex.start_execution(config, trigger, user="t")).id


async def state(ex: Executor, exe: str, ready: Any) -> dict[str, Any]:
    """The rollout's state once `ready(state)` holds (bounded)."""
    for _ in range(400):
        st = ex.get(exe).stage("reviews canary").context.get("rollout") or {}
        if ready(st):
            return st  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rollout never got there: {st}")


def test_a_failing_background_analysis_aborts_the_paused_rollout(tmp_path: Path, state_dir: Path) -> None:
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)

    async def go() -> None:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            exe = await start(ex, rollout([{"setWeight": 20}, {"setWeight": 40}, {"pause": {}}], starting_step=1))
            st = await state(ex, exe, lambda s: s.get("phase") == "Paused")
            assert st["backgroundAnalysis"]["phase"] == "Running"  # started at step 1, still measuring: all good
            assert _routes(store) == [("v1", 60), ("v2", 40)]
            traffic.canary_error_share = 0.5  # the canary goes bad while the rollout waits for a person
            done = await ex.wait_until_complete(exe, timeout=30)
        finally:
            feeder.cancel()
            await ex.stop()
        stage = done.stage("reviews canary")
        assert done.status == S.TERMINAL
        st = stage.context["rollout"]
        assert st["phase"] == "Aborted" and st["backgroundAnalysis"]["phase"] == "Failed"
        assert "analysis (analysis) failed" in st["abortReason"] and "request-success-rate" in st["abortReason"]
        assert _routes(store) == [("v1", 100), ("v2", 0)]

    asyncio.run(go())
    store.close()


def test_background_analysis_waits_for_its_starting_step_and_stops_at_promotion(tmp_path: Path,
                                                                                state_dir: Path) -> None:
    traffic = Traffic()
    store, ex = _setup(tmp_path, traffic)

    async def go() -> None:
        await ex.start()
        feeder = asyncio.get_running_loop().create_task(_feed(traffic))
        try:
            exe = await start(ex, rollout([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
                                          starting_step=3))
            st = await state(ex, exe, lambda s: s.get("phase") == "Paused" and s.get("stepIndex") == 1)
            assert "backgroundAnalysis" not in st  # steps 0 and 1 come before its startingStep
            await ex.update_stage(exe, "1", {"judgmentInput": "Promote"}, user="bob")
            st = await state(ex, exe, lambda s: s.get("phase") == "Paused" and s.get("stepIndex") == 3)
            assert st["backgroundAnalysis"]["phase"] == "Running"
            started = time.monotonic()
            await ex.update_stage(exe, "1", {"judgmentInput": "Promote"}, user="bob")
            done = await ex.wait_until_complete(exe, timeout=30)
            assert time.monotonic() - started < 10  # promotion does not wait for the analysis's 1000 counts
        finally:
            feeder.cancel()
            await ex.stop()
        assert done.status == S.SUCCEEDED, done.stage("reviews canary").context.get("exception")
        st = done.stage("reviews canary").context["rollout"]
        assert st["phase"] == "Healthy" and st["backgroundAnalysis"]["phase"] == "Terminated"
        assert _routes(store) == [("v2", 100)]

    asyncio.run(go())
    store.close()


def test_release_status_shows_the_background_analysis() -> None:
    from graylane.cli import release

    shown = {"service": "reviews", "execution": "01X", "pipeline": "bookinfo/bg", "executionStatus": "RUNNING",
             "stage": {"id": "1", "name": "reviews canary", "type": "canaryRollout", "status": "RUNNING"},
             "phase": "Paused", "message": "", "step": {"index": 2, "total": 3, "kind": "pause", "config": {}},
             "weights": {"reviews": {"v1": 60, "v2": 40}}, "canaryWeight": 40, "analysis": None,
             "backgroundAnalysis": {"type": "analysis", "phase": "Running",
                                    "message": "request-success-rate: 3 measurements, all passed"},
             "lastAction": None, "pods": []}
    with release.out.capture() as captured:
        release.render(shown)
    assert ("Background analysis: analysis Running  request-success-rate: 3 measurements, all passed"
            in captured.get())
