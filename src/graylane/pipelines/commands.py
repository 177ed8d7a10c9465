"""Commands people send to a running execution (judge, skip, cancel, pause, resume, restart) and waiting on it.

Each command is a function applied by the execution's driver (the only writer): it validates, changes the
execution in memory and returns; the driver commits, publishes, and only then answers the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graylane.errors import Conflict, NotFound, ValidationError
from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.repository import audit_entry
from graylane.pipelines.stages import definition
from graylane.pipelines.status import ExecutionStatus as S

if TYPE_CHECKING:
    from graylane.events import EventBus
    from graylane.pipelines.repository import ExecutionRepository


@dataclass
class Tx:
    """Changes made by one step: flushed in one transaction, then events published."""

    stages: dict[str, Stage] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    header: bool = False

    def touch(self, stage: Stage) -> None:
        self.stages[stage.id] = stage

    @property
    def dirty(self) -> bool:
        return bool(self.stages or self.audit or self.header)


def find_stage(exe: Execution, ref: str) -> Stage:
    stage = exe.stage(ref)
    if stage is None:
        names = ", ".join(repr(s.name) for s in exe.stages)
        raise NotFound(f"execution {exe.id} has no stage {ref!r}", hint=f"stages: {names}")
    return stage


class Commands:
    """Mixed into Executor; relies on its driver plumbing (`_submit`, `_drivers`) and event builders."""

    bus: EventBus
    repo: ExecutionRepository
    _drivers: dict[str, Any]

    def now_ms(self) -> int:
        raise NotImplementedError

    def get(self, execution_id: str) -> Execution:
        raise NotImplementedError

    async def _submit(self, execution_id: str, fn: Callable[[Execution, Tx], Any]) -> Any:
        raise NotImplementedError

    def _finish(self, exe: Execution, status: S, tx: Tx) -> None:
        raise NotImplementedError

    def _exec_event(self, exe: Execution) -> dict[str, Any]:
        raise NotImplementedError

    def _stage_event(self, exe: Execution, stage: Stage, kind: str = "stage") -> dict[str, Any]:
        raise NotImplementedError

    async def update_stage(self, execution_id: str, stage_ref: str, body: dict[str, Any], *, user: str,
                           roles: list[str] | None = None) -> dict[str, Any]:
        """PATCH a running stage; its type's definition validates the body (judgments, skipRemainingWait), and
        `manualSkip` is allowed where the type says it can be skipped."""
        if not isinstance(body, dict) or not body:
            raise ValidationError("the stage update is empty",
                                  hint="e.g. {\"judgmentStatus\": \"continue\"} or {\"skipRemainingWait\": true}")

        def apply(exe: Execution, tx: Tx) -> dict[str, Any]:
            stage = find_stage(exe, stage_ref)
            if stage.status not in (S.RUNNING, S.PAUSED):
                raise Conflict(f"stage {stage.name!r} is {stage.status}, not running",
                               where=f"execution {exe.id}")
            stage_def = definition(stage.type)
            fields = {k: v for k, v in body.items() if k != "manualSkip"}
            unknown = sorted(set(fields) - stage_def.patch_fields())
            if unknown:
                takes = ", ".join(sorted(stage_def.patch_fields() | {"manualSkip"}))
                raise ValidationError(f"stage {stage.name!r} ({stage.type}) does not take {', '.join(unknown)}",
                                      hint=f"a {stage.type} stage takes: {takes}")
            updates: dict[str, Any] = {}
            action = "update"
            if fields:
                updates, action = stage_def.validate_patch(stage.name, stage.context, fields, user=user,
                                                           roles=roles or [])
            if body.get("manualSkip") is not None:
                if not stage_def.can_skip(stage.context):
                    raise ValidationError("Cannot manually skip stage.", where=f"stage {stage.name!r}")
                updates["manualSkip"] = bool(body["manualSkip"])
                action = "skip"
            now = self.now_ms()
            stage.context.update(updates)
            stage.last_modified = {"user": user, "allowedAccounts": [], "lastModifiedTime": now}
            if action == "judgment":
                stage.context["lastModifiedBy"] = user
            tx.touch(stage)
            tx.audit.append(audit_entry(user, action, now, stage.id, stage=stage.name,
                                        **{k: v for k, v in body.items()}))
            tx.events.append(self._stage_event(exe, stage, "context"))
            self._drivers[exe.id].due.pop(stage.id, None)  # run the waiting task now, not after its backoff
            return stage.to_json()

        return dict(await self._submit(execution_id, apply))

    async def cancel(self, execution_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        def apply(exe: Execution, tx: Tx) -> dict[str, Any]:
            if exe.status.is_complete:
                raise Conflict(f"execution {exe.id} is already {exe.status}")
            now = self.now_ms()
            exe.canceled, exe.canceled_by, exe.cancellation_reason = True, user, reason
            tx.header = True
            tx.audit.append(audit_entry(user, "cancel", now, reason=reason))
            if exe.status in (S.NOT_STARTED, S.BUFFERED):
                self._finish(exe, S.CANCELED, tx)
            return exe.header_json()

        return dict(await self._submit(execution_id, apply))

    async def pause(self, execution_id: str, *, user: str) -> dict[str, Any]:
        def apply(exe: Execution, tx: Tx) -> dict[str, Any]:
            if exe.status != S.RUNNING:
                raise Conflict(f"execution {exe.id} is {exe.status}; only a RUNNING execution can be paused")
            now = self.now_ms()
            exe.status = S.PAUSED
            exe.paused = {"pausedBy": user, "pauseTime": now, "resumedBy": None, "resumeTime": None,
                          "pausedMs": (exe.paused or {}).get("pausedMs", 0)}
            for st in exe.stages:
                if st.status == S.RUNNING:
                    st.status, st.pause_time = S.PAUSED, now
                    for t in st.tasks:
                        if t.status == S.RUNNING:
                            t.status = S.PAUSED
                    tx.touch(st)
                    tx.events.append(self._stage_event(exe, st))
            tx.header = True
            tx.audit.append(audit_entry(user, "pause", now))
            tx.events.append(self._exec_event(exe))
            return exe.header_json()

        return dict(await self._submit(execution_id, apply))

    async def resume(self, execution_id: str, *, user: str) -> dict[str, Any]:
        def apply(exe: Execution, tx: Tx) -> dict[str, Any]:
            if exe.status != S.PAUSED:
                raise Conflict(f"execution {exe.id} is {exe.status}; only a PAUSED execution can be resumed")
            now = self.now_ms()
            paused = dict(exe.paused or {})
            paused.update(resumedBy=user, resumeTime=now,
                          pausedMs=paused.get("pausedMs", 0) + now - int(paused.get("pauseTime") or now))
            exe.paused, exe.status = paused, S.RUNNING
            for st in exe.stages:
                if st.status == S.PAUSED:
                    st.status = S.RUNNING
                    st.paused_ms += now - (st.pause_time or now)
                    st.pause_time = None
                    for t in st.tasks:
                        if t.status == S.PAUSED:
                            t.status = S.RUNNING
                    tx.touch(st)
                    tx.events.append(self._stage_event(exe, st))
            tx.header = True
            tx.audit.append(audit_entry(user, "resume", now))
            tx.events.append(self._exec_event(exe))
            return exe.header_json()

        return dict(await self._submit(execution_id, apply))

    async def restart_stage(self, execution_id: str, stage_ref: str, *, user: str) -> dict[str, Any]:
        """Reset a complete (or NOT_STARTED) stage and everything downstream; expressions evaluate afresh.

        After a failure halted the pipeline, the branches it canceled are reset as well."""

        def apply(exe: Execution, tx: Tx) -> dict[str, Any]:
            stage = find_stage(exe, stage_ref)
            if not (stage.status.is_complete or stage.status == S.NOT_STARTED):
                raise Conflict(f"stage {stage.name!r} is {stage.status}; only a complete stage can be restarted")
            now = self.now_ms()
            previous = stage.context.get("exception")
            reset = {st.id: st for st in [stage, *exe.downstream_closure(stage)]}
            if exe.status == S.TERMINAL and not exe.canceled:
                # Branches the failure halted (CANCELED, not by a person) run again too, or the restarted
                # execution could only end CANCELED.
                for other in exe.stages:
                    if other.status == S.CANCELED:
                        reset.update({st.id: st for st in [other, *exe.downstream_closure(other)]})
            for st in sorted(reset.values(), key=lambda x: x.seq):
                st.status, st.context, st.outputs, st.tasks = S.NOT_STARTED, {}, {}, []
                st.start_time = st.end_time = st.pause_time = None
                st.paused_ms, st.last_modified = 0, None
                st.attempt += 1
                self._drivers[exe.id].due.pop(st.id, None)
                tx.touch(st)
                tx.events.append(self._stage_event(exe, st))
            stage.context["restartDetails"] = {"restartedBy": user, "restartTime": now,
                                               "previousException": previous}
            if exe.status.is_complete:
                exe.status, exe.end_time = S.RUNNING, None
                exe.canceled, exe.canceled_by, exe.cancellation_reason = False, None, None
                tx.events.append(self._exec_event(exe))
            tx.header = True
            tx.audit.append(audit_entry(user, "restart", now, stage.id, stage=stage.name))
            return stage.to_json()

        return dict(await self._submit(execution_id, apply))

    async def delete_execution(self, execution_id: str, *, user: str) -> None:
        """Delete a finished execution (orca: only when complete)."""

        def apply(exe: Execution, tx: Tx) -> None:
            if not exe.status.is_complete:
                raise Conflict(f"execution {exe.id} is {exe.status}; cancel it before deleting it")
            self.repo.delete(exe.id)

        await self._submit(execution_id, apply)

    async def wait_until_complete(self, execution_id: str, timeout: float = 30.0) -> Execution:
        """Wait for the execution to finish (for tests and `execution wait`)."""
        async with self.bus.subscribe() as q:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                exe = self.get(execution_id)
                if exe.status.is_complete:
                    return exe
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"execution {execution_id} still {exe.status} after {timeout}s")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(q.get(), timeout=min(left, 0.5))

    async def wait_for_stage(self, execution_id: str, stage_ref: str, statuses: set[S],
                             timeout: float = 30.0) -> Stage:
        async with self.bus.subscribe() as q:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                exe = self.get(execution_id)
                st = find_stage(exe, stage_ref)
                if st.status in statuses:
                    return st
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"stage {stage_ref!r} still {st.status} after {timeout}s")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(q.get(), timeout=min(left, 0.5))
