"""The pipelines' seam to `graylane.expressions`: evaluate stage configs, check `${...}` syntax at import,
and the `Evaluator` tasks get as their expression service (pipelines/services.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graylane import expressions
from graylane.expressions.parser import parse
from graylane.expressions.template import split_template

T = TypeVar("T")
Lookup = Callable[[str, str | None], str | None]


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` (an evaluation) in a worker thread, so the event loop keeps answering meanwhile.

    Expressions are bounded by their own budgets (steps, size, `max_time_s`); this keeps even a budget's
    worth of work away from /healthz, the API and every other execution.
    """
    return await asyncio.to_thread(fn, *args)


@dataclass
class Evaluated:
    value: Any
    summary: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


def _context(execution: dict[str, Any], stage_id: str | None, user: str | None,
             lookup: Lookup | None = None) -> expressions.EvaluationContext:
    if lookup is None:
        return expressions.EvaluationContext(execution=execution, stage_id=stage_id, user=user)
    return expressions.EvaluationContext(execution=execution, stage_id=stage_id, user=user,
                                         options=expressions.ExpressionOptions(pipeline_lookup=lookup))


def evaluate_templated(value: Any, execution: dict[str, Any], stage_id: str | None,
                       user: str | None = None, lookup: Lookup | None = None) -> Evaluated:
    """Evaluate every `${...}` in `value` against the execution, as Spinnaker does at stage start."""
    result = expressions.evaluate_templated(value, _context(execution, stage_id, user, lookup))
    return Evaluated(result.value, dict(result.summary or {}), bool(result.failed))


def evaluate_expression(text: str, execution: dict[str, Any], stage_id: str | None,
                        user: str | None = None, lookup: Lookup | None = None) -> Any:
    """Evaluate one bare expression (no `${}`); raises ExpressionError (a GraylaneError) when it fails."""
    return expressions.evaluate_expression(text, _context(execution, stage_id, user, lookup))


def evaluate_for_execution(execution: dict[str, Any], expression: str, stage_id: str | None = None,
                           user: str | None = None) -> dict[str, Any]:
    return expressions.evaluate_for_execution(execution, expression, stage_id, user=user)


class Evaluator:
    """The expression service of tasks: evaluation with `#pipelineId` resolved by `lookup`."""

    def __init__(self, lookup: Lookup | None = None) -> None:
        self.lookup = lookup

    def templated(self, value: Any, execution: dict[str, Any], stage_id: str | None,
                  user: str | None = None) -> Evaluated:
        return evaluate_templated(value, execution, stage_id, user, self.lookup)

    def expression(self, text: str, execution: dict[str, Any], stage_id: str | None,
                   user: str | None = None) -> Any:
        return evaluate_expression(text, execution, stage_id, user, self.lookup)


def _check_syntax(text: str) -> None:
    for part in split_template(text):
        if part.is_expression:
            parse(part.text)


def syntax_errors(value: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every string in `value` whose `${...}` does not parse."""
    out: list[tuple[tuple[str | int, ...], str]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, i))
        elif isinstance(node, str) and "${" in node:
            try:
                _check_syntax(node)
            except expressions.ExpressionError as exc:
                out.append((path, f"expression does not parse: {exc}"))

    walk(value, ())
    return out
