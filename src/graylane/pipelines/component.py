"""The pipelines' background part of the control plane: the executor (resuming active executions) and cron."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from graylane.pipelines import leases
from graylane.pipelines.executor import Executor
from graylane.pipelines.notifications import Notifier
from graylane.pipelines.services import TaskServices
from graylane.pipelines.targets import targets_for
from graylane.pipelines.triggers import cron_loop, on_execution_complete


class PipelinesComponent:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.notifier = Notifier(executor)
        self._cron: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.notifier.start()
        await self.executor.start()
        self._cron = asyncio.get_running_loop().create_task(cron_loop(self.executor), name="pipelines cron")

    async def stop(self) -> None:
        if self._cron is not None:
            self._cron.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cron
        await self.executor.stop()
        await self.notifier.stop()


def build_executor(cp: Any) -> Executor:
    registry = targets_for(cp)
    services = TaskServices(get_target=registry.get, store=cp.store)
    executor = Executor(cp.store.engine, bus=cp.bus, services=services)
    executor.completion_hooks.append(lambda exe: on_execution_complete(executor, exe))
    leases.install(executor)  # replicas on PostgreSQL: a lease per execution, fenced writes (pipelines/leases.py)
    return executor


async def start(cp: Any) -> PipelinesComponent:
    comp = PipelinesComponent(build_executor(cp))
    cp.components["pipelines"] = comp
    await comp.start()
    return comp


def executor_of(cp: Any) -> Executor:
    """The running executor, or one built on demand (API used without the background components)."""
    comp = cp.components.get("pipelines")
    if comp is None:
        comp = PipelinesComponent(build_executor(cp))
        cp.components["pipelines"] = comp
    return comp.executor
