"""Commands people send to a running execution: judge or update a stage, cancel, pause, resume, restart, delete.

Each function here validates its arguments and returns a `Command`: a function of (execution, Tx, now) that
the execution's driver (pipelines/executor.py, the only writer) applies; it changes the execution in memory
and returns the answer. The driver commits, publishes, and only then answers the caller; a command that
raises leaves no trace. What a stage's PATCH may carry is its type's business (`StageDefinition.patch_fields`
and `validate_patch` in pipelines/stages/), never a check on the type's name here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from graylane.errors import Conflict, NotFound, ValidationError
from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.repository import audit_entry, judgment_record
from graylane.pipelines.stages import definition
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import ANSWER_RECORD
from graylane.pipelines.tx import Tx, exec_event, finish, stage_event

T = TypeVar("T")
EARLIER_ANSWERS = 20  # the judgment records of earlier attempts a stage keeps (Stage.earlier_answers)
Command = Callable[[Execution, Tx, int], T]


def find_stage(exe: Execution, ref: str) -> Stage:
    stage = exe.stage(ref)
    if stage is None:
        names = ", ".join(repr(s.name) for s in exe.stages)
        raise NotFound(f"execution {exe.id} has no stage {ref!r}", hint=f"stages: {names}")
    return stage


def update_stage(stage_ref: str, body: dict[str, Any], *, user: str, roles: list[str] | None = None,
                 idempotency_key: str | None = None) -> Command[dict[str, Any]]:
    """PATCH a running stage; its type's definition validates the body (judgments, skipRemainingWait), and
    `manualSkip` is allowed where the type says it can be skipped. A stage answered once (a manual judgment)
    answers a re-send of its recorded answer with it and `duplicate: true`, writing nothing, and refuses any
    other (StageDefinition.answered); the answer's record goes to the store with the audit entry, whose
    table refuses a second (repository.judgment_record)."""
    if not isinstance(body, dict) or not body:
        raise ValidationError("the stage update is empty",
                              hint="e.g. {\"judgmentStatus\": \"continue\"} or {\"skipRemainingWait\": true}")

    def apply(exe: Execution, tx: Tx, now: int) -> dict[str, Any]:
        stage = find_stage(exe, stage_ref)
        stage_def = definition(stage.type)
        fields = {k: v for k, v in body.items() if k != "manualSkip"}
        recorded = stage_def.answered(stage.name, stage.context, fields, user=user, key=idempotency_key) \
            if fields else None
        if recorded is not None:
            return {**stage.to_json(), "duplicate": True,
                    "message": f"this judgment of stage {stage.name!r} was recorded already; nothing changed"}
        earlier = next((a for a in reversed(stage.earlier_answers)
                        if idempotency_key is not None and a.get("idempotencyKey") == idempotency_key), None)
        if fields and earlier is not None:  # a re-send that outlived a restart: the old attempt's, answered so
            stage_def.answered(stage.name, {ANSWER_RECORD: earlier}, fields, user=user, key=idempotency_key)
            return {**stage.to_json(), "duplicate": True,
                    "message": f"this judgment was recorded for an earlier attempt of stage {stage.name!r} (before "
                               "it was restarted); nothing changed: judge the new attempt with a new request"}
        if stage.status not in (S.RUNNING, S.PAUSED):
            raise Conflict(f"stage {stage.name!r} is {stage.status}, not running", where=f"execution {exe.id}")
        unknown = sorted(set(fields) - stage_def.patch_fields())
        if unknown:
            takes = ", ".join(sorted(stage_def.patch_fields() | {"manualSkip"}))
            raise ValidationError(f"stage {stage.name!r} ({stage.type}) does not take {', '.join(unknown)}",
                                  hint=f"a {stage.type} stage takes: {takes}")
        updates: dict[str, Any] = {}
        action = "update"
        record = None
        if fields:
            updates, action = stage_def.validate_patch(stage.name, stage.context, fields, user=user,
                                                       roles=roles or [])
            record = stage_def.answer_record(stage.context, updates, fields, user=user, key=idempotency_key,
                                             now=now)
            if record is not None:
                updates[ANSWER_RECORD] = record
        if body.get("manualSkip") is not None:
            if not stage_def.can_skip(stage.context):
                raise ValidationError("Cannot manually skip stage.", where=f"stage {stage.name!r}")
            updates["manualSkip"] = bool(body["manualSkip"])
            action = "skip"
        stage.context.update(updates)
        stage.last_modified = {"user": user, "allowedAccounts": [], "lastModifiedTime": now}
        tx.touch(stage)
        details = {**body, **({"idempotencyKey": idempotency_key} if idempotency_key else {})}
        entry = audit_entry(user, action, now, stage.id, stage=stage.name, **details)
        if record is not None:
            entry["judgment"] = judgment_record(attempt=stage.attempt, user=user, now=now,
                                                status=str(updates.get("judgmentStatus")), key=idempotency_key,
                                                request=record["request"])
        tx.audit.append(entry)
        tx.events.append(stage_event(exe, stage, now, "context"))
        tx.run_now.add(stage.id)  # run the waiting task now, not after its backoff
        return stage.to_json()

    return apply


def cancel(*, user: str, reason: str | None = None) -> Command[dict[str, Any]]:
    """Cancel recorded once: the execution's driver applies commands one at a time, so of two cancels (queued
    together, or sent to two replicas and routed to the one driving it) the first records it and the second
    finds `canceled` set: it answers the execution as it is with `duplicate: true` and writes nothing. A
    cancel of an execution that ended otherwise is refused (409)."""

    def apply(exe: Execution, tx: Tx, now: int) -> dict[str, Any]:
        if exe.canceled:
            return {**exe.header_json(), "duplicate": True,
                    "message": f"execution {exe.id} was canceled already by {exe.canceled_by or 'someone'}; "
                               "nothing changed"}
        if exe.status.is_complete:
            raise Conflict(f"execution {exe.id} is already {exe.status}")
        exe.canceled, exe.canceled_by, exe.cancellation_reason = True, user, reason
        tx.header = True
        tx.audit.append(audit_entry(user, "cancel", now, reason=reason))
        if exe.status in (S.NOT_STARTED, S.BUFFERED):
            finish(exe, S.CANCELED, tx, now)
        return exe.header_json()

    return apply


def pause(*, user: str) -> Command[dict[str, Any]]:
    def apply(exe: Execution, tx: Tx, now: int) -> dict[str, Any]:
        if exe.status != S.RUNNING:
            raise Conflict(f"execution {exe.id} is {exe.status}; only a RUNNING execution can be paused")
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
                tx.events.append(stage_event(exe, st, now))
        tx.header = True
        tx.audit.append(audit_entry(user, "pause", now))
        tx.events.append(exec_event(exe, now))
        return exe.header_json()

    return apply


def resume(*, user: str) -> Command[dict[str, Any]]:
    def apply(exe: Execution, tx: Tx, now: int) -> dict[str, Any]:
        if exe.status != S.PAUSED:
            raise Conflict(f"execution {exe.id} is {exe.status}; only a PAUSED execution can be resumed")
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
                tx.events.append(stage_event(exe, st, now))
        tx.header = True
        tx.audit.append(audit_entry(user, "resume", now))
        tx.events.append(exec_event(exe, now))
        return exe.header_json()

    return apply


def restart_stage(stage_ref: str, *, user: str) -> Command[dict[str, Any]]:
    """Reset a complete (or NOT_STARTED) stage and everything downstream; expressions evaluate afresh.

    After a failure halted the pipeline, the branches it canceled are reset as well."""

    def apply(exe: Execution, tx: Tx, now: int) -> dict[str, Any]:
        stage = find_stage(exe, stage_ref)
        if not (stage.status.is_complete or stage.status == S.NOT_STARTED):
            raise Conflict(f"stage {stage.name!r} is {stage.status}; only a complete stage can be restarted")
        previous = stage.context.get("exception")
        reset = {st.id: st for st in [stage, *exe.downstream_closure(stage)]}
        if exe.status == S.TERMINAL and not exe.canceled:
            # Branches the failure halted (CANCELED, not by a person) run again too, or the restarted
            # execution could only end CANCELED.
            for other in exe.stages:
                if other.status == S.CANCELED:
                    reset.update({st.id: st for st in [other, *exe.downstream_closure(other)]})
        for st in sorted(reset.values(), key=lambda x: x.seq):
            if isinstance(answer := st.context.get(ANSWER_RECORD), dict):
                st.earlier_answers = [*st.earlier_answers, {**answer, "attempt": st.attempt}][-EARLIER_ANSWERS:]
            st.status, st.context, st.outputs, st.tasks = S.NOT_STARTED, {}, {}, []
            st.start_time = st.end_time = st.pause_time = None
            st.paused_ms, st.last_modified = 0, None
            st.attempt += 1
            tx.run_now.add(st.id)
            tx.touch(st)
            tx.events.append(stage_event(exe, st, now))
        stage.context["restartDetails"] = {"restartedBy": user, "restartTime": now, "previousException": previous}
        if exe.status.is_complete:
            exe.status, exe.end_time = S.RUNNING, None
            exe.canceled, exe.canceled_by, exe.cancellation_reason = False, None, None
            tx.events.append(exec_event(exe, now))
        tx.header = True
        tx.audit.append(audit_entry(user, "restart", now, stage.id, stage=stage.name))
        return stage.to_json()

    return apply


def delete_execution(*, user: str) -> Command[None]:
    """Delete a finished execution (orca: only when complete)."""

    def apply(exe: Execution, tx: Tx, now: int) -> None:
        if not exe.status.is_complete:
            raise Conflict(f"execution {exe.id} is {exe.status}; cancel it before deleting it")
        tx.delete = True

    return apply
