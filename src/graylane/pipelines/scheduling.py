"""What the scheduler reads while it runs a stage: the stage's tasks, their timeouts, and the view a task gets.

Pure functions of an execution and a stage; pipelines/executor.py calls them and owns every write.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.services import TaskServices
from graylane.pipelines.stages import definition
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageView, Task
from graylane.pipelines.tx import Tx, stage_event
from graylane.pipelines.window import TimeWindowTask


def task_impls(stage: Stage) -> list[Task]:
    """The stage's tasks as its type plans them, behind the execution window's when the stage has one."""
    impls = definition(stage.type).tasks(stage.context)
    if stage.context.get("restrictExecutionDuringTimeWindow"):
        impls = [TimeWindowTask(), *impls]
    return impls


def timeout(stage: Stage) -> tuple[int, int] | None:
    """(deadline ms, limit ms) of the running task: stageTimeoutMs from stage start, else the task's own
    timeout from task start; paused time does not count (orca RunTaskHandler.checkForTimeout)."""
    task = stage.current_task()
    if task is None or stage.start_time is None:
        return None
    override = stage.context.get("stageTimeoutMs")
    with contextlib.suppress(TypeError, ValueError):
        if override is not None:
            return stage.start_time + stage.paused_ms + int(override), int(override)
    impls = task_impls(stage)
    idx = stage.tasks.index(task)
    limit = impls[idx].timeout_ms if idx < len(impls) else None
    if limit is None or task.start_time is None:
        return None
    return task.start_time + stage.paused_ms + limit, limit


def timeout_deadline(stage: Stage) -> int | None:
    found = timeout(stage)
    return found[0] if found else None


def user_of(exe: Execution) -> str:
    return str((exe.authentication or {}).get("user") or exe.trigger.get("user") or "anonymous")


def view(exe: Execution, stage: Stage, services: TaskServices, now: int, *, detached: bool = False) -> StageView:
    """What a task sees. `detached` (tasks that run outside the step) copies everything now; an inline
    task runs before the driver changes anything, so it reads the live state, built only if it asks."""
    if detached:
        snapshot = copy.deepcopy(exe.to_json())

        def execution_json() -> dict[str, Any]:
            return snapshot

        build: Callable[[], dict[str, Any]] = execution_json
        context = copy.deepcopy(stage.context)
    else:
        build, context = exe.to_json, dict(stage.context)
    return StageView(execution_id=exe.id, stage_id=stage.id, ref_id=stage.ref_id, name=stage.name,
                     type=stage.type, context=context, outputs=dict(stage.outputs),
                     start_time=stage.start_time or now, now_ms=now, paused_ms=stage.paused_ms,
                     execution_json=build, user=user_of(exe), services=services, attempt=stage.attempt)


def duration(ms: int) -> str:
    seconds = max(0, ms) / 1000
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def is_startable(exe: Execution, stage: Stage) -> bool:
    return all(up.status.lets_downstream_run for up in exe.upstream(stage))


def completion_status(exe: Execution) -> ExecutionStatus | None:
    """orca CompleteExecutionHandler, once no task is in flight: None while anything runs or can start."""
    if any(st.status in (S.RUNNING, S.PAUSED) for st in exe.stages):
        return None
    if any(st.status == S.NOT_STARTED and is_startable(exe, st) for st in exe.stages):
        return None
    statuses = [st.status for st in exe.stages]
    if S.TERMINAL in statuses:
        return S.TERMINAL
    if S.CANCELED in statuses:
        return S.CANCELED
    if any(st.status == S.STOPPED and st.complete_other_branches_then_fail for st in exe.stages):
        return S.TERMINAL
    return S.SUCCEEDED


def halted(exe: Execution) -> bool:
    """The execution ended otherwise than SUCCEEDED (what is still running is canceled)."""
    return exe.status.is_complete and exe.status != S.SUCCEEDED


def cancel_started(exe: Execution, tx: Tx, now: int) -> None:
    """Stages the halt caught with every upstream stage complete end CANCELED, not NOT_STARTED: in orca the
    upstream stage's CompleteStageHandler.startNext() already queued their StartStage (whatever the
    execution's status), StartStageHandler starts them, and RunTaskHandler completes their first task CANCELED
    because the execution is complete. A recorded Spinnaker execution shows it (tests/pipelines/compat)."""
    for st in exe.stages:
        if st.status == S.NOT_STARTED and is_startable(exe, st):
            st.status, st.start_time, st.end_time = S.CANCELED, now, now
            tx.touch(st)
            tx.events.append(stage_event(exe, st, now))
