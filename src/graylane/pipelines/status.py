"""Spinnaker's ExecutionStatus, spelled as orca spells it, with its complete/halt sets."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUSPENDED = "SUSPENDED"
    SUCCEEDED = "SUCCEEDED"
    FAILED_CONTINUE = "FAILED_CONTINUE"
    TERMINAL = "TERMINAL"
    CANCELED = "CANCELED"
    REDIRECT = "REDIRECT"
    STOPPED = "STOPPED"
    SKIPPED = "SKIPPED"
    BUFFERED = "BUFFERED"

    @property
    def is_complete(self) -> bool:
        return self in _COMPLETE

    @property
    def is_halt(self) -> bool:
        return self in _HALT

    @property
    def is_successful(self) -> bool:
        return self in (ExecutionStatus.SUCCEEDED, ExecutionStatus.STOPPED, ExecutionStatus.SKIPPED)

    @property
    def lets_downstream_run(self) -> bool:
        """An upstream stage in one of these lets its downstream stages start (orca allUpstreamStagesComplete)."""
        return self in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED_CONTINUE, ExecutionStatus.SKIPPED)


_COMPLETE = frozenset({ExecutionStatus.CANCELED, ExecutionStatus.SUCCEEDED, ExecutionStatus.STOPPED,
                       ExecutionStatus.SKIPPED, ExecutionStatus.TERMINAL, ExecutionStatus.FAILED_CONTINUE})
_HALT = frozenset({ExecutionStatus.TERMINAL, ExecutionStatus.CANCELED, ExecutionStatus.STOPPED})

ACTIVE = (ExecutionStatus.NOT_STARTED, ExecutionStatus.RUNNING, ExecutionStatus.PAUSED, ExecutionStatus.BUFFERED)
