"""The scheduler: failure options, stageEnabled, parallel branches and joins, pause/cancel/restart, queueing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.errors import Conflict, NotFound
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository
from graylane.pipelines.status import ExecutionStatus as S

RUN_ON_POSTGRES = True  # the `engine` fixture also runs these on PostgreSQL when GRAYLANE_TEST_POSTGRES_URL is set


def stage(ref: str, stype: str, name: str | None = None, requires: tuple[str, ...] = (), **fields: Any) -> dict:
    return {"refId": ref, "type": stype, "name": name or f"{stype} {ref}", "requisiteStageRefIds": list(requires),
            **fields}


def pipeline(*stages: dict, name: str = "p", **fields: Any) -> dict:
    return {"application": "app", "name": name, "stages": list(stages), **fields}


def failing(ref: str, requires: tuple[str, ...] = (), **options: Any) -> dict:
    """A stage that fails on its own: a wait whose waitTime is not a number."""
    return stage(ref, "wait", f"fail {ref}", requires, waitTime="not-a-number", **options)


def quick(ref: str, requires: tuple[str, ...] = (), **fields: Any) -> dict:
    return stage(ref, "wait", f"wait {ref}", requires, waitTime=0, **fields)


def run(engine: sa.Engine, body: dict, *, timeout: float = 15.0, **trigger: Any) -> Any:
    async def go() -> Any:
        ex = Executor(engine)
        await ex.start()
        try:
            saved = PipelineRepository(engine).save(body, actor="user:test")
            config = PipelineRepository(engine).get(saved.id)
            exe = await ex.start_execution(config, dict(trigger), user="test")
            return await ex.wait_until_complete(exe.id, timeout=timeout)
        finally:
            await ex.stop()

    return asyncio.run(go())


def statuses(exe: Any) -> dict[str, str]:
    return {s.ref_id: str(s.status) for s in exe.stages}


# The reference's "If stage fails" table: (options, failed stage status, execution status, sibling branch ran).
FAILURE_TABLE = [
    pytest.param({}, "TERMINAL", "TERMINAL", id="default-halts-the-pipeline"),
    pytest.param({"failPipeline": True, "continuePipeline": False, "completeOtherBranchesThenFail": False},
                 "TERMINAL", "TERMINAL", id="halt-entire-pipeline"),
    pytest.param({"failPipeline": False, "continuePipeline": False, "completeOtherBranchesThenFail": False},
                 "STOPPED", "SUCCEEDED", id="halt-this-branch"),
    pytest.param({"failPipeline": False, "continuePipeline": False, "completeOtherBranchesThenFail": True},
                 "STOPPED", "TERMINAL", id="halt-branch-then-fail"),
    pytest.param({"failPipeline": False, "continuePipeline": True, "completeOtherBranchesThenFail": False},
                 "FAILED_CONTINUE", "SUCCEEDED", id="ignore-the-failure"),
]


@pytest.mark.parametrize(("options", "stage_status", "execution_status"), FAILURE_TABLE)
def test_failure_options_map_to_spinnaker_statuses(engine: sa.Engine, options: dict, stage_status: str,
                                                   execution_status: str) -> None:
    # branch A: fail -> after ; branch B: a slower wait that is still running when A fails
    body = pipeline(stage("3", "wait", "other branch", waitTime=0.3), failing("1", **options), quick("2", ("1",)))
    exe = run(engine, body)
    st = statuses(exe)
    assert st["1"] == stage_status
    assert str(exe.status) == execution_status
    if stage_status == "FAILED_CONTINUE":
        assert st["2"] == "SUCCEEDED"  # downstream of an ignored failure runs
    else:
        assert st["2"] == "NOT_STARTED"  # downstream of a halted stage never runs
    if stage_status == "TERMINAL":
        assert st["3"] == "CANCELED"  # halting the pipeline stops running branches at once
    else:
        assert st["3"] == "SUCCEEDED"  # other branches complete
    failed = exe.stage("1")
    assert "not a number" in failed.context["exception"]["details"]["error"]


def test_parallel_branches_join_waits_for_both(engine: sa.Engine) -> None:
    body = pipeline(quick("a"), stage("b", "wait", "slow", ("a",), waitTime=0.3), quick("c", ("a",)),
                    quick("join", ("b", "c")))
    exe = run(engine, body)
    assert exe.status == S.SUCCEEDED
    by = {s.ref_id: s for s in exe.stages}
    assert by["b"].start_time <= by["c"].end_time  # b and c ran side by side
    assert by["join"].start_time >= max(by["b"].end_time, by["c"].end_time)


def test_stage_enabled_false_skips_but_downstream_runs(engine: sa.Engine) -> None:
    body = pipeline(quick("1", stageEnabled={"type": "expression", "expression": "false"}),
                    quick("2", ("1",)))
    exe = run(engine, body)
    assert statuses(exe) == {"1": "SKIPPED", "2": "SUCCEEDED"}
    assert exe.status == S.SUCCEEDED
    assert "false" in exe.stage("1").context["stageEnabledResult"]


def test_stage_enabled_true_runs_and_blank_runs(engine: sa.Engine) -> None:
    body = pipeline(quick("1", stageEnabled={"type": "expression", "expression": "TRUE"}),
                    quick("2", ("1",), stageEnabled={"type": "expression", "expression": " "}))
    exe = run(engine, body)
    assert statuses(exe) == {"1": "SUCCEEDED", "2": "SUCCEEDED"}


def test_stage_timeout_fails_the_stage_with_a_reason(engine: sa.Engine) -> None:
    body = pipeline(stage("1", "wait", "long wait", waitTime=60, stageTimeoutMs=200))
    exe = run(engine, body)
    assert exe.status == S.TERMINAL
    err = exe.stage("1").context["exception"]["details"]["error"]
    assert err == "WaitTask of stage long wait timed out after 0.2s"


def test_legacy_linear_pipeline_runs_in_order(engine: sa.Engine) -> None:
    body = {"application": "app", "name": "legacy", "stages": [
        {"type": "wait", "name": "one", "waitTime": 0}, {"type": "wait", "name": "two", "waitTime": 0}]}
    exe = run(engine, body)
    one, two = exe.stages
    assert (one.ref_id, two.ref_id, two.requisite_stage_ref_ids) == ("0", "1", ["0"])
    assert two.start_time >= one.end_time and exe.status == S.SUCCEEDED


def _judgment_pipeline() -> dict:
    return pipeline(
        stage("1", "manualJudgment", "设置灰度比例", customParamConfig=[
            {"name": "canary_ratio", "type": "int", "min": 0, "max": 100, "required": True, "default": "10"}]),
        quick("2", ("1",)))


def test_judgment_validation_refuses_and_keeps_waiting(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            config = repo.get(repo.save(_judgment_pipeline(), actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="alice")
            await ex.wait_for_stage(exe.id, "设置灰度比例", {S.RUNNING})
            from graylane.errors import ValidationError

            with pytest.raises(ValidationError, match=r"canary_ratio: 150 is above the maximum 100"):
                await ex.update_stage(exe.id, "设置灰度比例", {"judgmentStatus": "continue",
                                                           "customParams": {"canary_ratio": "150"}}, user="bob")
            with pytest.raises(ValidationError, match="not an integer"):
                await ex.update_stage(exe.id, "设置灰度比例", {"judgmentStatus": "continue",
                                                           "customParams": {"canary_ratio": "lots"}}, user="bob")
            st = ex.get(exe.id).stage("设置灰度比例")
            assert st.status == S.RUNNING and "judgmentStatus" not in st.context
            await ex.update_stage(exe.id, "设置灰度比例", {"judgmentStatus": "continue",
                                                       "customParams": {"canary_ratio": 50}}, user="bob")
            done = await ex.wait_until_complete(exe.id)
            st = done.stage("设置灰度比例")
            assert done.status == S.SUCCEEDED
            assert st.context["customParams"] == {"canary_ratio": "50"}
            assert st.context["lastModifiedBy"] == "bob" and st.last_modified["user"] == "bob"
            actions = [(a["user"], a["action"]) for a in ex.repo.audit(exe.id)]
            assert actions == [("alice", "start"), ("bob", "judgment")]
        finally:
            await ex.stop()

    asyncio.run(go())


def test_judgment_stop_follows_fail_pipeline(engine: sa.Engine) -> None:
    async def go(fail_pipeline: bool) -> Any:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            body = pipeline(stage("1", "manualJudgment", "gate", failPipeline=fail_pipeline,
                                  judgmentInputs=[{"value": "yes"}, {"value": "no"}]),
                            quick("2", ("1",)), name=f"stop-{fail_pipeline}")
            config = repo.get(repo.save(body, actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            from graylane.errors import ValidationError

            with pytest.raises(ValidationError, match="not one of the options: yes, no"):
                await ex.update_stage(exe.id, "gate", {"judgmentStatus": "stop", "judgmentInput": "maybe"}, user="t")
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "stop", "judgmentInput": "no"}, user="t")
            return await ex.wait_until_complete(exe.id)
        finally:
            await ex.stop()

    halted = asyncio.run(go(True))
    assert (str(halted.status), str(halted.stage("gate").status)) == ("TERMINAL", "TERMINAL")
    stopped = asyncio.run(go(False))
    assert (str(stopped.status), str(stopped.stage("gate").status)) == ("SUCCEEDED", "STOPPED")
    assert stopped.stage("2").status == S.NOT_STARTED


def test_skip_wait_pause_resume_cancel(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            config = repo.get(repo.save(pipeline(stage("1", "wait", "long", waitTime=3600),
                                                 stage("2", "wait", "longer", ("1",), waitTime=3600)),
                                        actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "long", {S.RUNNING})
            await ex.pause(exe.id, user="p")
            assert ex.get(exe.id).status == S.PAUSED and ex.get(exe.id).stage("long").status == S.PAUSED
            with pytest.raises(Conflict):
                await ex.pause(exe.id, user="p")
            await ex.resume(exe.id, user="p")
            await ex.update_stage(exe.id, "long", {"skipRemainingWait": True}, user="t")
            await ex.wait_for_stage(exe.id, "long", {S.SUCCEEDED})
            await ex.wait_for_stage(exe.id, "longer", {S.RUNNING})
            await ex.cancel(exe.id, user="c", reason="not today")
            done = await ex.wait_until_complete(exe.id)
            assert done.status == S.CANCELED and done.canceled_by == "c"
            assert done.cancellation_reason == "not today" and done.stage("longer").status == S.CANCELED
            assert done.paused["pausedBy"] == "p" and done.paused["resumedBy"] == "p"
            assert [a["action"] for a in ex.repo.audit(exe.id)] == ["start", "pause", "resume", "skipWait", "cancel"]
            with pytest.raises(NotFound):
                await ex.cancel("nope", user="c")
        finally:
            await ex.stop()

    asyncio.run(go())


def test_restart_stage_resets_it_and_downstream(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            config = repo.get(repo.save(pipeline(stage("1", "manualJudgment", "gate"), quick("2", ("1",))),
                                        actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "stop"}, user="t")
            done = await ex.wait_until_complete(exe.id)
            assert done.status == S.TERMINAL
            await ex.restart_stage(exe.id, "gate", user="r")
            st = await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            assert "judgmentStatus" not in st.context and st.context["restartDetails"]["restartedBy"] == "r"
            assert ex.get(exe.id).status == S.RUNNING
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "continue"}, user="t")
            done = await ex.wait_until_complete(exe.id)
            assert done.status == S.SUCCEEDED and done.stage("2").status == S.SUCCEEDED
        finally:
            await ex.stop()

    asyncio.run(go())


def test_limit_concurrent_buffers_and_newest_waiting_wins(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            config = repo.get(repo.save(pipeline(stage("1", "manualJudgment", "gate")), actor="user:t").id)
            first = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(first.id, "gate", {S.RUNNING})
            second = await ex.start_execution(config, {}, user="t")
            third = await ex.start_execution(config, {}, user="t")
            for e in (second, third):
                for _ in range(100):
                    if ex.get(e.id).status == S.BUFFERED:
                        break
                    await asyncio.sleep(0.02)
                assert ex.get(e.id).status == S.BUFFERED
            await ex.update_stage(first.id, "gate", {"judgmentStatus": "continue"}, user="t")
            await ex.wait_for_stage(third.id, "gate", {S.RUNNING})
            done2 = await ex.wait_until_complete(second.id)
            assert done2.status == S.CANCELED and "superceded" in done2.cancellation_reason
        finally:
            await ex.stop()

    asyncio.run(go())


def test_max_concurrent_executions_buffers_beyond_the_limit(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            body = pipeline(stage("1", "manualJudgment", "gate"), name="two-at-a-time", limitConcurrent=False,
                            maxConcurrentExecutions=2, keepWaitingPipelines=True)
            config = repo.get(repo.save(body, actor="user:t").id)
            runs = [await ex.start_execution(config, {}, user="t") for _ in range(3)]
            await ex.wait_for_stage(runs[0].id, "gate", {S.RUNNING})
            await ex.wait_for_stage(runs[1].id, "gate", {S.RUNNING})
            for _ in range(100):
                if ex.get(runs[2].id).status == S.BUFFERED:
                    break
                await asyncio.sleep(0.02)
            assert ex.get(runs[2].id).status == S.BUFFERED
            await ex.update_stage(runs[0].id, "gate", {"judgmentStatus": "continue"}, user="t")
            await ex.wait_for_stage(runs[2].id, "gate", {S.RUNNING})  # kept waiting, then started
        finally:
            await ex.stop()

    asyncio.run(go())


def test_required_judgment_roles_refuse_other_users(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            body = pipeline(stage("1", "manualJudgment", "gate", requiredJudgmentRoles=["release-managers"]))
            config = repo.get(repo.save(body, actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            from graylane.errors import GraylaneError

            with pytest.raises(GraylaneError, match="requires one of the roles release-managers"):
                await ex.update_stage(exe.id, "gate", {"judgmentStatus": "continue"}, user="eve", roles=["viewer"])
            assert ex.get(exe.id).stage("gate").status == S.RUNNING
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "continue"}, user="rm",
                                  roles=["release-managers"])
            assert (await ex.wait_until_complete(exe.id)).status == S.SUCCEEDED
        finally:
            await ex.stop()

    asyncio.run(go())


def test_execution_window_holds_the_stage_until_it_opens(engine: sa.Engine) -> None:
    from datetime import datetime, timedelta

    tomorrow = (datetime.now() + timedelta(days=1)).isoweekday() % 7 + 1  # java.util.Calendar numbering

    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            body = pipeline(quick("1", restrictExecutionDuringTimeWindow=True,
                                  restrictedExecutionWindow={"days": [tomorrow]}))
            config = repo.get(repo.save(body, actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            st = await ex.wait_for_stage(exe.id, "wait 1", {S.RUNNING})
            for _ in range(100):
                st = ex.get(exe.id).stage("wait 1")
                if "executionWindowOpensAt" in st.context:
                    break
                await asyncio.sleep(0.02)
            assert st.tasks[0].name == "suspendExecutionDuringTimeWindow" and st.tasks[0].status == S.RUNNING
            assert st.context["executionWindowOpensAt"].startswith(
                (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d"))
            await ex.cancel(exe.id, user="t")
            assert (await ex.wait_until_complete(exe.id)).status == S.CANCELED
        finally:
            await ex.stop()

    asyncio.run(go())


def test_pipeline_trigger_and_cron_trigger_start_executions(engine: sa.Engine) -> None:
    from graylane.pipelines.triggers import fire_due_crons, on_execution_complete

    now = [1_800_000_000.0]

    async def go() -> None:
        ex = Executor(engine, clock=lambda: now[0])
        ex.completion_hooks.append(lambda e: on_execution_complete(ex, e))
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            upstream = repo.get(repo.save(pipeline(quick("1"), name="upstream"), actor="user:t").id)
            repo.save(pipeline(quick("1"), name="downstream", triggers=[
                {"type": "pipeline", "pipeline": upstream["id"], "status": ["successful"], "enabled": True}]),
                actor="user:t")
            repo.save(pipeline(quick("1"), name="nightly", triggers=[
                {"type": "cron", "cronExpression": "0 0 * * * ?", "enabled": True}]), actor="user:t")
            first = await ex.start_execution(upstream, {}, user="t")
            await ex.wait_until_complete(first.id)
            for _ in range(200):
                down = ex.repo.list(pipeline_config_id=repo.get("downstream")["id"])
                if down:
                    break
                await asyncio.sleep(0.02)
            assert down and down[0]["trigger"]["type"] == "pipeline"
            assert down[0]["trigger"]["parentExecution"]["id"] == first.id
            with pytest.raises(Conflict):  # a refused command on a finished run must not re-fire its triggers
                await ex.cancel(first.id, user="t")
            await asyncio.sleep(0.1)
            assert len(ex.repo.list(pipeline_config_id=repo.get("downstream")["id"])) == 1
            assert await fire_due_crons(ex) == []  # first sight: remember the time, do not fire
            now[0] = (now[0] // 3600 + 1) * 3600 + 5  # 5s past the next full hour: "0 0 * * * ?" is due
            started = await fire_due_crons(ex)
            assert len(started) == 1 and ex.get(started[0]).trigger["type"] == "cron"
            assert await fire_due_crons(ex) == []  # fired once, not again
        finally:
            await ex.stop()

    asyncio.run(go())


def test_restart_after_a_halt_also_reruns_the_branches_it_canceled(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            body = pipeline(stage("b", "wait", "other branch", waitTime=3600), stage("g", "manualJudgment", "gate"),
                            quick("after", ("b", "g")), name="halt-restart")
            config = repo.get(repo.save(body, actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "stop"}, user="t")
            halted = await ex.wait_until_complete(exe.id)
            assert statuses(halted) == {"b": "CANCELED", "g": "TERMINAL", "after": "NOT_STARTED"}
            await ex.restart_stage(exe.id, "gate", user="r")
            await ex.wait_for_stage(exe.id, "other branch", {S.RUNNING})
            await ex.update_stage(exe.id, "other branch", {"skipRemainingWait": True}, user="r")
            await ex.update_stage(exe.id, "gate", {"judgmentStatus": "continue"}, user="r")
            done = await ex.wait_until_complete(exe.id)
            assert done.status == S.SUCCEEDED and statuses(done)["after"] == "SUCCEEDED"
        finally:
            await ex.stop()

    asyncio.run(go())


def test_disabled_pipelines_refuse_to_start_and_only_finished_runs_can_be_deleted(engine: sa.Engine) -> None:
    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            off = repo.get(repo.save(pipeline(quick("1"), name="off", disabled=True), actor="user:t").id)
            with pytest.raises(Conflict, match="disabled and cannot be started"):
                await ex.start_execution(off, {}, user="t")
            config = repo.get(repo.save(pipeline(stage("1", "manualJudgment", "gate"), name="del"),
                                        actor="user:t").id)
            exe = await ex.start_execution(config, {}, user="t")
            await ex.wait_for_stage(exe.id, "gate", {S.RUNNING})
            with pytest.raises(Conflict, match="cancel it before deleting"):
                await ex.delete_execution(exe.id, user="t")
            await ex.cancel(exe.id, user="t")
            await ex.wait_until_complete(exe.id)
            await ex.delete_execution(exe.id, user="t")
            with pytest.raises(NotFound):
                ex.get(exe.id)
            assert ex.repo.audit(exe.id) == []
        finally:
            await ex.stop()

    asyncio.run(go())
