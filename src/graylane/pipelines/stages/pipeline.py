"""`pipeline`: start a child pipeline with `pipelineParameters`; with waitForCompletion, follow it to the end."""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def child_id(stage: StageView) -> str:
    """Deterministic, so a resumed start task finds the child it already created instead of starting another."""
    return f"{stage.stage_id}-{stage.attempt}"


class StartPipelineTask(Task):
    name = "startPipeline"

    async def run(self, stage: StageView) -> TaskResult:
        ex = stage.services.executor
        if ex is None:
            raise GraylaneError("no executor to start the child pipeline")
        ctx = stage.context
        cid = child_id(stage)
        if not ex.repo.exists(cid):
            ref = str(ctx.get("pipeline") or "")
            app = ctx.get("pipelineApplication") or ctx.get("application")
            config = ex.pipelines.get(ref, application=app)
            from graylane.pipelines.triggers import build_trigger

            trigger = build_trigger(config, {
                "type": "pipeline", "user": stage.user, "parameters": dict(ctx.get("pipelineParameters") or {}),
                "parentExecution": {"id": stage.execution_id, "name": stage.execution.get("name"),
                                    "application": stage.execution.get("application")},
                "parentPipelineStageId": stage.stage_id}, ex)
            await ex.start_execution(config, trigger, user=stage.user, execution_id=cid)
        exe = ex.get(cid)
        return TaskResult.succeeded({"executionId": cid, "executionName": exe.name})

    async def on_cancel(self, stage: StageView) -> None:
        await _cancel_child(stage)


async def _cancel_child(stage: StageView) -> None:
    ex = stage.services.executor
    cid = stage.context.get("executionId") or child_id(stage)
    if ex is not None and ex.repo.exists(cid) and not ex.get(cid).status.is_complete:
        await ex.cancel(cid, user=stage.user, reason=f"parent execution {stage.execution_id} was canceled")


class MonitorPipelineTask(Task):
    name = "monitorPipeline"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        ex = stage.services.executor
        assert ex is not None
        cid = stage.context.get("executionId") or child_id(stage)
        child = ex.get(cid)
        if not child.status.is_complete:
            return TaskResult.running(2.0)  # the child wakes us when it completes
        if str(child.status) == "SUCCEEDED":
            outputs: dict[str, Any] = {}
            if not stage.context.get("skipDownstreamOutput"):
                for st in child.stages:
                    outputs.update(st.outputs)
            return TaskResult.succeeded({"status": str(child.status)}, outputs)
        return TaskResult.terminal(f"child pipeline {child.name} ({cid}) ended {child.status}",
                                   {"status": str(child.status)})

    async def on_cancel(self, stage: StageView) -> None:
        await _cancel_child(stage)


class PipelineStage(StageDefinition):
    type = "pipeline"

    def can_skip(self, context: dict[str, Any]) -> bool:
        return bool(context.get("skippable"))

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        tasks: list[Task] = [StartPipelineTask()]
        if context.get("waitForCompletion", True) is not False:
            tasks.append(MonitorPipelineTask())
        return tasks


DEFINITION = PipelineStage()
