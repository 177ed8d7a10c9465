"""The runtime's kubectl-shaped read model: pod rows (`graylane pods`) and Deployments with their status.

Functions over the runtime's public state (`RuntimeState`, which `graylane.runtime.reconciler.Runtime` satisfies);
they read, never change it. The status fields themselves are shaped by `graylane.runtime.status`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from graylane.runtime import status
from graylane.runtime.init_containers import pod_status
from graylane.runtime.launch import LaunchProblem, Resources, template_hash
from graylane.runtime.replica import Replica


class RuntimeState(Protocol):
    """What the views read of the runtime."""

    res: Resources  # the resources it loaded from the store
    replicas: dict[str, Replica]
    problems: dict[tuple[str, str], LaunchProblem]  # per Deployment: why a replica cannot run
    observed: dict[tuple[str, str], str]  # per Deployment: the version the controller acted on
    progress_at: dict[tuple[str, str], float]  # per Deployment: monotonic time of its last observed change

    @property
    def loaded_every_change(self) -> bool: ...

    def available(self, r: Replica) -> bool: ...


def pods(replicas: Iterable[Replica], namespace: str | None = None) -> list[dict[str, Any]]:
    """One row per replica (in `namespace`, or all), sorted by namespace and name."""
    now = time.time()
    out = []
    for r in sorted(replicas, key=lambda r: (r.rec.namespace, r.rec.name)):
        if namespace and r.rec.namespace != namespace:
            continue
        out.append({
            "namespace": r.rec.namespace, "name": r.rec.name, "deployment": r.rec.deployment,
            "ready": "1/1" if r.ready else "0/1", "isReady": r.ready, "status": pod_status(r),
            "reason": r.reason, "restarts": r.rec.restarts, "age_s": round(now - r.rec.created, 1),
            "port": r.rec.port, "containerPort": r.rec.container_port, "sidecarPort": r.rec.sidecar_port,
            "pid": r.rec.pid if r.proc is not None else None, "ip": "127.0.0.1",
            "templateHash": r.rec.template_hash, "labels": dict(r.rec.labels), "lastExit": r.rec.last_exit,
            "adopted": r.adopted,
        })
    return out


def deployment_status(rt: RuntimeState, namespace: str, name: str) -> dict[str, Any] | None:
    """Kubernetes-shaped `status` for a Deployment (None if the runtime does not know it)."""
    key = (namespace, name)
    body = rt.res.deployments.get(key)
    if body is None:
        return None
    spec = body.get("spec") or {}
    hash_ = template_hash(spec.get("template") or {})
    live = [status.PodState(r.rec.template_hash, r.ready, rt.available(r)) for r in rt.replicas.values()
            if (r.rec.namespace, r.rec.deployment) == key and not r.terminating]
    # A spec the controller has not loaded and acted on yet is not "rolled out" (kubectl checks
    # observedGeneration for the same reason).
    caught_up = rt.loaded_every_change and rt.observed.get(key) == rt.res.versions.get(key)
    deadline = float(spec.get("progressDeadlineSeconds", 600))
    stalled = time.monotonic() - rt.progress_at.get(key, time.monotonic()) > deadline
    problem = rt.problems.get(key)
    return status.deployment_status(name, spec, hash_, live, observed_generation=_int_or(rt.observed.get(key)),
                                    caught_up=caught_up, stalled=stalled,
                                    problem=status.Problem(problem.reason, problem.message) if problem else None)


def deployment(rt: RuntimeState, namespace: str, name: str) -> dict[str, Any] | None:
    """One Deployment as `deployments()` lists it: namespace, name, spec_replicas (the desired count, which
    `kubectl rollout status` compares with the status) and status. None if the runtime does not know it."""
    body = rt.res.deployments.get((namespace, name))
    state = deployment_status(rt, namespace, name)
    if body is None or state is None:
        return None
    return {"namespace": namespace, "name": name,
            "spec_replicas": int((body.get("spec") or {}).get("replicas", 1)), "status": state}


def deployments(rt: RuntimeState, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every Deployment the runtime knows (in `namespace`, or all), sorted by namespace and name."""
    items = (deployment(rt, ns, name) for (ns, name) in sorted(rt.res.deployments)
             if not namespace or ns == namespace)
    return [item for item in items if item is not None]


def _int_or(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value
