"""The record of a Job run on the local target: `jobs/<ns>/<job>/job.json` in the state folder.

What a control plane needs to take over a job it did not start (`graylane.targets.local_jobs`): the pod template,
the Job's policy (`backoffLimit`, `activeDeadlineSeconds`, `restartPolicy`), every pod created so far (the last
one is the current pod; each container's pid, kernel start time, exit code and restarts), the count of failures,
when a pending retry is due (`retry_at_ms`; a container of an `OnFailure` pod: its `restart_at_ms`), and the Job's
`Failed` condition once it has one. Also `stop_recorded_jobs`, which `graylane down` uses with no control plane.

The current pod's files are `<container>.log` and `<container>.exit` in the job's folder; a pod replaced by a
retry has its files moved to `<job folder>/<pod name>/`; a container restarted in place keeps its previous run's
log as `<container>.previous.log`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.document import Document, ResourceKey
from graylane.runtime.process import start_ticks

RECORD = "job.json"
DEFAULT_BACKOFF_LIMIT = 6  # the Job API's default
POD_BACKOFF_CAP_S = 360.0  # the Job controller's MaxJobPodFailureBackOff
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")


@dataclass
class ContainerRecord:
    name: str
    init: bool = False
    pid: int = 0  # the exit_record wrapper's pid (it leads the container's process group)
    ticks: int = 0  # its kernel start time: a recycled pid is never taken for it
    exit_code: int | None = None  # negative: killed by that signal
    reason: str = ""  # why it ended, if not by a plain exit: StartError, ContainerCannotRun, ContainerStatusUnknown
    message: str = ""
    restarts: int = 0  # restartPolicy OnFailure: restarts in place so far (the pod's restartCount)
    restart_at_ms: int = 0  # OnFailure: this failed run's restart is due then (0: none pending)
    last_exit_code: int | None = None  # the run before the last restart
    last_reason: str = ""

    @property
    def started(self) -> bool:
        return self.pid > 0 or self.exit_code is not None

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.exit_code is None

    @property
    def failed(self) -> bool:
        return self.exit_code not in (None, 0)

    def restart(self) -> None:
        """A new run in place (OnFailure): the ended run becomes the last state."""
        self.last_exit_code, self.last_reason = self.exit_code, self.reason or "Error"
        self.pid = self.ticks = 0
        self.exit_code, self.reason, self.message = None, "", ""
        self.restarts += 1
        self.restart_at_ms = 0


@dataclass
class PodRecord:
    name: str
    sidecar_port: int = 0
    created_ms: int = 0
    containers: list[ContainerRecord] = field(default_factory=list)
    archived: bool = False  # replaced by a newer pod: its files are in <job folder>/<name>/

    @property
    def succeeded(self) -> bool:
        return all(c.exit_code == 0 for c in self.containers)

    @property
    def running(self) -> bool:
        return any(c.running for c in self.containers)

    @classmethod
    def fresh(cls, name: str, sidecar_port: int, template: dict[str, Any]) -> PodRecord:
        spec = template.get("spec") or {}
        inits = [ContainerRecord(str(c.get("name") or "init"), init=True) for c in spec.get("initContainers") or []]
        containers = inits + [ContainerRecord(str(c.get("name") or "main")) for c in spec.get("containers") or []]
        return cls(name, sidecar_port, int(time.time() * 1000), containers)


@dataclass
class JobRecord:
    key: ResourceKey
    created_ms: int  # also the Job's startTime, from which activeDeadlineSeconds counts
    template: dict[str, Any]  # the pod template as run (a restarted control plane starts the rest from it)
    labels: dict[str, str]
    service_account: str
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    active_deadline_s: int | None = None
    restart_policy: str = "Never"
    pods: list[PodRecord] = field(default_factory=list)  # oldest first; the last is the current pod
    failed: int = 0  # pods that failed (Never); container runs that failed (OnFailure)
    retry_at_ms: int = 0  # the current pod failed and its successor starts then (0: none pending)
    condition: tuple[str, str] | None = None  # the Job's Failed condition (reason, message)
    stopped: bool = False  # canceled, stopped or failed: start nothing more
    finished: bool = False
    adopted: bool = False  # started by an earlier control plane
    driver: asyncio.Task[None] | None = field(default=None, repr=False)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict, repr=False)
    first_wave: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # ends a back-off wait (stopped)

    @property
    def pod(self) -> PodRecord:
        return self.pods[-1]

    @property
    def deadline_ms(self) -> int | None:
        return None if self.active_deadline_s is None else self.created_ms + self.active_deadline_s * 1000

    def record(self) -> dict[str, Any]:
        return {"namespace": self.key.namespace, "name": self.key.name, "created_ms": self.created_ms,
                "template": self.template, "labels": self.labels, "service_account": self.service_account,
                "backoff_limit": self.backoff_limit, "active_deadline_s": self.active_deadline_s,
                "restart_policy": self.restart_policy, "failed": self.failed, "retry_at_ms": self.retry_at_ms,
                "condition": list(self.condition) if self.condition else None,
                "stopped": self.stopped, "finished": self.finished, "pods": [asdict(p) for p in self.pods]}

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> JobRecord:
        key = ResourceKey("batch", "Job", str(raw["namespace"]), str(raw["name"]))
        if "pods" in raw:
            pods = [PodRecord(str(p["name"]), int(p.get("sidecar_port") or 0), int(p.get("created_ms") or 0),
                              [ContainerRecord(**c) for c in p["containers"]], bool(p.get("archived")))
                    for p in raw["pods"]]
        else:  # a record from before retries: one pod, which ran once (as backoffLimit 0)
            pods = [PodRecord(str(raw["pod"]), int(raw.get("sidecar_port") or 0), int(raw["created_ms"]),
                              [ContainerRecord(**c) for c in raw["containers"]])]
        condition = raw.get("condition")
        deadline = raw.get("active_deadline_s")
        return cls(key, int(raw["created_ms"]), dict(raw["template"]), dict(raw["labels"]),
                   str(raw["service_account"]), int(raw.get("backoff_limit") or 0),
                   None if deadline is None else int(deadline), str(raw.get("restart_policy") or "Never"), pods,
                   int(raw.get("failed") or 0), int(raw.get("retry_at_ms") or 0),
                   (str(condition[0]), str(condition[1])) if condition else None,
                   bool(raw.get("stopped")), bool(raw.get("finished")), adopted=True)


def job_policy(doc: Document, namespace: str) -> tuple[int, int | None, str]:
    """The Job's backoffLimit (default 6), activeDeadlineSeconds and restartPolicy (Never or OnFailure; absent:
    Never), refused as the API server refuses them."""
    spec = doc.spec or {}
    pod_spec = ((spec.get("template") or {}).get("spec") or {}) if isinstance(spec.get("template"), dict) else {}
    out: list[int | None] = []
    for name in ("backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValidationError(f"Job {namespace}/{doc.name} is invalid: spec.{name}: Invalid value: "
                                  f"{json.dumps(value)}: must be greater than or equal to 0",
                                  where=doc.where(("spec", name)))
        out.append(value)
    policy = pod_spec.get("restartPolicy") or "Never"
    if policy not in ("Never", "OnFailure"):
        raise ValidationError(f"Job {namespace}/{doc.name} is invalid: spec.template.spec.restartPolicy: Unsupported "
                              f"value: {json.dumps(policy)}: supported values: \"OnFailure\", \"Never\"",
                              where=doc.where(("spec", "template", "spec", "restartPolicy")))
    limit, deadline = out
    return (DEFAULT_BACKOFF_LIMIT if limit is None else limit), deadline, str(policy)


def pod_backoff_s(failures: int, base_s: float) -> float:
    """The Job controller's wait before it creates the pod after failure number `failures` (1-based): 10 s,
    20 s, 40 s ... capped at 6 min with the default base."""
    return min(POD_BACKOFF_CAP_S, base_s * 2 ** max(0, failures - 1))


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def job_folder(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / "jobs" / safe(namespace) / safe(name)


def alive(c: ContainerRecord) -> bool:
    return c.pid > 0 and c.ticks > 0 and start_ticks(c.pid) == c.ticks


def signal_running(job: JobRecord, sig: signal.Signals) -> None:
    """Send `sig` to the process group of each running container of the current pod."""
    for c in job.pod.containers:
        if c.running and alive(c):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, sig)


def stop_recorded_jobs(state_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every recorded job still running (`graylane down` once the control plane is gone): SIGTERM, grace,
    SIGKILL, each container's process group; the record says stopped, so nothing more of it starts (no retry)."""
    stopped: list[str] = []
    victims: list[ContainerRecord] = []
    for path in sorted((state_dir / "jobs").glob(f"*/*/{RECORD}")):
        try:
            raw = json.loads(path.read_text())
            job = JobRecord.from_record(raw)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
        if job.finished:
            continue
        running = [c for c in job.pod.containers if c.running and alive(c)]
        signal_running(job, signal.SIGTERM)
        victims += running
        if not job.stopped:
            raw["stopped"] = True
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(raw, sort_keys=True))
            os.replace(tmp, path)
        pending = job.retry_at_ms > 0 or any(c.restart_at_ms > 0 for c in job.pod.containers)
        if running or pending:
            stopped.append(f"{job.key.namespace}/{job.key.name}")
    deadline = time.monotonic() + grace_s
    while any(alive(c) for c in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in victims:
        if alive(c):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.pid, signal.SIGKILL)
    return stopped
