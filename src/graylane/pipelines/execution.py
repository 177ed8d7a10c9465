"""Executions, stages and tasks in memory, and their Spinnaker-shaped JSON.

Each stage keeps `config` (its original, unevaluated pipeline config) apart from `context` (evaluated at
stage start plus runtime inputs), so a restarted stage evaluates its expressions afresh (spinnaker #5507).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from graylane.pipelines.ids import new_ulid
from graylane.pipelines.status import ExecutionStatus

# Stage keys that orca lifts out of the context (PipelineBuilder / StageExecutionImpl).
STRUCTURAL_KEYS = ("refId", "requisiteStageRefIds", "type", "name", "startTimeExpiry")


@dataclass
class Task:
    id: str
    name: str
    implementing_class: str
    status: ExecutionStatus = ExecutionStatus.NOT_STARTED
    start_time: int | None = None
    end_time: int | None = None
    stage_start: bool = False
    stage_end: bool = False
    exception: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "implementingClass": self.implementing_class,
                               "status": str(self.status), "startTime": self.start_time, "endTime": self.end_time,
                               "stageStart": self.stage_start, "stageEnd": self.stage_end,
                               "loopStart": False, "loopEnd": False}
        if self.exception:
            out["taskExceptionDetails"] = self.exception
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Task:
        return cls(d["id"], d["name"], d.get("implementingClass", ""), ExecutionStatus(d["status"]),
                   d.get("startTime"), d.get("endTime"), bool(d.get("stageStart")), bool(d.get("stageEnd")),
                   d.get("taskExceptionDetails"))


@dataclass
class Stage:
    id: str
    ref_id: str
    type: str
    name: str
    requisite_stage_ref_ids: list[str]
    config: dict[str, Any]
    seq: int = 0
    status: ExecutionStatus = ExecutionStatus.NOT_STARTED
    context: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    tasks: list[Task] = field(default_factory=list)
    start_time: int | None = None
    end_time: int | None = None
    last_modified: dict[str, Any] | None = None
    paused_ms: int = 0
    pause_time: int | None = None
    attempt: int = 0  # bumps on restart so stale task results are discarded
    # The answers (judgment records) of its earlier attempts, newest last: a keyed re-send that arrives after a
    # restart is known as the old attempt's, not taken as the new attempt's judgment.
    earlier_answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failure_status(self) -> ExecutionStatus:
        """orca Stage.failureStatus(): continuePipeline -> FAILED_CONTINUE; failPipeline (null|true) -> TERMINAL;
        otherwise STOPPED."""
        ctx = {**self.config, **self.context}
        if ctx.get("continuePipeline") is True:
            return ExecutionStatus.FAILED_CONTINUE
        if ctx.get("failPipeline") in (None, True):
            return ExecutionStatus.TERMINAL
        return ExecutionStatus.STOPPED

    @property
    def complete_other_branches_then_fail(self) -> bool:
        return bool({**self.config, **self.context}.get("completeOtherBranchesThenFail"))

    def current_task(self) -> Task | None:
        for task in self.tasks:
            if not task.status.is_complete:
                return task
        return None

    def to_json(self, *, with_config: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "refId": self.ref_id, "type": self.type, "name": self.name,
            "status": str(self.status), "startTime": self.start_time, "endTime": self.end_time,
            "requisiteStageRefIds": list(self.requisite_stage_ref_ids),
            "context": self.context if self.context or self.status != ExecutionStatus.NOT_STARTED
            else _config_context(self.config),
            "outputs": self.outputs, "tasks": [t.to_json() for t in self.tasks],
            "syntheticStageOwner": None, "parentStageId": None, "scheduledTime": None,
            "lastModified": self.last_modified,
        }
        if with_config:
            out["config"] = self.config
            out["seq"] = self.seq
            out["pausedMs"] = self.paused_ms
            out["pauseTime"] = self.pause_time
            out["attempt"] = self.attempt
            if self.earlier_answers:
                out["earlierAnswers"] = self.earlier_answers
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stage:
        return cls(id=d["id"], ref_id=d["refId"], type=d["type"], name=d["name"],
                   requisite_stage_ref_ids=list(d.get("requisiteStageRefIds") or []), config=d.get("config") or {},
                   seq=d.get("seq", 0), status=ExecutionStatus(d["status"]), context=d.get("context") or {},
                   outputs=d.get("outputs") or {}, tasks=[Task.from_json(t) for t in d.get("tasks") or []],
                   start_time=d.get("startTime"), end_time=d.get("endTime"), last_modified=d.get("lastModified"),
                   paused_ms=d.get("pausedMs", 0), pause_time=d.get("pauseTime"), attempt=d.get("attempt", 0),
                   earlier_answers=list(d.get("earlierAnswers") or []))


def _config_context(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in STRUCTURAL_KEYS}


@dataclass
class Execution:
    id: str
    application: str
    name: str
    pipeline_config_id: str
    status: ExecutionStatus
    build_time: int
    trigger: dict[str, Any]
    stages: list[Stage]
    start_time: int | None = None
    end_time: int | None = None
    canceled: bool = False
    canceled_by: str | None = None
    cancellation_reason: str | None = None
    limit_concurrent: bool = True
    max_concurrent_executions: int = 0
    keep_waiting_pipelines: bool = False
    paused: dict[str, Any] | None = None
    notifications: list[Any] = field(default_factory=list)
    spel_evaluator: str = "v4"
    authentication: dict[str, Any] = field(default_factory=dict)
    origin: str = "api"
    initial_config: dict[str, Any] = field(default_factory=dict)

    def stage(self, id_or_name: str) -> Stage | None:
        """By id, then refId, then first stage with that name (as #stage does)."""
        for attr in ("id", "ref_id", "name"):
            for st in self.stages:
                if getattr(st, attr) == id_or_name:
                    return st
        return None

    def upstream(self, stage: Stage) -> list[Stage]:
        return [s for s in self.stages if s.ref_id in stage.requisite_stage_ref_ids]

    def downstream_closure(self, stage: Stage) -> list[Stage]:
        out: list[Stage] = []
        frontier = [stage.ref_id]
        seen = {stage.ref_id}
        while frontier:
            ref = frontier.pop()
            for s in self.stages:
                if ref in s.requisite_stage_ref_ids and s.ref_id not in seen:
                    seen.add(s.ref_id)
                    out.append(s)
                    frontier.append(s.ref_id)
        return out

    def header_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": "PIPELINE", "application": self.application, "name": self.name,
            "pipelineConfigId": self.pipeline_config_id, "status": str(self.status), "buildTime": self.build_time,
            "startTime": self.start_time, "endTime": self.end_time, "canceled": self.canceled,
            "canceledBy": self.canceled_by, "cancellationReason": self.cancellation_reason,
            "limitConcurrent": self.limit_concurrent, "maxConcurrentExecutions": self.max_concurrent_executions,
            "keepWaitingPipelines": self.keep_waiting_pipelines, "trigger": self.trigger,
            "paused": self.paused, "notifications": self.notifications, "spelEvaluator": self.spel_evaluator,
            "authentication": self.authentication, "origin": self.origin, "initialConfig": self.initial_config,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.header_json()
        out["stages"] = [s.to_json() for s in self.stages]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any], stages: list[Stage]) -> Execution:
        return cls(id=d["id"], application=d["application"], name=d["name"],
                   pipeline_config_id=d["pipelineConfigId"], status=ExecutionStatus(d["status"]),
                   build_time=d["buildTime"], trigger=d.get("trigger") or {}, stages=stages,
                   start_time=d.get("startTime"), end_time=d.get("endTime"), canceled=bool(d.get("canceled")),
                   canceled_by=d.get("canceledBy"), cancellation_reason=d.get("cancellationReason"),
                   limit_concurrent=bool(d.get("limitConcurrent")),
                   max_concurrent_executions=int(d.get("maxConcurrentExecutions") or 0),
                   keep_waiting_pipelines=bool(d.get("keepWaitingPipelines")), paused=d.get("paused"),
                   notifications=d.get("notifications") or [], spel_evaluator=d.get("spelEvaluator") or "v4",
                   authentication=d.get("authentication") or {}, origin=d.get("origin") or "api",
                   initial_config=d.get("initialConfig") or {})


def new_execution(config: dict[str, Any], trigger: dict[str, Any], now_ms: int,
                  execution_id: str | None = None) -> Execution:
    """Build a NOT_STARTED execution from a validated pipeline config (orca PipelineBuilder)."""
    stages = []
    for seq, sc in enumerate(config.get("stages") or []):
        stages.append(Stage(id=new_ulid(now_ms), ref_id=str(sc["refId"]), type=sc["type"],
                            name=sc.get("name") or sc["type"],
                            requisite_stage_ref_ids=[str(r) for r in sc.get("requisiteStageRefIds") or []],
                            config=copy.deepcopy(sc), seq=seq))
    return Execution(
        id=execution_id or new_ulid(now_ms), application=config["application"], name=config["name"],
        pipeline_config_id=config.get("id") or "", status=ExecutionStatus.NOT_STARTED, build_time=now_ms,
        trigger=trigger, stages=stages, limit_concurrent=bool(config.get("limitConcurrent", True)),
        max_concurrent_executions=int(config.get("maxConcurrentExecutions") or 0),
        keep_waiting_pipelines=bool(config.get("keepWaitingPipelines", False)),
        notifications=list(config.get("notifications") or []), spel_evaluator=config.get("spelEvaluator") or "v4",
        authentication={"user": trigger.get("user") or "anonymous", "allowedAccounts": []},
        initial_config={k: v for k, v in config.items() if k != "stages"},
    )
