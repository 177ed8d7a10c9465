"""The Deployment controller's diff as a pure function: `plan(desired, observed) -> list[Action]`.

Rolling updates follow Kubernetes: at most `replicas + maxSurge` pods exist, at least
`replicas - maxUnavailable` are available, unavailable old pods leave first, new pods are counted
available only once ready and published in the mesh (make before break).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ActionKind(StrEnum):
    CREATE = "create"
    DELETE = "delete"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    pod: str = ""  # for DELETE
    template_hash: str = ""  # for CREATE


@dataclass(frozen=True)
class ObservedPod:
    name: str
    template_hash: str
    available: bool  # ready and in the endpoints the data plane serves
    created: float = 0.0


@dataclass(frozen=True)
class Desired:
    replicas: int
    template_hash: str
    max_surge: int
    max_unavailable: int
    recreate: bool = False


def _scaled(value: Any, replicas: int, *, round_up: bool, default: str) -> int:
    raw = default if value is None else value
    if isinstance(raw, str) and raw.endswith("%"):
        frac = replicas * float(raw[:-1]) / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(raw)


def desired_from(spec: Mapping[str, Any], template_hash: str) -> Desired:
    """Read replicas and strategy from a Deployment spec (defaults 1 replica, 25%/25%)."""
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return Desired(replicas, template_hash, 0, replicas, recreate=True)
    rolling = strategy.get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge"), replicas, round_up=True, default="25%")
    unavailable = _scaled(rolling.get("maxUnavailable"), replicas, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1  # Kubernetes rejects 0/0; treat it as the least disruptive legal value
    return Desired(replicas, template_hash, surge, unavailable)


def plan(desired: Desired, observed: Sequence[ObservedPod]) -> list[Action]:
    """Actions that move `observed` (live, non-terminating pods) one step toward `desired`.

    >>> d = Desired(1, "new", max_surge=1, max_unavailable=0)
    >>> plan(d, [ObservedPod("a", "old", True)])
    [Action(kind=<ActionKind.CREATE: 'create'>, pod='', template_hash='new')]
    >>> plan(d, [ObservedPod("a", "old", True), ObservedPod("b", "new", True)])
    [Action(kind=<ActionKind.DELETE: 'delete'>, pod='a', template_hash='')]
    """
    new = [p for p in observed if p.template_hash == desired.template_hash]
    old = [p for p in observed if p.template_hash != desired.template_hash]
    actions: list[Action] = []

    if desired.recreate and old:
        return [Action(ActionKind.DELETE, pod=p.name) for p in old]

    if not old:
        if len(new) < desired.replicas:
            actions += [Action(ActionKind.CREATE, template_hash=desired.template_hash)] * (desired.replicas - len(new))
        elif len(new) > desired.replicas:
            extra = _deletion_order(new)[: len(new) - desired.replicas]
            actions += [Action(ActionKind.DELETE, pod=p.name) for p in extra]
        return actions

    # Scale up the new generation within the surge budget.
    max_total = desired.replicas + desired.max_surge
    room = max_total - len(observed)
    want_new = min(desired.replicas, len(new) + max(room, 0))
    creates = max(0, want_new - len(new))
    actions += [Action(ActionKind.CREATE, template_hash=desired.template_hash)] * creates

    # Scale down old pods while keeping at least replicas - maxUnavailable available
    # (Kubernetes reconcileOldReplicaSets): unhealthy old pods go first, then the oldest ready ones.
    min_available = max(0, desired.replicas - desired.max_unavailable)
    new_unavailable = sum(1 for p in new if not p.available)
    max_scaled_down = len(observed) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return actions
    unhealthy = [p for p in old if not p.available][:max_scaled_down]
    actions += [Action(ActionKind.DELETE, pod=p.name) for p in unhealthy]
    budget = sum(1 for p in observed if p.available) - min_available
    for p in sorted((p for p in old if p.available), key=lambda p: p.created)[:max(0, budget)]:
        actions.append(Action(ActionKind.DELETE, pod=p.name))
    return actions


def _deletion_order(pods: Sequence[ObservedPod]) -> list[ObservedPod]:
    """Kubernetes scale-down order: not available first, then the newest."""
    return sorted(pods, key=lambda p: (p.available, -p.created))
