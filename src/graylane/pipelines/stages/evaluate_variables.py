"""`evaluateVariables`: evaluate `variables` in order, each seeing the ones before; outputs go downstream."""

from __future__ import annotations

import copy
from typing import Any

from graylane.pipelines import evaluation
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


class EvaluateVariablesTask(Task):
    name = "evaluateVariables"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        execution = copy.deepcopy(stage.execution)
        me = next((s for s in execution.get("stages", []) if s.get("id") == stage.stage_id), None)
        outputs: dict[str, Any] = {}
        evaluated: list[dict[str, Any]] = []
        errors: list[str] = []
        for var in stage.context.get("variables") or []:
            key, source = var.get("key"), var.get("sourceValue", var.get("value"))
            if not key:
                continue
            if me is not None:
                me["context"] = {**stage.context, **outputs}
            res = await evaluation.off_loop(stage.services.evaluator().templated, source, execution,
                                            stage.stage_id, stage.user)
            if res.failed:
                errors.append(f"variable {key!r}: " + "; ".join(
                    str(e.get("description")) for es in res.summary.values() for e in es if isinstance(e, dict)))
            outputs[key] = res.value
            evaluated.append({**var, "value": res.value, "sourceValue": source})
        if errors:
            return TaskResult.terminal(f"stage {stage.name}: " + "; ".join(errors), {"variables": evaluated})
        return TaskResult.succeeded({"variables": evaluated}, outputs)


class EvaluateVariablesStage(StageDefinition):
    type = "evaluateVariables"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [EvaluateVariablesTask()]

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        return {"variables"}


DEFINITION = EvaluateVariablesStage()
