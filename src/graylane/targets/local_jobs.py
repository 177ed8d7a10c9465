"""Jobs on the local target: each container of the Job's pod template runs once as a process, to completion.

The pod's environment comes from the runtime's own launch rules (`graylane.runtime.launch.build_launch`: image
resolution, env/envFrom/valueFrom, Service variables), so a Job sees what a Deployment's replica would. With the
local runtime running, the job's pod gets its own sidecar listener on the data plane (the runtime's
`add_sidecar`), so its calls go through the mesh (`HTTP_PROXY`) as a replica's do; without one (a bare store)
its processes reach services directly. Jobs are not stored resources; they live as long as this control plane,
and a restarted control plane reports a job it no longer tracks as Failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.resources.document import Document, ResourceKey
from graylane.runtime.env import PodIdentity
from graylane.runtime.launch import LaunchProblem, build_launch, index_resources
from graylane.targets.jobs import JobStatus

log = logging.getLogger(__name__)
_KINDS = ("ConfigMap", "Secret", "Service", "LocalImage")
_PROXY_VARS = ("HTTP_PROXY", "http_proxy")
SIDECAR_TIMEOUT_S = 10.0


@dataclass
class _Container:
    name: str
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    exit_code: int | None = None
    problem: str = ""


@dataclass
class _Job:
    key: ResourceKey
    pod: str
    created_ms: int
    containers: list[_Container] = field(default_factory=list)
    waiter: asyncio.Task[None] | None = None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class LocalJobs:
    """The local target's job runner (one per target)."""

    def __init__(self, store: Any, state_dir: Path, account: str = "local", runtime: Any = None) -> None:
        self.store = store
        self.runtime = runtime
        self.state_dir = state_dir
        self.account = account
        self._jobs: dict[ResourceKey, _Job] = {}

    def _resources(self) -> Any:
        return index_resources({kind: self.store.list(kind) for kind in _KINDS})

    async def run(self, doc: Document, namespace_override: str | None = None) -> ResourceKey:
        """Start the Job's containers (a Job already started under this name is left as it is)."""
        if doc.kind != "Job":
            raise ValidationError(f"runJobManifest runs a Job, not a {doc.kind or 'document without kind'}",
                                  where=doc.where(("kind",)))
        namespace = namespace_override or doc.namespace or "default"
        key = ResourceKey("batch", "Job", namespace, doc.name)
        if key in self._jobs:
            return key
        template = (doc.spec.get("template") or {}) if isinstance(doc.spec.get("template"), dict) else {}
        spec = template.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            raise ValidationError(f"Job {namespace}/{doc.name} has no containers",
                                  where=doc.where(("spec", "template", "spec")))
        res = await asyncio.to_thread(self._resources)
        pod = f"{doc.name}-{os.urandom(3).hex()[:5]}"
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "job-name": doc.name}
        account = str(spec.get("serviceAccountName") or "default")
        sidecar = await self._sidecar(namespace, pod, labels, doc.name, account)
        identity = PodIdentity(namespace=namespace, name=pod, labels=labels,
                               annotations=(template.get("metadata") or {}).get("annotations") or {},
                               port=0, sidecar_port=sidecar, service_account=account)
        job = _Job(key, pod, int(time.time() * 1000))
        folder = self.state_dir / "jobs" / _safe(namespace) / _safe(doc.name)
        folder.mkdir(parents=True, exist_ok=True)
        for container in containers:
            cname = str(container.get("name") or "main")
            entry = _Container(cname, folder / f"{_safe(cname)}.log")
            job.containers.append(entry)
            launch = build_launch({**template, "spec": {**spec, "containers": [container]}}, identity, res)
            if isinstance(launch, LaunchProblem):
                entry.problem = f"{launch.reason}: {launch.message}"
                entry.exit_code = 128
                continue
            env = dict(launch.env) if sidecar else {k: v for k, v in launch.env.items() if k not in _PROXY_VARS}
            env.pop("PORT", None)
            with entry.log_path.open("wb") as out:
                entry.proc = await asyncio.create_subprocess_exec(
                    *launch.argv, env=env, cwd=launch.cwd, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
            log.info("job %s/%s container %s started (pid %s)", namespace, doc.name, cname, entry.proc.pid)
        job.waiter = asyncio.get_running_loop().create_task(self._wait(job))
        self._jobs[key] = job
        return key

    async def _wait(self, job: _Job) -> None:
        try:
            for entry in job.containers:
                if entry.proc is not None:
                    entry.exit_code = await entry.proc.wait()
        finally:
            if self.runtime is not None and hasattr(self.runtime, "remove_sidecar"):
                self.runtime.remove_sidecar(job.key.namespace, job.pod)

    async def _sidecar(self, namespace: str, pod: str, labels: dict[str, Any], workload: str, account: str) -> int:
        """The port of the job pod's data-plane listener once it accepts connections; 0 without a runtime."""
        runtime = self.runtime
        if runtime is None or not hasattr(runtime, "add_sidecar"):
            return 0
        from graylane.mesh.state import Sidecar
        from graylane.runtime.replica import free_port

        port = free_port(runtime.ports_in_use())
        runtime.add_sidecar(Sidecar(namespace=namespace, pod=pod, labels={k: str(v) for k, v in labels.items()},
                                    port=port, workload=workload, service_account=account))
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

    def status(self, key: ResourceKey) -> JobStatus:
        job = self._jobs.get(key)
        if job is None:
            return JobStatus(key.name, key.namespace, self.account, "Failed", None, "NotTracked",
                             "this control plane did not start the job (it restarted while the job ran?)")
        logs = {c.name: (c.log_path.read_text(errors="replace") if c.log_path.exists() else "") + c.problem
                for c in job.containers}
        done = all(c.exit_code is not None for c in job.containers)
        failed = next((c for c in job.containers if c.exit_code not in (None, 0)), None)
        pods = [{"name": job.pod, "status": {"phase": "Running" if not done else ("Failed" if failed else "Succeeded"),
                                             "containerStatuses": [{"name": c.name, "exitCode": c.exit_code}
                                                                   for c in job.containers]}}]
        if failed is not None and done:
            reason = "ContainerCannotRun" if failed.problem else "Error"
            message = failed.problem or f"container {failed.name} exited with code {failed.exit_code}"
            return JobStatus(key.name, key.namespace, self.account, "Failed", failed.exit_code, reason, message,
                             job.created_ms, logs, pods)
        if not done:
            return JobStatus(key.name, key.namespace, self.account, "Running", None, "", "", job.created_ms, logs,
                             pods)
        return JobStatus(key.name, key.namespace, self.account, "Succeeded", 0, "Completed", "", job.created_ms,
                         logs, pods)

    async def cancel(self, key: ResourceKey) -> None:
        job = self._jobs.get(key)
        for entry in job.containers if job else []:
            if entry.proc is not None and entry.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.proc.pid, 15)
