"""Jobs on the local target: the pod template's containers run as processes, to completion, as the Job controller
and the kubelet run a Job.

A pod: `initContainers` run first, one after another, each to completion; the next starts only once the previous
exited 0. Then every container of `containers` runs at once. With `restartPolicy: Never` (the default here) a
failed container fails the pod (an init one before the main containers start); with `OnFailure` it restarts in
place after the kubelet's back-off, in the same pod.

The Job (`_control`): up to `parallelism` pods at once, never more than the completions still to come, until
`completions` pods succeeded (`completionMode: Indexed`: one per index, each pod with its `JOB_COMPLETION_INDEX`
and `batch.kubernetes.io/job-completion-index` annotation). Without `completions` and with `parallelism` above 1
(the work queue pattern): `parallelism` pods, none new once one succeeded, and the Job completes when all ended.
A failed pod is checked against the `podFailurePolicy` (`graylane.targets.local_job_policy`: `FailJob` fails the
Job with `PodFailurePolicy`, `Ignore` leaves it uncounted); otherwise it counts, and new pods wait for the Job
controller's back-off (`graylane.settings.job_backoff_s`, 10 s doubling, 6 min cap), until the failures exceed
`spec.backoffLimit` (default 6): the Job then fails with `BackoffLimitExceeded`. With `backoffLimitPerIndex`
(Indexed) each index counts its own failures and back-off (`JobRecord.index_failed`; `FailIndex` fails the index at
once); the Job fails with `MaxFailedIndexesExceeded` past `maxFailedIndexes`, else with `FailedIndexes` once every
index succeeded or failed. With `OnFailure` the failed runs count instead, and the Job fails once they reach the
limit (the controller's `pastBackoffLimitOnFailure`). Once the Job has been active `spec.activeDeadlineSeconds`,
nothing more starts and it fails with `DeadlineExceeded`. A Job that fails terminates its running pods: SIGTERM,
SIGKILL after the pod's `terminationGracePeriodSeconds`. `suspend` (changed by applying the Job again under its
name) terminates the running pods, uncounted, and starts none until resumed; `ttlSecondsAfterFinished` deletes the
finished Job's record and files.

The pod's environment comes from the runtime's own launch rules (`graylane.runtime.launch.build_launch`: image
resolution, env/envFrom/valueFrom, Service variables), so a Job sees what a Deployment's replica would. With the
local runtime running, each pod gets its own sidecar listener on the data plane (the runtime's `add_sidecar`), so
its calls go through the mesh (`HTTP_PROXY`) as a replica's do; without one (a bare store) its processes reach
services directly.

Jobs are not stored resources, but each has a record in the state folder (`graylane.targets.local_job_record`),
and each container runs through `graylane.runtime.exit_record`, which writes the container's exit code next to its
log. Processes run in their own session, so they outlive the control plane; a restarted control plane re-adopts a
job from its record (`adopt_all`, before the first mesh snapshot, so the pod's sidecar listener stays): it waits
for the running containers, starts those whose turn comes, keeps a pending retry's time and the deadline, and
reports the real outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.resources.document import Document, ResourceKey
from graylane.runtime import exit_record
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.env import PodIdentity
from graylane.runtime.launch import LaunchProblem, build_launch, grace_period_s, index_resources
from graylane.runtime.process import start_ticks
from graylane.settings import job_backoff_s
from graylane.targets.jobs import JobStatus
from graylane.targets.local_job_policy import job_spec, match_failure_policy
from graylane.targets.local_job_record import (
    BACKOFF_LIMIT_EXCEEDED,
    DEADLINE_EXCEEDED,
    INDEX_ANNOTATION,
    POD_FAILURE_POLICY,
    RECORD,
    ContainerRecord,
    JobRecord,
    PodRecord,
    alive,
    job_folder,
    pod_backoff_s,
    pod_folder,
    safe,
    signal_running,
    stop_recorded_jobs,
)
from graylane.targets.local_job_status import job_status, not_tracked

__all__ = ["LocalJobs", "job_folder", "stop_recorded_jobs"]

log = logging.getLogger(__name__)
_KINDS = ("ConfigMap", "Secret", "Service", "LocalImage")
_PROXY_VARS = ("HTTP_PROXY", "http_proxy")
SIDECAR_TIMEOUT_S = 10.0
ADOPTED_POLL_S = 0.2  # how often an adopted container (not our child) is checked for its exit
LOST_EXIT_CODE = 137  # what the kubelet reports for a container it lost track of (ContainerStatusUnknown)
RESTART_BACKOFF_CAP_S = 300.0  # the kubelet's CrashLoopBackOff cap (OnFailure restarts in place)


def _now_ms() -> int:
    return int(time.time() * 1000)


class LocalJobs:
    """The local target's job runner (one per control plane: `graylane.assembly` makes it and adopts)."""

    def __init__(self, store: Any, state_dir: Path, account: str = "local", runtime: Any = None) -> None:
        self.store = store
        self.runtime = runtime
        self.state_dir = state_dir
        self.account = account
        self._jobs: dict[ResourceKey, JobRecord] = {}

    def _resources(self) -> Any:
        return index_resources({kind: self.store.list(kind) for kind in _KINDS})

    def _folder(self, key: ResourceKey) -> Path:
        return job_folder(self.state_dir, key.namespace, key.name)

    def _log(self, job: JobRecord, pod: PodRecord, c: ContainerRecord) -> Path:
        return pod_folder(self._folder(job.key), job, pod) / f"{safe(c.name)}.log"

    def _exit_path(self, job: JobRecord, pod: PodRecord, c: ContainerRecord) -> Path:
        return pod_folder(self._folder(job.key), job, pod) / f"{safe(c.name)}.exit"

    def _save(self, job: JobRecord) -> None:
        path = self._folder(job.key) / RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.record(), sort_keys=True))
        os.replace(tmp, path)

    # === starting ===

    async def run(self, doc: Document, namespace_override: str | None = None) -> ResourceKey:
        """Start the Job's first pod; returns once its first containers started (the first init container, or
        every container without init containers). A Job already started under this name, by this control plane or
        one before it, is left as it is."""
        if doc.kind != "Job":
            raise ValidationError(f"runJobManifest runs a Job, not a {doc.kind or 'document without kind'}",
                                  where=doc.where(("kind",)))
        namespace = namespace_override or doc.namespace or "default"
        key = ResourceKey("batch", "Job", namespace, doc.name)
        known = self._get(key)
        wanted = job_spec(doc, namespace)
        if known is not None:
            self._resume_or_suspend(known, wanted.suspend)
            return key
        template = (doc.spec.get("template") or {}) if isinstance(doc.spec.get("template"), dict) else {}
        spec = template.get("spec") or {}
        if not spec.get("containers"):
            raise ValidationError(f"Job {namespace}/{doc.name} has no containers",
                                  where=doc.where(("spec", "template", "spec")))
        try:
            job_backoff_s()  # a bad setting refuses the job now, not at its first failure
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        labels = {**{str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()},
                  "job-name": doc.name}
        account = str(spec.get("serviceAccountName") or "default")
        job = JobRecord(key, _now_ms(), template, labels, account)
        job.apply(wanted)
        self._folder(key).mkdir(parents=True, exist_ok=True)
        self._jobs[key] = job
        self._save(job)
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"job {namespace}/{doc.name}")
        await job.first_wave.wait()
        return key

    async def _drive(self, job: JobRecord) -> None:
        try:
            await self._control(job)
        except asyncio.CancelledError:
            raise  # this control plane is stopping: the processes run on, and the next one adopts them
        except Exception:  # a boundary: the job must end, not hang Running
            log.exception("job %s/%s failed in the runner", job.key.namespace, job.key.name)
            for pod in job.active:
                for c in pod.containers:
                    if c.exit_code is None and not alive(c):
                        c.exit_code, c.reason, c.message = 128, "ContainerCannotRun", "the job runner failed"
        finally:
            job.first_wave.set()
        job.finished, job.finished_ms = True, _now_ms()
        self._save(job)
        for pod in job.pods:
            self._remove_sidecar(job, pod)
        log.info("job %s/%s finished: %s", job.key.namespace, job.key.name, self.status(job.key).state)
        self._schedule_ttl(job)

    # === the Job controller ===

    def _wanted(self, job: JobRecord) -> list[int | None]:
        """The pods to create now (their completion indexes; None when NonIndexed), as the controller sizes them:
        at most `parallelism` active, and no more than the completions still to come."""
        if job.stopped or job.suspended or job.complete or job.retry_at_ms > _now_ms():
            return []
        active = job.active
        room = job.parallelism - len(active)
        if job.work_queue:  # no new pod once one succeeded: the queue is empty
            return [] if job.succeeded else [None] * max(0, room)
        if not job.indexed:
            return [None] * max(0, min(room, job.completions - job.succeeded - len(active)))
        taken = job.succeeded_indexes | {p.index for p in active} | job.held_indexes(_now_ms())
        return [i for i in range(job.completions) if i not in taken][:max(0, room)]  # type: ignore[return-value]

    async def _control(self, job: JobRecord) -> None:
        """The Job controller's loop: pods up to `parallelism` until `completions` succeeded; each failed pod
        counted (or not, by the podFailurePolicy) against backoffLimit, with the back-off before new pods; suspend
        and resume; the end at activeDeadlineSeconds."""
        loop = asyncio.get_running_loop()
        tasks: dict[str, asyncio.Task[bool]] = {}
        try:
            while True:
                for pod in job.active:  # started here or by an earlier control plane
                    if pod.name not in tasks:
                        tasks[pod.name] = loop.create_task(self._run_pod(job, pod))
                if job.stopped or job.complete:
                    break
                if job.indexes_failed is not None:  # backoffLimitPerIndex: each index succeeded or failed
                    self._halt(job, job.indexes_failed)
                    break
                deadline = job.deadline_ms
                if deadline is not None and _now_ms() >= deadline:
                    log.info("job %s/%s: active longer than %ss, terminating it", job.key.namespace, job.key.name,
                             job.active_deadline_s)
                    self._halt(job, DEADLINE_EXCEEDED)
                    break
                if job.suspended and tasks:
                    signal_running(job, signal.SIGTERM)
                    for pod in job.active:
                        pod.terminated = True
                wanted = self._wanted(job)
                if wanted and job.retry_at_ms:
                    job.retry_at_ms = 0  # the back-off is over
                for index in wanted:
                    pod = await self._new_pod(job, index)
                    tasks[pod.name] = loop.create_task(self._run_pod(job, pod))
                if not tasks:
                    job.first_wave.set()  # nothing to start now (suspended, back-off): run() returns
                times = [t for t in (deadline, job.retry_at_ms, job.next_index_retry_ms(_now_ms())) if t]
                timeout = max(0.0, (min(times) - _now_ms()) / 1000) if times else None
                job.nudge.clear()
                wakers = {loop.create_task(job.nudge.wait()), loop.create_task(job.wake.wait())}
                done, _ = await asyncio.wait(wakers | set(tasks.values()), timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                for waker in wakers:
                    waker.cancel()
                for name, task in list(tasks.items()):
                    if task in done:
                        del tasks[name]
                        self._pod_over(job, next(p for p in job.pods if p.name == name), task.result())
            if tasks:  # stopped (backoff limit, FailJob, deadline, cancel): the running pods are terminated
                signal_running(job, signal.SIGTERM)
                _, late = await asyncio.wait(tasks.values(), timeout=grace_period_s(job.template))
                if late:
                    signal_running(job, signal.SIGKILL)
                for name, task in tasks.items():
                    self._pod_over(job, next(p for p in job.pods if p.name == name), await task)
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise

    def _pod_over(self, job: JobRecord, pod: PodRecord, succeeded: bool) -> None:
        """Count a pod that ended: a success, a failure (the podFailurePolicy's action, else counted against
        backoffLimit, with the back-off before new pods), or a pod the controller terminated (neither)."""
        pod.ended = True
        self._remove_sidecar(job, pod)
        if succeeded or pod.terminated or job.stopped or job.restart_policy == "OnFailure":
            self._save(job)
            return
        ruled = match_failure_policy(job.failure_rules, pod.name, job.key.namespace,
                                     [(c.name, c.exit_code) for c in pod.containers])
        action, message = ruled or ("Count", "")
        if action == "FailJob":
            job.failed += 1  # a failed pod (status.failed), though not for backoffLimit: the job fails now
            log.info("job %s/%s: %s", job.key.namespace, job.key.name, message)
            self._halt(job, (POD_FAILURE_POLICY, message))
            return
        if action == "Ignore":
            pod.ignored = True
            self._save(job)
            return
        job.failed += 1
        if job.per_index and job.failed <= job.backoff_limit:  # the index's own budget (local_job_record)
            halt = job.index_failed(pod, action == "FailIndex", _now_ms(), job_backoff_s())
            if halt is not None:
                self._halt(job, halt)
            self._save(job)
            log.info("job %s/%s: pod %s of index %s failed (%s)", job.key.namespace, job.key.name, pod.name,
                     pod.index, "index failed" if pod.index in job.failed_indexes else "retried after its back-off")
            return
        if job.failed > job.backoff_limit:
            log.info("job %s/%s: pod %s failed, backoff limit %s exceeded", job.key.namespace, job.key.name,
                     pod.name, job.backoff_limit)
            self._halt(job, BACKOFF_LIMIT_EXCEEDED)
            return
        delay = pod_backoff_s(job.failed, job_backoff_s())
        job.retry_at_ms = _now_ms() + int(delay * 1000)
        self._save(job)
        log.info("job %s/%s: pod %s failed (%s of %s allowed), next pod in %gs", job.key.namespace, job.key.name,
                 pod.name, job.failed, job.backoff_limit, delay)

    async def _new_pod(self, job: JobRecord, index: int | None) -> PodRecord:
        """A new pod (new name, fresh containers). One pod at a time: the previous pod's files go to its own
        folder first; several pods: each pod's files are in its own folder from the start."""
        if not job.several_pods and job.pods:
            old = job.pod
            archive = self._folder(job.key) / safe(old.name)
            archive.mkdir(exist_ok=True)
            for c in old.containers:
                for suffix in (".log", ".exit", ".previous.log"):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(self._folder(job.key) / f"{safe(c.name)}{suffix}",
                                   archive / f"{safe(c.name)}{suffix}")
            old.archived = True
        name = _pod_name(job.key.name if index is None else f"{job.key.name}-{index}")
        pod = PodRecord.fresh(name, await self._sidecar(job, name), job.template, index)
        if job.several_pods:
            (self._folder(job.key) / safe(name)).mkdir(parents=True, exist_ok=True)
        job.pods.append(pod)
        self._save(job)
        log.info("job %s/%s: pod %s created", job.key.namespace, job.key.name, name)
        return pod

    async def _sleep_until(self, job: JobRecord, at_ms: int) -> bool:
        """Wait until `at_ms` (epoch ms) unless the job is stopped meanwhile; False if it was."""
        left = (at_ms - _now_ms()) / 1000
        if left > 0 and not job.stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.wake.wait(), left)
        return not job.stopped

    def _resume_or_suspend(self, job: JobRecord, suspend: bool) -> None:
        """The Job applied again with `spec.suspend` changed (as `kubectl apply` changes it): suspended, its
        running pods are terminated (not counted as failures) and none start; resumed, pods start again and
        activeDeadlineSeconds counts from now (the Job's startTime is reset)."""
        if job.finished or job.stopped or job.suspended == suspend:
            return
        job.suspended = suspend
        if not suspend:
            job.started_ms = _now_ms()
        self._save(job)
        log.info("job %s/%s %s", job.key.namespace, job.key.name, "suspended" if suspend else "resumed")
        job.nudge.set()

    def _schedule_ttl(self, job: JobRecord) -> None:
        """ttlSecondsAfterFinished: the finished job, its pods' files and record, deleted that long after it
        finished."""
        if job.ttl_s is None or not job.finished:
            return
        left = max(0.0, (job.finished_ms + job.ttl_s * 1000 - _now_ms()) / 1000)
        job.reaper = asyncio.get_running_loop().create_task(self._reap(job, left),
                                                            name=f"job ttl {job.key.namespace}/{job.key.name}")

    async def _reap(self, job: JobRecord, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        await asyncio.to_thread(shutil.rmtree, self._folder(job.key), True)
        log.info("job %s/%s deleted %ss after it finished (ttlSecondsAfterFinished)", job.key.namespace,
                 job.key.name, job.ttl_s)

    def _halt(self, job: JobRecord, condition: tuple[str, str] | None = None) -> None:
        """Start nothing more (a pending retry or restart included); SIGTERM every running container's group."""
        if condition is not None and job.condition is None:
            job.condition = condition
        job.stopped = True
        self._save(job)
        job.wake.set()
        signal_running(job, signal.SIGTERM)

    # === the kubelet: one pod ===

    async def _run_pod(self, job: JobRecord, pod: PodRecord) -> bool:
        """Init containers one after another, each to exit 0; then every container at once. True if the pod
        succeeded."""
        try:
            for c in (c for c in pod.containers if c.init):
                await self._start(job, pod, c)
                job.first_wave.set()
                if not await self._run_container(job, pod, c):
                    return False  # the pod failed (or was stopped): nothing more starts
            mains = [c for c in pod.containers if not c.init]
            for c in mains:
                await self._start(job, pod, c)
            job.first_wave.set()
            return all(await asyncio.gather(*(self._run_container(job, pod, c) for c in mains)))
        except asyncio.CancelledError:
            raise
        except Exception:  # a boundary: the pod must end, not hang the job
            log.exception("job %s/%s: pod %s failed in the runner", job.key.namespace, job.key.name, pod.name)
            for c in pod.containers:
                if c.exit_code is None and not alive(c):
                    c.exit_code, c.reason, c.message = 128, "ContainerCannotRun", "the job runner failed"
            return False

    async def _run_container(self, job: JobRecord, pod: PodRecord, c: ContainerRecord) -> bool:
        """Wait for `c` (started) to end; with OnFailure restart it in place after each failure (the kubelet's
        back-off), each counted against backoffLimit. True once it exited 0."""
        while True:
            if c.restart_at_ms:
                if not await self._sleep_until(job, c.restart_at_ms):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self._log(job, pod, c), self._log(job, pod, c).with_suffix(".previous.log"))
                c.restart()
                await self._start(job, pod, c)
            if await self._finish(job, pod, c):
                return True
            if job.stopped or job.restart_policy != "OnFailure" or not c.failed:
                return False
            job.failed += 1
            if job.failed >= max(job.backoff_limit, 1):
                log.info("job %s/%s: container %s failed, backoff limit %s reached", job.key.namespace,
                         job.key.name, c.name, job.backoff_limit)
                self._halt(job, BACKOFF_LIMIT_EXCEEDED)
                return False
            policy = BackoffPolicy(initial_s=job_backoff_s(), cap_s=RESTART_BACKOFF_CAP_S)
            c.restart_at_ms = _now_ms() + int(policy.delay_s(c.restarts + 1) * 1000)
            self._save(job)

    async def _start(self, job: JobRecord, pod: PodRecord, c: ContainerRecord) -> None:
        if c.started or job.stopped or pod.terminated:
            return
        spec = job.template.get("spec") or {}
        pool = spec.get("initContainers" if c.init else "containers") or []
        default = "init" if c.init else "main"
        container: dict[str, Any] = next((x for x in pool if str(x.get("name") or default) == c.name), {})
        annotations = dict((job.template.get("metadata") or {}).get("annotations") or {})
        if pod.index is not None:
            annotations[INDEX_ANNOTATION] = str(pod.index)
        identity = PodIdentity(namespace=job.key.namespace, name=pod.name, labels=job.labels,
                               annotations=annotations,
                               port=0, sidecar_port=pod.sidecar_port, service_account=job.service_account)
        res = await asyncio.to_thread(self._resources)
        if job.stopped or pod.terminated:  # halted meanwhile
            return
        launch = build_launch(job.template, identity, res, container=container)
        if isinstance(launch, LaunchProblem):
            c.exit_code, c.reason, c.message = 128, "ContainerCannotRun", f"{launch.reason}: {launch.message}"
            self._save(job)
            return
        env = dict(launch.env) if pod.sidecar_port else {k: v for k, v in launch.env.items() if k not in _PROXY_VARS}
        env.pop("PORT", None)
        if pod.index is not None:
            env["JOB_COMPLETION_INDEX"] = str(pod.index)
        record = self._exit_path(job, pod, c)
        exit_record.clear(record)
        try:
            with self._log(job, pod, c).open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    *exit_record.wrapped(launch.argv, record), env=env, cwd=launch.cwd, stdout=out,
                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            c.exit_code, c.reason, c.message = exit_record.START_ERROR_CODE, "StartError", str(exc)
            self._save(job)
            return
        job.procs[f"{pod.name}/{c.name}"] = proc
        c.pid, c.ticks = proc.pid, start_ticks(proc.pid) or 0
        self._save(job)
        if job.stopped or pod.terminated:  # halted while it was being started: it gets the SIGTERM the others got
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        log.info("job %s/%s pod %s: %scontainer %s started (pid %s)", job.key.namespace, job.key.name, pod.name,
                 "init " if c.init else "", c.name, proc.pid)

    async def _finish(self, job: JobRecord, pod: PodRecord, c: ContainerRecord) -> bool:
        """Wait for `c` to end (our child, or a process adopted from an earlier control plane); True if it
        exited 0."""
        if c.exit_code is None and c.pid > 0:
            proc = job.procs.pop(f"{pod.name}/{c.name}", None)
            code: int | None = None
            if proc is not None:
                code = await proc.wait()
            else:
                while alive(c):
                    await asyncio.sleep(ADOPTED_POLL_S)
            ended = exit_record.read(self._exit_path(job, pod, c))
            if ended is not None:
                c.exit_code, c.reason, c.message = ended.exit_code, ended.reason, ended.message
            elif code is not None:  # SIGKILLed with its wrapper: the wrapper's status says so
                c.exit_code = code
            else:
                c.exit_code, c.reason = LOST_EXIT_CODE, "ContainerStatusUnknown"
                c.message = ("it ended while no control plane watched it, and left no exit record "
                             "(its process group was SIGKILLed?)")
            self._save(job)
            log.info("job %s/%s pod %s: %scontainer %s exited with code %s", job.key.namespace, job.key.name,
                     pod.name, "init " if c.init else "", c.name, c.exit_code)
        return c.exit_code == 0

    # === the pod's sidecar listener ===

    async def _sidecar(self, job: JobRecord, pod: str) -> int:
        """The port of the pod's data-plane listener once it accepts connections; 0 without a runtime."""
        runtime = self.runtime
        if runtime is None or not hasattr(runtime, "add_sidecar"):
            return 0
        from graylane.runtime.replica import free_port

        port = free_port(runtime.ports_in_use())
        self._add_sidecar(job, pod, port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIDECAR_TIMEOUT_S
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return port
        runtime.remove_sidecar(job.key.namespace, pod)
        raise GraylaneError(f"job pod {job.key.namespace}/{pod}: the data plane opened no sidecar listener on port "
                            f"{port} within {SIDECAR_TIMEOUT_S:g}s",
                            hint="is the data plane running? `graylane status`")

    def _add_sidecar(self, job: JobRecord, pod: str, port: int) -> None:
        from graylane.mesh.state import Sidecar

        self.runtime.add_sidecar(Sidecar(namespace=job.key.namespace, pod=pod,
                                         labels={k: str(v) for k, v in job.labels.items()}, port=port,
                                         workload=job.key.name, service_account=job.service_account))

    def _remove_sidecar(self, job: JobRecord, pod: PodRecord) -> None:
        if pod.sidecar_port and self.runtime is not None and hasattr(self.runtime, "remove_sidecar"):
            self.runtime.remove_sidecar(job.key.namespace, pod.name)

    # === re-adoption ===

    def _get(self, key: ResourceKey) -> JobRecord | None:
        job = self._jobs.get(key)
        return job if job is not None else self._adopt(key)

    def _adopt(self, key: ResourceKey) -> JobRecord | None:
        """The job a control plane before this one started, from its record; an unfinished one is driven on."""
        path = self._folder(key) / RECORD
        try:
            job = JobRecord.from_record(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("job record %s unreadable (%s): ignored", path, exc)
            return None
        self._jobs[key] = job
        job.first_wave.set()
        if job.finished:
            self._schedule_ttl(job)
            return job
        running = [f"{p.name}/{c.name}" for p in job.active for c in p.containers if c.running and alive(c)]
        for pod in job.active:
            if pod.sidecar_port and self.runtime is not None and hasattr(self.runtime, "add_sidecar"):
                self._add_sidecar(job, pod.name, pod.sidecar_port)
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"job {key.namespace}/{key.name}")
        log.info("re-adopted job %s/%s (running: %s%s)", key.namespace, key.name,
                 ", ".join(running) or "none", "; next pod pending" if job.retry_at_ms else "")
        return job

    async def adopt_all(self) -> int:
        """Re-adopt every unfinished job recorded in the state folder (at control-plane start, before the first
        mesh snapshot, so a running job's sidecar listener is kept). Returns how many."""
        count = 0
        for path in sorted((self.state_dir / "jobs").glob(f"*/*/{RECORD}")):
            try:
                raw = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(raw, dict) or (raw.get("finished") and raw.get("ttl_s") is None):
                continue
            key = ResourceKey("batch", "Job", str(raw.get("namespace")), str(raw.get("name")))
            if key not in self._jobs and self._adopt(key) is not None and not raw.get("finished"):
                count += 1
        return count

    async def stop(self) -> None:
        """This control plane stops: stop driving jobs; their processes run on (the next one adopts them)."""
        drivers = [t for j in self._jobs.values() for t in (j.driver, j.reaper) if t is not None and not t.done()]
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    # === status ===

    def status(self, key: ResourceKey) -> JobStatus:
        job = self._get(key)
        if job is None:
            return not_tracked(key, self._folder(key), self.account)
        return job_status(job, self._folder(key), self.account)

    async def cancel(self, key: ResourceKey) -> None:
        """SIGTERM every running container's process group (as a deleted Job's pod gets); start nothing more, not
        even a pending retry."""
        job = self._get(key)
        if job is not None:
            self._halt(job)


def _pod_name(job: str) -> str:
    return f"{job}-{os.urandom(3).hex()[:5]}"
