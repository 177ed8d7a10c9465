"""Kubernetes Jobs run to completion, as a target reports them (clouddriver's job status, trimmed).

`JobStatus.to_json()` is what a runJobManifest stage keeps as `jobStatus`: `jobState` Running / Succeeded /
Failed as clouddriver spells it, `completionDetails` (exitCode, reason, message), clouddriver's `failureDetails`
(the first pod with a failed container, as its `captureFailureDetails` words it) and `mostRecentPodName`, the
Job's counts of `failed`, `active` and `succeeded` pods and its `conditions` (Complete, Failed, Suspended), and
each container's logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JobState = Literal["Running", "Succeeded", "Failed"]
LOG_TAIL_BYTES = 64 * 1024  # logs kept in a stage's context: the tail, like `kubectl logs --limit-bytes`


@dataclass(frozen=True)
class JobStatus:
    name: str
    namespace: str
    account: str
    state: JobState
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    created_ms: int | None = None
    logs: dict[str, str] = field(default_factory=dict)  # container name -> output (stdout and stderr)
    pods: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0  # the Job's status.failed: pods that failed (OnFailure on local: container runs that failed)
    failure_details: str = ""  # clouddriver's failureDetails: "Pod: 'p' had errors.\n Container: 'c' exited ..."
    most_recent_pod: str = ""
    active: int = 0  # the Job's status.active and status.succeeded
    succeeded: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)  # the Job's status.conditions (local target)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.namespace, "account": self.account, "provider": "kubernetes",
                "createdTime": self.created_ms, "jobState": self.state,
                "completionDetails": {"exitCode": self.exit_code, "reason": self.reason, "message": self.message},
                "message": self.message, "reason": self.reason, "failureDetails": self.failure_details,
                "mostRecentPodName": self.most_recent_pod, "failed": self.failed, "active": self.active,
                "succeeded": self.succeeded, "conditions": self.conditions, "pods": self.pods,
                "logs": {name: text[-LOG_TAIL_BYTES:] for name, text in self.logs.items()}}


def failure_details(pods: list[dict[str, Any]]) -> str:
    """clouddriver's KubernetesJobStatus.captureFailureDetails: in the first pod (oldest first) with one, the first
    container (init containers first) that terminated with a non-zero code, else the first one waiting. Its
    `Logs:` line (the container's termination message) is left out when there is none, where clouddriver prints
    `null`."""
    for pod in pods:
        status = pod.get("status") or {}
        statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        states = [(cs, cs.get("state") or {}) for cs in statuses]
        picked = next(((cs, st["terminated"]) for cs, st in states
                       if st.get("terminated") and st["terminated"].get("exitCode") not in (None, 0)), None)
        if picked is None:
            picked = next(((cs, st["waiting"]) for cs, st in states if st.get("waiting") is not None), None)
        if picked is None:
            continue
        cs, state = picked
        code = state.get("exitCode")
        text = (f"Pod: '{pod.get('name') or (pod.get('metadata') or {}).get('name')}' had errors.\n "
                f"Container: '{cs.get('name')}' exited with code: {'' if code is None else code}.\n "
                f"Status: {state.get('reason') or ''}.")
        return text + (f"\n Logs: {state['message']}" if state.get("message") else "")
    return ""
