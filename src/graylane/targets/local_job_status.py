"""A local Job's status as clouddriver reports a Kubernetes one (`graylane.targets.jobs.JobStatus`), from its record.

Running while a pod runs, a retry is pending or the job is suspended; Succeeded once `completions` pods succeeded
(Indexed: one per index); Failed with the Job's condition (`BackoffLimitExceeded`, `DeadlineExceeded`,
`PodFailurePolicy`) once no pod runs, or, for a job stopped (canceled, stage timeout, `graylane down`), with its
pod's own reason (`Error`, `Init:Error`, ...). The exit code is the most recent failed pod's, the logs the most
recent pod's; `pods` lists every pod, oldest first, `failureDetails` names the first failed container as
clouddriver's captureFailureDetails does, and `conditions` are the Job's (Complete, Failed, Suspended). An Indexed
Job's status also has `completedIndexes` and, with `backoffLimitPerIndex`, `failedIndexes` (`IndexedJobStatus`);
with that limit a Job also fails with `FailedIndexes` or `MaxFailedIndexesExceeded`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graylane.resources.document import ResourceKey
from graylane.targets.jobs import JobStatus, failure_details
from graylane.targets.local_job_record import ContainerRecord, JobRecord, PodRecord, index_ranges, pod_folder, safe


@dataclass(frozen=True)
class IndexedJobStatus(JobStatus):
    """An Indexed Job's status: also the Job's `status.completedIndexes` and (with `backoffLimitPerIndex`)
    `status.failedIndexes`, as the Job controller writes them ("0,2-4")."""
    completed_indexes: str = ""
    failed_indexes: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {**super().to_json(), "completedIndexes": self.completed_indexes}
        if self.failed_indexes is not None:
            out["failedIndexes"] = self.failed_indexes
        return out


def not_tracked(key: ResourceKey, folder: Path, account: str) -> JobStatus:
    return JobStatus(key.name, key.namespace, account, "Failed", None, "NotTracked",
                     f"no record of job {key.namespace}/{key.name} in {folder}: no control plane using this state "
                     "folder started it")


def job_status(job: JobRecord, folder: Path, account: str) -> JobStatus:
    key = job.key
    pod = job.pods[-1] if job.pods else None
    logs = {}
    for c in pod.containers if pod is not None else []:
        if c.started or c.restarts:
            path = pod_folder(folder, job, pod) / f"{safe(c.name)}.log"  # type: ignore[arg-type]
            text = path.read_text(errors="replace") if path.exists() else ""
            logs[c.name] = text + (c.message if c.reason == "ContainerCannotRun" else "")
    running = any(p.running for p in job.pods)
    if job.condition is not None and not running:
        state = "Failed"
    elif job.complete:
        state = "Succeeded"
    elif (job.finished or job.stopped) and not running:
        state = "Failed"
    else:
        state = "Running"
    pods = [_pod_status(p, p.ended or p.archived or state != "Running") for p in job.pods]
    conditions = _conditions(job, state)
    common: dict[str, Any] = {"created_ms": job.created_ms, "logs": logs, "pods": pods, "failed": job.failed,
                              "most_recent_pod": pod.name if pod is not None else "", "conditions": conditions,
                              "active": len(job.active) if state == "Running" else 0, "succeeded": job.succeeded}
    make: type[JobStatus] = JobStatus
    if job.indexed:
        make = IndexedJobStatus
        common["completed_indexes"] = index_ranges(job.succeeded_indexes)
        common["failed_indexes"] = index_ranges(job.failed_indexes) if job.per_index else None
    if state == "Running":
        return make(key.name, key.namespace, account, "Running", **common)
    if state == "Succeeded":
        return make(key.name, key.namespace, account, "Succeeded", 0, "Completed", "", **common)
    common["failure_details"] = failure_details(pods)
    failed_pod = next((p for p in reversed(job.pods) if any(c.failed for c in p.containers)), pod)
    failed = next((c for c in failed_pod.containers if c.failed), None) if failed_pod is not None else None
    if job.condition is not None:
        reason, message = job.condition
        return make(key.name, key.namespace, account, "Failed", failed.exit_code if failed else None, reason,
                         message, **common)
    if failed is None:  # stopped before anything failed
        waiting = next((c.name for c in pod.containers if not c.started), "") if pod is not None else ""
        return make(key.name, key.namespace, account, "Failed", None, "Stopped",
                         f"the job was stopped before container {waiting} started" if waiting
                         else "the job was stopped before any pod started", **common)
    reason, message = _failure(failed)
    return make(key.name, key.namespace, account, "Failed", failed.exit_code, reason, message, **common)


def _conditions(job: JobRecord, state: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if job.suspended and state == "Running":
        out.append({"type": "Suspended", "status": "True", "reason": "JobSuspended", "message": "Job suspended"})
    if state == "Succeeded":
        out.append({"type": "Complete", "status": "True"})
    elif job.condition is not None and state == "Failed":
        out.append({"type": "Failed", "status": "True", "reason": job.condition[0], "message": job.condition[1]})
    return out


def _pod_status(p: PodRecord, over: bool) -> dict[str, Any]:
    inits = [c for c in p.containers if c.init]
    initializing = any(c.exit_code != 0 for c in inits)
    if p.succeeded:
        phase = "Succeeded"
    elif over:
        phase = "Failed"
    else:
        phase = "Pending" if initializing else "Running"
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [_container_status(c, p.name, initializing)
                                                                    for c in p.containers if not c.init]}
    if inits:
        status["initContainerStatuses"] = [_container_status(c, p.name, False) for c in inits]
    return {"name": p.name, "status": status}


def _terminated(code: int | None, reason: str, message: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                           **({"message": message} if message else {})}}


def _container_status(c: ContainerRecord, pod: str, pod_initializing: bool) -> dict[str, Any]:
    """A container's entry in the pod's status, with its Kubernetes-shaped `state` (and `lastState` once it
    restarted in place)."""
    exit_code = c.exit_code
    last: dict[str, Any] | None = None
    if c.restart_at_ms and c.exit_code is not None:  # OnFailure: its restart is pending
        state: dict[str, Any] = {"waiting": {"reason": "CrashLoopBackOff",
                                             "message": f"back-off restarting failed container={c.name} pod={pod}"}}
        last, exit_code = _terminated(c.exit_code, c.reason, c.message), None
    elif c.exit_code is not None:
        state = _terminated(c.exit_code, c.reason, c.message)
    elif c.running:
        state = {"running": {}}
    else:
        state = {"waiting": {"reason": "PodInitializing" if pod_initializing else "ContainerCreating"}}
    if last is None and c.restarts:
        last = _terminated(c.last_exit_code, c.last_reason)
    out = {"name": c.name, "exitCode": exit_code, "state": state, "restartCount": c.restarts}
    if last is not None:
        out["lastState"] = last
    return out


def _failure(c: ContainerRecord) -> tuple[str, str]:
    """The reason and message of a failed pod, from its failed container (kubectl's `Init:Error` for an init one)."""
    what = f"init container {c.name}" if c.init else f"container {c.name}"
    prefix = "Init:" if c.init else ""
    if c.reason == "ContainerCannotRun":
        return prefix + c.reason, (f"{what}: {c.message}" if c.init else c.message)
    if c.reason == "StartError":
        return prefix + c.reason, f"{what} could not start: {c.message}"
    if c.reason:
        return prefix + c.reason, f"{what}: {c.message}"
    return prefix + "Error", f"{what} exited with code {c.exit_code}"
