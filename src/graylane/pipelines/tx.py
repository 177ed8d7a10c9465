"""One step's changes to an execution (Tx) and the events that announce them.

The driver (pipelines/executor.py) commits a Tx in one transaction, then publishes its events. Commands
(pipelines/commands.py) and the scheduler's transitions write into the same Tx; neither touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.status import ExecutionStatus


@dataclass
class Tx:
    """Changes made by one step: flushed in one transaction, then events published."""

    stages: dict[str, Stage] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    header: bool = False
    run_now: set[str] = field(default_factory=set)  # stage ids whose waiting task runs now, not after its backoff
    delete: bool = False  # delete the (complete) execution instead of storing it

    def touch(self, stage: Stage) -> None:
        self.stages[stage.id] = stage

    @property
    def dirty(self) -> bool:
        return bool(self.stages or self.audit or self.header or self.delete)

    def merge(self, other: Tx) -> None:
        """Take in a command's changes (each command runs in its own Tx, so a refused one leaves no trace)."""
        self.stages.update(other.stages)
        self.events += other.events
        self.audit += other.audit
        self.header = self.header or other.header
        self.run_now |= other.run_now
        self.delete = self.delete or other.delete


def exec_event(exe: Execution, now: int) -> dict[str, Any]:
    return {"kind": "execution", "executionId": exe.id, "status": str(exe.status),
            "pipelineConfigId": exe.pipeline_config_id, "name": exe.name, "time": now}


def stage_event(exe: Execution, stage: Stage, now: int, kind: str = "stage") -> dict[str, Any]:
    return {"kind": kind, "executionId": exe.id, "stageId": stage.id, "refId": stage.ref_id,
            "name": stage.name, "type": stage.type, "status": str(stage.status), "time": now}


def finish(exe: Execution, status: ExecutionStatus, tx: Tx, now: int) -> None:
    """The execution ends with `status` (orca CompleteExecutionHandler's write)."""
    exe.status, exe.end_time = status, now
    tx.header = True
    tx.events.append(exec_event(exe, now))
