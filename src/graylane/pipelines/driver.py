"""The state of one execution's driver: the asyncio task that is the only writer of that execution.

Held by the scheduler (pipelines/executor.py): queued commands, tasks in flight, when each waiting task runs
next. Nothing here is persisted; a restarted control plane rebuilds it from the store.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from graylane.pipelines.commands import Command
from graylane.pipelines.execution import Execution
from graylane.pipelines.tasks import StageView, TaskResult


@dataclass
class Inflight:
    """A task running outside the step (it reaches the world); its result is applied by a later step."""

    attempt: int
    task_index: int
    job: asyncio.Future[TaskResult]
    view: StageView


class Driver:
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.wake = asyncio.Event()
        self.commands: deque[tuple[Command[Any], asyncio.Future[Any]]] = deque()
        self.inflight: dict[str, Inflight] = {}
        self.due: dict[str, int] = {}  # stage id -> ms when its current task runs next
        self.answering: list[tuple[asyncio.Future[Any], Any]] = []  # commands applied, awaiting the commit
        self.job: asyncio.Task[None] | None = None
        self.exe: Execution | None = None
        self.first_commit = asyncio.Event()  # set once the first step is committed (started or BUFFERED)
