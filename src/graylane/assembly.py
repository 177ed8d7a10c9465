"""The control-plane assembly: builds and starts the background parts of one control plane, in order: the local
runtime with the mesh control that compiles and pushes snapshots, the pipeline executor, the mesh telemetry.

The only module that knows them all; it sits above pipelines, runtime and mesh, and below server and cli
(`server/app.py` starts it in its lifespan). Runtime and mesh never import each other: they meet here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from graylane.mesh.control import MeshControl, load_compiler
from graylane.mesh.telemetry import component as telemetry_component
from graylane.pipelines import component as pipelines_component
from graylane.pipelines import metrics as pipelines_metrics
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.reconciler import Runtime
from graylane.settings import state_dir
from graylane.targets.local_jobs import LocalJobs

log = logging.getLogger(__name__)
LOCAL_RUNTIME_ENV = "GRAYLANE_LOCAL_RUNTIME"  # "off": no local runtime and mesh control in this process

__all__ = ["COMPONENTS", "Component", "LocalMesh", "start_components", "start_local_mesh", "stop_components"]


class Component(Protocol):
    """A started part of the control plane."""

    async def stop(self) -> None: ...


class LocalMesh:
    """The local runtime (workload processes), the local account's Job runner and the mesh control fed by the
    runtime's endpoints."""

    def __init__(self, runtime: Runtime, mesh: MeshControl, jobs: LocalJobs) -> None:
        self.runtime = runtime
        self.mesh = mesh
        self.jobs = jobs

    async def stop(self) -> None:
        # Workloads and jobs keep running: a restarted control plane re-adopts them (`graylane down` stops them).
        await self.jobs.stop()
        await self.mesh.stop()
        await self.runtime.stop()


async def start_local_mesh(cp: Any) -> LocalMesh | None:
    """Registers `cp.components["runtime"]` (Runtime), `cp.components["jobs"]` (LocalJobs, which re-adopts the
    jobs an earlier control plane left running) and `cp.components["mesh"]` (MeshControl)."""
    if cp.settings.get("runtime") is False or os.environ.get(LOCAL_RUNTIME_ENV, "").lower() in ("off", "0", "false"):
        return None  # e.g. control-plane replicas in Kubernetes: no local workloads, no local data plane
    state = state_dir()
    backoff = BackoffPolicy(initial_s=float(cp.settings.get("runtime.backoff_initial_s", 10.0)))
    runtime = Runtime(cp.store, state, backoff=backoff)
    await runtime.start()
    jobs = LocalJobs(cp.store, state, runtime=runtime)
    adopted_jobs = await jobs.adopt_all()  # before the mesh's first snapshot: their sidecar listeners stay
    publish = getattr(getattr(cp, "bus", None), "publish", None)
    mesh = MeshControl(cp.store, runtime, state, compiler=load_compiler(), publish=publish)
    await mesh.start()
    cp.components["runtime"] = runtime
    cp.components["mesh"] = mesh
    cp.components["jobs"] = jobs
    log.info("local runtime started in %s (%d replicas, %d jobs adopted)", state, len(runtime.replicas),
             adopted_jobs)
    return LocalMesh(runtime, mesh, jobs)


async def start_telemetry(cp: Any) -> telemetry_component.Telemetry:
    """The mesh telemetry, with the other areas' series registered on its `/metrics` exposition."""
    telemetry = await telemetry_component.start(cp)
    telemetry.metrics.add_source(partial(pipelines_metrics.collect, cp.store.engine))
    return telemetry


# Started in this order, stopped in reverse.
COMPONENTS: tuple[Callable[[Any], Awaitable[Component | None]], ...] = (
    start_local_mesh,
    pipelines_component.start,
    start_telemetry,
)


async def start_components(cp: Any) -> list[Component]:
    started: list[Component] = []
    for start in COMPONENTS:
        comp = await start(cp)
        if comp is not None:
            started.append(comp)
    return started


async def stop_components(started: list[Component]) -> None:
    for comp in reversed(started):
        try:
            await comp.stop()
        except Exception:  # boundary: one part failing to stop must not keep the others running
            log.warning("stopping %s failed", type(comp).__name__, exc_info=True)
