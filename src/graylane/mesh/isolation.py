"""Compile per resource: one resource that cannot be compiled is left out of the snapshot, not the whole mesh.

istiod pushes everything else when one patch is bad; so does Graylane. `Rejections` runs each resource's
compile step and records why a resource was left out; the control plane turns each `Rejection` into a
`Reconciled=False` status condition on the resource (`status_with`) and a warning event. Pure functions over
resource bodies; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from graylane.errors import ValidationError
from graylane.mesh.config_base import meta

T = TypeVar("T")

CONDITION = "Reconciled"  # Istio's condition type for "the data plane has this config" (istio/api meta/v1alpha1)
REASON = "CompileError"
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)
_NAMED = re.compile(r"^(?P<kind>[A-Z][A-Za-z]+) (?P<ns>[^/\s]+)/(?P<name>[^:\s]+)")


@dataclass(frozen=True)
class Rejection:
    """A resource left out of a snapshot, and why (the compile error, naming the field)."""

    group: str
    kind: str
    namespace: str
    name: str
    resource_version: str
    generation: int
    message: str

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def detail(self) -> str:
        """The message without the leading "Kind ns/name: " (where the resource is already named)."""
        return self.message.removeprefix(f"{self.ref}: ")

    def matches(self, group: str, kind: str, namespace: str, name: str) -> bool:
        return (self.group, self.kind, self.namespace, self.name) == (group, kind, namespace, name)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "reason": REASON}


def group_of(res: Mapping[str, Any]) -> str:
    api = str(res.get("apiVersion") or "")
    return api.rpartition("/")[0]


def rejection_of(res: Mapping[str, Any], message: str) -> Rejection:
    name, ns = meta(res)
    md = res.get("metadata") or {}
    return Rejection(group_of(res), str(res.get("kind") or ""), ns, name, str(md.get("resourceVersion") or ""),
                     int(md.get("generation") or 0), message)


class Rejections:
    """Runs compile steps per resource. Strict: errors propagate unchanged (the offline explainer, tests);
    otherwise a failing resource is recorded and skipped from then on."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: dict[int, Rejection] = {}

    def rejected(self, res: Mapping[str, Any]) -> bool:
        return id(res) in self.items

    def add(self, res: Mapping[str, Any], message: str) -> None:
        self.items.setdefault(id(res), rejection_of(res, message))

    def attempt(self, res: Mapping[str, Any], step: Callable[[], T]) -> T | None:
        """`step()`, or None when it fails and the resource is recorded as rejected."""
        if self.rejected(res):
            return None
        if self.strict:
            return step()
        try:
            return step()
        except ValidationError as exc:
            self.add(res, str(exc))
        except _MALFORMED as exc:
            name, ns = meta(res)
            self.add(res, f"{res.get('kind')} {ns}/{name}: malformed resource ({exc.__class__.__name__}: {exc})")
        return None

    def culprit(self, exc: ValidationError, resources: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        """The resource an error names ("VirtualService ns/name: ..."), if it is not already left out."""
        m = _NAMED.match(str(exc))
        if m is None:
            return None
        for res in resources:
            name, ns = meta(res)
            if (res.get("kind"), ns, name) == (m["kind"], m["ns"], m["name"]) and not self.rejected(res):
                return res
        return None

    def to_json(self) -> list[dict[str, Any]]:
        items = sorted(self.items.values(), key=lambda r: (r.kind, r.namespace, r.name))
        return [r.to_json() for r in items]


# --------------------------------------------------------------------------------------------- status


def _condition(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == CONDITION:
            return dict(cond)
    return None


def status_with(body: Mapping[str, Any], rejection: Rejection | None, now: str) -> dict[str, Any] | None | bool:
    """The status `body` should carry: with a `Reconciled=False` condition when rejected, without it otherwise.

    Returns False when the stored status is already right (nothing to write); else the new status (None: none).
    """
    current = body.get("status") if isinstance(body.get("status"), Mapping) else None
    have = _condition(current)
    if rejection is None:
        if have is None:
            return False
        rest = [c for c in (current or {}).get("conditions") or () if not (isinstance(c, Mapping)
                                                                           and c.get("type") == CONDITION)]
        new = {k: v for k, v in (current or {}).items() if k not in ("conditions", "observedGeneration")}
        if rest:
            new["conditions"] = rest
        return new or None
    want = {"type": CONDITION, "status": "False", "reason": REASON,
            "message": f"left out of the mesh configuration: {rejection.detail}",
            "observedGeneration": rejection.generation}
    if have is not None and all(have.get(k) == v for k, v in want.items()):
        return False
    want["lastTransitionTime"] = have["lastTransitionTime"] if have and have.get("status") == "False" \
        and have.get("lastTransitionTime") else now
    others = [c for c in (current or {}).get("conditions") or () if not (isinstance(c, Mapping)
                                                                          and c.get("type") == CONDITION)]
    return {**(current or {}), "observedGeneration": rejection.generation, "conditions": [*others, want]}
