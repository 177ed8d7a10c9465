"""Execution ids as people type them: a whole id, or any prefix of one that names a single execution.

Resolved against the control plane's execution list (`GET /api/v1/executions?limit=0`, headers only),
as git resolves abbreviated commit ids. Used by every command that takes an execution id.
"""

from __future__ import annotations

from typing import Any

from graylane.cli.client import ApiClient
from graylane.errors import NotFound, ValidationError

ULID_LENGTH = 26  # graylane.pipelines.ids.new_ulid
_SHOWN = 5  # candidates named in an "ambiguous" error


def resolve_execution_id(client: ApiClient, text: str) -> str:
    """The one execution id that starts with `text` (case-insensitive, as ULIDs are).

    `01KBX3` -> `01KBX3R1W6Y8M2V0T4D9Q7H5ZC` when no other execution starts with `01KBX3`.
    """
    wanted = text.strip()
    if not wanted:
        raise ValidationError("the execution id is empty", hint="`graylane execution list` shows the ids")
    if len(wanted) >= ULID_LENGTH:  # a whole id: the command's own request says whether it exists
        return wanted
    rows: list[dict[str, Any]] = client.get("/api/v1/executions", params={"limit": 0})
    ids = [str(row["id"]) for row in rows]
    if wanted in ids:
        return wanted
    found = [i for i in ids if i.upper().startswith(wanted.upper())]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no execution id starts with {wanted!r}",
                       hint="`graylane execution list` shows the ids")
    names = {str(row["id"]): f"{row.get('application')}/{row.get('name')}" for row in rows}
    listed = ", ".join(f"{i} ({names[i]})" for i in found[:_SHOWN])
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    raise ValidationError(f"execution id prefix {wanted!r} is ambiguous: {len(found)} executions start with it: "
                          f"{listed}{more}", hint="type more of the id")
