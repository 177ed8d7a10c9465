"""Moving traffic through a Target: read each service's VirtualService (or the Gateway API HTTPRoute a member names
with `httpRoute`), edit it (pipelines.routes_edit), check the
routes, apply every member in ONE call (one store transaction -> one data-plane snapshot on the local account; one
pass on Kubernetes), then wait for the data plane (local: the proxy's ACK; Kubernetes: Istio's status when it
reports one).

Knows the Target protocol and route_check; knows nothing of the executor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.pipelines import route_check
from graylane.pipelines import routes_edit as edit
from graylane.resources.document import Document, ResourceKey, Source

ISTIO = "networking.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
DEFAULT_WAIT_S = 120.0
Edit = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Member:
    """One service of a release: where its VirtualService is and, optionally, which one; or the HTTPRoute whose
    backendRef weights move it (`httpRoute`: weights then name backend Services, e.g. reviews-v1)."""

    service: str
    namespace: str = "default"
    virtual_service: str | None = None
    http_route: str | None = None

    @classmethod
    def parse(cls, raw: Any, default_namespace: str, where: str) -> Member:
        if not isinstance(raw, dict) or not raw.get("service"):
            raise ValidationError(f"{where}: a member needs `service`")
        if raw.get("virtualService") and raw.get("httpRoute"):
            raise ValidationError(f"{where}: name a `virtualService` or an `httpRoute`, not both")
        return cls(str(raw["service"]), str(raw.get("namespace") or default_namespace),
                   str(raw["virtualService"]) if raw.get("virtualService") else None,
                   str(raw["httpRoute"]) if raw.get("httpRoute") else None)


async def current(target: Any, member: Member) -> dict[str, Any] | None:
    """The live VirtualService (or named HTTPRoute) routing the member's service, or None."""
    if member.http_route:
        return await target.get(ResourceKey(GATEWAY_API, "HTTPRoute", member.namespace, member.http_route))  # type: ignore[no-any-return]
    if member.virtual_service:
        return await target.get(ResourceKey(ISTIO, "VirtualService", member.namespace, member.virtual_service))  # type: ignore[no-any-return]
    items = await target.list("VirtualService", member.namespace, ISTIO)
    return edit.pick_virtual_service(items, member.service, None)


async def plan(target: Any, edits: Sequence[tuple[Member, Edit]]) -> list[Document]:
    """The edited VirtualServices (and HTTPRoutes), one per member (members sharing one edit it in turn)."""
    bodies: dict[tuple[str, str, str], dict[str, Any]] = {}
    order: list[tuple[str, str, str]] = []
    for member, fn in edits:
        found = await current(target, member)
        if found is None and member.http_route:
            raise ValidationError(f"HTTPRoute {member.namespace}/{member.http_route} not found (it routes "
                                  f"{member.service})", hint="apply the HTTPRoute with its parentRefs first")
        if found is None:
            found = edit.new_virtual_service(member.service, member.namespace, member.virtual_service)
        key = (str(found.get("kind") or "VirtualService"), member.namespace, str(found["metadata"]["name"]))
        base = bodies.get(key) or edit.writable(found)
        base.setdefault("metadata", {}).setdefault("namespace", member.namespace)
        bodies[key] = fn(base)
        if key not in order:
            order.append(key)
    return [Document(body=bodies[k], source=Source(f"<release edit of {k[0]} {k[1]}/{k[2]}>", 1, 0))
            for k in order]


async def check(target: Any, docs: list[Document]) -> None:
    """Refuse routes to subsets no DestinationRule defines or whose pods are not ready (nothing is applied)."""
    live = await route_check.live_resources(target)
    blocking = route_check.blocking_findings(docs, live)
    if blocking:
        waiting = route_check.not_ready(live) if any(f.code == "IST0173" for f in blocking) else []
        ready = f" ({'; '.join(waiting)})" if waiting else ""
        raise ValidationError(f"traffic not moved: the routes would send traffic to nothing: "
                              f"{route_check.describe(blocking)}{ready}",
                              hint=f"deploy the version and its DestinationRule subset first, or set "
                                   f"{route_check.OPTION}: true")


async def apply(target: Any, edits: Sequence[tuple[Member, Edit]], *, actor: str, checked: bool = True,
                timeout: float = DEFAULT_WAIT_S) -> list[dict[str, Any]]:
    """Plan, check, apply all members at once and wait for the data plane; returns what was applied."""
    return await apply_documents(target, await plan(target, edits), actor=actor, checked=checked, timeout=timeout)


async def apply_documents(target: Any, docs: list[Document], *, actor: str, checked: bool = True,
                          timeout: float = DEFAULT_WAIT_S) -> list[dict[str, Any]]:
    """Check (unless told not to), apply at once and wait for the data plane (or Istio); returns what was applied."""
    if checked:
        await check(target, docs)
    applied = await target.apply(docs, actor=actor)
    keys = [a.key for a in applied]
    await wait(target, keys, timeout=timeout)
    return [{"key": list(a.key), "action": str(getattr(a.action, "value", a.action)),
             "resourceVersion": a.resource_version} for a in applied]


async def wait(target: Any, keys: Sequence[ResourceKey], *, timeout: float) -> None:
    """Local: the target waits for the proxy's ACK of this revision. Kubernetes: for each VirtualService Istio
    reports status on (`status.observedGeneration`), wait until it saw this generation and is Reconciled; for an
    HTTPRoute, until every parent's Accepted condition has seen this generation."""
    deadline = time.monotonic() + timeout
    await target.wait_ready(list(keys), timeout=timeout)
    if hasattr(target, "store"):
        return  # the local target waited for the proxy's ACK of this revision
    pending = list(keys)
    while pending:
        still = []
        for key in pending:
            body = await target.get(key) or {}
            status = body.get("status") or {}
            if key.kind == "HTTPRoute":
                if not _route_current(body):
                    still.append(key)
                continue
            if "observedGeneration" not in status:
                continue  # Istio's status reporting is off: nothing to wait on
            generation = int((body.get("metadata") or {}).get("generation") or 0)
            reconciled = [c for c in status.get("conditions") or [] if c.get("type") == "Reconciled"]
            if int(status["observedGeneration"]) < generation or \
                    any(str(c.get("status")) != "True" for c in reconciled):
                still.append(key)
        pending = still
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise GraylaneError(f"timed out after {timeout:g}s waiting for Istio to reconcile "
                                f"{', '.join(str(k) for k in pending)}")
        await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _route_current(body: dict[str, Any]) -> bool:
    """An HTTPRoute whose controller has seen this generation (no parents in status yet: nothing to wait on)."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    for parent in (body.get("status") or {}).get("parents") or []:
        for c in parent.get("conditions") or []:
            if c.get("type") == "Accepted" and int(c.get("observedGeneration") or 0) < generation:
                return False
    return True


def weights_of(body: dict[str, Any] | None, service: str) -> dict[str, int]:
    return edit.route_weights(body, service) if body else {}
