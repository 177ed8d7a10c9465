"""The record of a Job run on the local target: `jobs/<ns>/<job>/job.json` in the state folder.

What a control plane needs to take over a job it did not start (`graylane.targets.local_jobs`): the pod template,
the Job's policy (`backoffLimit`, `activeDeadlineSeconds`, `restartPolicy`), every pod created so far (the last
one is the current pod; each container's pid, kernel start time, exit code and restarts), the count of failures,
when new pods may start again after a failure (`retry_at_ms`; a container of an `OnFailure` pod: its
`restart_at_ms`), `completions`/`parallelism`/`completionMode` (each pod's completion index, whether it ended and
whether its failure was ignored by the `podFailurePolicy`; with `backoffLimitPerIndex`, each index's failures,
when its next pod may start and the indexes failed), `suspend` (and `started_ms`, reset on resume, from
which `activeDeadlineSeconds` counts), `ttlSecondsAfterFinished` with `finished_ms`, and the Job's `Failed`
condition once it has one. Also `stop_recorded_jobs`, which `graylane down` uses with no control plane.

One pod at a time (`completions` and `parallelism` 1, not Indexed): the current pod's files are `<container>.log`
and `<container>.exit` in the job's folder, and a pod replaced by a retry has its files moved to
`<job folder>/<pod name>/`. Otherwise (`several_pods`) every pod's files are in `<job folder>/<pod name>/` from its
start. A container restarted in place keeps its previous run's log as `<container>.previous.log`.
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

from graylane.resources.document import ResourceKey
from graylane.runtime.process import start_ticks
from graylane.targets.local_job_policy import DEFAULT_BACKOFF_LIMIT, JobSpec

RECORD = "job.json"
POD_BACKOFF_CAP_S = 360.0  # the Job controller's MaxJobPodFailureBackOff
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
POD_FAILURE_POLICY = "PodFailurePolicy"
MAX_FAILED_INDEXES_EXCEEDED = ("MaxFailedIndexesExceeded",
                               "Job has exceeded the specified maximal number of failed indexes")
FAILED_INDEXES = ("FailedIndexes", "Job has failed indexes")
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


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
    index: int | None = None  # completionMode Indexed: its completion index
    ended: bool = False  # over (succeeded, failed or terminated) and counted by the Job controller
    ignored: bool = False  # its failure matched an Ignore rule of the podFailurePolicy: not counted
    terminated: bool = False  # terminated by the Job controller (suspend): neither a success nor a failure

    @property
    def succeeded(self) -> bool:
        return all(c.exit_code == 0 for c in self.containers)

    @property
    def failed(self) -> bool:
        return self.ended and not self.succeeded and not self.terminated

    @property
    def running(self) -> bool:
        return any(c.running for c in self.containers)

    @classmethod
    def fresh(cls, name: str, sidecar_port: int, template: dict[str, Any], index: int | None = None) -> PodRecord:
        spec = template.get("spec") or {}
        inits = [ContainerRecord(str(c.get("name") or "init"), init=True) for c in spec.get("initContainers") or []]
        containers = inits + [ContainerRecord(str(c.get("name") or "main")) for c in spec.get("containers") or []]
        return cls(name, sidecar_port, int(time.time() * 1000), containers, index=index)


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
    pods: list[PodRecord] = field(default_factory=list)  # oldest first; the last is the most recent pod
    failed: int = 0  # pods that failed (Never); container runs that failed (OnFailure)
    retry_at_ms: int = 0  # a pod failed: no new pod starts before then (0: none pending)
    condition: tuple[str, str] | None = None  # the Job's Failed condition (reason, message)
    completions: int = 1
    parallelism: int = 1
    indexed: bool = False
    suspended: bool = False
    started_ms: int = 0  # the Job's startTime (0 while it was created suspended); reset on resume
    ttl_s: int | None = None
    finished_ms: int = 0
    failure_rules: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False  # canceled, stopped or failed: start nothing more
    finished: bool = False
    adopted: bool = False  # started by an earlier control plane
    # `completions` unset with `parallelism` > 1: the work queue pattern (`parallelism` pods; once one succeeded no
    # new pod starts, and the Job completes when all have ended)
    work_queue: bool = False
    # backoffLimitPerIndex (Indexed): each index's failed pods, when its next pod may start, the indexes failed
    backoff_limit_per_index: int | None = None
    max_failed_indexes: int | None = None
    index_failures: dict[int, int] = field(default_factory=dict)
    index_retry_at_ms: dict[int, int] = field(default_factory=dict)
    failed_indexes: list[int] = field(default_factory=list)  # ascending
    driver: asyncio.Task[None] | None = field(default=None, repr=False)
    reaper: asyncio.Task[None] | None = field(default=None, repr=False)  # ttlSecondsAfterFinished
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict, repr=False)  # "<pod>/<container>"
    first_wave: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # ends a back-off wait (stopped)
    nudge: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # the controller looks again (resume)

    @property
    def pod(self) -> PodRecord:
        return self.pods[-1]

    @property
    def several_pods(self) -> bool:
        return self.completions > 1 or self.parallelism > 1 or self.indexed

    @property
    def active(self) -> list[PodRecord]:
        return [p for p in self.pods if not p.ended]

    @property
    def succeeded_indexes(self) -> set[int]:
        return {p.index for p in self.pods if p.ended and p.succeeded and p.index is not None}

    @property
    def succeeded(self) -> int:
        if self.indexed:
            return len(self.succeeded_indexes)
        return sum(1 for p in self.pods if p.succeeded and (p.ended or not self.several_pods))

    @property
    def complete(self) -> bool:
        if self.work_queue:
            return self.succeeded > 0 and not self.active
        return self.succeeded >= self.completions

    @property
    def per_index(self) -> bool:
        return self.backoff_limit_per_index is not None

    def held_indexes(self, now_ms: int) -> set[int]:
        """Indexes that get no new pod now: failed, or in their own back-off after a failure."""
        return set(self.failed_indexes) | {i for i, at in self.index_retry_at_ms.items() if at > now_ms}

    def next_index_retry_ms(self, now_ms: int) -> int:
        """When the first index in back-off may have its next pod (0: none waits)."""
        return min((at for at in self.index_retry_at_ms.values() if at > now_ms), default=0)

    def index_failed(self, pod: PodRecord, fail_index: bool, now_ms: int, base_s: float) -> tuple[str, str] | None:
        """A counted failure of an index's pod (backoffLimitPerIndex): the index fails once its failures exceed
        the limit (at once with a FailIndex rule), else its next pod waits for the index's own back-off. Returns the
        Job's Failed condition when the failed indexes now exceed maxFailedIndexes."""
        index = pod.index if pod.index is not None else 0
        failures = self.index_failures[index] = self.index_failures.get(index, 0) + 1
        if fail_index or failures > (self.backoff_limit_per_index or 0):
            self.failed_indexes = sorted(set(self.failed_indexes) | {index})
            self.index_retry_at_ms.pop(index, None)
            if self.max_failed_indexes is not None and len(self.failed_indexes) > self.max_failed_indexes:
                return MAX_FAILED_INDEXES_EXCEEDED
            return None
        self.index_retry_at_ms[index] = now_ms + int(pod_backoff_s(failures, base_s) * 1000)
        return None

    @property
    def indexes_failed(self) -> tuple[str, str] | None:
        """The Job's `FailedIndexes` condition once every index succeeded or failed, and one failed."""
        if not self.failed_indexes:
            return None
        if len(self.succeeded_indexes | set(self.failed_indexes)) < self.completions:
            return None
        return FAILED_INDEXES

    @property
    def deadline_ms(self) -> int | None:
        if self.active_deadline_s is None or self.suspended or not self.started_ms:
            return None
        return self.started_ms + self.active_deadline_s * 1000

    def apply(self, spec: JobSpec) -> None:
        self.backoff_limit, self.active_deadline_s = spec.backoff_limit, spec.active_deadline_s
        self.restart_policy, self.completions, self.parallelism = spec.restart_policy, spec.completions, \
            spec.parallelism
        self.indexed, self.suspended, self.ttl_s = spec.indexed, spec.suspend, spec.ttl_s
        self.failure_rules, self.work_queue = spec.failure_rules, spec.work_queue
        self.backoff_limit_per_index, self.max_failed_indexes = spec.backoff_limit_per_index, spec.max_failed_indexes
        self.started_ms = 0 if spec.suspend else self.created_ms

    def record(self) -> dict[str, Any]:
        return {"namespace": self.key.namespace, "name": self.key.name, "created_ms": self.created_ms,
                "template": self.template, "labels": self.labels, "service_account": self.service_account,
                "backoff_limit": self.backoff_limit, "active_deadline_s": self.active_deadline_s,
                "restart_policy": self.restart_policy, "failed": self.failed, "retry_at_ms": self.retry_at_ms,
                "condition": list(self.condition) if self.condition else None,
                "stopped": self.stopped, "finished": self.finished, "pods": [asdict(p) for p in self.pods],
                "completions": self.completions, "parallelism": self.parallelism, "indexed": self.indexed,
                "suspended": self.suspended, "started_ms": self.started_ms, "ttl_s": self.ttl_s,
                "finished_ms": self.finished_ms, "failure_rules": self.failure_rules, "work_queue": self.work_queue,
                "backoff_limit_per_index": self.backoff_limit_per_index,
                "max_failed_indexes": self.max_failed_indexes,
                "index_failures": {str(i): n for i, n in self.index_failures.items()},
                "index_retry_at_ms": {str(i): at for i, at in self.index_retry_at_ms.items()},
                "failed_indexes": self.failed_indexes}

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> JobRecord:
        key = ResourceKey("batch", "Job", str(raw["namespace"]), str(raw["name"]))
        if "pods" in raw:
            pods = [PodRecord(str(p["name"]), int(p.get("sidecar_port") or 0), int(p.get("created_ms") or 0),
                              [ContainerRecord(**c) for c in p["containers"]], bool(p.get("archived")),
                              None if p.get("index") is None else int(p["index"]),
                              bool(p.get("ended", p.get("archived"))), bool(p.get("ignored")),
                              bool(p.get("terminated")))
                    for p in raw["pods"]]
        else:  # a record from before retries: one pod, which ran once (as backoffLimit 0)
            pods = [PodRecord(str(raw["pod"]), int(raw.get("sidecar_port") or 0), int(raw["created_ms"]),
                              [ContainerRecord(**c) for c in raw["containers"]])]
        condition = raw.get("condition")
        deadline, ttl = raw.get("active_deadline_s"), raw.get("ttl_s")
        per_index, max_failed = raw.get("backoff_limit_per_index"), raw.get("max_failed_indexes")
        if "ended" not in (raw.get("pods") or [{}])[-1] and int(raw.get("retry_at_ms") or 0):
            pods[-1].ended = True  # a record from before several pods: a pending retry said its pod was over
        return cls(key, int(raw["created_ms"]), dict(raw["template"]), dict(raw["labels"]),
                   str(raw["service_account"]), int(raw.get("backoff_limit") or 0),
                   None if deadline is None else int(deadline), str(raw.get("restart_policy") or "Never"), pods,
                   int(raw.get("failed") or 0), int(raw.get("retry_at_ms") or 0),
                   (str(condition[0]), str(condition[1])) if condition else None,
                   int(raw.get("completions", 1)), int(raw.get("parallelism", 1)), bool(raw.get("indexed")),
                   bool(raw.get("suspended")), int(raw.get("started_ms", raw["created_ms"])),
                   None if ttl is None else int(ttl), int(raw.get("finished_ms") or 0),
                   list(raw.get("failure_rules") or []), bool(raw.get("stopped")), bool(raw.get("finished")),
                   adopted=True, work_queue=bool(raw.get("work_queue")),
                   backoff_limit_per_index=None if per_index is None else int(per_index),
                   max_failed_indexes=None if max_failed is None else int(max_failed),
                   index_failures={int(i): int(n) for i, n in (raw.get("index_failures") or {}).items()},
                   index_retry_at_ms={int(i): int(at) for i, at in (raw.get("index_retry_at_ms") or {}).items()},
                   failed_indexes=sorted(int(i) for i in raw.get("failed_indexes") or []))


def index_ranges(indexes: set[int] | list[int]) -> str:
    """Indexes as the Job's status writes them (`completedIndexes`, `failedIndexes`): ascending, a run of
    consecutive ones as `first-last` ("1,3-5")."""
    runs: list[list[int]] = []
    for i in sorted(indexes):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def pod_backoff_s(failures: int, base_s: float) -> float:
    """The Job controller's wait before it creates the pod after failure number `failures` (1-based): 10 s,
    20 s, 40 s ... capped at 6 min with the default base."""
    return min(POD_BACKOFF_CAP_S, base_s * 2 ** max(0, failures - 1))


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def job_folder(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / "jobs" / safe(namespace) / safe(name)


def pod_folder(folder: Path, job: JobRecord, pod: PodRecord) -> Path:
    """Where a pod's files are: its own folder once archived or when the job runs several pods."""
    return folder / safe(pod.name) if job.several_pods or pod.archived else folder


def alive(c: ContainerRecord) -> bool:
    return c.pid > 0 and c.ticks > 0 and start_ticks(c.pid) == c.ticks


def signal_running(job: JobRecord, sig: signal.Signals, pods: list[PodRecord] | None = None) -> None:
    """Send `sig` to the process group of each running container of the job's pods not over (or of `pods`)."""
    for p in job.active if pods is None else pods:
        for c in p.containers:
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
        running = [c for p in job.pods for c in p.containers if c.running and alive(c)]
        signal_running(job, signal.SIGTERM)
        victims += running
        if not job.stopped:
            raw["stopped"] = True
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(raw, sort_keys=True))
            os.replace(tmp, path)
        pending = job.retry_at_ms > 0 or any(c.restart_at_ms > 0 for p in job.active for c in p.containers)
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
