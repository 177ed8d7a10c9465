"""The pipelines' seam to `graylane.expressions`: evaluate stage configs, check syntax at import.

Until the expressions package is installed, values pass through unevaluated and checks find nothing.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graylane.errors import GraylaneError


class ExpressionsUnavailable(GraylaneError):
    """The expressions package is not installed in this build."""


T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` (an evaluation) in a worker thread, so the event loop keeps answering meanwhile.

    Expressions are bounded by their own budgets (steps, size, `max_time_s`); this keeps even a budget's
    worth of work away from /healthz, the API and every other execution.
    """
    return await asyncio.to_thread(fn, *args)


def _module() -> Any | None:
    try:
        mod = importlib.import_module("graylane.expressions")
    except ImportError:
        return None
    return mod if hasattr(mod, "evaluate_templated") else None


def available() -> bool:
    return _module() is not None


@dataclass
class Evaluated:
    value: Any
    summary: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


Lookup = Callable[[str, "str | None"], "str | None"]


def _context(execution: dict[str, Any], stage_id: str | None, user: str | None, lookup: Lookup | None = None) -> Any:
    mod = _module()
    assert mod is not None
    if lookup is None:
        return mod.EvaluationContext(execution=execution, stage_id=stage_id, user=user)
    return mod.EvaluationContext(execution=execution, stage_id=stage_id, user=user,
                                 options=mod.ExpressionOptions(pipeline_lookup=lookup))


def evaluate_templated(value: Any, execution: dict[str, Any], stage_id: str | None,
                       user: str | None = None, lookup: Lookup | None = None) -> Evaluated:
    """Evaluate every `${...}` in `value` against the execution, as Spinnaker does at stage start."""
    mod = _module()
    if mod is None:
        return Evaluated(value)
    result = mod.evaluate_templated(value, _context(execution, stage_id, user, lookup))
    return Evaluated(result.value, dict(getattr(result, "summary", None) or {}), bool(getattr(result, "failed", False)))


def evaluate_expression(text: str, execution: dict[str, Any], stage_id: str | None,
                        user: str | None = None, lookup: Lookup | None = None) -> Any:
    """Evaluate one bare expression (no `${}`); raises GraylaneError (ExpressionError) when it fails."""
    mod = _module()
    if mod is None:
        raise ExpressionsUnavailable(f"cannot evaluate {text!r}: the expressions package is not installed")
    try:
        return mod.evaluate_expression(text, _context(execution, stage_id, user, lookup))
    except GraylaneError:
        raise
    except Exception as exc:  # ExpressionError may not subclass GraylaneError; convert at this seam
        if type(exc).__name__ == "ExpressionError":
            raise GraylaneError(str(exc)) from None
        raise


def evaluate_for_execution(execution: dict[str, Any], expression: str, stage_id: str | None = None,
                           user: str | None = None) -> Any:
    mod = _module()
    if mod is None or not hasattr(mod, "evaluate_for_execution"):
        raise ExpressionsUnavailable("the expressions package is not installed")
    return mod.evaluate_for_execution(execution, expression, stage_id, user=user)


def _syntax_checker() -> Any | None:
    if _module() is None:
        return None
    try:
        from graylane.expressions.parser import parse
        from graylane.expressions.template import split_template
    except ImportError:
        return None

    def check(text: str) -> None:
        for part in split_template(text):
            if part.is_expression:
                parse(part.text)

    return check


def syntax_errors(value: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every string in `value` whose `${...}` does not parse."""
    checker = _syntax_checker()
    if checker is None:
        return []
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
                res = checker(node)
            except Exception as exc:  # the checker raises ExpressionError for bad syntax
                out.append((path, f"expression does not parse: {exc}"))
                return
            if isinstance(res, list) and res:
                out.append((path, f"expression does not parse: {res[0]}"))

    walk(value, ())
    return out
