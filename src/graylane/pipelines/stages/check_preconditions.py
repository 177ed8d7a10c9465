"""`checkPreconditions`: each `expression` / `stageStatus` precondition must hold.

Orca runs every precondition as a synthetic child stage whose context is the stage's context overlaid with the
precondition's own config (CheckPreconditionsStage.parallelContexts). A failed child ends with its own
failureStatus(): FAILED_CONTINUE when `continuePipeline`, TERMINAL when the precondition's `failPipeline` (or,
absent, the stage's) is true or unset, else STOPPED. The parent then takes STOPPED / FAILED_CONTINUE as they are,
and maps TERMINAL through *its own* options (CompleteStageHandler.determineStatus). So stage failPipeline false +
precondition failPipeline true halts only this branch (STOPPED), as Spinnaker's recorded executions show.
"""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError
from graylane.pipelines import evaluation
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def child_failure_status(stage_context: dict[str, Any], precondition: dict[str, Any]) -> S:
    """The status orca's synthetic precondition stage ends with when its check fails (Stage.failureStatus())."""
    merged = {**stage_context, **precondition}
    if merged.get("continuePipeline") is True:
        return S.FAILED_CONTINUE
    if merged.get("failPipeline") in (None, True):
        return S.TERMINAL
    return S.STOPPED


class CheckPreconditionsTask(Task):
    name = "checkPreconditions"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        results: list[dict[str, Any]] = []
        for i, pre in enumerate(stage.context.get("preconditions") or []):
            ptype = pre.get("type")
            ctx = pre.get("context") or {}
            if ptype == "expression":
                expr = ctx.get("expression", "false")
                if isinstance(expr, bool):
                    ok, value = expr, expr
                else:
                    text = str(expr).strip()
                    if text.startswith("${") and text.endswith("}"):
                        text = text[2:-1]
                    if text.lower() in ("true", "false"):
                        value: Any = text.lower() == "true"
                    else:
                        try:
                            value = await evaluation.off_loop(stage.services.evaluator().expression, text,
                                                              stage.execution, stage.stage_id, stage.user)
                        except GraylaneError as exc:
                            value = f"error: {exc}"
                    ok = _truthy(value)
                results.append({"type": ptype, "expression": expr, "expressionResult": str(value).lower()
                                if isinstance(value, bool) else str(value), "passed": ok})
                why = f"expression {expr!r} is {value!r}, not true"
            elif ptype == "stageStatus":
                wanted = str(ctx.get("stageStatus", "SUCCEEDED"))
                name = ctx.get("stageName")
                found = next((s for s in stage.execution.get("stages", []) if s.get("name") == name), None)
                actual = found.get("status") if found else None
                ok = actual == wanted
                results.append({"type": ptype, "stageName": name, "stageStatus": wanted, "actual": actual,
                                "passed": ok})
                why = f"stage {name!r} is {actual or 'missing'}, expected {wanted}"
            else:
                return TaskResult.terminal(f"precondition {i}: unsupported type {ptype!r} "
                                           "(expression and stageStatus are supported)")
            if not ok:
                # TERMINAL is mapped by the executor through the stage's own failure options; STOPPED and
                # FAILED_CONTINUE are final, as a synthetic child's status is for its parent in orca.
                status = child_failure_status(stage.context, pre if isinstance(pre, dict) else {})
                results[-1]["status"] = str(status)
                return TaskResult(status, {"preconditionResults": results},
                                  error=f"precondition {i} of stage {stage.name} failed: {why}")
        return TaskResult.succeeded({"preconditionResults": results})


class CheckPreconditionsStage(StageDefinition):
    type = "checkPreconditions"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [CheckPreconditionsTask()]


DEFINITION = CheckPreconditionsStage()
