"""One replica as the runtime tracks it: its record, process, phase, readiness and probe task.

State only; `graylane.runtime.reconciler` decides what happens to it (`init_containers` and `prober` do their part).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graylane.runtime.launch import LaunchSpec
from graylane.runtime.process import PodRecord, Process

log = logging.getLogger("graylane.runtime.reconciler")  # replica lines keep the reconciler's logger name


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    CRASH_LOOP = "CrashLoopBackOff"
    TERMINATING = "Terminating"
    FAILED = "Error"


def free_port(taken: Iterable[int] = ()) -> int:
    busy = set(taken)
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in busy:
            return port


@dataclass
class Replica:
    rec: PodRecord
    proc: Process | None = None
    phase: Phase = Phase.PENDING
    ready: bool = False
    reason: str = "ContainerCreating"
    ready_seq: int = 0
    next_start: float = 0.0
    started_mono: float = 0.0
    terminating: bool = False
    probe_task: asyncio.Task[None] | None = None
    stop_task: asyncio.Task[None] | None = None
    launch: LaunchSpec | None = None
    adopted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def logger(self) -> ReplicaLogger:
        return ReplicaLogger(log, {"namespace": self.rec.namespace, "deployment": self.rec.deployment,
                                   "replica": self.rec.name, "pid": self.rec.pid})


class ReplicaLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Puts `namespace/replica (pid N)` in front of every line and the fields in `extra`."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"{extra.get('namespace')}/{extra.get('replica')} (pid {extra.get('pid')}): {msg}", kwargs
