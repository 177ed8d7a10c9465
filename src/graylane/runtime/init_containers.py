"""A pod's init containers, as the kubelet runs them: one after another, each to exit 0, before the main container.

Owns the init-specific part of a replica's life: which init container is due (`PodRecord.init_done` of
`init_total`), starting it through `exit_record` (its exit code survives a control-plane restart), what its exit
means, re-adopting one that was running while the control plane was away, and kubectl's `Init:N/M`, `Init:Error`,
`Init:CrashLoopBackOff` status. The reconciler decides when to call it and applies the crash-loop backoff, which
init and main containers share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from graylane.runtime import exit_record
from graylane.runtime.launch import LaunchProblem, LaunchSpec, init_containers
from graylane.runtime.process import PodRecord, Process, RecordStore, describe_exit, init_log_path
from graylane.runtime.replica import Phase, Replica


def initializing(r: Replica) -> bool:
    """Some init container has yet to exit 0: the replica's process (if any) is that init container."""
    return r.rec.init_done < r.rec.init_total


def progress(rec: PodRecord) -> str:
    """`Init:N/M`: N of the pod's M init containers completed."""
    return f"Init:{rec.init_done}/{rec.init_total}"


def pod_status(r: Replica) -> str:
    """kubectl's STATUS column: `Init:1/2`, `Init:Error`, `Init:CrashLoopBackOff` while init containers run."""
    if not initializing(r) or r.phase is Phase.TERMINATING:
        return r.phase.value
    if r.phase is Phase.CRASH_LOOP:
        return "Init:CrashLoopBackOff"
    if r.phase is Phase.FAILED:
        return "Init:Error"
    return progress(r.rec)


def init_name(template: Mapping[str, Any] | None, index: int) -> str:
    """The name of init container number `index` (0-based) of `template`, or `#N` when it has none."""
    inits = init_containers(template) if template is not None else []
    name = str(inits[index].get("name") or "") if index < len(inits) else ""
    return name or f"#{index + 1}"


class InitContainers:
    """Starts, re-adopts and settles the init containers of the runtime's replicas.

    `records`: where pod records and exit records live; `state`: the state folder (init container logs);
    `wake`: called (in the loop) when an init container's process exits; `retry_s`: the wait before retrying
    an init container that could not be started at all.
    """

    def __init__(self, state: Path, records: RecordStore, *, wake: Callable[[], None], retry_s: float) -> None:
        self.state = state
        self.records = records
        self.wake = wake
        self.retry_s = retry_s

    def log_path(self, r: Replica, template: Mapping[str, Any] | None) -> Path:
        """The log of the init container that is due."""
        return init_log_path(self.state, r.rec.namespace, r.rec.name, init_name(template, r.rec.init_done))

    def adopt(self, r: Replica) -> None:
        """A pod that was running an init container: wait for it, or act on how it ended (its exit record)."""
        rec = r.rec
        if r.proc is not None:
            r.phase, r.reason = Phase.PENDING, progress(rec)
            r.proc.watch(asyncio.get_running_loop(), self.wake)
            r.started_mono = time.monotonic() - max(0.0, time.time() - rec.started)
            return
        ended = exit_record.read(self.records.exit_path(rec))
        if ended is not None and ended.exit_code == 0:
            rec.init_done += 1  # completed while the control plane was away: the next one starts
            r.phase, r.reason = Phase.PENDING, progress(rec)
        else:
            r.phase, r.reason = Phase.FAILED, "Init:Error"
            rec.last_exit = (f"init container {describe_exit(ended.exit_code)}" if ended is not None
                             else "init container exited while the control plane was down, leaving no exit record")
        self.records.save(rec)

    def start(self, r: Replica, template: Mapping[str, Any], launch: LaunchSpec | LaunchProblem, *,
              retry: bool) -> LaunchProblem | None:
        """Start init container number `init_done` from `launch` (built for that container); `retry`: after a failure.

        Returns what kept it from starting (the Deployment's ReplicaFailure), None once it runs.
        """
        rec = r.rec
        name = init_name(template, rec.init_done)
        if isinstance(launch, LaunchProblem):
            problem = LaunchProblem(launch.reason, f"init container {name}: {launch.message}")
            r.phase, r.reason = Phase.FAILED, f"Init:{problem.reason}: {problem.message}"
            r.next_start = time.monotonic() + 2.0
            return problem
        try:
            r.proc = Process.spawn(launch.argv, env=launch.env, cwd=launch.cwd,
                                   log=init_log_path(self.state, rec.namespace, rec.name, name),
                                   exit_to=self.records.exit_path(rec))
        except OSError as exc:
            problem = LaunchProblem("CreateContainerError", f"cannot start {launch.argv[0]}: {exc.strerror}")
            r.phase, r.reason = Phase.FAILED, f"Init:{problem.reason}: {problem.message}"
            r.next_start = time.monotonic() + self.retry_s
            return problem
        if retry:
            rec.restarts += 1
        r.proc.watch(asyncio.get_running_loop(), self.wake)
        r.launch = None
        rec.pid, rec.ticks, rec.started = r.proc.pid, r.proc.ticks, time.time()
        r.started_mono = time.monotonic()
        r.phase, r.ready, r.reason = Phase.PENDING, False, progress(rec)
        self.records.save(rec)
        r.logger().info("init container %s started, pid %s: %s", name, r.proc.pid, " ".join(launch.argv))
        return None

    def exit_code(self, r: Replica, code: int | None) -> int | None:
        """How the init container that was running ended: its exit record's code; `code` (what its parent saw)
        when it left none; None (unknown) for an adopted one that left none (SIGKILLed with its wrapper)."""
        ended = exit_record.read(self.records.exit_path(r.rec))
        if ended is not None:
            return ended.exit_code
        if r.proc is not None and not r.proc.is_child:
            return None
        return code

    def completed(self, r: Replica, template: Mapping[str, Any] | None) -> None:
        """The init container that was running exited 0: the next one (or the main container) is due."""
        r.proc = None
        r.rec.init_done += 1
        r.logger().info("init container %s completed (%d/%d)", init_name(template, r.rec.init_done - 1),
                        r.rec.init_done, r.rec.init_total)
        self.records.save(r.rec)
