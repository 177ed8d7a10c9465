"""Evaluate one expression against a whole execution, as orca's evaluateExpression endpoint does.

Used by `graylane expr` and `POST /api/v1/executions/{id}/evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.errors import NotFound
from graylane.expressions.context import EvaluationContext, ExpressionOptions
from graylane.expressions.functions import quote
from graylane.expressions.template import evaluate_templated, has_expression


def find_stage(execution: Mapping[str, Any], name_or_id: str) -> Mapping[str, Any]:
    """The stage with this id, refId or name (in that order); NotFound lists the stages."""
    stages = [s for s in execution.get("stages") or [] if isinstance(s, Mapping)]
    for key in ("id", "refId", "name"):
        for stage in stages:
            if stage.get(key) is not None and str(stage.get(key)) == name_or_id:
                return stage
    names = ", ".join(quote(s.get("name")) for s in stages) or "none"
    raise NotFound(f"no stage named {quote(name_or_id)} in execution {execution.get('id', '?')}; "
                   f"stages are: {names}", hint="pass a stage name, id or refId")


def evaluate_for_execution(execution: dict[str, Any], expression: str, stage_name_or_id: str | None,
                           user: str | None = None, options: ExpressionOptions | None = None) -> dict[str, Any]:
    """`{"result", "summary", "failed"}` for `${...}` text, or a bare expression (treated as `${expr}`).

    With a stage, its context and its ancestors' outputs join the root; without, the execution is
    the root. A failed expression gives its raw text as `result` and the cause in `summary`.
    """
    stage_id = None
    if stage_name_or_id is not None:
        stage = find_stage(execution, stage_name_or_id)
        stage_id = str(stage.get("id") if stage.get("id") is not None else stage.get("refId"))
    ctx = EvaluationContext(execution=execution, stage_id=stage_id, user=user, options=options or ExpressionOptions())
    text = expression if has_expression(expression) else "${" + expression + "}"
    templated = evaluate_templated(text, ctx)
    return {"result": templated.value, "summary": templated.summary, "failed": templated.failed}
