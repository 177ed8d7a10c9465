"""`wait`: hold for `waitTime` seconds (may be an expression), or until `skipRemainingWait` is set."""

from __future__ import annotations

from typing import Any

from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


class WaitTask(Task):
    name = "wait"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        raw = stage.context.get("waitTime", 0)
        try:
            wait_s = float(raw)
        except (TypeError, ValueError):
            return TaskResult.terminal(f"stage {stage.name}: waitTime {raw!r} is not a number of seconds")
        if stage.context.get("skipRemainingWait"):
            return TaskResult.succeeded()
        due_ms = stage.start_time + stage.paused_ms + int(wait_s * 1000)
        if stage.now_ms >= due_ms:
            return TaskResult.succeeded()
        return TaskResult.running(retry_after_s=(due_ms - stage.now_ms) / 1000)


class WaitStage(StageDefinition):
    type = "wait"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [WaitTask()]

    def patch_fields(self) -> frozenset[str]:
        return frozenset({"skipRemainingWait"})

    def validate_patch(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                       roles: list[str]) -> tuple[dict[str, Any], str]:
        return {"skipRemainingWait": bool(body["skipRemainingWait"])}, "skipWait"


DEFINITION = WaitStage()
