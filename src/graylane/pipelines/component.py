"""The pipelines' part of a control plane: the scheduler (resuming active executions), cron, notifications,
the services tasks get, and the one PipelinesService the API talks to.

The control-plane assembly (graylane/assembly.py) starts it; `service_of(cp)` is how the API reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from graylane.pipelines import leases
from graylane.pipelines.artifacts import ArtifactFetcher
from graylane.pipelines.executor import Executor
from graylane.pipelines.fencing import fencing_lookup
from graylane.pipelines.notifications import Notifier
from graylane.pipelines.service import PipelinesService
from graylane.pipelines.services import TaskServices
from graylane.pipelines.targets import targets_for
from graylane.pipelines.triggers import cron_loop, on_execution_complete


@dataclass(frozen=True)
class ControlPlaneAnalysis:
    """The analysis service of tasks (services.Analysis): this control plane's metric providers (the local
    mesh's telemetry, or an account's Prometheus)."""

    cp: Any

    def providers(self, account: str) -> Any:
        from graylane.analysis.canary_run import providers_for
        from graylane.targets.accounts import prometheus_url

        return providers_for(account, self.cp, prometheus_url)


class PipelinesComponent:
    def __init__(self, executor: Executor, service: PipelinesService) -> None:
        self.executor = executor
        self.service = service
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
    built: list[Executor] = []  # Kubernetes writes of stages check the lease first (pipelines/fencing.py)
    get_target = fencing_lookup(registry.get, lambda: getattr(built[0], "leases", None) if built else None)
    services = TaskServices(get_target=get_target, artifacts=ArtifactFetcher(cp.store),
                            analysis=ControlPlaneAnalysis(cp))
    executor = Executor(cp.store.engine, bus=cp.bus, services=services)
    built.append(executor)
    executor.completion_hooks.append(lambda exe: on_execution_complete(executor, exe))
    leases.install(executor)  # replicas on PostgreSQL: a lease per execution, fenced writes (pipelines/leases.py)
    return executor


def _component(cp: Any) -> PipelinesComponent:
    comp: PipelinesComponent | None = cp.components.get("pipelines")
    if comp is None:  # the API used without the background components: a scheduler on the first command
        executor = build_executor(cp)
        comp = PipelinesComponent(executor, _service(cp))
        cp.components["pipelines"] = comp
    return comp


def _service(cp: Any) -> PipelinesService:
    service: PipelinesService | None = cp.settings.get("pipelines.service")
    if service is None:
        service = PipelinesService(cp.store.engine, bus=cp.bus, scheduler=lambda: _component(cp).executor)
        cp.settings["pipelines.service"] = service
    return service


async def start(cp: Any) -> PipelinesComponent:
    comp = _component(cp)
    await comp.start()
    return comp


def service_of(cp: Any) -> PipelinesService:
    """The pipelines service of this control plane; reading through it never builds a scheduler."""
    comp = cp.components.get("pipelines")
    return comp.service if comp is not None else _service(cp)
