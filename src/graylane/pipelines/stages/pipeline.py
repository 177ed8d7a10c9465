"""`pipeline`: start a child pipeline with `pipelineParameters`; with waitForCompletion, follow it to the end."""

from __future__ import annotations

from typing import Any

from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def child_id(stage: StageView) -> str:
    """Deterministic, so a resumed start task finds the child it already created instead of starting another."""
    return f"{stage.stage_id}-{stage.attempt}"


class StartPipelineTask(Task):
    name = "startPipeline"

    async def run(self, stage: StageView) -> TaskResult:
        children = stage.services.child_pipelines()
        ctx = stage.context
        cid = child_id(stage)
        if not children.exists(cid):
            parent = {"id": stage.execution_id, "name": stage.execution.get("name"),
                      "application": stage.execution.get("application")}
            application = ctx.get("pipelineApplication") or ctx.get("application")
            await children.start(str(ctx.get("pipeline") or ""), application,
                                 parameters=dict(ctx.get("pipelineParameters") or {}), parent=parent,
                                 parent_stage_id=stage.stage_id, user=stage.user, execution_id=cid)
        exe = children.get(cid)
        return TaskResult.succeeded({"executionId": cid, "executionName": exe.name})

    async def on_cancel(self, stage: StageView) -> None:
        await _cancel_child(stage)


async def _cancel_child(stage: StageView) -> None:
    children = stage.services.children
    cid = str(stage.context.get("executionId") or child_id(stage))
    if children is not None and children.exists(cid) and not children.get(cid).status.is_complete:
        await children.cancel(cid, user=stage.user, reason=f"parent execution {stage.execution_id} was canceled")


class MonitorPipelineTask(Task):
    name = "monitorPipeline"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        cid = str(stage.context.get("executionId") or child_id(stage))
        child = stage.services.child_pipelines().get(cid)
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
