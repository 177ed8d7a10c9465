"""Waiting on an execution from outside its driver (tests, `graylane execution wait`): follow the event bus
and re-read the committed state, never the driver's in-flight one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from graylane.events import EventBus
from graylane.pipelines.commands import find_stage
from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.status import ExecutionStatus

Reader = Callable[[str], Execution]


async def until_complete(bus: EventBus, get: Reader, execution_id: str, timeout: float = 30.0) -> Execution:
    """The execution once it is complete; TimeoutError after `timeout` seconds."""
    async with bus.subscribe() as q:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            exe = get(execution_id)
            if exe.status.is_complete:
                return exe
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"execution {execution_id} still {exe.status} after {timeout}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(q.get(), timeout=min(left, 0.5))


async def for_stage(bus: EventBus, get: Reader, execution_id: str, stage_ref: str,
                    statuses: set[ExecutionStatus], timeout: float = 30.0) -> Stage:
    """The stage once it is in one of `statuses`; TimeoutError after `timeout` seconds."""
    async with bus.subscribe() as q:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            st = find_stage(get(execution_id), stage_ref)
            if st.status in statuses:
                return st
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"stage {stage_ref!r} still {st.status} after {timeout}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(q.get(), timeout=min(left, 0.5))
