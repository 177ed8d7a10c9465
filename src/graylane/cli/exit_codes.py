"""The CLI's exit codes: one scheme for every command (docs/cli.md), mapped from errors in one place.

`graylane.cli.main` turns a `GraylaneError` (raised here or rebuilt from the API's 404/409 answers by
the API client) into a code with `for_error`; commands that answer a yes/no question (`execution
wait`, `pipeline run --watch`, `diff`, `expr`) exit with these same constants.
"""

from __future__ import annotations

from graylane.errors import Conflict, GraylaneError, NotFound

OK = 0
REFUSED = 1  # refused or invalid input (bad arguments, validation, a missing role); a gate that says no
NOT_FOUND = 2  # the named object does not exist (HTTP 404)
WRONG_STATE = 3  # the object exists but is not in a state for this (HTTP 409): a stage not waiting, a stale version
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT



class StillWaiting(GraylaneError):
    """A wait ran out of time before the object reached the state waited for (`apply --wait`)."""


# Most specific first: the first class the error is an instance of decides.
_BY_ERROR: tuple[tuple[type[GraylaneError], int], ...] = (
    (NotFound, NOT_FOUND), (Conflict, WRONG_STATE), (StillWaiting, WRONG_STATE))


def for_error(exc: GraylaneError) -> int:
    """The exit code for a user error.

    >>> for_error(NotFound("no execution 'x'"))
    2
    """
    return next((code for cls, code in _BY_ERROR if isinstance(exc, cls)), REFUSED)
