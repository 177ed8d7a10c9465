"""Failure options as orca combines them, for every stage type: stage, sibling branch, downstream, execution.

Graph of every case: `1` (the stage under test) -> `2` (downstream); `3` a sibling branch still running when
`1` fails. Orca's rules: RunTaskHandler maps a TERMINAL task through Stage.failureStatus()
(continuePipeline -> FAILED_CONTINUE, failPipeline null/true -> TERMINAL, else STOPPED); CompleteExecutionHandler
cancels running branches on TERMINAL, waits for the others on STOPPED and then succeeds, unless a STOPPED stage
has completeOtherBranchesThenFail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository
from graylane.pipelines.stages import STAGE_TYPE_NAMES
from graylane.pipelines.status import ExecutionStatus as S

RUN_ON_POSTGRES = False

# How each stage type fails on its own, with no outside system (no target is configured in these executors).
FAILING: dict[str, dict[str, Any]] = {
    "wait": {"waitTime": "not-a-number"},
    "checkPreconditions": {"preconditions": [{"type": "expression", "context": {"expression": "false"}}]},
    "manualJudgment": {"instructions": "stop me"},  # judged `stop` by the test
    "evaluateVariables": {"variables": [{"key": "x", "value": "${#stage('no such stage')['context']['y']}"}]},
    "webhook": {"method": "POST"},  # no url
    "pipeline": {"pipeline": "child-that-fails"},
    "deployManifest": {"source": "text", "manifests": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}]},
    "deleteManifest": {"manifestName": "configmap c", "location": "default"},
    "patchManifest": {"manifestName": "configmap c", "location": "default", "patchBody": {"data": {"a": "c"}}},
    "scaleManifest": {"manifestName": "deployment d", "location": "default", "replicas": 2},
    "undoRolloutManifest": {"manifestName": "deployment d", "location": "default"},
    "runJobManifest": {"source": "text", "manifest": {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                                                          "containers": [{"name": "main", "image": "busybox"}]}}}}},
    "findArtifactFromExecution": {"application": "nowhere", "pipeline": "no-such-pipeline",
                                  "expectedArtifact": {"id": "a", "matchArtifact": {"type": "docker/image"}},
                                  "executionOptions": {"successful": True}},
    "findArtifactsFromResource": {"manifestName": "deployment d", "location": "default"},
    "trafficShift": {"service": "reviews", "weights": {"v1": 90, "v2": 10}},
    "canaryRollout": {"service": "reviews", "stableSubset": "v1", "canarySubset": "v2", "steps": [{"setWeight": 10}]},
    "blueGreen": {"service": "reviews", "activeSubset": "v1", "previewSubset": "v2",
                  "preview": {"headers": {"x-preview": "true"}}},
    "kayentaCanary": {"canaryConfig": {"canaryConfigName": "reviews", "lifetimeDuration": "PT1S",
                                       "scopes": [{"controlScope": "v1", "experimentScope": "v2"}]}},
    "analysis": {"builtins": {"canary": {"destination_version": "v2"}, "interval": "1s", "count": 1}},
}

OPTIONS = [
    pytest.param({}, "TERMINAL", "TERMINAL", id="default"),
    pytest.param({"failPipeline": True, "continuePipeline": False, "completeOtherBranchesThenFail": False},
                 "TERMINAL", "TERMINAL", id="halt-pipeline"),
    pytest.param({"failPipeline": False, "continuePipeline": False, "completeOtherBranchesThenFail": False},
                 "STOPPED", "SUCCEEDED", id="halt-branch"),
    pytest.param({"failPipeline": False, "continuePipeline": False, "completeOtherBranchesThenFail": True},
                 "STOPPED", "TERMINAL", id="halt-branch-then-fail"),
    pytest.param({"failPipeline": False, "continuePipeline": True, "completeOtherBranchesThenFail": False},
                 "FAILED_CONTINUE", "SUCCEEDED", id="ignore-failure"),
]


def _stage(ref: str, stype: str, name: str, requires: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    return {"refId": ref, "type": stype, "name": name, "requisiteStageRefIds": list(requires), **fields}


async def _judge_stop_when_waiting(ex: Executor, execution_id: str) -> None:
    await ex.wait_for_stage(execution_id, "under test", {S.RUNNING}, timeout=10)
    await ex.update_stage(execution_id, "under test", {"judgmentStatus": "stop"}, user="alice")


def _run(engine: sa.Engine, stype: str, options: dict[str, Any],
         sibling_wait_s: float = 0.4) -> tuple[dict[str, str], str, dict[str, Any]]:
    body = {"application": "app", "name": "p", "stages": [
        _stage("1", stype, "under test", **FAILING[stype], **options),
        _stage("2", "wait", "downstream", ("1",), waitTime=0),
        _stage("3", "wait", "sibling", waitTime=sibling_wait_s)]}

    async def go() -> tuple[dict[str, str], str, dict[str, Any]]:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            repo.save({"application": "app", "name": "child-that-fails", "stages": [
                _stage("1", "wait", "bad wait", waitTime="soon")]}, actor="user:test")
            config = repo.get(repo.save(body, actor="user:test").id)
            exe = await ex.start_execution(config, {}, user="test")
            if stype == "manualJudgment":
                await _judge_stop_when_waiting(ex, exe.id)
            done = await ex.wait_until_complete(exe.id, timeout=20)
            under = done.stage("1")
            assert under is not None
            return {s.name: str(s.status) for s in done.stages}, str(done.status), under.context
        finally:
            await ex.stop()

    return asyncio.run(go())


def test_every_stage_type_has_a_failing_case() -> None:
    assert set(FAILING) == set(STAGE_TYPE_NAMES)


@pytest.mark.parametrize("stype", sorted(FAILING))
@pytest.mark.parametrize(("options", "stage_status", "execution_status"), OPTIONS)
def test_failure_options_for_every_stage_type(engine: sa.Engine, stype: str, options: dict[str, Any],
                                              stage_status: str, execution_status: str) -> None:
    if stype not in STAGE_TYPE_NAMES:
        pytest.fail(f"{stype} is not a stage type Graylane runs")
    statuses, execution, context = _run(engine, stype, options)
    assert statuses["under test"] == stage_status
    assert execution == execution_status
    # downstream of a halted stage never runs; of an ignored failure it does
    assert statuses["downstream"] == ("SUCCEEDED" if stage_status == "FAILED_CONTINUE" else "NOT_STARTED")
    # halting the pipeline cancels running branches at once; otherwise they complete
    assert statuses["sibling"] == ("CANCELED" if stage_status == "TERMINAL" else "SUCCEEDED")
    assert context["exception"]["details"]["error"]  # a readable reason, whatever the options


# checkPreconditions: the stage's options and the precondition's own failPipeline (orca's synthetic child
# stage context = stage context + precondition config; the parent maps a TERMINAL child through its own options).
PRECONDITION_TABLE = [
    # (stage options, precondition failPipeline, stage, execution)
    pytest.param({}, True, "TERMINAL", "TERMINAL", id="stage-default+pre-true"),
    pytest.param({}, False, "STOPPED", "SUCCEEDED", id="stage-default+pre-false"),
    pytest.param({}, None, "TERMINAL", "TERMINAL", id="stage-default+pre-unset"),
    pytest.param({"failPipeline": True}, True, "TERMINAL", "TERMINAL", id="stage-true+pre-true"),
    pytest.param({"failPipeline": True}, False, "STOPPED", "SUCCEEDED", id="stage-true+pre-false"),
    pytest.param({"failPipeline": False}, True, "STOPPED", "SUCCEEDED", id="halt-this-branch"),
    pytest.param({"failPipeline": False}, False, "STOPPED", "SUCCEEDED", id="stage-false+pre-false"),
    pytest.param({"failPipeline": False}, None, "STOPPED", "SUCCEEDED", id="stage-false+pre-unset"),
    pytest.param({"failPipeline": False, "completeOtherBranchesThenFail": True}, True, "STOPPED", "TERMINAL",
                 id="stage-false-then-fail+pre-true"),
    pytest.param({"failPipeline": True, "completeOtherBranchesThenFail": True}, False, "STOPPED", "TERMINAL",
                 id="stage-true-then-fail+pre-false"),
    pytest.param({"failPipeline": False, "continuePipeline": True}, True, "FAILED_CONTINUE", "SUCCEEDED",
                 id="stage-continue+pre-true"),
    pytest.param({"failPipeline": False, "continuePipeline": True}, False, "FAILED_CONTINUE", "SUCCEEDED",
                 id="stage-continue+pre-false"),
]


@pytest.mark.parametrize(("options", "pre_fail", "stage_status", "execution_status"), PRECONDITION_TABLE)
def test_precondition_fail_pipeline_combines_with_the_stage_options(
        engine: sa.Engine, options: dict[str, Any], pre_fail: bool | None, stage_status: str,
        execution_status: str) -> None:
    pre: dict[str, Any] = {"type": "expression", "context": {"expression": "${ 1 > 2 }"}}
    if pre_fail is not None:
        pre["failPipeline"] = pre_fail
    FAILING["checkPreconditions"] = {"preconditions": [pre]}
    try:
        statuses, execution, context = _run(engine, "checkPreconditions", options)
    finally:
        FAILING["checkPreconditions"] = {"preconditions": [
            {"type": "expression", "context": {"expression": "false"}}]}
    assert statuses["under test"] == stage_status
    assert execution == execution_status
    assert statuses["downstream"] == ("SUCCEEDED" if stage_status == "FAILED_CONTINUE" else "NOT_STARTED")
    assert statuses["sibling"] == ("CANCELED" if stage_status == "TERMINAL" else "SUCCEEDED")
    assert context["preconditionResults"][0]["passed"] is False
    assert "precondition 0 of stage under test failed" in context["exception"]["details"]["error"]


def test_a_stage_whose_upstream_completed_as_the_pipeline_halted_ends_canceled(engine: sa.Engine) -> None:
    """orca: CompleteStageHandler.startNext() queues StartStage for the downstream stages of a stage that completes,
    whatever the execution's status; StartStageHandler starts them and RunTaskHandler completes their first task
    CANCELED once the execution is complete. So a branch that completed in the same moment another branch halted the
    pipeline shows its next stage CANCELED, never NOT_STARTED (recorded in Spinnaker's execution
    01EH5F35DVKYEFEFBX2B93YKGF, tests/pipelines/compat). Here both inline stages run in one scheduler step."""
    body = {"application": "app", "name": "p", "stages": [
        _stage("1", "evaluateVariables", "ok branch", variables=[{"key": "x", "value": "1"}]),
        _stage("2", "wait", "after ok", ("1",), waitTime=0),
        _stage("3", "checkPreconditions", "halting branch", **FAILING["checkPreconditions"]),
        _stage("4", "wait", "after halt", ("3",), waitTime=0)]}

    async def go() -> tuple[dict[str, str], str]:
        ex = Executor(engine)
        await ex.start()
        try:
            repo = PipelineRepository(engine)
            exe = await ex.start_execution(repo.get(repo.save(body, actor="user:test").id), {}, user="test")
            done = await ex.wait_until_complete(exe.id, timeout=20)
            return {s.name: str(s.status) for s in done.stages}, str(done.status)
        finally:
            await ex.stop()

    statuses, execution = asyncio.run(go())
    assert execution == "TERMINAL"
    assert statuses == {"ok branch": "SUCCEEDED", "after ok": "CANCELED", "halting branch": "TERMINAL",
                        "after halt": "NOT_STARTED"}


class _Slow(BaseHTTPRequestHandler):
    """Answers 200 after `delay_s`: a webhook call still under way when the other branch halts the pipeline."""

    delay_s = 0.6
    calls = 0
    arrived = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        type(self).calls += 1
        type(self).arrived.set()
        time.sleep(type(self).delay_s)
        data = b'{"done": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def slow_server() -> Iterator[str]:
    _Slow.calls, _Slow.arrived = 0, threading.Event()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _halt_during_a_call(url: str) -> dict[str, Any]:
    """Branch `call` (a webhook still waiting for its answer, then `after call`) beside a branch that halts the
    pipeline once the call has reached the server."""
    return {"application": "app", "name": "p", "stages": [
        _stage("1", "webhook", "call", url=url, method="GET"),
        _stage("2", "wait", "after call", ("1",), waitTime=0),
        _stage("3", "manualJudgment", "halt", failPipeline=True)]}


async def _halt_while_the_call_is_under_way(ex: Executor, engine: sa.Engine, slow_server: str) -> Any:
    """Start the halt-during-a-call pipeline, wait until its webhook call reached the slow server, then stop the
    other branch's judgment: the execution halts while the call is under way."""
    repo = PipelineRepository(engine)
    config = repo.get(repo.save(_halt_during_a_call(f"{slow_server}/slow"), actor="user:test").id)
    exe = await ex.start_execution(config, {}, user="test")
    await ex.wait_for_stage(exe.id, "halt", {S.RUNNING}, timeout=10)
    assert await asyncio.to_thread(_Slow.arrived.wait, 10)
    await ex.update_stage(exe.id, "halt", {"judgmentStatus": "stop"}, user="alice")
    return exe


def test_a_task_call_under_way_when_the_pipeline_halts_completes_with_its_own_result(
        engine: sa.Engine, slow_server: str) -> None:
    """orca: CompleteExecutionHandler's CancelStage does not interrupt a task that is executing (it re-queues RunTask,
    which cancels tasks of a complete execution only before they run): the call completes, its stage ends with its
    result, and the stage that result lets start ends CANCELED. Recorded in Spinnaker's execution
    01EH5F35DVKYEFEFBX2B93YKGF (tests/pipelines/compat): the webhook branch ended FAILED_CONTINUE after the other
    branch's TERMINAL, and its Evaluate Variables stage CANCELED."""

    async def go() -> None:
        ex = Executor(engine)
        await ex.start()
        try:
            exe = await _halt_while_the_call_is_under_way(ex, engine, slow_server)
            halted = await ex.wait_until_complete(exe.id, timeout=10)
            assert str(halted.status) == "TERMINAL"
            assert str(halted.stage("1").status) == "RUNNING"  # the call is still under way, as in orca
            call = await ex.wait_for_stage(exe.id, "call", {S.SUCCEEDED, S.CANCELED, S.TERMINAL}, timeout=10)
            assert str(call.status) == "SUCCEEDED" and call.context["webhook"]["statusCodeValue"] == 200
            done = ex.get(exe.id)
            assert {s.name: str(s.status) for s in done.stages} == {
                "call": "SUCCEEDED", "after call": "CANCELED", "halt": "TERMINAL"}
            assert str(done.status) == "TERMINAL" and _Slow.calls == 1
        finally:
            await ex.stop()

    asyncio.run(go())


def test_a_call_lost_with_the_control_plane_after_the_halt_ends_canceled_on_resume(
        engine: sa.Engine, slow_server: str) -> None:
    """The control plane stops while the call is under way after the halt: the store has a TERMINAL execution with a
    RUNNING stage. The next start cancels it (orca's RunTaskHandler cancels a task of a complete execution)."""
    _Slow.delay_s = 5.0

    async def halt_and_stop() -> str:
        ex = Executor(engine)
        await ex.start()
        try:
            exe = await _halt_while_the_call_is_under_way(ex, engine, slow_server)
            await ex.wait_until_complete(exe.id, timeout=10)
            return exe.id
        finally:
            await ex.stop()  # the call is dropped with the process

    async def resume(execution_id: str) -> dict[str, str]:
        ex = Executor(engine)  # a new control plane on the same store
        assert str(ex.get(execution_id).stage("1").status) == "RUNNING"
        await ex.start()
        try:
            await ex.wait_for_stage(execution_id, "call", {S.CANCELED}, timeout=10)
            return {s.name: str(s.status) for s in ex.get(execution_id).stages}
        finally:
            await ex.stop()

    try:
        execution_id = asyncio.run(halt_and_stop())
        assert asyncio.run(resume(execution_id)) == {"call": "CANCELED", "after call": "NOT_STARTED",
                                                     "halt": "TERMINAL"}
    finally:
        _Slow.delay_s = 0.6
