"""`webhook`: call a URL (retrying what is retryable), then optionally poll a status URL until it completes.

With `expectedArtifacts`, as orca's WebhookResponseProcessor and WebhookStage: a 2xx answer (without
waitForCompletion) must carry `artifacts` (TERMINAL otherwise), and a last task binds the expected artifacts to
them, to upstream stages' and to the trigger's (BindProducedArtifactsTask): one that binds nothing and has no
default ends the stage TERMINAL.

Every request carries `Idempotency-Key: <execution>/<stage>/<attempt>` (unless customHeaders set one): retries,
and a task resumed by another replica or after a crash, send the same key (docs/pipelines.md, at-least-once).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from graylane.pipelines import jsonpath
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult

DEFAULT_MAX_ATTEMPTS = 5
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_FAIL_FAST = (504,)


def _codes(value: Any, default: tuple[int, ...] = ()) -> set[int]:
    if value is None:
        return set(default)
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    return {int(v) for v in value}


def _statuses(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        value = value.split(",")
    return {str(v).strip().upper() for v in value if str(v).strip()}


def _headers(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (raw or {}).items():
        out[str(k)] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return out


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _max_attempts(ctx: dict[str, Any], code: int | None) -> int:
    retries = ctx.get("retries")
    if isinstance(retries, dict) and code is not None and str(code) in retries:
        return int((retries[str(code)] or {}).get("maxAttempts", DEFAULT_MAX_ATTEMPTS))
    if isinstance(retries, int) and not isinstance(retries, bool):
        return retries + 1
    return DEFAULT_MAX_ATTEMPTS


def idempotency_key(stage: StageView) -> str:
    """`<execution id>/<stage id>/<stage attempt>`: one key per request the stage means to make."""
    return f"{stage.execution_id}/{stage.stage_id}/{stage.attempt}"


class CreateWebhookTask(Task):
    name = "createWebhook"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        url = ctx.get("url")
        if not url:
            return TaskResult.terminal(f"stage {stage.name}: webhook `url` is required")
        method = str(ctx.get("method") or "POST").upper()
        attempts = int((ctx.get("webhook") or {}).get("attempts", 0)) + 1
        payload = ctx.get("payload")
        content = None if payload is None else json.dumps(payload)
        headers = _headers(ctx.get("customHeaders"))
        # The same key on every attempt and on a resumed task (another replica, a restart): a receiver that
        # honours it performs the request once; a restarted stage (new attempt) gets a new key.
        if not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
            headers[IDEMPOTENCY_HEADER] = idempotency_key(stage)
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
                resp = await client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            info = {"attempts": attempts, "error": f"{type(exc).__name__}: {exc}"}
            if attempts >= _max_attempts(ctx, None):
                return TaskResult.terminal(f"stage {stage.name}: {method} {url} failed after {attempts} attempt(s): "
                                           f"{info['error']}", {"webhook": info})
            return TaskResult.running(min(30.0, 0.5 * 2 ** attempts), {"webhook": info})
        code = resp.status_code
        info = {"attempts": attempts, "statusCode": str(code), "statusCodeValue": code,
                "headers": dict(resp.headers), "body": _body(resp)}
        if 200 <= code < 300:
            update: dict[str, Any] = {"webhook": info}
            if ctx.get("expectedArtifacts") and not ctx.get("waitForCompletion"):
                produced = info["body"].get("artifacts") if isinstance(info["body"], dict) else None
                if not isinstance(produced, list):
                    return TaskResult.terminal(f"stage {stage.name}: expected artifacts in the webhook response "
                                               "couldn't be read: the response has no `artifacts` list", update)
                update["artifacts"] = produced
            return TaskResult.succeeded(update, {"webhook": info})
        if code in _codes(ctx.get("failFastStatusCodes"), DEFAULT_FAIL_FAST):
            return TaskResult.terminal(f"stage {stage.name}: {method} {url} returned {code} "
                                       "(a fail-fast status code)", {"webhook": info})
        retryable = code >= 500 or code == 429 or code in _codes(ctx.get("retryStatusCodes")) \
            or code in _codes(ctx.get("webhookRetryStatusCodes"))
        if retryable and attempts < _max_attempts(ctx, code):
            return TaskResult.running(min(30.0, 0.5 * 2 ** attempts), {"webhook": info})
        return TaskResult.terminal(f"stage {stage.name}: {method} {url} returned {code}"
                                   + (f" after {attempts} attempts" if retryable else ""), {"webhook": info})


class MonitorWebhookTask(Task):
    name = "monitorWebhook"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        hook = dict(ctx.get("webhook") or {})
        resolution = ctx.get("statusUrlResolution") or "getMethod"
        if resolution == "locationHeader":
            headers = {k.lower(): v for k, v in (hook.get("headers") or {}).items()}
            status_url = headers.get("location")
        elif resolution == "webhookResponse":
            status_url = jsonpath.read(hook.get("body"), ctx.get("statusUrlJsonPath") or "$")
        else:
            status_url = ctx.get("statusEndpoint") or ctx.get("url")
        if not status_url:
            return TaskResult.terminal(f"stage {stage.name}: no status URL (statusUrlResolution {resolution})")
        status_url = str(httpx.URL(str(ctx.get("url"))).join(str(status_url)))
        interval = float(ctx.get("pollInterval", 1.0))
        try:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
                resp = await client.get(status_url, headers=_headers(ctx.get("customHeaders")))
        except httpx.HTTPError as exc:
            return TaskResult.running(interval, {"webhook": {**hook, "monitor": {"error": str(exc)}}})
        body = _body(resp)
        monitor = {"body": body, "statusCode": resp.status_code, "statusEndpoint": status_url}
        if resp.status_code >= 400:
            return TaskResult.running(interval, {"webhook": {**hook, "monitor": monitor}})
        value = jsonpath.read(body, ctx.get("statusJsonPath") or "$.status")
        if ctx.get("progressJsonPath"):
            monitor["progressMessage"] = jsonpath.read(body, ctx["progressJsonPath"])
        monitor["resolvedValue"] = value
        text = str(value).upper()
        update = {"webhook": {**hook, "monitor": monitor}}
        if text in _statuses(ctx.get("successStatuses") or "SUCCESS,SUCCEEDED"):
            return TaskResult.succeeded(update, {"webhook": update["webhook"]})
        if text in _statuses(ctx.get("canceledStatuses")):
            return TaskResult(ExecutionStatus.CANCELED, update, error=f"webhook reported {value!r} (canceled)")
        if text in _statuses(ctx.get("terminalStatuses") or "TERMINAL,FAILED"):
            return TaskResult.terminal(f"stage {stage.name}: webhook reported {value!r}", update)
        return TaskResult.running(interval, update)


def _ancestors(execution: dict[str, Any], ref_id: str) -> list[dict[str, Any]]:
    """The stages upstream of `ref_id`, nearest first (orca StageExecution.ancestors())."""
    by_ref = {str(s.get("refId")): s for s in execution.get("stages") or []}
    out: list[dict[str, Any]] = []
    frontier, seen = [ref_id], {ref_id}
    while frontier:
        nxt: list[str] = []
        for ref in frontier:
            for up in (by_ref.get(ref) or {}).get("requisiteStageRefIds") or []:
                if str(up) not in seen and str(up) in by_ref:
                    seen.add(str(up))
                    out.append(by_ref[str(up)])
                    nxt.append(str(up))
        frontier = nxt
    return out


class BindProducedArtifactsTask(Task):
    """orca BindProducedArtifactsTask: the stage's `expectedArtifacts` bound to the artifacts it produced (its
    context's `artifacts`), its ancestors' output `artifacts` and the trigger's, or to their defaults."""

    name = "bindProducedArtifacts"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        from graylane.pipelines.artifacts import bind_expected

        expected = [e for e in stage.context.get("expectedArtifacts") or [] if isinstance(e, dict)]
        if not expected:
            return TaskResult.succeeded()
        candidates = [a for a in stage.context.get("artifacts") or [] if isinstance(a, dict)]
        for up in _ancestors(stage.execution, stage.ref_id):
            candidates += [a for a in (up.get("outputs") or {}).get("artifacts") or [] if isinstance(a, dict)]
        candidates += [a for a in (stage.execution.get("trigger") or {}).get("artifacts") or [] if isinstance(a, dict)]
        resolved = bind_expected(expected, candidates)  # a ValidationError ends the stage TERMINAL with its reason
        bound = {"artifacts": [r["boundArtifact"] for r in resolved], "resolvedExpectedArtifacts": resolved}
        return TaskResult.succeeded(bound, bound)


class WebhookStage(StageDefinition):
    type = "webhook"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        tasks: list[Task] = [] if context.get("monitorOnly") else [CreateWebhookTask()]
        if context.get("waitForCompletion") or context.get("monitorOnly"):
            tasks.append(MonitorWebhookTask())
        if "expectedArtifacts" in context:
            tasks.append(BindProducedArtifactsTask())
        return tasks


DEFINITION = WebhookStage()
