"""Lease fencing of the changes stages send to Kubernetes clusters (several control-plane replicas).

The fencing token guards the database (graylane.pipelines.leases); a write to a cluster cannot be recalled, so
each one a stage sends (deployManifest, deleteManifest, patchManifest, scaleManifest, trafficShift and
canaryRollout weights, runJobManifest: every apply, delete and patch of a Kubernetes target whose actor is
`pipeline:<execution>/<stage>`) first re-checks, in the database, that this replica still holds the execution's
lease (extending it), and is sent only before that lease could expire. Applied objects are annotated with the
execution and the fencing token. Not fenced: the local account (its store writes are transactions of their
own) and writes by users. docs/operations.md, "Outside effects".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

EXECUTION_ANNOTATION = "graylane.io/execution"
TOKEN_ANNOTATION = "graylane.io/fencing-token"
_NO_DEADLINE = float("inf")


def execution_of(actor: str) -> str | None:
    """The execution id of a stage's actor (`pipeline:<execution>/<stage>`), else None.

    >>> execution_of("pipeline:01HX/stage-1"), execution_of("user:ann")
    ('01HX', None)
    """
    if not actor.startswith("pipeline:"):
        return None
    return actor[len("pipeline:"):].split("/", 1)[0] or None


def lease_guard(leases_of: Callable[[], Any]) -> Callable[[str], Awaitable[tuple[dict[str, str], float]]]:
    """A targets.base.WriteGuard: `leases_of()` is the executor's Leases (None when single-replica, on SQLite)."""

    async def guard(actor: str) -> tuple[dict[str, str], float]:
        execution_id = execution_of(actor)
        leases = leases_of()
        if execution_id is None or leases is None:
            return {}, _NO_DEADLINE
        token, deadline = leases.check(execution_id)
        return {EXECUTION_ANNOTATION: execution_id, TOKEN_ANNOTATION: str(token)}, deadline

    return guard


def fencing_lookup(lookup: Callable[..., Awaitable[Any]], leases_of: Callable[[], Any]
                   ) -> Callable[..., Awaitable[Any]]:
    """Stages' target lookup: Kubernetes targets (those with `before_write`) get the lease guard."""
    guard = lease_guard(leases_of)

    async def get(account: str | None, namespace: str | None = None) -> Any:
        target = await lookup(account, namespace)
        if hasattr(target, "before_write"):
            target.before_write = guard
        return target

    return get
