"""`kubectl rollout status` for one workload object (Deployment, StatefulSet, DaemonSet), as a pure function.

Used by the Kubernetes target's `wait_ready` and by `graylane rollout status` / `apply --wait` (cli/apply_wait.py).
kubectl's wording and quoting (kubectl/pkg/polymorphichelpers/rollout_status.go prints names with Go's %q:
`deployment "reviews-v2" successfully rolled out`); the "spec update to be observed" messages also name the object,
which kubectl's do not, as a wait over several objects reports them together.
"""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError


def rollout_status(obj: dict[str, Any]) -> tuple[bool, str]:
    """`kubectl rollout status` for one workload: (done, message). Raises GraylaneError when it cannot progress."""
    kind = obj.get("kind", "Deployment")
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    q = f'"{name}"'  # Go's %q, as kubectl quotes names (a Kubernetes name needs no escapes)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if kind == "Deployment":
        if generation > observed:
            return False, f"Waiting for deployment {q} spec update to be observed..."
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                detail = cond.get("message") or ""
                raise GraylaneError(f"deployment {q} exceeded its progress deadline: {detail}".rstrip(": "),
                                    where=f"Deployment {meta.get('namespace', '')}/{name}",
                                    hint="ProgressDeadlineExceeded: check the pods' events and image")
        want = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas") or 0)
        replicas = int(status.get("replicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        if updated < want:
            return False, (f"Waiting for deployment {q} rollout to finish: "
                           f"{updated} out of {want} new replicas have been updated...")
        if replicas > updated:
            return False, (f"Waiting for deployment {q} rollout to finish: "
                           f"{replicas - updated} old replicas are pending termination...")
        if available < updated:
            return False, (f"Waiting for deployment {q} rollout to finish: "
                           f"{available} of {updated} updated replicas are available...")
        return True, f"deployment {q} successfully rolled out"
    if kind == "StatefulSet":
        if generation > observed:
            return False, f"Waiting for statefulset {q} spec update to be observed..."
        want = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas") or 0)
        if ready < want:
            return False, f"Waiting for {want - ready} pods to be ready..."
        if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
            return False, f"Waiting for statefulset {q} rolling update to complete..."
        return True, f"statefulset {q} rolling update complete"
    if kind == "DaemonSet":
        if generation > observed:
            return False, f"Waiting for daemon set {q} spec update to be observed..."
        want = int(status.get("desiredNumberScheduled") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        if updated < want or available < want:
            return False, f"Waiting for daemon set {q} rollout to finish: {available} of {want} available..."
        return True, f"daemon set {q} successfully rolled out"
    return True, f"{kind} {q} exists"
