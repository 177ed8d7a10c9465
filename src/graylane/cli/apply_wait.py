"""What `graylane apply --wait` waits for: changed Deployments rolled out, then the mesh serving the revision.

`APPLY_WAITERS` run in order (signature: `(client, apply_response, timeout_s) -> None`); other areas
may append their own. A rollout stops at the first replica failure of the applied spec (e.g.
`CreateContainerError: workingDir ... does not exist`) instead of waiting out its timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from graylane.cli.client import ApiClient
from graylane.cli.exit_codes import StillWaiting
from graylane.errors import GraylaneError, NotFound
from graylane.targets.rollout import rollout_status

ApplyWaiter = Callable[[ApiClient, dict[str, Any], float], None]
POLL_S = 0.2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def wait_for_rollouts(client: ApiClient, response: dict[str, Any], timeout: float) -> None:
    """Every Deployment the apply changed rolls out (as `graylane rollout status deploy/NAME`)."""
    changed = [r for r in response["results"] if r["kind"] == "Deployment" and r["action"] != "unchanged"]
    deadline = time.monotonic() + timeout
    for r in changed:
        wait_for_rollout(client, r["namespace"], r["name"], r.get("generation"), deadline)


def rollout_failure(status: dict[str, Any]) -> str | None:
    """Why a rollout cannot finish, from the Deployment's conditions (None while it can).

    >>> rollout_failure({"conditions": [{"type": "ReplicaFailure", "status": "True",
    ...                                  "reason": "CreateContainerError", "message": "workingDir v1 does not exist"}]})
    'CreateContainerError: workingDir v1 does not exist'
    """
    for cond in status.get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return f"{cond.get('reason')}: {cond.get('message')}"
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return f"ProgressDeadlineExceeded: {cond.get('message')}"
    return None


def wait_for_rollout(client: ApiClient, namespace: str, name: str, generation: Any, deadline: float) -> None:
    """Poll the runtime's status of one Deployment until it is rolled out at `generation`, or fails."""
    started = time.monotonic()
    message = "not loaded by the runtime yet"
    with err.status(f'Waiting for deployment "{name}" rollout to finish') as spinner:
        while True:
            try:
                body = client.get(f"/api/v1/namespaces/{namespace}/deployments/{name}/status")
            except NotFound:  # the runtime has not loaded the new Deployment yet
                body = None
            status = None if body is None else body["status"]
            # Only a status of the applied spec counts (kubectl checks observedGeneration too).
            if status is not None and (generation is None or str(status.get("observedGeneration")) == str(generation)):
                failure = rollout_failure(status)
                if failure:
                    raise GraylaneError(f"deployment {namespace}/{name}: {failure}",
                                        hint=f"fix the Deployment and apply again; graylane pods -n {namespace}")
                if status.get("complete"):
                    break
                message = rollout_message(name, status, body.get("spec_replicas") if body else None)
                spinner.update(message)
            if time.monotonic() > deadline:
                raise StillWaiting(f'deployment "{name}" not rolled out after {time.monotonic() - started:.0f}s: '
                                    f"{message}", hint=f"graylane pods; graylane logs deploy/{name}")
            time.sleep(POLL_S)
    out.print(escape(f'deployment "{name}" successfully rolled out'))


def rollout_message(name: str, status: dict[str, Any], spec_replicas: int | None = None) -> str:
    """Where a Deployment's rollout stands, in kubectl's words: `targets.rollout.rollout_status`, the one wording,
    over the runtime's status and the spec's desired `spec_replicas` (the status endpoint's; without it, the
    status's own count). `apply --wait` and `rollout status` both print it.

    >>> rollout_message("r", {"replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}, 3)
    'Waiting for deployment "r" rollout to finish: 1 out of 3 new replicas have been updated...'
    """
    want = spec_replicas if spec_replicas is not None else status.get("replicas", 1)
    meta: dict[str, Any] = {"name": name}
    deployment = {"kind": "Deployment", "metadata": meta, "spec": {"replicas": want}, "status": status}
    done, message = rollout_status(deployment)
    if done and not status.get("complete"):
        # The counts add up but the runtime has not acted on the spec yet: in kubectl's terms, a generation the
        # controller has not observed.
        meta["generation"] = int(status.get("observedGeneration") or 0) + 1
        done, message = rollout_status(deployment)
    return message


def wait_for_mesh(client: ApiClient, response: dict[str, Any], timeout: float) -> None:
    """`GET /api/v1/mesh/ack?revision=N&timeout=S`: returns once the data plane serves revision N."""
    timeout = min(max(timeout, 1.0), 600.0)  # the endpoint's bounds
    try:
        ack = client.get("/api/v1/mesh/ack", params={"revision": response["revision"], "timeout": timeout},
                         timeout=timeout + 10)
    except NotFound as exc:
        if exc.message != "Not Found":  # the endpoint exists and said something specific
            raise
        err.print("note: this control plane has no mesh ACK endpoint; not waiting")
        return
    took = ack.get("seconds") if isinstance(ack, dict) else None
    suffix = f" ({took * 1000:.0f} ms after the change was committed)" if isinstance(took, int | float) else ""
    out.print(escape(f"revision {response['revision']} is served by the mesh{suffix}"))


# Run in order by `apply --wait`: workloads first (new endpoints), then the routes that use them.
APPLY_WAITERS: list[ApplyWaiter] = [wait_for_rollouts, wait_for_mesh]
