"""Jobs on a Kubernetes account: status from the Job and its pods (label `job-name`), logs from the pods.

Works through the Target protocol (`get`, `list`) plus the pods' `log` subresource; a cluster that does not serve
logs (or an emulator) yields empty logs, not an error.
"""

from __future__ import annotations

import logging
from typing import Any

from graylane.errors import GraylaneError
from graylane.resources.document import ResourceKey
from graylane.targets.jobs import JobStatus, failure_details

log = logging.getLogger(__name__)


def _created_ms(body: dict[str, Any]) -> int | None:
    from datetime import datetime

    stamp = (body.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def status_from(body: dict[str, Any], pods: list[dict[str, Any]], logs: dict[str, str], account: str) -> JobStatus:
    """Succeeded / Failed / Running as the Job controller's status says (conditions, then counters)."""
    md = body.get("metadata") or {}
    st = body.get("status") or {}
    name, namespace = str(md.get("name")), str(md.get("namespace") or "default")
    exit_code, reason, message = None, "", ""
    # oldest first, as clouddriver sorts them by start time
    pods = sorted(pods, key=lambda p: str((p.get("status") or {}).get("startTime") or ""))
    for pod in pods:  # the last pod that ran says; in a pod, its first failed container, else its last one
        pod_status = pod.get("status") or {}
        failed = False
        # Init containers first: one that failed is why the main containers never ran (their state: waiting).
        for cs in (pod_status.get("initContainerStatuses") or []) + (pod_status.get("containerStatuses") or []):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and not failed:
                exit_code = term.get("exitCode", exit_code)
                reason, message = term.get("reason", reason) or reason, term.get("message", message) or message
                failed = exit_code not in (None, 0)
    conditions = {c.get("type"): c for c in st.get("conditions") or [] if c.get("status") == "True"}
    completions = int((body.get("spec") or {}).get("completions") or 1)
    state = "Running"
    if "Failed" in conditions:
        state = "Failed"
        reason = conditions["Failed"].get("reason") or reason or "Failed"
        message = conditions["Failed"].get("message") or message
    elif "Complete" in conditions or int(st.get("succeeded") or 0) >= completions:
        state = "Succeeded"
    named = [{"name": (p.get("metadata") or {}).get("name"), "status": p.get("status") or {}} for p in pods]
    slim = [{"name": p["name"], "status": {"phase": p["status"].get("phase")}} for p in named]
    return JobStatus(name, namespace, account, state, exit_code, reason, message,  # type: ignore[arg-type]
                     _created_ms(body), logs, slim, failed=int(st.get("failed") or 0),
                     failure_details=failure_details(named) if state == "Failed" else "",
                     most_recent_pod=str(named[-1]["name"] or "") if named else "",
                     active=int(st.get("active") or 0), succeeded=int(st.get("succeeded") or 0),
                     conditions=[c for c in st.get("conditions") or [] if isinstance(c, dict)])


async def pod_logs(target: Any, namespace: str, pod: str, container: str) -> str:
    try:
        http = target.client()._client._client  # lightkube's configured client (auth, TLS, base URL)
        resp = await http.get(f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params={"container": container})
    except Exception as exc:  # a boundary: logs are a best effort, the job's status is what decides
        log.warning("logs of pod %s/%s container %s: %s", namespace, pod, container, exc)
        return ""
    return resp.text if resp.status_code == 200 else ""


async def job_status(target: Any, key: ResourceKey) -> JobStatus:
    body = await target.get(key)
    if body is None:
        raise GraylaneError(f"Job {key.namespace}/{key.name} does not exist in account {target.account}")
    pods = [p for p in await target.list("Pod", key.namespace, "")
            if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == key.name]
    logs: dict[str, str] = {}
    state = status_from(body, pods, {}, target.account).state
    if state != "Running":
        template = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in (template.get("initContainers") or []) + (template.get("containers") or []):
            cname = str(container.get("name"))
            for pod in pods:
                logs[cname] = logs.get(cname, "") + await pod_logs(
                    target, key.namespace, str((pod.get("metadata") or {}).get("name")), cname)
    return status_from(body, pods, logs, target.account)
