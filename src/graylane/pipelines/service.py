"""The one pipelines object the API talks to: pipeline configs (import, versions), executions (start, read,
judge, cancel, pause, resume, restart, delete), expression checks, webhooks and the event stream.

Reads go to the store's tables and never create a scheduler; commands go to the scheduler
(pipelines/executor.py), which the service asks for only when a write needs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from graylane.events import EventBus
from graylane.pipelines import evaluation
from graylane.pipelines.execution import Execution
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import (
    ConfigVersion,
    ExecutionRepository,
    PipelineRepository,
    SaveResult,
    export_config,
)
from graylane.pipelines.status import ExecutionStatus
from graylane.pipelines.triggers import (
    WebhookDelivery,
    WebhookOutcome,
    handle_webhook,
    start_manual,
    start_manual_once,
    webhook_warnings,
)


class PipelinesService:
    def __init__(self, engine: Any, *, bus: EventBus, scheduler: Callable[[], Executor]) -> None:
        self.configs = PipelineRepository(engine)
        self.executions = ExecutionRepository(engine)
        self.bus = bus
        self._scheduler = scheduler

    # ---- pipeline configs

    def list_pipelines(self, application: str | None = None) -> list[dict[str, Any]]:
        return self.configs.list(application)

    def import_pipelines(self, items: list[Any], *, actor: str,
                         where: Callable[[int], str]) -> tuple[list[SaveResult], list[str]]:
        """Validate every item and check ids for clashes before saving any; warnings include webhook ones."""
        results, warnings = self.configs.import_many(items, actor=actor, where=where)
        warnings += [w for item in items if isinstance(item, dict) for w in webhook_warnings(item)]
        return results, warnings

    def get_pipeline(self, ref: str, application: str | None = None) -> dict[str, Any]:
        return self.configs.get(ref, application)

    def save_pipeline(self, ref: str, body: dict[str, Any], *, actor: str) -> dict[str, Any]:
        """A new version of an existing pipeline (the body may rename it; its id is kept)."""
        current = self.configs.get(ref)
        return {**self.configs.save({**body, "id": current["id"]}, actor=actor).__dict__,
                "warnings": webhook_warnings(body)}

    def export_pipeline(self, ref: str, application: str | None = None) -> dict[str, Any]:
        return export_config(self.configs.get(ref, application))

    def delete_pipeline(self, ref: str, *, actor: str) -> dict[str, Any]:
        return self.configs.delete(ref, actor=actor)

    def history(self, ref: str) -> list[ConfigVersion]:
        return self.configs.history(ref)

    def version(self, ref: str, version: int) -> dict[str, Any]:
        return export_config(self.configs.version(ref, version))

    def diff(self, ref: str, a: int, b: int | None = None) -> str:
        return self.configs.diff(ref, a, b)

    def restore(self, ref: str, version: int, *, actor: str) -> SaveResult:
        return self.configs.restore(ref, version, actor=actor)

    # ---- executions: reads

    def list_executions(self, *, pipeline: str | None = None, application: str | None = None,
                        statuses: list[ExecutionStatus] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        config_id = self.configs.get(pipeline, application)["id"] if pipeline else None
        return self.executions.list(pipeline_config_id=config_id, application=application, statuses=statuses,
                                    limit=limit)

    def execution(self, execution_id: str) -> Execution:
        """As committed (never a driver's in-flight state); NotFound for an unknown id."""
        return self.executions.load(execution_id)

    def audit(self, execution_id: str) -> list[dict[str, Any]]:
        return self.executions.audit(execution_id)

    async def evaluate(self, execution_id: str, expression: str, stage: str | None, user: str) -> dict[str, Any]:
        """`{result, summary, failed}` of an expression against the stored execution (off the event loop)."""
        exe = self.execution(execution_id).to_json()
        return dict(await evaluation.off_loop(evaluation.evaluate_for_execution, exe, expression, stage, user))

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[Any]:
        """A queue of the bus's events (topic `execution` carries the pipelines' ones)."""
        async with self.bus.subscribe() as q:
            yield q

    # ---- executions: commands (through the scheduler)

    async def start(self, ref: str, *, user: str, parameters: dict[str, Any], artifacts: list[dict[str, Any]],
                    application: str | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """A manual start: `{id, ref, status, reason, parameters}` (status BUFFERED comes with the reason). With
        an Idempotency-Key, a copy of a start already made answers its execution with `duplicate: true`
        (triggers.start_manual_once)."""
        scheduler = self._scheduler()
        duplicate = False
        if idempotency_key is None:
            exe = await start_manual(scheduler, ref, user=user, parameters=parameters, artifacts_in=artifacts,
                                     application=application)
        else:
            exe, duplicate = await start_manual_once(scheduler, ref, user=user, key=idempotency_key,
                                                     parameters=parameters, artifacts_in=artifacts,
                                                     application=application)
        out = {"id": exe.id, "ref": f"/api/v1/executions/{exe.id}", "status": str(exe.status),
               "reason": scheduler.buffered_reason(exe), "parameters": exe.trigger.get("parameters") or {}}
        if duplicate:
            out.update(duplicate=True, message=f"this start was made already (Idempotency-Key {idempotency_key!r}): "
                                               f"execution {exe.id}; nothing new was started")
        return out

    async def update_stage(self, execution_id: str, stage_ref: str, body: dict[str, Any], *, user: str,
                           roles: list[str], idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._scheduler().update_stage(execution_id, stage_ref, body, user=user, roles=roles,
                                                    idempotency_key=idempotency_key)

    async def cancel(self, execution_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        """Recorded once (commands.cancel): a cancel of a canceled execution answers it with `duplicate: true`."""
        return await self._scheduler().cancel(execution_id, user=user, reason=reason)

    async def pause(self, execution_id: str, *, user: str) -> dict[str, Any]:
        return await self._scheduler().pause(execution_id, user=user)

    async def resume(self, execution_id: str, *, user: str) -> dict[str, Any]:
        return await self._scheduler().resume(execution_id, user=user)

    async def restart_stage(self, execution_id: str, stage_ref: str, *, user: str) -> dict[str, Any]:
        return await self._scheduler().restart_stage(execution_id, stage_ref, user=user)

    async def delete_execution(self, execution_id: str, *, user: str) -> None:
        await self._scheduler().delete_execution(execution_id, user=user)

    async def webhook(self, source: str, payload: Any, raw: bytes, delivery: WebhookDelivery, *,
                      window_s: float) -> WebhookOutcome:
        return await handle_webhook(self._scheduler(), source, payload, raw, delivery, window_s=window_s)

