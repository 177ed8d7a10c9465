"""restrictExecutionDuringTimeWindow: hold a stage until the clock is inside `restrictedExecutionWindow`.

Days are java.util.Calendar numbers as orca uses them (1 = Sunday ... 7 = Saturday); hours are the
control plane's local time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.tasks import StageView, Task, TaskResult


def _calendar_day(dt: datetime) -> int:
    return (dt.isoweekday() % 7) + 1  # Monday=1 in ISO -> 2; Sunday=7 -> 1


def in_window(window: dict[str, Any], dt: datetime) -> bool:
    days = window.get("days") or []
    if days and _calendar_day(dt) not in {int(x) for x in days}:
        return False
    ranges = window.get("whitelist") or []
    if not ranges:
        return True
    minute = dt.hour * 60 + dt.minute
    for r in ranges:
        start = int(r.get("startHour", 0)) * 60 + int(r.get("startMin", 0))
        end = int(r.get("endHour", 0)) * 60 + int(r.get("endMin", 0))
        if start <= end and start <= minute < end:
            return True
        if start > end and (minute >= start or minute < end):  # window over midnight
            return True
    return False


def next_window_start(window: dict[str, Any], dt: datetime) -> datetime | None:
    probe = dt.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(8 * 24 * 60):
        if in_window(window, probe):
            return probe
        probe += timedelta(minutes=1)
    return None


class TimeWindowTask(Task):
    name = "suspendExecutionDuringTimeWindow"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        window = stage.context.get("restrictedExecutionWindow") or {}
        now = datetime.fromtimestamp(stage.now_ms / 1000)
        if in_window(window, now):
            return TaskResult.succeeded()
        nxt = next_window_start(window, now)
        if nxt is None:
            return TaskResult.terminal(f"stage {stage.name}: restrictedExecutionWindow never opens")
        return TaskResult(ExecutionStatus.RUNNING, {"executionWindowOpensAt": nxt.isoformat()},
                          retry_after_s=min(3600.0, max(1.0, (nxt - now).total_seconds())))
