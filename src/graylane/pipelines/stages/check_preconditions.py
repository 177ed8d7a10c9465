"""`checkPreconditions`: each `expression` / `stageStatus` precondition must hold; its own failPipeline decides
whether a failure halts the pipeline (TERMINAL) or only this branch (STOPPED)."""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError
from graylane.pipelines import evaluation
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class CheckPreconditionsTask(Task):
    name = "checkPreconditions"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        results: list[dict[str, Any]] = []
        for i, pre in enumerate(stage.context.get("preconditions") or []):
            ptype = pre.get("type")
            ctx = pre.get("context") or {}
            fail_pipeline = pre.get("failPipeline", ctx.get("failPipeline", True))
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
                            value = evaluation.evaluate_expression(text, stage.execution, stage.stage_id, stage.user,
                                                                   stage.services.pipeline_lookup)
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
                ctx_update: dict[str, Any] = {"preconditionResults": results, "failPipeline": bool(fail_pipeline)}
                return TaskResult(ExecutionStatus.TERMINAL, ctx_update,
                                  error=f"precondition {i} of stage {stage.name} failed: {why}")
        return TaskResult.succeeded({"preconditionResults": results})


class CheckPreconditionsStage(StageDefinition):
    type = "checkPreconditions"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [CheckPreconditionsTask()]


DEFINITION = CheckPreconditionsStage()
