"""Concurrency limits (orca `limitConcurrent` / `maxConcurrentExecutions`): who holds the slots, why a run waits.

Reads the execution repository; knows nothing of drivers or events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from graylane.pipelines.status import ExecutionStatus as S

if TYPE_CHECKING:
    from graylane.pipelines.execution import Execution
    from graylane.pipelines.repository import ExecutionRepository

HOLDING = (S.RUNNING, S.PAUSED)
Row = tuple[str, int, str]  # (execution id, build time, status)


def _rows(repo: ExecutionRepository, exe: Execution, statuses: tuple[S, ...], exclude: str | None = None) -> list[Row]:
    # ExecutionRepository's method named `list` hides the builtin in its own annotations: say the type here
    return cast("list[Row]", repo.count_by_status(exe.pipeline_config_id, statuses, exclude=exclude))


def queued(repo: ExecutionRepository, exe: Execution) -> list[Row]:
    """The BUFFERED executions of `exe`'s pipeline, oldest first."""
    return _rows(repo, exe, (S.BUFFERED,))


def limit_of(exe: Execution) -> int:
    """How many executions of this pipeline may run at once (0: no limit)."""
    return 1 if exe.limit_concurrent else exe.max_concurrent_executions


def holders(repo: ExecutionRepository, exe: Execution) -> list[tuple[str, int, str]]:
    """(id, build time, status) of the other executions of this pipeline holding a slot, oldest first."""
    if not exe.pipeline_config_id or not limit_of(exe):
        return []
    return _rows(repo, exe, HOLDING, exclude=exe.id)


def must_wait(repo: ExecutionRepository, exe: Execution) -> bool:
    limit = limit_of(exe)
    return bool(limit) and len(holders(repo, exe)) >= limit


def buffered_reason(repo: ExecutionRepository, exe: Execution) -> str | None:
    """Why a BUFFERED execution waits, in words a person reads; None when it does not wait."""
    if exe.status != S.BUFFERED:
        return None
    running = holders(repo, exe)
    limit = limit_of(exe)
    what = "limitConcurrent is true (one execution at a time)" if exe.limit_concurrent else \
        f"maxConcurrentExecutions is {limit}"
    ahead = [r for r in queued(repo, exe) if r[0] != exe.id]
    others = f"; {len(ahead)} other execution(s) queued too" if ahead else ""
    then = "the oldest queued execution starts next (keepWaitingPipelines)" if exe.keep_waiting_pipelines else \
        "the newest queued execution starts next and older queued ones are canceled"
    names = ", ".join(f"{eid} ({status})" for eid, _, status in running) or "another execution"
    return f"queued behind {names}: {what}{others}; when it ends, {then}"


SUPERSEDED = ("This execution was queued but then canceled because a newer queued execution superceded it. "
              "This pipeline is configured to automatically cancel waiting executions.")


def after_completion(repo: ExecutionRepository, exe: Execution) -> tuple[str | None, list[str]]:
    """orca StartWaitingExecutions when `exe` ends: (the queued execution to start, the queued ones to cancel).

    The newest queued starts and older ones are canceled, unless keepWaitingPipelines starts the oldest."""
    waiting = queued(repo, exe)
    if not waiting:
        return None, []
    if exe.keep_waiting_pipelines:
        return waiting[0][0], []
    return waiting[-1][0], [execution_id for execution_id, _, _ in waiting[:-1]]
