"""Durable pipeline state over the store's engine: configs with versions, executions, stages, audit, and the
records that make judgments (pipeline_judgments) and keyed manual starts (pipeline_start_keys) happen once.

The only module in `pipelines/` that speaks SQL.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from graylane.errors import Conflict, NotFound, ValidationError
from graylane.pipelines import model
from graylane.pipelines.execution import Execution, Stage
from graylane.pipelines.status import ACTIVE, ExecutionStatus
from graylane.pipelines.tables import (
    pipeline_audit,
    pipeline_config_versions,
    pipeline_configs,
    pipeline_executions,
    pipeline_judgments,
    pipeline_stages,
    pipeline_start_keys,
    pipeline_trigger_state,
)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class SaveResult:
    id: str
    application: str
    name: str
    version: int
    action: str  # created | configured | unchanged


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    actor: str
    time: int
    deleted: bool
    body: dict[str, Any]


class PipelineRepository:
    """Pipeline configs, each save a new version (history, diff, restore)."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = _now_ms) -> None:
        self.engine = engine
        self.clock = clock

    def save(self, body: dict[str, Any], *, actor: str, where: str = "<api>") -> SaveResult:
        norm = model.validate(body, where=where)
        with self.engine.begin() as conn:
            row = None
            if norm.get("id"):
                row = conn.execute(sa.select(pipeline_configs).where(pipeline_configs.c.id == norm["id"])).first()
            if row is None:
                row = conn.execute(sa.select(pipeline_configs).where(
                    pipeline_configs.c.application == norm["application"],
                    pipeline_configs.c.name == norm["name"])).first()
            if row is not None:
                norm["id"] = row.id
                clash = conn.execute(sa.select(pipeline_configs.c.id).where(
                    pipeline_configs.c.application == norm["application"], pipeline_configs.c.name == norm["name"],
                    pipeline_configs.c.id != row.id)).first()
                if clash:
                    raise ValidationError(f"pipeline {norm['application']}/{norm['name']} already exists "
                                          f"with another id ({clash.id})", where=where)
                old = json.loads(row.body)
                if model.canonical(_strip_meta(old)) == model.canonical(_strip_meta(norm)):
                    return SaveResult(row.id, row.application, row.name, row.version, "unchanged")
                version = row.version + 1
                norm.update(_meta(version, actor, self.clock()))
                conn.execute(pipeline_configs.update().where(pipeline_configs.c.id == row.id).values(
                    application=norm["application"], name=norm["name"], version=version, body=_dumps(norm),
                    updated_at=self.clock(), updated_by=actor))
                action = "configured"
            else:
                norm.setdefault("id", str(uuid.uuid4()))
                last = conn.execute(sa.select(sa.func.max(pipeline_config_versions.c.version)).where(
                    pipeline_config_versions.c.config_id == norm["id"])).scalar()
                version = (last or 0) + 1
                norm.update(_meta(version, actor, self.clock()))
                conn.execute(pipeline_configs.insert().values(
                    id=norm["id"], application=norm["application"], name=norm["name"], version=version,
                    body=_dumps(norm), updated_at=self.clock(), updated_by=actor))
                action = "created"
            conn.execute(pipeline_config_versions.insert().values(
                config_id=norm["id"], version=version, body=_dumps(norm), actor=actor, time=self.clock(),
                deleted=False))
        return SaveResult(norm["id"], norm["application"], norm["name"], version, action)

    def import_many(self, items: list[Any], *, actor: str,
                    where: Callable[[int], str] = lambda i: f"<api>[{i}]") -> tuple[list[SaveResult], list[str]]:
        """Import pipelines: all validated and checked for id clashes before any is saved; (results, warnings).

        Two pipelines (in the batch, or one of them stored) with the same `id` but another application/name are
        refused, naming both: Spinnaker's ids are global, and saving would silently overwrite one with the other.
        A pipeline without an `id` gets a new one (or the id of the stored pipeline of the same application/name).
        """
        from graylane.pipelines import compat

        norms = [model.validate(item, where=where(i)) for i, item in enumerate(items)]
        seen: dict[str, tuple[int, str, str]] = {}
        with self.engine.connect() as conn:
            for i, norm in enumerate(norms):
                pid = norm.get("id")
                if not pid:
                    continue
                mine = (str(norm["application"]), str(norm["name"]))
                if pid in seen and seen[pid][1:] != mine:
                    j, app, name = seen[pid]
                    raise ValidationError(
                        f"pipelines {app}/{name} ({where(j)}) and {mine[0]}/{mine[1]} ({where(i)}) share the id "
                        f"{pid!r}; saving both would overwrite one with the other", where=where(i),
                        hint="give each pipeline its own id, or remove `id` and Graylane assigns one")
                seen[str(pid)] = (i, *mine)
                row = conn.execute(sa.select(pipeline_configs.c.application, pipeline_configs.c.name).where(
                    pipeline_configs.c.id == pid)).first()
                if row is not None and (row.application, row.name) != mine:
                    raise ValidationError(
                        f"pipeline {mine[0]}/{mine[1]} has the id {pid!r} of the stored pipeline "
                        f"{row.application}/{row.name}; importing it would overwrite that pipeline", where=where(i),
                        hint="remove `id` to import it as a new pipeline, or rename the stored one with "
                             "PUT /api/v1/pipelines/ID (its id is kept)")
        known = compat.known_accounts()
        warnings = [w for norm in norms for w in compat.account_warnings(norm, known)]
        return [self.save(item, actor=actor, where=where(i)) for i, item in enumerate(items)], warnings

    def get(self, ref: str, application: str | None = None) -> dict[str, Any]:
        """By id, `application/name`, or a name unique across applications."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(pipeline_configs).where(pipeline_configs.c.id == ref)).first()
            if row is None:
                app, _, name = ref.rpartition("/")
                app = application or app
                q = sa.select(pipeline_configs).where(pipeline_configs.c.name == name)
                if app:
                    q = q.where(pipeline_configs.c.application == app)
                rows = conn.execute(q).all()
                if len(rows) > 1:
                    raise ValidationError(f"pipeline name {name!r} exists in several applications "
                                          f"({', '.join(r.application for r in rows)})",
                                          hint="write it as APPLICATION/NAME")
                row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"no pipeline {ref!r}", hint="`graylane pipeline list` shows the imported pipelines")
        return json.loads(row.body)

    def list(self, application: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(pipeline_configs).order_by(pipeline_configs.c.application, pipeline_configs.c.name)
        if application:
            q = q.where(pipeline_configs.c.application == application)
        with self.engine.connect() as conn:
            return [json.loads(r.body) for r in conn.execute(q)]

    def delete(self, ref: str, *, actor: str) -> dict[str, Any]:
        body = self.get(ref)
        with self.engine.begin() as conn:
            version = body.get("_version", 0) + 1
            conn.execute(pipeline_configs.delete().where(pipeline_configs.c.id == body["id"]))
            conn.execute(pipeline_config_versions.insert().values(
                config_id=body["id"], version=version, body=_dumps(body), actor=actor, time=self.clock(),
                deleted=True))
        return body

    def history(self, ref: str) -> list[ConfigVersion]:
        config_id = self._resolve_id(ref)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pipeline_config_versions).where(
                pipeline_config_versions.c.config_id == config_id).order_by(pipeline_config_versions.c.version))
            return [ConfigVersion(r.version, r.actor, r.time, bool(r.deleted), json.loads(r.body)) for r in rows]

    def version(self, ref: str, version: int) -> dict[str, Any]:
        for v in self.history(ref):
            if v.version == version:
                return v.body
        raise NotFound(f"pipeline {ref!r} has no version {version}")

    def diff(self, ref: str, a: int, b: int | None = None) -> str:
        hist = self.history(ref)
        b = b if b is not None else hist[-1].version
        return model.config_diff(_strip_meta(self.version(ref, a)), _strip_meta(self.version(ref, b)),
                                 f"version {a}", f"version {b}")

    def restore(self, ref: str, version: int, *, actor: str) -> SaveResult:
        body = _strip_meta(self.version(ref, version))
        return self.save(body, actor=actor, where=f"{ref}@{version}")

    def _resolve_id(self, ref: str) -> str:
        try:
            return str(self.get(ref)["id"])
        except NotFound:
            with self.engine.connect() as conn:  # deleted pipelines keep their history
                row = conn.execute(sa.select(pipeline_config_versions.c.config_id).where(
                    pipeline_config_versions.c.config_id == ref)).first()
            if row is None:
                raise
            return str(row.config_id)


_META_KEYS = ("_version", "updateTs", "lastModifiedBy")


def _meta(version: int, actor: str, now: int) -> dict[str, Any]:
    return {"_version": version, "updateTs": str(now), "lastModifiedBy": actor.removeprefix("user:")}


def _strip_meta(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _META_KEYS}


def export_config(body: dict[str, Any]) -> dict[str, Any]:
    """The pipeline JSON a user keeps in git: bookkeeping fields removed."""
    return _strip_meta(body)


# Prebuilt statements: the scheduler writes on every transition, so skip per-call statement construction.
_UPDATE_EXECUTION = pipeline_executions.update().where(pipeline_executions.c.id == sa.bindparam("_id")).values(
    status=sa.bindparam("status"), start_time=sa.bindparam("start_time"), end_time=sa.bindparam("end_time"),
    body=sa.bindparam("body"))
_UPDATE_STAGE = pipeline_stages.update().where(pipeline_stages.c.id == sa.bindparam("_id")).values(
    status=sa.bindparam("status"), body=sa.bindparam("body"))


class ExecutionRepository:
    """Executions and their stages; every write is one transaction."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = _now_ms) -> None:
        self.engine = engine
        self.clock = clock
        # Replicas (graylane.pipelines.leases): called inside every transaction that writes an execution's
        # state; `fence` refuses the write (raises) unless this replica holds the execution's lease token.
        self.guard: WriteGuard | None = None

    def insert(self, exe: Execution, audit: Iterable[dict[str, Any]] = ()) -> None:
        """Write a new execution. A manual start with an Idempotency-Key (`trigger.idempotencyKey`) records it in
        pipeline_start_keys in the same transaction; its primary key (user, key) refuses a second start with
        StartKeyTaken, so replicas that receive copies of one start at once insert one execution."""
        entries = [{"execution_id": exe.id, **entry} for entry in audit]
        key_row = _start_key_row(exe)
        with self.engine.begin() as conn:
            if key_row is not None:  # first: a concurrent copy waits on the key, then fails, writing nothing
                _k = pipeline_start_keys.c
                conn.execute(pipeline_start_keys.delete().where(  # an expired record no longer counts
                    _k.user == key_row["user"], _k.idempotency_key == key_row["idempotency_key"],
                    _k.created_at < key_row["created_at"] - START_KEY_TTL_MS))
                try:
                    conn.execute(pipeline_start_keys.insert().values(**key_row))
                except sa.exc.IntegrityError as exc:  # the transaction rolls back whole
                    raise StartKeyTaken(f"Idempotency-Key {key_row['idempotency_key']!r} started an execution "
                                        "already", hint="nothing was written") from exc
            conn.execute(pipeline_executions.insert().values(**self._exec_row(exe)))
            if self.guard is not None:
                self.guard.inserted(conn, exe.id)
            if exe.stages:
                conn.execute(pipeline_stages.insert(), [self._stage_row(exe.id, s) for s in exe.stages])
            if entries:
                conn.execute(pipeline_audit.insert(), entries)

    def started_with_key(self, user: str, key: str, now: int) -> dict[str, Any] | None:
        """The record of the start `user` sent with this Idempotency-Key within START_KEY_TTL_MS, else None:
        `{request, pipeline_config_id, execution_id, created_at}`."""
        _k = pipeline_start_keys.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_k.request, _k.pipeline_config_id, _k.execution_id, _k.created_at).where(
                _k.user == user[:255], _k.idempotency_key == key, _k.created_at >= now - START_KEY_TTL_MS)).first()
        return None if row is None else dict(row._mapping)

    def prune_start_keys(self, now: int) -> int:
        """Forget start keys older than START_KEY_TTL_MS (the table holds one day of keyed starts)."""
        with self.engine.begin() as conn:
            result = conn.execute(pipeline_start_keys.delete().where(
                pipeline_start_keys.c.created_at < now - START_KEY_TTL_MS))
        return int(result.rowcount or 0)

    def store(self, exe: Execution, stages: Iterable[Stage] = (), audit: Iterable[dict[str, Any]] = ()) -> None:
        """Write the execution header and the given stages (and audit entries) in one transaction."""
        row = self._exec_row(exe)
        stage_rows = [{"_id": st.id, "status": str(st.status), "body": _dumps(st.to_json(with_config=True))}
                      for st in stages]
        entries, judgments = _audit_rows(exe.id, audit)
        try:
            with self.engine.begin() as conn:
                if self.guard is not None:
                    self.guard.fence(conn, exe.id, exe)
                if judgments:  # the primary key (execution, stage, attempt) refuses a second judgment
                    conn.execute(pipeline_judgments.insert(), judgments)
                conn.execute(_UPDATE_EXECUTION, {"_id": exe.id, "status": row["status"],
                                                 "start_time": row["start_time"], "end_time": row["end_time"],
                                                 "body": row["body"]})
                if stage_rows:
                    conn.execute(_UPDATE_STAGE, stage_rows)
                if entries:
                    conn.execute(pipeline_audit.insert(), entries)
        except sa.exc.IntegrityError as exc:
            if not judgments:
                raise
            raise JudgmentRecorded(f"execution {exe.id}: a judgment of stage(s) "
                                   f"{', '.join(j['stage_id'] for j in judgments)} is recorded already; "
                                   "nothing was written") from exc

    def load(self, execution_id: str) -> Execution:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(pipeline_executions.c.body).where(
                pipeline_executions.c.id == execution_id)).first()
            if row is None:
                raise NotFound(f"no execution {execution_id!r}",
                               hint="`graylane execution list` shows recent executions")
            stage_rows = conn.execute(sa.select(pipeline_stages.c.body).where(
                pipeline_stages.c.execution_id == execution_id).order_by(pipeline_stages.c.seq)).all()
        stages = [Stage.from_json(json.loads(r.body)) for r in stage_rows]
        return Execution.from_json(json.loads(row.body), stages)

    def delete(self, execution_id: str) -> None:
        """Remove a finished execution with its stages and audit trail."""
        with self.engine.begin() as conn:
            if self.guard is not None:
                self.guard.fence(conn, execution_id)
            conn.execute(pipeline_audit.delete().where(pipeline_audit.c.execution_id == execution_id))
            conn.execute(pipeline_judgments.delete().where(pipeline_judgments.c.execution_id == execution_id))
            conn.execute(pipeline_start_keys.delete().where(pipeline_start_keys.c.execution_id == execution_id))
            conn.execute(pipeline_stages.delete().where(pipeline_stages.c.execution_id == execution_id))
            conn.execute(pipeline_executions.delete().where(pipeline_executions.c.id == execution_id))

    def exists(self, execution_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(pipeline_executions.c.id).where(
                pipeline_executions.c.id == execution_id)).first() is not None

    def list(self, *, pipeline_config_id: str | None = None, application: str | None = None,
             statuses: Iterable[ExecutionStatus] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Execution headers (no stages), newest first."""
        q = sa.select(pipeline_executions.c.body).order_by(pipeline_executions.c.build_time.desc(),
                                                            pipeline_executions.c.id.desc())
        if pipeline_config_id:
            q = q.where(pipeline_executions.c.pipeline_config_id == pipeline_config_id)
        if application:
            q = q.where(pipeline_executions.c.application == application)
        if statuses is not None:
            q = q.where(pipeline_executions.c.status.in_([str(s) for s in statuses]))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [json.loads(r.body) for r in conn.execute(q)]

    def active_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pipeline_executions.c.id).where(
                pipeline_executions.c.status.in_([str(s) for s in ACTIVE])).order_by(
                pipeline_executions.c.build_time))
            return [r.id for r in rows]

    def halted_with_running_ids(self) -> list[str]:
        """Complete executions with a stage still RUNNING: a task call was under way when the pipeline halted and
        the control plane stopped before it returned (the executor's _after_halt cancels it on resume)."""
        running = sa.select(pipeline_stages.c.execution_id).where(
            pipeline_stages.c.status == str(ExecutionStatus.RUNNING))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pipeline_executions.c.id).where(
                pipeline_executions.c.status.not_in([str(s) for s in ACTIVE]),
                pipeline_executions.c.id.in_(running)).order_by(pipeline_executions.c.build_time))
            return [r.id for r in rows]

    def count_by_status(self, pipeline_config_id: str, statuses: Iterable[ExecutionStatus],
                        exclude: str | None = None) -> list[tuple[str, int, str]]:
        """(id, build_time, status) of this config's executions in `statuses`, oldest first."""
        q = sa.select(pipeline_executions.c.id, pipeline_executions.c.build_time, pipeline_executions.c.status).where(
            pipeline_executions.c.pipeline_config_id == pipeline_config_id,
            pipeline_executions.c.status.in_([str(s) for s in statuses])).order_by(
            pipeline_executions.c.build_time, pipeline_executions.c.id)
        with self.engine.connect() as conn:
            return [(r.id, r.build_time, r.status) for r in conn.execute(q) if r.id != exclude]

    def audit(self, execution_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(pipeline_audit).where(
                pipeline_audit.c.execution_id == execution_id).order_by(pipeline_audit.c.id))
            return [{"time": r.time, "user": r.user, "action": r.action, "stageId": r.stage_id,
                     "details": json.loads(r.details)} for r in rows]

    def trigger_last_fired(self, key: str) -> int | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(pipeline_trigger_state.c.last_fired).where(
                pipeline_trigger_state.c.key == key)).first()
            return int(row.last_fired) if row else None

    def set_trigger_fired(self, key: str, when: int) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(pipeline_trigger_state.update().where(
                pipeline_trigger_state.c.key == key).values(last_fired=when)).rowcount
            if not updated:
                conn.execute(pipeline_trigger_state.insert().values(key=key, last_fired=when))

    def claim_trigger_fire(self, key: str, last: int, when: int) -> bool:
        """Move a trigger's last fire time from `last` to `when`; False when another replica moved it first."""
        with self.engine.begin() as conn:
            return bool(conn.execute(pipeline_trigger_state.update().where(
                pipeline_trigger_state.c.key == key, pipeline_trigger_state.c.last_fired == last)
                .values(last_fired=when)).rowcount)

    @staticmethod
    def _exec_row(exe: Execution) -> dict[str, Any]:
        return {"id": exe.id, "pipeline_config_id": exe.pipeline_config_id, "application": exe.application,
                "name": exe.name, "status": str(exe.status), "build_time": exe.build_time,
                "start_time": exe.start_time, "end_time": exe.end_time, "body": _dumps(exe.header_json())}

    @staticmethod
    def _stage_row(execution_id: str, st: Stage) -> dict[str, Any]:
        return {"id": st.id, "execution_id": execution_id, "seq": st.seq, "ref_id": st.ref_id,
                "status": str(st.status), "body": _dumps(st.to_json(with_config=True))}


class WriteGuard(Protocol):
    """What ExecutionRepository asks before it writes an execution (graylane.pipelines.leases.Leases)."""

    def inserted(self, conn: Connection, execution_id: str) -> None: ...

    def fence(self, conn: Connection, execution_id: str, exe: Execution | None = None) -> None: ...


START_KEY_TTL_MS = 24 * 3600 * 1000  # a manual start's Idempotency-Key is remembered one day


class StartKeyTaken(Conflict):
    """The store refused a second start with one user's Idempotency-Key (table pipeline_start_keys)."""


def start_request(config_id: str, trigger: dict[str, Any]) -> str:
    """What a keyed start is compared by: hex SHA-256 of the pipeline id, the trigger's parameters and artifacts."""
    canonical = json.dumps([config_id, trigger.get("parameters") or {}, trigger.get("artifacts") or []],
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _start_key_row(exe: Execution) -> dict[str, Any] | None:
    key = exe.trigger.get("idempotencyKey")
    if exe.trigger.get("type") != "manual" or not isinstance(key, str) or not key:
        return None
    return {"user": str(exe.trigger.get("user") or "anonymous")[:255], "idempotency_key": key[:200],
            "request": start_request(exe.pipeline_config_id, exe.trigger),
            "pipeline_config_id": exe.pipeline_config_id, "execution_id": exe.id, "created_at": exe.build_time}


class JudgmentRecorded(Conflict):
    """The store refused a second judgment of a stage attempt (table pipeline_judgments)."""


def _audit_rows(execution_id: str, audit: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                             list[dict[str, Any]]]:
    """(audit rows, pipeline_judgments rows): an audit entry carrying `judgment` (judgment_record) records
    the judgment of its stage attempt as well."""
    entries, judgments = [], []
    for entry in audit:
        row = {"execution_id": execution_id, **entry}
        record = row.pop("judgment", None)
        if record is not None:
            judgments.append({"execution_id": execution_id, "stage_id": row["stage_id"], **record})
        entries.append(row)
    return entries, judgments


def judgment_record(*, attempt: int, user: str, now: int, status: str, key: str | None,
                    request: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry carries (as `judgment`) to record a stage attempt's one judgment."""
    return {"attempt": attempt, "judged_by": user[:255], "judged_at": now, "status": status,
            "idempotency_key": key, "request": _dumps(request)}


def audit_entry(user: str, action: str, now: int, stage_id: str | None = None,
                **details: Any) -> dict[str, Any]:
    return {"time": now, "user": user, "action": action, "stage_id": stage_id, "details": _dumps(details)}
