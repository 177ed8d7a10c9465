"""User-facing errors: one clear line saying what went wrong, where, and how to fix it."""

from __future__ import annotations


class GraylaneError(Exception):
    """An error caused by input or state the user can fix; the CLI prints it as one line and exits with the
    code `graylane.cli.exit_codes.for_error` gives its class (1 refused, 2 not found, 3 wrong state)."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, where={self.where!r}, hint={self.hint!r})"


class ValidationError(GraylaneError):
    """Input does not match a schema or an admission rule."""


class NotFound(GraylaneError):
    """A named object does not exist."""


class Conflict(GraylaneError):
    """An update was made against a stale resourceVersion, or an object already exists."""


class Forbidden(GraylaneError):
    """The caller is known but lacks the role or right for this action."""
