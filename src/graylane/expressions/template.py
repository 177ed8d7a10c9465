"""`${...}` templating over strings, maps and lists, with Spinnaker's `expressionEvaluationSummary`.

A string that is exactly one `${...}` keeps the typed result; text mixed with expressions becomes
a string. A failed expression leaves the text as written and adds a summary entry (kork's
ExpressionTransform / ExpressionEvaluationSummary); the stage decides what a failure means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from graylane.expressions.context import EvaluationContext
from graylane.expressions.errors import ExpressionError, ExpressionSyntaxError, LimitExceeded
from graylane.expressions.evaluate import Evaluator, Note, to_plain
from graylane.expressions.parser import MAX_EXPRESSION_LENGTH, parse, parse_uncached
from graylane.expressions.semantics import NotEvaluable, to_string

SUMMARY_KEY = "expressionEvaluationSummary"
_OPENERS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a template: literal text, or an expression (`start` = offset of its first character)."""

    text: str
    is_expression: bool
    start: int = 0


def _scan_expression(text: str, start: int) -> int:
    """Index of the `}` closing the expression that starts at `start` (just after `${`)."""
    stack: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch in ("'", '"'):
            end = i + 1
            while True:
                end = text.find(ch, end)
                if end == -1:
                    raise ExpressionSyntaxError("a string in the expression is not closed", position=i - start)
                if text.startswith(ch * 2, end):
                    end += 2
                    continue
                break
            i = end + 1
            continue
        if ch == "$" and text.startswith("${", i):
            raise ExpressionSyntaxError("expressions cannot be nested (`${` inside `${...}`); to write a literal "
                                        '`${`, use ${"${"}', position=i - start)
        if ch in _OPENERS:
            stack.append(_OPENERS[ch])
        elif ch in ")]}":
            if not stack and ch == "}":
                return i
            if stack and stack[-1] == ch:
                stack.pop()
        i += 1
    raise ExpressionSyntaxError("`${` has no closing `}`", position=len(text) - start)


@lru_cache(maxsize=2048)
def split_template(text: str) -> tuple[Part, ...]:
    """Split text into literal and expression parts; raises ExpressionSyntaxError on bad `${`."""
    parts: list[Part] = []
    cursor = 0
    while True:
        open_at = text.find("${", cursor)
        if open_at == -1:
            break
        if open_at > cursor:
            parts.append(Part(text[cursor:open_at], False))
        end = _scan_expression(text, open_at + 2)
        parts.append(Part(text[open_at + 2:end], True, open_at + 2))
        cursor = end + 1
    if cursor < len(text):
        parts.append(Part(text[cursor:], False))
    return tuple(parts)


def has_expression(value: str) -> bool:
    return "${" in value


def render_path(at: Any) -> str:
    """`(((None-ish, "spec"), "http"), 0)` -> "spec.http[0]"."""
    segments: list[Any] = []
    while isinstance(at, tuple):
        at, segment = at
        segments.append(segment)
    text = ""
    for segment in reversed(segments):
        if isinstance(segment, int) and not isinstance(segment, bool):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else str(segment)
    return text


@dataclass
class Templated:
    """The evaluated value, the summary (empty when nothing failed) and whether any expression failed."""

    value: Any
    summary: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed: bool = False


class _Walk:
    """One templating pass: evaluates every string, collects summary entries with their JSON path."""

    def __init__(self, ctx: EvaluationContext, use_cache: bool) -> None:
        self.ctx = ctx
        self.use_cache = use_cache
        self.summary: dict[str, list[dict[str, Any]]] = {}
        self.failed = False
        self.timestamp = int(ctx.options.clock().timestamp() * 1000)
        self.evaluator = Evaluator(ctx)

    # -- summary ----------------------------------------------------------------------------------
    def add(self, key: str, level: str, description: str, exception_type: str, path: str,
            position: int | None) -> None:
        entry = {"description": description, "exceptionType": exception_type, "level": level,
                 "timestamp": self.timestamp, "path": path or "$"}
        if position is not None:
            entry["position"] = position
        self.summary.setdefault(key.replace("$", "")[:MAX_EXPRESSION_LENGTH] or "<empty>", []).append(entry)
        if level == "ERROR":
            self.failed = True

    def add_error(self, expression: str, exc: ExpressionError, at: Any) -> None:
        path = render_path(at)
        exc.located(expression)
        self.add(expression, "ERROR", f"Failed to evaluate [{path or expression}] {exc.describe()}",
                 exc.exception_type, path, exc.position)

    def add_not_found(self, expression: str, notes: list[Note], at: Any) -> None:
        path = render_path(at)
        why = "; ".join(dict.fromkeys(note.message for note in notes))
        description = f"Failed to evaluate [{path or expression}] {expression.strip()} not found"
        if why:
            description += f" ({why})"
        self.add(expression, "INFO", description, "ExpressionNotFound", path,
                 notes[0].position if notes else None)

    # -- walking ----------------------------------------------------------------------------------
    # Paths are built lazily as (parent, segment) pairs: most values never need theirs rendered.
    def value(self, value: Any, path: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.string(value, path) if "${" in value else value
        if kind is dict or (kind is not list and isinstance(value, Mapping)):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if key == SUMMARY_KEY:
                    out[key] = item
                    continue
                child = (path, key)
                if type(key) is str and "${" in key:
                    new_key = self.string(key, child)
                    if not isinstance(new_key, str):
                        new_key = to_string(new_key)  # an evaluated key is always text, as in kork
                    key = new_key
                out[key] = self.value(item, child)
            return out
        if kind is list:
            return [self.value(item, (path, i)) for i, item in enumerate(value)]
        return value

    def evaluate(self, expression: str) -> tuple[Any, list[Note]]:
        node = parse(expression) if self.use_cache else parse_uncached(expression)
        evaluator = self.evaluator
        raw = evaluator.run(node)
        if isinstance(raw, NotEvaluable):
            return raw, evaluator.notes
        return to_plain(raw, max_size=self.ctx.options.max_result_size, position=node.pos), evaluator.notes

    def string(self, text: str, path: Any) -> Any:
        try:
            parts = split_template(text) if self.use_cache else split_template.__wrapped__(text)
        except ExpressionError as exc:
            self.add_error(text.replace("${", "", 1).rstrip("}"), exc, path)
            return text
        if len(parts) == 1 and parts[0].is_expression:
            expression = parts[0].text
            try:
                result, notes = self.evaluate(expression)
            except ExpressionError as exc:
                self.add_error(expression, exc, path)
                return text
            if isinstance(result, NotEvaluable):
                return to_plain(result.value, max_size=self.ctx.options.max_result_size)
            if result is None:
                self.add_not_found(expression, notes, path)
                return text
            return result
        pieces: list[str] = []
        size = 0
        limit = self.ctx.options.max_string_length
        for part in parts:
            if size > limit:  # each result is bounded; together they must be too
                self.add_error(part.text, LimitExceeded(f"the text grows past {limit} characters"), path)
                return text
            if not part.is_expression:
                pieces.append(part.text)
                size += len(part.text)
                continue
            try:
                result, notes = self.evaluate(part.text)
            except ExpressionError as exc:
                self.add_error(part.text, exc, path)
                return text
            if isinstance(result, NotEvaluable):
                result = result.value
            if result is None:
                self.add_not_found(part.text, notes, path)
                pieces.append("${" + part.text + "}")
            else:
                try:
                    pieces.append(to_string(result, max(limit - size, 0) + 1))
                except LimitExceeded as exc:
                    self.add_error(part.text, exc, path)
                    return text
            size += len(pieces[-1])
        if size > limit:
            self.add_error(text, LimitExceeded(f"the text grows past {limit} characters"), path)
            return text
        return "".join(pieces)


def evaluate_templated(value: Any, ctx: EvaluationContext, *, use_cache: bool = True) -> Templated:
    """Evaluate every `${...}` in a string, map or list (keys too); never raises for a bad expression.

    >>> evaluate_templated({"weight": "${100 - 40}", "name": "v${1 + 1}"}, ctx).value
    {'weight': 60, 'name': 'v2'}
    """
    walk = _Walk(ctx, use_cache)
    result = walk.value(value, None)
    return Templated(result, walk.summary, walk.failed)


def evaluate_expression(text: str, ctx: EvaluationContext, *, use_cache: bool = True) -> Any:
    """Evaluate one bare expression (no `${}`, as in stageEnabled); `${...}` around it is accepted.

    Raises ExpressionError (with the expression and position filled in) on any failure.
    """
    expression = text
    stripped = text.strip()
    if stripped.startswith("${") and stripped.endswith("}"):
        parts = split_template(stripped)
        if len(parts) == 1 and parts[0].is_expression:
            expression = parts[0].text
    try:
        node = parse(expression) if use_cache else parse_uncached(expression)
        raw = Evaluator(ctx).run(node)
        if isinstance(raw, NotEvaluable):
            raw = raw.value
        return to_plain(raw, max_size=ctx.options.max_result_size, position=node.pos)
    except ExpressionError as exc:
        raise exc.located(expression) from None
