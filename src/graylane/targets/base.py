"""The Target protocol: the only way pipelines and the API reach the world.

`local` is the embedded mesh (store + runtime + data plane); `kubernetes` drives a real cluster.
Actors are strings recorded in history: `user:NAME` or `pipeline:EXECUTION_ID/STAGE_ID`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from graylane.errors import GraylaneError
from graylane.promql import TrafficSample
from graylane.resources.document import Document, ResourceKey

PatchType = Literal["strategic", "merge", "json"]

# Before a write to a cluster: `(actor) -> (annotations for the object, monotonic deadline)`, raising GraylaneError
# when the write must not be sent. The pipelines install one on Kubernetes targets (graylane.pipelines.fencing):
# a stage's write is sent only while its replica holds the execution's lease.
WriteGuard = Callable[[str], Awaitable[tuple[dict[str, str], float]]]

__all__ = ["Applied", "HistoryUnsupported", "ManifestRevision", "PatchType", "Target", "TrafficSample", "WriteGuard",
           "fenced"]


@dataclass(frozen=True)
class Applied:
    """What an apply did to one resource."""

    key: ResourceKey
    action: Literal["created", "configured", "unchanged"]
    resource_version: str = ""
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ManifestRevision:
    """One earlier state of a resource: a store revision (local), a Deployment's ReplicaSet revision (Kubernetes)."""

    revision: int
    body: dict[str, Any]


class HistoryUnsupported(GraylaneError):
    """The target keeps no history for this kind of resource (names the target and the operation)."""


@runtime_checkable
class Target(Protocol):
    account: str

    async def apply(self, docs: Sequence[Document], *, actor: str,
                    namespace_override: str | None = None, dry_run: bool = False) -> list[Applied]:
        """Validate every document, then apply all of them (all or nothing where the target allows)."""
        ...

    async def delete(self, keys: Sequence[ResourceKey], *, actor: str, cascade: bool = True,
                     grace_period_seconds: int | None = None) -> list[ResourceKey]:
        """Delete; returns the keys that existed. Missing ones are not an error."""
        ...

    async def get(self, key: ResourceKey) -> dict[str, Any] | None: ...

    async def list(self, kind: str, namespace: str | None = None,
                   group: str | None = None) -> list[dict[str, Any]]: ...

    async def patch(self, key: ResourceKey, patch: Any, patch_type: PatchType, *, actor: str) -> dict[str, Any]: ...

    async def wait_ready(self, keys: Sequence[ResourceKey], *, timeout: float) -> None:
        """Wait until Deployments are rolled out and the mesh serves the config; raise GraylaneError."""
        ...

    async def history(self, key: ResourceKey) -> list[ManifestRevision]:
        """The bodies the resource had, oldest first; HistoryUnsupported where the target keeps none."""
        ...

    async def traffic(self, namespace: str | None = None, *, window: str = "1m",
                      reporter: str | None = "destination", at: float | None = None) -> list[TrafficSample]:
        """Istio's request counters over `window` (e.g. "1m"), one sample per label set (istio.md §3.2), errors
        being 5xx: the local mesh's own telemetry, or a Kubernetes account's Prometheus; `at` ends the window
        (unix seconds, as Kiali's queryTime; default now). GraylaneError when the account has no metrics to read."""
        ...


async def fenced(guard: WriteGuard | None, actor: str, body: dict[str, Any] | None = None,
                 dry_run: bool = False) -> dict[str, Any] | None:
    """`body` with the guard's annotations, checked immediately before the write that sends it (see WriteGuard)."""
    if guard is None or dry_run:
        return body
    annotations, deadline = await guard(actor)
    if time.monotonic() > deadline:  # the check itself outlasted the lease: another replica may hold it now
        raise GraylaneError(f"{actor}: the lease check took longer than the lease; the change was not sent")
    if body is None or not annotations:
        return body
    body = copy.copy(body)
    meta = body["metadata"] = dict(body.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return body
