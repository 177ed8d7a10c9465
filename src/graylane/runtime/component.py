"""The control plane's local runtime and mesh control, started together by `server/app.py`.

Registers `cp.components["runtime"]` (Runtime) and `cp.components["mesh"]` (MeshControl).
"""

from __future__ import annotations

import logging
from typing import Any

from graylane.mesh.control import MeshControl, load_compiler
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.reconciler import Runtime
from graylane.settings import state_dir

log = logging.getLogger(__name__)


class LocalRuntimeComponent:
    def __init__(self, runtime: Runtime, mesh: MeshControl) -> None:
        self.runtime = runtime
        self.mesh = mesh

    async def stop(self) -> None:
        # Workloads keep running: a restarted control plane re-adopts them (`graylane down` stops them).
        await self.mesh.stop()
        await self.runtime.stop()


async def start(cp: Any) -> LocalRuntimeComponent | None:
    if cp.settings.get("runtime") is False:
        return None
    state = state_dir()
    backoff = BackoffPolicy(initial_s=float(cp.settings.get("runtime.backoff_initial_s", 10.0)))
    runtime = Runtime(cp.store, state, backoff=backoff)
    await runtime.start()
    publish = getattr(getattr(cp, "bus", None), "publish", None)
    mesh = MeshControl(cp.store, runtime, state, compiler=load_compiler(), publish=publish)
    await mesh.start()
    cp.components["runtime"] = runtime
    cp.components["mesh"] = mesh
    log.info("local runtime started in %s (%d replicas adopted)", state, len(runtime.replicas))
    return LocalRuntimeComponent(runtime, mesh)
