"""Jobs on the local target: the pod template's containers run as processes, to completion, as the kubelet runs
a Job's pod with `restartPolicy: Never`.

`initContainers` run first, one after another, each to completion; the next starts only once the previous exited
0. An init container that fails fails the pod (and the Job: there are no retries, as with `backoffLimit: 0`), and
the main containers never start. Then every container of `containers` runs once, in parallel.

The pod's environment comes from the runtime's own launch rules (`graylane.runtime.launch.build_launch`: image
resolution, env/envFrom/valueFrom, Service variables), so a Job sees what a Deployment's replica would. With the
local runtime running, the job's pod gets its own sidecar listener on the data plane (the runtime's
`add_sidecar`), so its calls go through the mesh (`HTTP_PROXY`) as a replica's do; without one (a bare store)
its processes reach services directly.

Jobs are not stored resources, but each has a record in the state folder (`jobs/<ns>/<job>/job.json`: the pod
template, each container's pid and kernel start time, exit codes), and each container runs through
`graylane.runtime.exit_record`, which writes the container's exit code next to its log. Processes run in their own
session, so they outlive the control plane; a restarted control plane re-adopts a running job from its record
(`adopt_all`, before the first mesh snapshot, so the job's sidecar listener stays), waits for the running
container, starts the containers whose turn comes, and reports the real outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.resources.document import Document, ResourceKey
from graylane.runtime import exit_record
from graylane.runtime.env import PodIdentity
from graylane.runtime.launch import LaunchProblem, build_launch, index_resources
from graylane.runtime.process import start_ticks
from graylane.targets.jobs import JobStatus

log = logging.getLogger(__name__)
_KINDS = ("ConfigMap", "Secret", "Service", "LocalImage")
_PROXY_VARS = ("HTTP_PROXY", "http_proxy")
SIDECAR_TIMEOUT_S = 10.0
RECORD = "job.json"
ADOPTED_POLL_S = 0.2  # how often an adopted container (not our child) is checked for its exit
LOST_EXIT_CODE = 137  # what the kubelet reports for a container it lost track of (ContainerStatusUnknown)


@dataclass
class _Container:
    name: str
    init: bool = False
    pid: int = 0  # the exit_record wrapper's pid (it leads the container's process group)
    ticks: int = 0  # its kernel start time: a recycled pid is never taken for it
    exit_code: int | None = None  # negative: killed by that signal
    reason: str = ""  # why it ended, if not by a plain exit: StartError, ContainerCannotRun, ContainerStatusUnknown
    message: str = ""

    @property
    def started(self) -> bool:
        return self.pid > 0 or self.exit_code is not None

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.exit_code is None


@dataclass
class _Job:
    key: ResourceKey
    pod: str
    created_ms: int
    template: dict[str, Any]  # the pod template as run (a restarted control plane starts the rest from it)
    labels: dict[str, str]
    service_account: str
    sidecar_port: int = 0
    containers: list[_Container] = field(default_factory=list)
    stopped: bool = False  # canceled: start nothing more
    finished: bool = False
    adopted: bool = False  # started by an earlier control plane
    driver: asyncio.Task[None] | None = field(default=None, repr=False)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict, repr=False)
    first_wave: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def record(self) -> dict[str, Any]:
        return {"namespace": self.key.namespace, "name": self.key.name, "pod": self.pod,
                "created_ms": self.created_ms, "template": self.template, "labels": self.labels,
                "service_account": self.service_account, "sidecar_port": self.sidecar_port,
                "stopped": self.stopped, "finished": self.finished,
                "containers": [asdict(c) for c in self.containers]}

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> _Job:
        key = ResourceKey("batch", "Job", str(raw["namespace"]), str(raw["name"]))
        return cls(key, str(raw["pod"]), int(raw["created_ms"]), dict(raw["template"]), dict(raw["labels"]),
                   str(raw["service_account"]), int(raw.get("sidecar_port") or 0),
                   [_Container(**c) for c in raw["containers"]], bool(raw.get("stopped")),
                   bool(raw.get("finished")), adopted=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def job_folder(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / "jobs" / _safe(namespace) / _safe(name)


def _alive(c: _Container) -> bool:
    return c.pid > 0 and c.ticks > 0 and start_ticks(c.pid) == c.ticks


class LocalJobs:
    """The local target's job runner (one per control plane: `graylane.assembly` makes it and adopts)."""

    def __init__(self, store: Any, state_dir: Path, account: str = "local", runtime: Any = None) -> None:
        self.store = store
        self.runtime = runtime
        self.state_dir = state_dir
        self.account = account
        self._jobs: dict[ResourceKey, _Job] = {}

    def _resources(self) -> Any:
        return index_resources({kind: self.store.list(kind) for kind in _KINDS})

    def _folder(self, key: ResourceKey) -> Path:
        return job_folder(self.state_dir, key.namespace, key.name)

    def _log(self, job: _Job, c: _Container) -> Path:
        return self._folder(job.key) / f"{_safe(c.name)}.log"

    def _exit_path(self, job: _Job, c: _Container) -> Path:
        return self._folder(job.key) / f"{_safe(c.name)}.exit"

    def _save(self, job: _Job) -> None:
        path = self._folder(job.key) / RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.record(), sort_keys=True))
        os.replace(tmp, path)

    # === starting ===

    async def run(self, doc: Document, namespace_override: str | None = None) -> ResourceKey:
        """Start the Job's pod; returns once its first containers started (the first init container, or every
        container without init containers). A Job already started under this name, by this control plane or one
        before it, is left as it is."""
        if doc.kind != "Job":
            raise ValidationError(f"runJobManifest runs a Job, not a {doc.kind or 'document without kind'}",
                                  where=doc.where(("kind",)))
        namespace = namespace_override or doc.namespace or "default"
        key = ResourceKey("batch", "Job", namespace, doc.name)
        if self._get(key) is not None:
            return key
        template = (doc.spec.get("template") or {}) if isinstance(doc.spec.get("template"), dict) else {}
        spec = template.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            raise ValidationError(f"Job {namespace}/{doc.name} has no containers",
                                  where=doc.where(("spec", "template", "spec")))
        pod = f"{doc.name}-{os.urandom(3).hex()[:5]}"
        labels = {**{str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()},
                  "job-name": doc.name}
        account = str(spec.get("serviceAccountName") or "default")
        sidecar = await self._sidecar(namespace, pod, labels, doc.name, account)
        job = _Job(key, pod, int(time.time() * 1000), template, labels, account, sidecar)
        inits = spec.get("initContainers") or []
        job.containers = ([_Container(str(c.get("name") or "init"), init=True) for c in inits]
                          + [_Container(str(c.get("name") or "main")) for c in containers])
        self._folder(key).mkdir(parents=True, exist_ok=True)
        self._jobs[key] = job
        self._save(job)
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"job {namespace}/{doc.name}")
        await job.first_wave.wait()
        return key

    async def _drive(self, job: _Job) -> None:
        try:
            await self._run_pod(job)
        except asyncio.CancelledError:
            raise  # this control plane is stopping: the processes run on, and the next one adopts them
        except Exception:  # a boundary: the job must end, not hang Running
            log.exception("job %s/%s failed in the runner", job.key.namespace, job.key.name)
            for c in job.containers:
                if c.exit_code is None and not _alive(c):
                    c.exit_code, c.reason, c.message = 128, "ContainerCannotRun", "the job runner failed"
        finally:
            job.first_wave.set()
        job.finished = True
        self._save(job)
        if self.runtime is not None and hasattr(self.runtime, "remove_sidecar"):
            self.runtime.remove_sidecar(job.key.namespace, job.pod)
        log.info("job %s/%s finished: %s", job.key.namespace, job.key.name, self.status(job.key).state)

    async def _run_pod(self, job: _Job) -> None:
        """Init containers one after another, each to exit 0; then every container at once."""
        for c in (c for c in job.containers if c.init):
            await self._start(job, c)
            job.first_wave.set()
            if not await self._finish(job, c):
                return  # the pod failed (or was stopped): nothing more starts
        mains = [c for c in job.containers if not c.init]
        for c in mains:
            await self._start(job, c)
        job.first_wave.set()
        await asyncio.gather(*(self._finish(job, c) for c in mains))

    async def _start(self, job: _Job, c: _Container) -> None:
        if c.started or job.stopped:
            return
        spec = job.template.get("spec") or {}
        pool = spec.get("initContainers" if c.init else "containers") or []
        default = "init" if c.init else "main"
        container: dict[str, Any] = next((x for x in pool if str(x.get("name") or default) == c.name), {})
        identity = PodIdentity(namespace=job.key.namespace, name=job.pod, labels=job.labels,
                               annotations=(job.template.get("metadata") or {}).get("annotations") or {},
                               port=0, sidecar_port=job.sidecar_port, service_account=job.service_account)
        res = await asyncio.to_thread(self._resources)
        launch = build_launch(job.template, identity, res, container=container)
        if isinstance(launch, LaunchProblem):
            c.exit_code, c.reason, c.message = 128, "ContainerCannotRun", f"{launch.reason}: {launch.message}"
            self._save(job)
            return
        env = dict(launch.env) if job.sidecar_port else {k: v for k, v in launch.env.items() if k not in _PROXY_VARS}
        env.pop("PORT", None)
        record = self._exit_path(job, c)
        exit_record.clear(record)
        try:
            with self._log(job, c).open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    *exit_record.wrapped(launch.argv, record), env=env, cwd=launch.cwd, stdout=out,
                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            c.exit_code, c.reason, c.message = exit_record.START_ERROR_CODE, "StartError", str(exc)
            self._save(job)
            return
        job.procs[c.name] = proc
        c.pid, c.ticks = proc.pid, start_ticks(proc.pid) or 0
        self._save(job)
        log.info("job %s/%s %scontainer %s started (pid %s)", job.key.namespace, job.key.name,
                 "init " if c.init else "", c.name, proc.pid)

    async def _finish(self, job: _Job, c: _Container) -> bool:
        """Wait for `c` to end (our child, or a process adopted from an earlier control plane); True if it
        exited 0."""
        if c.exit_code is None and c.pid > 0:
            proc = job.procs.get(c.name)
            code: int | None = None
            if proc is not None:
                code = await proc.wait()
            else:
                while _alive(c):
                    await asyncio.sleep(ADOPTED_POLL_S)
            ended = exit_record.read(self._exit_path(job, c))
            if ended is not None:
                c.exit_code, c.reason, c.message = ended.exit_code, ended.reason, ended.message
            elif code is not None:  # SIGKILLed with its wrapper: the wrapper's status says so
                c.exit_code = code
            else:
                c.exit_code, c.reason = LOST_EXIT_CODE, "ContainerStatusUnknown"
                c.message = ("it ended while no control plane watched it, and left no exit record "
                             "(its process group was SIGKILLed?)")
            self._save(job)
            log.info("job %s/%s %scontainer %s exited with code %s", job.key.namespace, job.key.name,
                     "init " if c.init else "", c.name, c.exit_code)
        return c.exit_code == 0

    async def _sidecar(self, namespace: str, pod: str, labels: dict[str, Any], workload: str, account: str) -> int:
        """The port of the job pod's data-plane listener once it accepts connections; 0 without a runtime."""
        runtime = self.runtime
        if runtime is None or not hasattr(runtime, "add_sidecar"):
            return 0
        from graylane.runtime.replica import free_port

        port = free_port(runtime.ports_in_use())
        self._add_sidecar(namespace, pod, labels, port, workload, account)
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
        runtime.remove_sidecar(namespace, pod)
        raise GraylaneError(f"job pod {namespace}/{pod}: the data plane opened no sidecar listener on port {port} "
                            f"within {SIDECAR_TIMEOUT_S:g}s", hint="is the data plane running? `graylane status`")

    def _add_sidecar(self, namespace: str, pod: str, labels: dict[str, Any], port: int, workload: str,
                     account: str) -> None:
        from graylane.mesh.state import Sidecar

        self.runtime.add_sidecar(Sidecar(namespace=namespace, pod=pod, labels={k: str(v) for k, v in labels.items()},
                                         port=port, workload=workload, service_account=account))

    # === re-adoption ===

    def _get(self, key: ResourceKey) -> _Job | None:
        job = self._jobs.get(key)
        return job if job is not None else self._adopt(key)

    def _adopt(self, key: ResourceKey) -> _Job | None:
        """The job a control plane before this one started, from its record; an unfinished one is driven on."""
        path = self._folder(key) / RECORD
        try:
            job = _Job.from_record(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("job record %s unreadable (%s): ignored", path, exc)
            return None
        self._jobs[key] = job
        job.first_wave.set()
        if job.finished:
            return job
        running = [c.name for c in job.containers if c.running and _alive(c)]
        if job.sidecar_port and self.runtime is not None and hasattr(self.runtime, "add_sidecar"):
            self._add_sidecar(key.namespace, job.pod, job.labels, job.sidecar_port, key.name, job.service_account)
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"job {key.namespace}/{key.name}")
        log.info("re-adopted job %s/%s (pod %s; running: %s)", key.namespace, key.name, job.pod,
                 ", ".join(running) or "none")
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
            if not isinstance(raw, dict) or raw.get("finished"):
                continue
            key = ResourceKey("batch", "Job", str(raw.get("namespace")), str(raw.get("name")))
            if key not in self._jobs and self._adopt(key) is not None:
                count += 1
        return count

    async def stop(self) -> None:
        """This control plane stops: stop driving jobs; their processes run on (the next one adopts them)."""
        drivers = [j.driver for j in self._jobs.values() if j.driver is not None and not j.driver.done()]
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    # === status ===

    def status(self, key: ResourceKey) -> JobStatus:
        job = self._get(key)
        if job is None:
            return JobStatus(key.name, key.namespace, self.account, "Failed", None, "NotTracked",
                             f"no record of job {key.namespace}/{key.name} in {self._folder(key)}: no control plane "
                             "using this state folder started it")
        logs = {}
        for c in job.containers:
            if c.started:
                path = self._log(job, c)
                text = path.read_text(errors="replace") if path.exists() else ""
                logs[c.name] = text + (c.message if c.reason == "ContainerCannotRun" else "")
        running = any(c.running for c in job.containers)
        failed = next((c for c in job.containers if c.exit_code not in (None, 0)), None)
        inits = [c for c in job.containers if c.init]
        initializing = any(c.exit_code != 0 for c in inits)
        if running or (failed is None and not job.stopped and not job.finished
                       and not all(c.exit_code is not None for c in job.containers)):
            state, phase = "Running", ("Pending" if initializing else "Running")
        elif failed is not None or job.stopped or not all(c.exit_code == 0 for c in job.containers):
            state = phase = "Failed"
        else:
            state = phase = "Succeeded"
        status: dict[str, Any] = {"phase": phase, "containerStatuses": [_container_status(c, initializing)
                                                                        for c in job.containers if not c.init]}
        if inits:
            status["initContainerStatuses"] = [_container_status(c, False) for c in inits]
        pods = [{"name": job.pod, "status": status}]
        if state == "Running":
            return JobStatus(key.name, key.namespace, self.account, "Running", None, "", "", job.created_ms, logs,
                             pods)
        if state == "Succeeded":
            return JobStatus(key.name, key.namespace, self.account, "Succeeded", 0, "Completed", "", job.created_ms,
                             logs, pods)
        if failed is None:  # stopped before anything failed
            waiting = next((c.name for c in job.containers if not c.started), "")
            return JobStatus(key.name, key.namespace, self.account, "Failed", None, "Stopped",
                             f"the job was stopped before container {waiting} started", job.created_ms, logs, pods)
        reason, message = _failure(failed)
        return JobStatus(key.name, key.namespace, self.account, "Failed", failed.exit_code, reason, message,
                         job.created_ms, logs, pods)

    async def cancel(self, key: ResourceKey) -> None:
        """SIGTERM every running container's process group (as a deleted Job's pod gets); start nothing more."""
        job = self._get(key)
        if job is None:
            return
        job.stopped = True
        self._save(job)
        for c in job.containers:
            if c.running and _alive(c):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.pid, signal.SIGTERM)


def _container_status(c: _Container, pod_initializing: bool) -> dict[str, Any]:
    """A container's entry in the pod's status, with its Kubernetes-shaped `state`."""
    if c.exit_code is not None:
        state: dict[str, Any] = {"terminated": {"exitCode": c.exit_code,
                                                "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
                                                **({"message": c.message} if c.message else {})}}
    elif c.running:
        state = {"running": {}}
    else:
        state = {"waiting": {"reason": "PodInitializing" if pod_initializing else "ContainerCreating"}}
    return {"name": c.name, "exitCode": c.exit_code, "state": state}


def _failure(c: _Container) -> tuple[str, str]:
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


def stop_recorded_jobs(state_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every recorded job still running (`graylane down` once the control plane is gone): SIGTERM, grace,
    SIGKILL, each container's process group; the record says stopped, so nothing more of it starts."""
    stopped: list[str] = []
    victims: list[_Container] = []
    for path in sorted((state_dir / "jobs").glob(f"*/*/{RECORD}")):
        try:
            raw = json.loads(path.read_text())
            job = _Job.from_record(raw)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if job.finished:
            continue
        running = [c for c in job.containers if c.running and _alive(c)]
        for c in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGTERM)
        victims += running
        if not job.stopped:
            raw["stopped"] = True
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(raw, sort_keys=True))
            os.replace(tmp, path)
        if running:
            stopped.append(f"{job.key.namespace}/{job.key.name}")
    deadline = time.monotonic() + grace_s
    while any(_alive(c) for c in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in victims:
        if _alive(c):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGKILL)
    return stopped
