"""Pipeline and manual-judgment notifications (Spinnaker's `notifications`), sent after the state is committed.

Listens to the executor's events. `type: webhook` POSTs JSON to `address`; other types (email, slack...)
need a gateway Graylane does not ship, so they are logged once per event and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from graylane.pipelines.executor import Executor

log = logging.getLogger(__name__)

_PIPELINE_WHEN = {"RUNNING": "pipeline.starting", "SUCCEEDED": "pipeline.complete", "TERMINAL": "pipeline.failed",
                  "CANCELED": "pipeline.failed"}
_JUDGMENT_WHEN = {"RUNNING": "manualJudgment", "SUCCEEDED": "manualJudgmentContinue",
                  "TERMINAL": "manualJudgmentStop", "STOPPED": "manualJudgmentStop"}
_STAGE_WHEN = {"RUNNING": "stage.starting", "SUCCEEDED": "stage.complete", "TERMINAL": "stage.failed"}


def _wants(notification: dict[str, Any], when: str) -> bool:
    return when in (notification.get("when") or [])


class Notifier:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._task: asyncio.Task[None] | None = None
        self.sent: list[dict[str, Any]] = []  # what went out (for `execution show` and tests)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pipeline notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with self.executor.bus.subscribe() as q:
            while True:
                event = await q.get()
                if event.topic != "execution":
                    continue
                try:
                    await self._handle(event.data)
                except Exception:
                    log.warning("notification for %s failed", event.data.get("executionId"), exc_info=True)

    async def _handle(self, data: dict[str, Any]) -> None:
        kind, status = data.get("kind"), str(data.get("status"))
        if kind == "execution" and status in _PIPELINE_WHEN:
            exe = self.executor.get(data["executionId"])
            when = _PIPELINE_WHEN[status]
            for n in exe.notifications:
                if isinstance(n, dict) and _wants(n, when):
                    await self._send(n, when, exe.to_json(), None)
        elif kind == "stage":
            table = _JUDGMENT_WHEN if data.get("type") == "manualJudgment" else _STAGE_WHEN
            if status not in table:
                return
            exe = self.executor.get(data["executionId"])
            stage = exe.stage(data["stageId"])
            if stage is None or not stage.context.get("sendNotifications", stage.type == "manualJudgment"):
                return
            when = table[status]
            for n in stage.context.get("notifications") or []:
                if isinstance(n, dict) and _wants(n, when):
                    await self._send(n, when, exe.to_json(), stage.to_json())

    async def _send(self, n: dict[str, Any], when: str, exe: dict[str, Any], stage: dict[str, Any] | None) -> None:
        text = ((n.get("message") or {}).get(when) or {}).get("text") or ""
        body = {"event": when, "executionId": exe["id"], "application": exe["application"],
                "pipeline": exe["name"], "status": exe["status"], "message": text,
                "stage": None if stage is None else {"id": stage["id"], "name": stage["name"],
                                                     "status": stage["status"],
                                                     "instructions": stage["context"].get("instructions"),
                                                     "judgmentInputs": stage["context"].get("judgmentInputs")}}
        record = {"type": n.get("type"), "address": n.get("address"), "event": when, "executionId": exe["id"]}
        if n.get("type") != "webhook":
            log.info("notification %s to %s (%s) skipped: only `webhook` notifications are sent by Graylane",
                     when, n.get("address"), n.get("type"))
            record["sent"] = False
        else:
            try:
                async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
                    resp = await client.post(str(n.get("address")), json=body)
                record["sent"], record["statusCode"] = resp.status_code < 400, resp.status_code
            except httpx.HTTPError as exc:
                log.warning("notification %s to %s failed: %s", when, n.get("address"), exc)
                record["sent"], record["error"] = False, str(exc)
        self.sent.append(record)
