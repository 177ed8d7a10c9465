"""Kubernetes Jobs run to completion, as a target reports them (clouddriver's job status, trimmed).

`JobStatus.to_json()` is what a runJobManifest stage keeps as `jobStatus`: `jobState` Running / Succeeded /
Failed as clouddriver spells it, `completionDetails` (exitCode, reason, message) and each container's logs.
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

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.namespace, "account": self.account, "provider": "kubernetes",
                "createdTime": self.created_ms, "jobState": self.state,
                "completionDetails": {"exitCode": self.exit_code, "reason": self.reason, "message": self.message},
                "message": self.message, "reason": self.reason, "pods": self.pods,
                "logs": {name: text[-LOG_TAIL_BYTES:] for name, text in self.logs.items()}}
