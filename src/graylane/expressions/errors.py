"""Expression errors: what failed, where in the text (with a caret), and why in plain words."""

from __future__ import annotations

import unicodedata

from graylane.errors import GraylaneError


def _display_width(text: str) -> int:
    """Columns a terminal uses for `text` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def caret_excerpt(expression: str, position: int | None) -> str:
    """The line of `expression` holding `position`, and a caret under that character.

    >>> print(caret_excerpt("1 + #nope()", 4))
    1 + #nope()
        ^
    """
    if position is None or not expression:
        return expression
    position = max(0, min(position, len(expression)))
    line_start = expression.rfind("\n", 0, position) + 1
    line_end = expression.find("\n", position)
    if line_end == -1:
        line_end = len(expression)
    line = expression[line_start:line_end]
    return f"{line}\n{' ' * _display_width(expression[line_start:position])}^"


class ExpressionError(GraylaneError):
    """An expression could not be parsed or evaluated; `cause` says why in plain words.

    `expression` and `position` (0-based character offset) are filled in by the layer that knows
    the text; `exception_type` is the summary's `exceptionType`.
    """

    exception_type = "ExpressionEvaluationException"

    def __init__(self, cause: str, *, position: int | None = None, expression: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(cause, hint=hint)
        self.cause = cause
        self.position = position
        self.expression = expression

    def located(self, expression: str, base: int = 0) -> ExpressionError:
        """Attach the source text (once); `base` shifts a position relative to a sub-expression."""
        if self.expression is None:
            self.expression = expression
            if self.position is not None:
                self.position += base
        return self

    def describe(self) -> str:
        """Cause, then the expression with a caret under the failing character."""
        text = self.cause
        if self.hint:
            text += f" ({self.hint})"
        if self.expression is not None:
            where = "" if self.position is None else f" at position {self.position}"
            text += f"\nin expression{where}:\n{caret_excerpt(self.expression, self.position)}"
        return text

    def __str__(self) -> str:
        if self.expression is None:
            return super().__str__()
        where = "" if self.position is None else f" (position {self.position})"
        return f"expression {self.expression!r}{where}: {super().__str__()}"


class ExpressionSyntaxError(ExpressionError):
    """The text is not a valid expression."""

    exception_type = "ExpressionParseException"


class EvaluationError(ExpressionError):
    """A valid expression failed while evaluating (bad type, missing stage, division by zero, ...)."""


class FunctionError(EvaluationError):
    """A helper function such as `#stage` or `#toInt` refused its arguments."""

    exception_type = "SpelHelperFunctionException"


class LimitExceeded(ExpressionError):
    """The expression or its result went past a safety limit (length, steps, size, depth)."""

    exception_type = "ExpressionLimitException"
