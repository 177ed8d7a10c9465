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
                status = client.get(f"/api/v1/namespaces/{namespace}/deployments/{name}/status")["status"]
            except NotFound:  # the runtime has not loaded the new Deployment yet
                status = None
            # Only a status of the applied spec counts (kubectl checks observedGeneration too).
            if status is not None and (generation is None or str(status.get("observedGeneration")) == str(generation)):
                failure = rollout_failure(status)
                if failure:
                    raise GraylaneError(f"deployment {namespace}/{name}: {failure}",
                                        hint=f"fix the Deployment and apply again; graylane pods -n {namespace}")
                if status.get("complete"):
                    break
                message = rollout_message(name, status)
                spinner.update(message)
            if time.monotonic() > deadline:
                raise StillWaiting(f'deployment "{name}" not rolled out after {time.monotonic() - started:.0f}s: '
                                    f"{message}", hint=f"graylane pods; graylane logs deploy/{name}")
            time.sleep(POLL_S)
    out.print(escape(f'deployment "{name}" successfully rolled out'))


def rollout_message(name: str, status: dict[str, Any]) -> str:
    """Where a Deployment's rollout stands, in kubectl's words (kubectl/pkg/polymorphichelpers/rollout_status.go);
    `apply --wait` and `rollout status` both print it."""
    updated, replicas = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas are '
                "pending termination...")
    if available < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas '
                "are available...")
    return f'Waiting for deployment "{name}" rollout to finish: {updated} updated replicas...'


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
