"""The child-pipelines service tasks get (pipelines/services.py `ChildPipelines`): start and follow a child
pipeline, read other executions' results. Built by the executor over itself; tasks never see the scheduler."""

from __future__ import annotations

from typing import Any, Protocol

from graylane.pipelines.execution import Execution
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.triggers import Starter, build_trigger


class Scheduler(Starter, Protocol):
    """What this service needs of the executor, beyond what triggers need."""

    def get(self, execution_id: str) -> Execution: ...

    async def cancel(self, execution_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]: ...


class ExecutionChildren:
    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def exists(self, execution_id: str) -> bool:
        return self._scheduler.repo.exists(execution_id)

    def get(self, execution_id: str) -> Execution:
        return self._scheduler.get(execution_id)

    def config_id(self, ref: str, application: str | None) -> str:
        return str(self._scheduler.pipelines.get(ref, application)["id"])

    def recent(self, config_id: str, statuses: list[ExecutionStatus], limit: int) -> list[dict[str, Any]]:
        return self._scheduler.repo.list(pipeline_config_id=config_id, statuses=statuses, limit=limit)

    async def start(self, ref: str, application: str | None, *, parameters: dict[str, Any],
                    parent: dict[str, Any], parent_stage_id: str, user: str, execution_id: str) -> Execution:
        config = self._scheduler.pipelines.get(ref, application=application)
        trigger = build_trigger(config, {"type": "pipeline", "user": user, "parameters": parameters,
                                         "parentExecution": parent, "parentPipelineStageId": parent_stage_id},
                                self._scheduler)
        return await self._scheduler.start_execution(config, trigger, user=user, execution_id=execution_id)

    async def cancel(self, execution_id: str, *, user: str, reason: str) -> None:
        await self._scheduler.cancel(execution_id, user=user, reason=reason)
