"""What a stage's task sees (StageView) and returns (TaskResult); tasks never write execution state.

The scheduler runs a task, then commits the result. RUNNING means "call me again after `retry_after_s`".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from graylane.pipelines.status import ExecutionStatus

if TYPE_CHECKING:
    from graylane.pipelines.services import TaskServices


@dataclass
class TaskResult:
    status: ExecutionStatus
    context: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    retry_after_s: float | None = None
    error: str | None = None  # a readable reason for TERMINAL: what, which stage, limits

    @classmethod
    def succeeded(cls, context: dict[str, Any] | None = None, outputs: dict[str, Any] | None = None) -> TaskResult:
        return cls(ExecutionStatus.SUCCEEDED, context or {}, outputs or {})

    @classmethod
    def running(cls, retry_after_s: float, context: dict[str, Any] | None = None,
                outputs: dict[str, Any] | None = None) -> TaskResult:
        return cls(ExecutionStatus.RUNNING, context or {}, outputs or {}, retry_after_s=retry_after_s)

    @classmethod
    def terminal(cls, error: str, context: dict[str, Any] | None = None) -> TaskResult:
        return cls(ExecutionStatus.TERMINAL, context or {}, {}, error=error)


@dataclass(frozen=True)
class StageView:  # frozen, but cached_property still works: it writes the instance __dict__
    """A read-only snapshot of the stage a task runs for, with the execution JSON around it."""

    execution_id: str
    stage_id: str
    ref_id: str
    name: str
    type: str
    context: dict[str, Any]
    outputs: dict[str, Any]
    start_time: int
    now_ms: int
    paused_ms: int
    execution_json: Callable[[], dict[str, Any]]  # built on first use: most quick tasks never read it
    user: str
    services: TaskServices
    attempt: int = 0

    @functools.cached_property
    def execution(self) -> dict[str, Any]:
        """The whole execution as Spinnaker JSON (for expressions and upstream lookups)."""
        return self.execution_json()

    @property
    def actor(self) -> str:
        return f"pipeline:{self.execution_id}/{self.stage_id}"


class Task:
    """One step of a stage (orca Task). Subclasses set `name` and implement `run`."""

    name: ClassVar[str] = "task"
    # Quick tasks with no outside effects run inside the scheduler step; others run concurrently.
    inline: ClassVar[bool] = False
    timeout_ms: ClassVar[int | None] = None
    backoff_s: ClassVar[float] = 1.0

    async def run(self, stage: StageView) -> TaskResult:
        raise NotImplementedError

    async def on_cancel(self, stage: StageView) -> None:
        """Undo or stop outside work when the execution is canceled (default: nothing)."""

    async def on_timeout(self, stage: StageView) -> None:
        """Stop outside work when the task times out, before the stage fails (orca Task.onTimeout; default: nothing)."""


# The stage context key of a one-answer stage's recorded answer (StageDefinition.answered / answer_record).
ANSWER_RECORD = "judgmentRecord"


class StageDefinition:
    """A stage type: its tasks, which config keys are not evaluated at stage start, skip rules."""

    type: ClassVar[str] = ""
    can_manually_skip: ClassVar[bool] = False

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        raise NotImplementedError

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        """Config keys left as written at stage start (a task evaluates them itself, or never)."""
        return set()

    def patch_fields(self) -> frozenset[str]:
        """Fields a PATCH of a running stage of this type may carry (besides `manualSkip`)."""
        return frozenset()

    def validate_patch(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                       roles: list[str]) -> tuple[dict[str, Any], str]:
        """(context updates, audit action) for a PATCH, or a ValidationError; nothing is written on error."""
        from graylane.errors import ValidationError

        raise ValidationError(f"stage {name!r} is a {self.type} stage and takes no input "
                              f"({', '.join(sorted(body))})")

    def answered(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                 key: str | None) -> dict[str, Any] | None:
        """For a type answered once per stage attempt (manualJudgment): the recorded answer (ANSWER_RECORD in the
        context) when `body` re-sends it (nothing is written; the sender is told so), a Conflict when the stage
        was answered otherwise, None while unanswered. Types that take input repeatedly: always None."""
        return None

    def answer_record(self, context: dict[str, Any], updates: dict[str, Any], body: dict[str, Any], *,
                      user: str, key: str | None, now: int) -> dict[str, Any] | None:
        """The record of the one answer this PATCH gives (`{user, time, idempotencyKey, request: {...}}`, kept
        at ANSWER_RECORD; the store refuses a second per stage attempt), or None when it answers nothing."""
        return None

    def can_skip(self, context: dict[str, Any]) -> bool:
        """Whether `PATCH {"manualSkip": true}` may skip a running stage of this type (orca canManuallySkip)."""
        return self.can_manually_skip
