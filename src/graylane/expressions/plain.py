"""The JSON-shaped value of an expression's result: wrappers unwrapped, dates and UUIDs as text, size-bounded.

Shared by the evaluator, the templating walk and the `#toJson` helper (its own module so that the helpers
need not import the evaluator)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from graylane.expressions.errors import LimitExceeded
from graylane.expressions.semantics import Instant, JavaObject, NotEvaluable, to_string
from graylane.expressions.statics import JavaType


def to_plain(value: Any, *, max_size: int, position: int | None = None) -> Any:
    """The JSON-shaped result: wrappers unwrapped, dates and UUIDs as text; raises past `max_size`."""
    kind = type(value)
    if kind is int or kind is bool or kind is float or value is None:
        return value
    if kind is str and len(value) + 2 <= max_size:
        return value
    budget = [max_size]

    def spend(amount: int) -> None:
        budget[0] -= amount
        if budget[0] < 0:
            raise LimitExceeded(f"the result is larger than {max_size} characters", position=position)

    def convert(v: Any, depth: int) -> Any:
        if depth > 200:
            raise LimitExceeded("the result nests deeper than 200 levels", position=position)
        if v is None or isinstance(v, bool | int | float):
            spend(8)
            return v
        if isinstance(v, str):
            spend(len(v) + 2)
            return v
        if isinstance(v, list):
            spend(2)
            return [convert(x, depth + 1) for x in v]
        if isinstance(v, Mapping):
            spend(2)
            out = {}
            for k, x in v.items():
                key = k if isinstance(k, str) else to_string(k)
                spend(len(key) + 4)
                out[key] = convert(x, depth + 1)
            return out
        if isinstance(v, dt.date | Instant | uuid.UUID):
            text = to_string(v)
            spend(len(text))
            return text
        if isinstance(v, JavaObject):  # a Date as epoch ms (as Jackson writes it), others as text
            return convert(v.plain(), depth + 1)
        if isinstance(v, NotEvaluable):  # nested: its plain value (only a whole result stays marked)
            return convert(v.value, depth + 1)
        if isinstance(v, JavaType):
            return f"T({v.name})"
        text = to_string(v, max(budget[0], 0))
        spend(len(text))
        return text

    return convert(value, 0)
