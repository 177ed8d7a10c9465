"""Pipelines API: configs (CRUD, import/export, history), executions (start, judge, cancel...), SSE, webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sse_starlette.sse import EventSourceResponse

from graylane.errors import Conflict, ValidationError
from graylane.pipelines.component import service_of
from graylane.pipelines.service import PipelinesService
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.triggers import SignatureMismatch, WebhookDelivery
from graylane.server import audit
from graylane.server.auth import caller
from graylane.server.draining import event_stream
from graylane.server.limits import parse_json

router = APIRouter(tags=["pipelines"])

_ROLE_ORDER = ("viewer", "approver", "admin")


def _pipelines(request: Request) -> PipelinesService:
    return service_of(request.app.state.cp)


def _who(request: Request) -> tuple[str, list[str]]:
    """(user name, roles) of the authenticated caller (graylane.server.auth). The operator's CLI token may
    add judgment roles with X-Graylane-Roles (e.g. `qa` for requiredJudgmentRoles); nobody else may."""
    user = caller(request)
    if user is None:
        return "anonymous", []
    role = getattr(user, "role", "viewer")
    roles = list(_ROLE_ORDER[: _ROLE_ORDER.index(role) + 1]) if role in _ROLE_ORDER else [role]
    if getattr(user, "operator", False):
        roles += [r.strip() for r in request.headers.get("x-graylane-roles", "").split(",") if r.strip()]
    return str(user.name), roles


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    return parse_json(raw, request.app.state.limits, "<api>")


IDEMPOTENCY_KEY_MAX = 200


def _idempotency_key(request: Request) -> str | None:
    """The `Idempotency-Key` header: up to 200 visible ASCII characters (a client's UUID per action)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not all(33 <= ord(c) <= 126 for c in key):
        raise ValidationError(f"must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters (e.g. a UUID)",
                              where="Idempotency-Key header")
    return key


# ------------------------------------------------------------------ pipeline configs

@router.get("/pipelines")
def list_pipelines(request: Request, application: str | None = None) -> list[dict[str, Any]]:
    return _pipelines(request).list_pipelines(application)


@router.post("/pipelines")
async def save_pipelines(request: Request) -> dict[str, Any]:
    """Import one pipeline or a list (each validated; all checked before any is saved)."""
    body = await _json(request)
    user, _ = _who(request)
    items = body if isinstance(body, list) else [body]
    results, warnings = _pipelines(request).import_pipelines(
        items, actor=f"user:{user}", where=lambda i: f"<api>[{i}]" if isinstance(body, list) else "<api>")
    return {"results": [r.__dict__ for r in results], "warnings": warnings}


@router.get("/pipelines/{ref}")
def get_pipeline(request: Request, ref: str, application: str | None = None) -> dict[str, Any]:
    return _pipelines(request).get_pipeline(ref, application)


@router.put("/pipelines/{ref}")
async def update_pipeline(request: Request, ref: str) -> dict[str, Any]:
    """Save a new version of an existing pipeline (the body may rename it; its id is kept)."""
    body = await _json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be one pipeline object")
    user, _ = _who(request)
    return _pipelines(request).save_pipeline(ref, body, actor=f"user:{user}")


@router.get("/pipelines/{ref}/export")
def export_pipeline(request: Request, ref: str, application: str | None = None) -> dict[str, Any]:
    return _pipelines(request).export_pipeline(ref, application)


@router.delete("/pipelines/{ref}")
def delete_pipeline(request: Request, ref: str) -> dict[str, Any]:
    user, _ = _who(request)
    body = _pipelines(request).delete_pipeline(ref, actor=f"user:{user}")
    return {"deleted": {"id": body["id"], "application": body["application"], "name": body["name"]}}


@router.get("/pipelines/{ref}/history")
def pipeline_history(request: Request, ref: str) -> list[dict[str, Any]]:
    return [{"version": v.version, "actor": v.actor, "time": v.time, "deleted": v.deleted}
            for v in _pipelines(request).history(ref)]


@router.get("/pipelines/{ref}/history/{version}")
def pipeline_version(request: Request, ref: str, version: int) -> dict[str, Any]:
    return _pipelines(request).version(ref, version)


@router.get("/pipelines/{ref}/diff", response_class=PlainTextResponse)
def pipeline_diff(request: Request, ref: str, a: int, b: int | None = None) -> str:
    return _pipelines(request).diff(ref, a, b)


@router.post("/pipelines/{ref}/restore/{version}")
def restore_pipeline(request: Request, ref: str, version: int) -> dict[str, Any]:
    user, _ = _who(request)
    return _pipelines(request).restore(ref, version, actor=f"user:{user}").__dict__


@router.post("/pipelines/{ref}/start")
async def start_pipeline(request: Request, ref: str) -> dict[str, Any]:
    """Manual trigger: `{"parameters": {...}, "artifacts": [...], "application": "..."}` -> the execution id.

    With an `Idempotency-Key` header, a copy of the start (same user, pipeline, parameters and artifacts; to any
    replica, within a day) answers the first one's execution with `duplicate: true` and starts nothing; the same
    key with another start is refused with 409."""
    key = _idempotency_key(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object: {parameters, artifacts, application}")
    application = body.get("application")
    if application is not None and not isinstance(application, str):
        raise ValidationError("must be a string", where="application")
    user, _ = _who(request)
    return await _pipelines(request).start(ref, user=user, parameters=body.get("parameters") or {},
                                           artifacts=body.get("artifacts") or [], application=application,
                                           idempotency_key=key)


# ------------------------------------------------------------------ executions

@router.get("/executions")
def list_executions(request: Request, pipeline: str | None = None, application: str | None = None,
                    status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    statuses = [ExecutionStatus(s.strip().upper()) for s in status.split(",")] if status else None
    return _pipelines(request).list_executions(pipeline=pipeline, application=application, statuses=statuses,
                                               limit=limit)


def _json_response(data: Any) -> JSONResponse:
    """Execution JSON is plain JSON already; skip FastAPI's per-field encoder (it dominates big executions)."""
    return JSONResponse(data)


@router.get("/executions/{execution_id}")
def get_execution(request: Request, execution_id: str) -> JSONResponse:
    pipelines = _pipelines(request)
    out = pipelines.execution(execution_id).to_json()
    out["audit"] = pipelines.audit(execution_id)
    return _json_response(out)


@router.delete("/executions/{execution_id}")
async def delete_execution(request: Request, execution_id: str) -> dict[str, Any]:
    """Admins only (graylane.server.auth). The execution's own audit goes with it, so the deletion is
    written to the admin audit log (GET /api/v1/audit) first, with what was deleted."""
    user, _ = _who(request)
    pipelines = _pipelines(request)
    exe = pipelines.execution(execution_id)
    if not exe.status.is_complete:
        raise Conflict(f"execution {exe.id} is {exe.status}; cancel it before deleting it")
    audit.record(request.app.state.cp.store.engine, actor=f"user:{user}", action="delete-execution",
                 subject=execution_id, detail={"application": exe.application, "pipeline": exe.name,
                                               "status": str(exe.status), "trigger": (exe.trigger or {}).get("type"),
                                               "audit": pipelines.audit(execution_id)})
    await pipelines.delete_execution(execution_id, user=user)
    return {"deleted": execution_id}


@router.patch("/executions/{execution_id}/stages/{stage_id}")
async def update_stage(request: Request, execution_id: str, stage_id: str) -> JSONResponse:
    """`{judgmentStatus, judgmentInput, customParams}`, `{skipRemainingWait: true}` or `{manualSkip: true}`.

    A manual judgment is recorded once: its re-send (same request and user, or the same `Idempotency-Key`)
    answers 200 with `duplicate: true`; another judgment of a judged stage is refused with 409."""
    key = _idempotency_key(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    user, roles = _who(request)
    return _json_response(await _pipelines(request).update_stage(execution_id, stage_id, body, user=user,
                                                                 roles=roles, idempotency_key=key))


@router.post("/executions/{execution_id}/cancel")
@router.put("/executions/{execution_id}/cancel", operation_id="cancel_execution_put", include_in_schema=False)
async def cancel_execution(request: Request, execution_id: str, reason: str | None = None) -> dict[str, Any]:
    """Recorded once: a cancel of an execution canceled already answers 200 with it, `duplicate: true`."""
    body = await _json(request)
    user, _ = _who(request)
    reason = reason or (body.get("reason") if isinstance(body, dict) else None)
    return await _pipelines(request).cancel(execution_id, user=user, reason=reason)


@router.post("/executions/{execution_id}/pause")
@router.put("/executions/{execution_id}/pause", operation_id="pause_execution_put", include_in_schema=False)
async def pause_execution(request: Request, execution_id: str) -> dict[str, Any]:
    user, _ = _who(request)
    return await _pipelines(request).pause(execution_id, user=user)


@router.post("/executions/{execution_id}/resume")
@router.put("/executions/{execution_id}/resume", operation_id="resume_execution_put", include_in_schema=False)
async def resume_execution(request: Request, execution_id: str) -> dict[str, Any]:
    user, _ = _who(request)
    return await _pipelines(request).resume(execution_id, user=user)


@router.post("/executions/{execution_id}/stages/{stage_id}/restart")
@router.put("/executions/{execution_id}/stages/{stage_id}/restart", operation_id="restart_stage_put",
            include_in_schema=False)
async def restart_stage(request: Request, execution_id: str, stage_id: str) -> dict[str, Any]:
    user, _ = _who(request)
    return await _pipelines(request).restart_stage(execution_id, stage_id, user=user)


@router.post("/executions/{execution_id}/evaluate")
async def evaluate(request: Request, execution_id: str) -> dict[str, Any]:
    """`{"expression": "...", "stage": "name or id"}` -> `{result, summary, failed}` against the stored execution."""
    body = await _json(request)
    expression = body.get("expression") if isinstance(body, dict) else None
    if not isinstance(expression, str) or not expression:
        raise ValidationError("`expression` is required")
    user, _ = _who(request)
    return await _pipelines(request).evaluate(execution_id, expression, body.get("stage"), user)


async def _events(request: Request, execution_id: str | None) -> AsyncIterator[dict[str, Any]]:
    pipelines = _pipelines(request)
    async with pipelines.events() as q:
        if execution_id is not None:
            yield {"event": "snapshot", "data": json.dumps(pipelines.execution(execution_id).to_json(), default=str)}
        while True:
            if await request.is_disconnected():
                return
            try:
                event = await asyncio.wait_for(q.get(), timeout=15.0)
            except TimeoutError:
                yield {"event": "ping", "data": "{}"}
                continue
            if event.topic != "execution":
                continue
            if execution_id is not None and event.data.get("executionId") != execution_id:
                continue
            yield {"event": str(event.data.get("kind", "execution")), "data": json.dumps(event.data, default=str)}


@router.get("/executions/{execution_id}/events")
async def execution_events(request: Request, execution_id: str) -> EventSourceResponse:
    _pipelines(request).execution(execution_id)  # 404 before streaming
    return event_stream(request, _events(request, execution_id))


@router.get("/events/executions")
async def all_execution_events(request: Request) -> EventSourceResponse:
    return event_stream(request, _events(request, None))


# ------------------------------------------------------------------ webhooks

@router.post("/webhooks/webhook/{source}")
async def webhook(request: Request, source: str) -> JSONResponse:
    """Start pipelines whose webhook trigger has this source: body `{parameters, artifacts, ...}`.

    Unauthenticated by design (the HMAC signature is the credential); refusals name no pipeline.
    Replays of a processed delivery answer 200 with `duplicate: true` and start nothing."""
    raw = await request.body()
    payload: Any = {}
    if raw:
        try:
            payload = parse_json(raw, request.app.state.limits, "<webhook>")
        except ValidationError as exc:
            if "nested" in exc.message:
                raise  # too deep to process; other non-JSON bodies reach the triggers as `{}`
    headers = request.headers
    delivery = WebhookDelivery(
        signature=headers.get("x-hub-signature-256") or headers.get("x-graylane-signature"),
        delivery_id=(headers.get("x-github-delivery") or headers.get("x-graylane-delivery")
                     or headers.get("idempotency-key")),
        timestamp=headers.get("x-graylane-timestamp"))
    try:
        outcome = await _pipelines(request).webhook(source, payload, raw, delivery,
                                                    window_s=request.app.state.limits.webhook_window_s)
    except SignatureMismatch as exc:
        return JSONResponse({"error": {"message": exc.message, "where": None, "hint": exc.hint}},
                            status_code=403)
    body: dict[str, Any] = {"eventProcessed": True, "source": source, "executions": outcome.executions}
    if outcome.duplicate:
        body.update(eventProcessed=False, duplicate=True, dedupeKey=outcome.dedupe_key)
    return JSONResponse(body, status_code=202 if outcome.executions else 200)
