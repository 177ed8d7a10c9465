"""The Store: resources keyed by (group, kind, namespace, name), every revision in history.

Applies are validated as a whole and written in one transaction (all or nothing). Versions follow
Kubernetes: `resourceVersion` is the store's global revision at the last change, `generation` counts
spec changes. Knows SQL and resources; knows nothing of HTTP, processes or the mesh.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from graylane.errors import Conflict, GraylaneError, NotFound
from graylane.resources.document import Document, ResourceKey, Source
from graylane.settings import database_url
from graylane.store import tables as t
from graylane.store.admission import as_document, check_documents
from graylane.store.bodies import SERVER_METADATA, spec_part, unified_diff, user_view, with_server_metadata
from graylane.store.engine import SQLITE_BEGIN, create_store_engine, is_sqlite, migrate

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Subscriber = Callable[[list[ResourceKey]], None]
_CHUNK = 200  # keys per IN (...) query; keeps SQLite well under its bound-parameter limit


class Action(StrEnum):
    """What an apply did to one object (kubectl's words), plus the history-only actions."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    key: ResourceKey
    action: Action
    resource_version: str
    body: dict[str, Any]
    generation: int = 0
    before: dict[str, Any] | None = field(default=None, repr=False, compare=False)  # the live object, if any

    @property
    def diff(self) -> str:
        """Unified diff live -> applied (server metadata left out); computed on demand, as it costs."""
        if self.action == Action.UNCHANGED:
            return ""
        return unified_diff(self.before, self.body, self.key)


@dataclass(frozen=True, slots=True)
class StoredResource:
    key: ResourceKey
    uid: str
    resource_version: str
    generation: int
    created: datetime
    updated: datetime
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Revision:
    """One row of a resource's history; `revision` counts 1, 2, 3... per resource."""

    key: ResourceKey
    revision: int
    actor: str
    time: datetime
    body: dict[str, Any]
    deleted: bool
    action: Action
    resource_version: str
    generation: int
    uid: str
    restored_from: int | None = None


@dataclass(slots=True)
class _Write:
    """A planned change to one object inside an apply."""

    key: ResourceKey
    row_id: int | None  # None: a new row
    uid: str
    generation: int
    created: datetime
    body: dict[str, Any]
    action: Action


@dataclass(slots=True)
class _Plan:
    results: list[ApplyResult] = field(default_factory=list)
    writes: list[_Write] = field(default_factory=list)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _default_clock() -> datetime:
    return datetime.now(UTC)


def _jsonable(value: Any) -> Any:
    """YAML may hold dates and non-string keys; store what a JSON API would hold."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _key_of(row: Any) -> ResourceKey:
    return ResourceKey(row.api_group, row.kind, row.namespace, row.name)


def _key_filter(table: sa.Table, keys: Sequence[ResourceKey]) -> sa.ColumnElement[bool]:
    cols = sa.tuple_(table.c.api_group, table.c.kind, table.c.namespace, table.c.name)
    return cols.in_([tuple(k) for k in keys])


def _one_key(table: sa.Table, key: ResourceKey) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.api_group == key.group, table.c.kind == key.kind,
                   table.c.namespace == key.namespace, table.c.name == key.name)


class Store:
    """Open with `Store.open(url)`; see docs/architecture.md "Seams → Store"."""

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or _default_clock
        self._subscribers: list[Subscriber] = []
        self._subscribers_lock = threading.Lock()
        # SQLite allows one writer; serialise this process's writers here (BEGIN IMMEDIATE and
        # busy_timeout cover other processes). PostgreSQL serialises on the revision counter row.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if is_sqlite(engine) else contextlib.nullcontext())

    @classmethod
    def open(cls, url: str | None = None, *, clock: Clock | None = None) -> Store:
        """Connect to `url` (default `graylane.settings.database_url()`) and run migrations."""
        url = url or database_url()
        engine = create_store_engine(url)
        try:
            migrate(engine)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            shown = sa.engine.make_url(url).render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise GraylaneError(f"cannot open the store at {shown}: {reason}",
                                hint="check GRAYLANE_DATABASE_URL and that the database server is running") from None
        return cls(engine, clock=clock)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[tuple[Connection, int]]:
        """A write transaction holding the store's write lock; yields it and the current revision."""
        with self._write_lock, \
                self._engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) as conn, conn.begin():
            rev = conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == "revision")
                               .with_for_update()).scalar_one()
            yield conn, int(rev)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _bump(self, conn: Connection, revision: int) -> None:
        conn.execute(sa.update(t.counters).where(t.counters.c.name == "revision").values(value=revision))

    # -- reads --------------------------------------------------------------------------------

    def revision(self) -> int:
        """The global change counter: bumps once per committed transaction that changed anything."""
        with self._reading() as conn:
            return int(conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == "revision"))
                       .scalar_one())

    def get(self, key: ResourceKey) -> StoredResource | None:
        with self._reading() as conn:
            row = conn.execute(sa.select(t.resources).where(_one_key(t.resources, key))).first()
        return self._stored(row) if row is not None else None

    def list(self, kind: str | None = None, namespace: str | None = None,
             group: str | None = None) -> list[StoredResource]:
        q = sa.select(t.resources)
        if kind is not None:
            q = q.where(t.resources.c.kind == kind)
        if namespace is not None:
            q = q.where(t.resources.c.namespace == namespace)
        if group is not None:
            q = q.where(t.resources.c.api_group == group)
        q = q.order_by(t.resources.c.kind, t.resources.c.namespace, t.resources.c.name, t.resources.c.api_group)
        with self._reading() as conn:
            return [self._stored(r) for r in conn.execute(q)]

    def kinds(self) -> list[tuple[str, str]]:
        """The distinct (API group, kind) pairs stored now."""
        q = sa.select(t.resources.c.api_group, t.resources.c.kind).distinct().order_by(
            t.resources.c.api_group, t.resources.c.kind)
        with self._reading() as conn:
            return [(r.api_group, r.kind) for r in conn.execute(q)]

    def history(self, key: ResourceKey) -> list[Revision]:
        """Every revision of `key`, oldest first, across deletions and re-creations."""
        q = sa.select(t.history).where(_one_key(t.history, key)).order_by(t.history.c.revision)
        with self._reading() as conn:
            return [self._revision(r) for r in conn.execute(q)]

    def revision_of(self, key: ResourceKey, revision: int) -> Revision:
        """One revision of `key`; NotFound names the revisions that exist."""
        revisions = self.history(key)
        for rev in revisions:
            if rev.revision == revision:
                return rev
        if not revisions:
            raise NotFound(f"{key} has no history", hint="check the kind, name and namespace")
        known = ", ".join(str(r.revision) for r in revisions)
        raise NotFound(f"{key} has no revision {revision}", hint=f"revisions: {known}")

    def written_by(self, keys: Sequence[ResourceKey], actor: str) -> dict[ResourceKey, Revision]:
        """The newest revision `actor` wrote of each of `keys` that it wrote at all (deletions included)."""
        out: dict[ResourceKey, Revision] = {}
        unique = list(dict.fromkeys(keys))
        with self._reading() as conn:
            for i in range(0, len(unique), _CHUNK):
                q = (sa.select(t.history).where(_key_filter(t.history, unique[i:i + _CHUNK]),
                                                t.history.c.actor == actor[:255]).order_by(t.history.c.revision))
                for row in conn.execute(q):
                    out[_key_of(row)] = self._revision(row)
        return out

    def changes_since(self, resource_version: int) -> list[Revision]:
        """History rows written after global revision `resource_version`, in commit order."""
        q = (sa.select(t.history).where(t.history.c.resource_version > resource_version)
             .order_by(t.history.c.resource_version, t.history.c.id))
        with self._reading() as conn:
            return [self._revision(r) for r in conn.execute(q)]

    # -- writes -------------------------------------------------------------------------------

    def apply(self, docs: Sequence[Document | dict[str, Any]], actor: str = "user:unknown",
              dry_run: bool = False) -> list[ApplyResult]:
        """Validate every document, then create/update them all in one transaction (or none)."""
        documents = [as_document(d, i) for i, d in enumerate(docs)]
        check_documents(documents)
        return self._apply(documents, actor=actor, dry_run=dry_run)

    def restore(self, key: ResourceKey, revision: int, actor: str = "user:unknown") -> ApplyResult:
        """Make `key` look as it did at `revision` (re-creating it if deleted); a new revision."""
        old = self.revision_of(key, revision)
        body = user_view(old.body)
        body.pop("status", None)  # status is reported by whoever runs the object; keep the live one
        doc = Document(body=body, source=Source(f"<revision {revision}>", 1, 0))
        check_documents([doc])
        return self._apply([doc], actor=actor, dry_run=False, restored_from=revision)[0]

    def delete(self, keys: Sequence[ResourceKey], actor: str = "user:unknown") -> list[ResourceKey]:
        """Delete in one transaction; returns the keys that existed (missing ones are skipped)."""
        keys = list(dict.fromkeys(ResourceKey(*k) for k in keys))
        if not keys:
            return []
        deleted: list[ResourceKey] = []
        with self._writing() as (conn, rev):
            new_rev = rev + 1
            now = _utc(self._clock())
            rows = self._rows(conn, keys)
            last = self._last_revisions(conn, [k for k in keys if k in rows])
            for key in keys:
                row = rows.get(key)
                if row is None:
                    continue
                conn.execute(sa.delete(t.resources).where(t.resources.c.id == row.id))
                conn.execute(sa.insert(t.history).values(
                    **self._key_columns(key), revision=last.get(key, 0) + 1, uid=row.uid,
                    resource_version=new_rev, generation=row.generation, action=Action.DELETED.value,
                    restored_from=None, actor=actor[:255], time=now, deleted=True, body=row.body))
                deleted.append(key)
            if deleted:
                self._bump(conn, new_rev)
        if deleted:
            self._notify(deleted)
        return deleted

    def set_status(self, key: ResourceKey, status: dict[str, Any] | None, *,
                   resource_version: str | None = None) -> bool:
        """Replace `status` (None removes it): what a controller observed, not a change of the object.

        Status-only: `generation`, `resourceVersion` and the global revision stay, no history row is written and
        subscribers are not called (so reporting status never triggers another reconcile). With
        `resource_version`, nothing is written when the object changed since (a report about an older spec).
        Returns whether the status was written.
        """
        with self._writing() as (conn, _):
            row = conn.execute(sa.select(t.resources).where(_one_key(t.resources, key))).first()
            if row is None or (resource_version is not None and str(row.resource_version) != str(resource_version)):
                return False
            body = {k: v for k, v in row.body.items() if k != "status"}
            if status is not None:
                body["status"] = _jsonable(status)
            conn.execute(sa.update(t.resources).where(t.resources.c.id == row.id).values(body=body))
        return True

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(changed_keys)` after each commit in this process; returns an unsubscribe."""
        with self._subscribers_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._subscribers_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # -- internals ----------------------------------------------------------------------------

    def _apply(self, documents: list[Document], *, actor: str, dry_run: bool,
               restored_from: int | None = None) -> list[ApplyResult]:
        if not documents:
            return []
        keys = [d.key for d in documents]
        writer = self._writing() if not dry_run else self._dry_run_txn()
        with writer as (conn, rev):
            new_rev = rev + 1
            now = _utc(self._clock())
            rows = self._rows(conn, keys)
            plan = _Plan()
            for doc in documents:
                self._plan_one(plan, doc, rows.get(doc.key), new_rev, now, check_versions=restored_from is None)
            if plan.writes and not dry_run:
                self._write(conn, plan.writes, new_rev, now, actor, restored_from)
                self._bump(conn, new_rev)
        if plan.writes and not dry_run:
            self._notify([w.key for w in plan.writes])
        return plan.results

    @contextlib.contextmanager
    def _dry_run_txn(self) -> Iterator[tuple[Connection, int]]:
        with self._reading() as conn:
            rev = conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == "revision")).scalar_one()
            yield conn, int(rev)

    def _plan_one(self, plan: _Plan, doc: Document, row: Any, new_rev: int, now: datetime, *,
                  check_versions: bool) -> None:
        key = doc.key
        desired = _jsonable(doc.body)  # a fresh copy, safe to change
        md = desired["metadata"]
        for server_field in SERVER_METADATA:
            md.pop(server_field, None)
        if key.namespace:
            md["namespace"] = key.namespace
        else:
            md.pop("namespace", None)
        given_rv = doc.metadata.get("resourceVersion")
        given_uid = doc.metadata.get("uid")
        if row is None:
            if check_versions and given_rv not in (None, ""):
                raise Conflict(f"{key} does not exist, but the document carries resourceVersion {given_rv}",
                               where=doc.where(("metadata", "resourceVersion")),
                               hint="remove metadata.resourceVersion to create it")
            uid = str(uuid.uuid4())
            body = with_server_metadata(desired, uid=uid, resource_version=new_rev, generation=1, created=now)
            plan.writes.append(_Write(key, None, uid, 1, now, body, Action.CREATED))
            plan.results.append(ApplyResult(key, Action.CREATED, str(new_rev), body, 1))
            return
        current: dict[str, Any] = row.body
        if check_versions and given_rv not in (None, "") and str(given_rv) != str(row.resource_version):
            raise Conflict(f"{key} has been modified: the document carries resourceVersion {given_rv}, "
                           f"the store has {row.resource_version}",
                           where=doc.where(("metadata", "resourceVersion")),
                           hint="get the latest version, re-apply your change, and try again")
        if check_versions and given_uid not in (None, "") and given_uid != row.uid:
            raise Conflict(f"{key} was deleted and re-created: uid {given_uid} is now {row.uid}",
                           where=doc.where(("metadata", "uid")), hint="remove metadata.uid and apply again")
        if "status" not in desired and "status" in current:
            desired["status"] = copy.deepcopy(current["status"])
        live = user_view(current)
        if live == desired:
            plan.results.append(ApplyResult(key, Action.UNCHANGED, str(row.resource_version), current,
                                            int(row.generation), current))
            return
        generation = int(row.generation) + (1 if spec_part(live) != spec_part(desired) else 0)
        body = with_server_metadata(desired, uid=row.uid, resource_version=new_rev, generation=generation,
                                    created=_utc(row.created_at))
        plan.writes.append(_Write(key, int(row.id), row.uid, generation, _utc(row.created_at), body,
                                  Action.CONFIGURED))
        plan.results.append(ApplyResult(key, Action.CONFIGURED, str(new_rev), body, generation, current))

    def _write(self, conn: Connection, writes: list[_Write], new_rev: int, now: datetime, actor: str,
               restored_from: int | None) -> None:
        """All rows in three executemany statements (one per table and verb), not one per object."""
        last = self._last_revisions(conn, [w.key for w in writes])
        inserts, updates, history = [], [], []
        for w in writes:
            cols = dict(uid=w.uid, resource_version=new_rev, generation=w.generation, updated_at=now, body=w.body)
            if w.row_id is None:
                inserts.append({**self._key_columns(w.key), "created_at": w.created, **cols})
            else:
                updates.append({"b_id": w.row_id, **cols})
            action = Action.RESTORED if restored_from is not None else w.action
            history.append({**self._key_columns(w.key), "revision": last.get(w.key, 0) + 1, "uid": w.uid,
                            "resource_version": new_rev, "generation": w.generation, "action": action.value,
                            "restored_from": restored_from, "actor": actor[:255], "time": now, "deleted": False,
                            "body": w.body})
        if inserts:
            conn.execute(sa.insert(t.resources), inserts)
        if updates:
            # The SET clause comes from the parameter names that match columns (uid, body, ...).
            conn.execute(sa.update(t.resources).where(t.resources.c.id == sa.bindparam("b_id")), updates)
        conn.execute(sa.insert(t.history), history)

    @staticmethod
    def _key_columns(key: ResourceKey) -> dict[str, str]:
        return {"api_group": key.group, "kind": key.kind, "namespace": key.namespace, "name": key.name}

    def _rows(self, conn: Connection, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Any]:
        out: dict[ResourceKey, Any] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i:i + _CHUNK]
            for row in conn.execute(sa.select(t.resources).where(_key_filter(t.resources, chunk))):
                out[_key_of(row)] = row
        return out

    def _last_revisions(self, conn: Connection, keys: Sequence[ResourceKey]) -> dict[ResourceKey, int]:
        out: dict[ResourceKey, int] = {}
        unique = list(dict.fromkeys(keys))
        h = t.history.c
        for i in range(0, len(unique), _CHUNK):
            chunk = unique[i:i + _CHUNK]
            q = (sa.select(h.api_group, h.kind, h.namespace, h.name, sa.func.max(h.revision).label("last"))
                 .where(_key_filter(t.history, chunk)).group_by(h.api_group, h.kind, h.namespace, h.name))
            for row in conn.execute(q):
                out[_key_of(row)] = int(row.last)
        return out

    def _notify(self, keys: list[ResourceKey]) -> None:
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(list(keys))
            except Exception:  # a subscriber's bug must not undo or hide a committed change
                log.exception("store subscriber %r failed", callback)

    @staticmethod
    def _stored(row: Any) -> StoredResource:
        return StoredResource(key=_key_of(row), uid=row.uid, resource_version=str(row.resource_version),
                              generation=int(row.generation), created=_utc(row.created_at),
                              updated=_utc(row.updated_at), body=row.body)

    @staticmethod
    def _revision(row: Any) -> Revision:
        return Revision(key=_key_of(row), revision=int(row.revision), actor=row.actor, time=_utc(row.time),
                        body=row.body, deleted=bool(row.deleted), action=Action(row.action),
                        resource_version=str(row.resource_version), generation=int(row.generation), uid=row.uid,
                        restored_from=row.restored_from)


__all__ = ["Action", "ApplyResult", "Clock", "Revision", "Store", "StoredResource", "Subscriber"]
