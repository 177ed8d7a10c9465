"""The executor's supporting handlers: task timeouts, what a task sees, events, completion hooks and the queue.

Mixed into Executor (pipelines/executor.py), which owns the drivers and persistence; kept apart so each module
stays one concept: scheduling state transitions there, and here what those transitions read and announce.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graylane.errors import GraylaneError
from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.stages import definition
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageView
from graylane.pipelines.tasks import Task as TaskImpl
from graylane.pipelines.window import TimeWindowTask

if TYPE_CHECKING:
    from graylane.events import EventBus
    from graylane.pipelines.repository import ExecutionRepository
    from graylane.pipelines.services import TaskServices

log = logging.getLogger(__name__)

SUPERSEDED = ("This execution was queued but then canceled because a newer queued execution superceded it. "
              "This pipeline is configured to automatically cancel waiting executions.")


class SchedulingSupport:
    """Needs the executor's `now_ms`, `repo`, `bus`, `services`, `completion_hooks`, `wake`, `cancel` and
    `_ensure_driver`."""

    repo: ExecutionRepository
    bus: EventBus
    services: TaskServices
    completion_hooks: list[Callable[[Execution], Any]]

    if TYPE_CHECKING:  # provided by Executor and Commands (declared here for the type checker only)
        def now_ms(self) -> int: ...

        def wake(self, execution_id: str) -> None: ...

        def _ensure_driver(self, execution_id: str, exe: Execution | None = None) -> Any: ...

        async def cancel(self, execution_id: str, *, user: str,
                         reason: str | None = None) -> dict[str, Any]: ...

    def _task_impls(self, stage: Stage) -> list[TaskImpl]:
        impls = definition(stage.type).tasks(stage.context)
        if stage.context.get("restrictExecutionDuringTimeWindow"):
            impls = [TimeWindowTask(), *impls]
        return impls

    def _timeout(self, exe: Execution, stage: Stage) -> tuple[int, int] | None:
        """(deadline ms, limit ms) of the running task: stageTimeoutMs from stage start, else the task's own
        timeout from task start; paused time does not count (orca RunTaskHandler.checkForTimeout)."""
        task = stage.current_task()
        if task is None or stage.start_time is None:
            return None
        override = stage.context.get("stageTimeoutMs")
        with contextlib.suppress(TypeError, ValueError):
            if override is not None:
                return stage.start_time + stage.paused_ms + int(override), int(override)
        impls = self._task_impls(stage)
        idx = stage.tasks.index(task)
        limit = impls[idx].timeout_ms if idx < len(impls) else None
        if limit is None or task.start_time is None:
            return None
        return task.start_time + stage.paused_ms + limit, limit

    def _timeout_deadline(self, exe: Execution, stage: Stage) -> int | None:
        found = self._timeout(exe, stage)
        return found[0] if found else None

    # ---- completion

    async def _on_complete(self, exe: Execution) -> None:
        if exe.pipeline_config_id and (exe.limit_concurrent or exe.max_concurrent_executions):
            self._start_waiting(exe)
        parent = (exe.trigger.get("parentExecution") or {}).get("id") if isinstance(exe.trigger, dict) else None
        if parent:
            self.wake(parent)
        for hook in self.completion_hooks:
            try:
                res = hook(exe)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:
                log.exception("execution %s: completion hook failed", exe.id)

    def _start_waiting(self, exe: Execution) -> None:
        """orca StartWaitingExecutions: newest queued starts; older ones are canceled unless keepWaitingPipelines."""
        queued = self.repo.count_by_status(exe.pipeline_config_id, (S.BUFFERED,))
        if not queued:
            return
        if exe.keep_waiting_pipelines:
            self._ensure_driver(queued[0][0]).wake.set()
            return
        for execution_id, _, _ in queued[:-1]:
            asyncio.get_running_loop().create_task(self._supersede(execution_id))
        self._ensure_driver(queued[-1][0]).wake.set()

    async def _supersede(self, execution_id: str) -> None:
        with contextlib.suppress(GraylaneError):
            await self.cancel(execution_id, user="system", reason=SUPERSEDED)

    # ---- what tasks see, and what is announced

    def _publish(self, event: dict[str, Any]) -> None:
        self.bus.publish("execution", **event)

    def _exec_event(self, exe: Execution) -> dict[str, Any]:
        return {"kind": "execution", "executionId": exe.id, "status": str(exe.status),
                "pipelineConfigId": exe.pipeline_config_id, "name": exe.name, "time": self.now_ms()}

    def _stage_event(self, exe: Execution, stage: Stage, kind: str = "stage") -> dict[str, Any]:
        return {"kind": kind, "executionId": exe.id, "stageId": stage.id, "refId": stage.ref_id,
                "name": stage.name, "type": stage.type, "status": str(stage.status), "time": self.now_ms()}

    def _user(self, exe: Execution) -> str:
        return str((exe.authentication or {}).get("user") or exe.trigger.get("user") or "anonymous")

    def _view(self, exe: Execution, stage: Stage, *, detached: bool = False) -> StageView:
        """What a task sees. `detached` (tasks that run outside the step) copies everything now; an inline
        task runs before the driver changes anything, so it reads the live state, built only if it asks."""
        if detached:
            snapshot = copy.deepcopy(exe.to_json())
            execution_json: Callable[[], dict[str, Any]] = lambda: snapshot
            context = copy.deepcopy(stage.context)
        else:
            execution_json, context = exe.to_json, dict(stage.context)
        return StageView(execution_id=exe.id, stage_id=stage.id, ref_id=stage.ref_id, name=stage.name,
                         type=stage.type, context=context, outputs=dict(stage.outputs),
                         start_time=stage.start_time or self.now_ms(), now_ms=self.now_ms(),
                         paused_ms=stage.paused_ms, execution_json=execution_json, user=self._user(exe),
                         services=self.services, attempt=stage.attempt)


def duration(ms: int) -> str:
    seconds = max(0, ms) / 1000
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"
