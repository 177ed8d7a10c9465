"""Kubernetes-shaped Deployment status from the replicas the runtime sees (pure; no processes).

Field names and condition reasons are the Deployment controller's (`kubectl get deploy`,
`kubectl rollout status` read them): replicas, updatedReplicas, readyReplicas, availableReplicas,
conditions Available / Progressing / ReplicaFailure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graylane.runtime.plan import desired_from


@dataclass(frozen=True)
class PodState:
    template_hash: str
    ready: bool
    available: bool  # ready and published in the data plane's endpoints


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def deployment_status(name: str, spec: Mapping[str, Any], hash_: str, pods: Sequence[PodState], *,
                      observed_generation: int | str | None, caught_up: bool, stalled: bool,
                      problem: Problem | None = None, now: float | None = None) -> dict[str, Any]:
    """`status` for a Deployment whose live (non-terminating) pods are `pods`.

    `caught_up`: the controller has acted on the stored spec; `stalled`: no progress within
    progressDeadlineSeconds. `complete` is what `kubectl rollout status` waits for.
    """
    want = int(spec.get("replicas", 1))
    updated = sum(1 for p in pods if p.template_hash == hash_)
    ready = sum(1 for p in pods if p.ready)
    available = sum(1 for p in pods if p.available)
    min_available = max(0, want - desired_from(spec, hash_).max_unavailable)
    complete = caught_up and updated == want and len(pods) == want and available >= want
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    ok = available >= min_available
    conditions = [{
        "type": "Available", "status": "True" if ok else "False",
        "reason": "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
        "message": "Deployment has minimum availability." if ok else "Deployment does not have minimum availability.",
        "lastUpdateTime": stamp,
    }]
    rs = f'ReplicaSet "{name}-{hash_}"'
    if complete:
        progressing = ("True", "NewReplicaSetAvailable", f"{rs} has successfully progressed.")
    elif stalled:
        progressing = ("False", "ProgressDeadlineExceeded", f"{rs} has timed out progressing.")
    else:
        progressing = ("True", "ReplicaSetUpdated", f"{rs} is progressing.")
    conditions.append({"type": "Progressing", "status": progressing[0], "reason": progressing[1],
                       "message": progressing[2], "lastUpdateTime": stamp})
    if problem is not None:
        conditions.append({"type": "ReplicaFailure", "status": "True", "reason": problem.reason,
                           "message": problem.message, "lastUpdateTime": stamp})
    return {
        "observedGeneration": observed_generation, "replicas": len(pods), "updatedReplicas": updated,
        "readyReplicas": ready, "availableReplicas": available, "unavailableReplicas": max(0, want - available),
        "conditions": conditions, "complete": complete,
    }
