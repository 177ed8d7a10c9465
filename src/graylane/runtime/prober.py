"""One replica's prober, as the kubelet's probe workers run them: readiness and liveness probes on their schedule.

Readiness sets `Replica.ready` and `reason` and calls `ready_changed(replica)` so the runtime republishes its
endpoints; a failed liveness probe stops the process (the runtime's supervision restarts it). `probe_once` is the
single readiness check a re-adopted replica gets before the first snapshot after a control-plane restart.
The probes themselves (HTTP, TCP, exec; thresholds) are `graylane.runtime.probes`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from graylane.runtime.launch import LaunchSpec, main_container
from graylane.runtime.probes import ProbeSpec, ProbeTracker, readiness_spec, run_probe
from graylane.runtime.replica import Replica


async def probe_once(template: Mapping[str, Any] | None, port: int) -> bool:
    """Whether the main container of `template`, listening on `port`, passes its readiness probe now."""
    if template is None:
        return False
    container = main_container(template)
    spec = readiness_spec(container)
    if spec is None:  # no probe, no port: Ready while it runs
        return True
    result = await run_probe(spec, container, port)
    return result.ok


async def probe_loop(r: Replica, launch: LaunchSpec, ready_changed: Callable[[Replica], None], *,
                     adopted: bool = False) -> None:
    """Probe `r` (started from `launch`) while it runs; `adopted`: it has been running, initial delays are over."""
    container = launch.container
    explicit = container.get("readinessProbe")
    spec = readiness_spec(container)
    readiness = ProbeTracker(spec or ProbeSpec(), healthy=r.ready)
    if spec is None and not r.ready and not r.terminating:  # Kubernetes: Ready as soon as it runs
        r.ready, r.reason = True, ""
        r.logger().info("ready (running; no readinessProbe and no ports)")
        ready_changed(r)
    liveness_raw = container.get("livenessProbe")
    liveness = ProbeTracker(ProbeSpec.from_k8s(liveness_raw), healthy=True) if liveness_raw else None
    started = time.monotonic() - (3600.0 if adopted else 0.0)
    due_ready = started + readiness.spec.initial_delay_s
    due_live = started + (liveness.spec.initial_delay_s if liveness else 0)
    try:
        while r.proc is not None and not r.terminating:
            now = time.monotonic()
            if spec is not None and now >= due_ready and (explicit or not r.ready):
                result = await run_probe(readiness.spec, container, r.rec.port, launch.env, launch.cwd)
                due_ready = time.monotonic() + readiness.spec.period_s
                if readiness.record(result) and not r.terminating and r.proc is not None:
                    r.ready = readiness.healthy
                    r.reason = "" if r.ready else f"Readiness probe failed: {readiness.reason}"
                    r.logger().info("%s", "ready" if r.ready else r.reason)
                    ready_changed(r)
                elif not result.ok and not r.ready:
                    r.reason = f"Readiness probe failed: {result.reason}" if explicit else "ContainersNotReady"
            if liveness is not None and now >= due_live:
                result = await run_probe(liveness.spec, container, r.rec.port, launch.env, launch.cwd)
                due_live = time.monotonic() + liveness.spec.period_s
                liveness.record(result)
                if not liveness.healthy and r.proc is not None:
                    r.logger().warning("Liveness probe failed: %s; restarting", liveness.reason)
                    await r.proc.stop(r.rec.grace_s)
                    return
            waits = [due_ready] if spec is not None and (explicit or not r.ready) else []
            if liveness is not None:
                waits.append(due_live)
            delay = max(0.02, min(waits) - time.monotonic()) if waits else 1.0
            await asyncio.sleep(min(delay, 1.0))
    except asyncio.CancelledError:
        raise
    except Exception:
        r.logger().exception("probe loop failed")
