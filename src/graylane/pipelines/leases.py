"""Control-plane replicas on one PostgreSQL: each execution is driven by one replica at a time, under a lease.

A lease is three columns of `pipeline_executions` (migration 0006_leases): `lease_owner` (the replica's
owner id, `<replica>#<random>`, new on every process start), `lease_expires` (ms on the *database's* clock, so
replica clocks may disagree) and `lease_token`, the fencing token: it grows by one on every claim. Every write
of an execution's state runs, in its own transaction and first, `UPDATE pipeline_executions SET lease_expires
= now + ttl WHERE id = :id AND lease_owner = :me AND lease_token = :token`; no row means another replica
claimed the execution since, the transaction rolls back and this replica drops the execution (`LeaseLost`).

- A driver (executor.py) claims the lease before its first step and releases it when it stops (the execution
  finished, or BUFFERED, or the process stops cleanly: a rolling update hands executions over at once).
- Every `poll_s` each replica renews its leases (every ttl/3), claims active executions whose lease is free
  or expired (a dead replica's: takeover within ttl + poll_s; its previous incarnation's at once) and applies
  the commands other replicas queued for the executions it drives.
- The write that moves an execution to RUNNING re-checks its pipeline's limitConcurrent slot under a
  per-pipeline advisory lock (`SlotTaken`), so two replicas never both start one.
- Commands (judge, cancel, pause, resume, restart, delete) sent to a replica that does not drive the execution
  are written to `pipeline_commands`; the owner applies them through its driver and writes the result, which
  the sender polls. A command applied and committed by an owner that dies before writing the result is
  applied again by the next owner: every command checks the state first (a judgment of a stage judged already is
  answered `duplicate: true` when it is the same one, else refused; a cancel of a finished execution is refused),
  so the state changes once. When no
  live replica drives the execution any more (it finished before another replica picked the command up) the
  sender takes the command back and applies it itself. A replica that is stopping answers none: it leaves
  them to the next owner.

SQLite is single-replica: leases are not installed (`enabled_for`), see docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from graylane import errors
from graylane.errors import GraylaneError
from graylane.pipelines import concurrency
from graylane.pipelines.execution import Execution
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tables import pipeline_commands, pipeline_executions

log = logging.getLogger(__name__)

TTL_ENV, POLL_ENV, REPLICA_ENV = "GRAYLANE_LEASE_TTL_S", "GRAYLANE_LEASE_POLL_S", "GRAYLANE_REPLICA"
DEFAULT_TTL_S, DEFAULT_POLL_S = 10.0, 1.0
COMMAND_MAX_AGE_MS = 10 * 60 * 1000
# The executor's public commands that any replica accepts (routed to the owner when it is another replica).
COMMANDS = ("update_stage", "cancel", "pause", "resume", "restart_stage", "delete_execution")
_ERRORS: dict[str, type[GraylaneError]] = {cls.__name__: cls for cls in (
    errors.GraylaneError, errors.ValidationError, errors.NotFound, errors.Conflict, errors.Forbidden)}
_ex = pipeline_executions.c
HOLDING_SLOT = tuple(str(s) for s in concurrency.HOLDING)  # statuses that hold a limitConcurrent slot
_cmd = pipeline_commands.c


class LeaseLost(BaseException):  # noqa: N818 - named for what happened, like CancelledError
    """Another replica claimed the execution: the write was refused and this replica stops driving it.

    A BaseException (as asyncio.CancelledError) so the driver's retry-on-error loop does not retry it."""


class SlotTaken(GraylaneError):
    """A limitConcurrent pipeline's slot went to an execution another replica started a moment before."""


class LeaseNotHeld(GraylaneError):
    """A stage was about to change something outside the database (a Kubernetes cluster) without the lease."""


class NotOwner(GraylaneError):
    """This replica does not drive the execution (the command is sent to the one that does)."""


def enabled_for(engine: Engine) -> bool:
    """Leases (and so replicas) on PostgreSQL; SQLite keeps one control plane per database file."""
    return engine.dialect.name == "postgresql"


def db_now_ms(engine_or_dialect: Any) -> Any:
    """The database's clock in ms, as an SQL expression (lease expiry never trusts a replica's clock)."""
    name = getattr(getattr(engine_or_dialect, "dialect", engine_or_dialect), "name", "")
    if name == "postgresql":
        return sa.literal_column("CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    return sa.literal_column("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def replica_name() -> str:
    """`$GRAYLANE_REPLICA`, else host name and state folder (a restarted process reclaims its own leases)."""
    from graylane.settings import state_dir

    return os.environ.get(REPLICA_ENV) or f"{socket.gethostname()}:{state_dir()}"


class Leases:
    """The leases one replica holds, the statements that take, renew, fence and release them, and the loop
    that takes over dead replicas' executions and applies commands sent by other replicas."""

    def __init__(self, engine: Engine, *, replica: str | None = None, ttl_s: float | None = None,
                 poll_s: float | None = None) -> None:
        self.engine = engine
        self.replica = (replica or replica_name())[:200]
        self.owner = f"{self.replica}#{uuid.uuid4().hex[:10]}"
        self.ttl_ms = int(1000 * (ttl_s if ttl_s is not None else _env_float(TTL_ENV, DEFAULT_TTL_S)))
        self.poll_s = poll_s if poll_s is not None else _env_float(POLL_ENV, DEFAULT_POLL_S)
        self.held: dict[str, int] = {}  # execution id -> fencing token
        self.executor: Any = None
        self.claims = self.takeovers = self.lost = self.remote_sent = self.remote_applied = self.taken_back = 0
        self._local: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._applying: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_renew = self._last_sweep = 0.0

    # ------------------------------------------------------------------ lease statements

    def _expires(self) -> Any:
        return db_now_ms(self.engine) + self.ttl_ms

    def _mine(self) -> Any:
        """A lease this replica may take at once: free, expired, or held by an earlier run of this replica."""
        prefix = f"{self.replica}#"
        return sa.or_(_ex.lease_owner.is_(None), _ex.lease_expires < db_now_ms(self.engine),
                      sa.func.substr(_ex.lease_owner, 1, len(prefix)) == prefix)

    def inserted(self, conn: Connection, execution_id: str) -> None:
        """A new execution is leased to the replica that created it, in the insert's transaction."""
        token = conn.execute(pipeline_executions.update().where(_ex.id == execution_id).values(
            lease_owner=self.owner, lease_expires=self._expires(), lease_token=_ex.lease_token + 1)
            .returning(_ex.lease_token)).scalar_one()
        self.held[execution_id] = int(token)

    def fence(self, conn: Connection, execution_id: str, exe: Execution | None = None) -> None:
        """First statement of every write of the execution: refused unless this replica's token is current.
        A write that starts an execution of a limitConcurrent pipeline also takes the pipeline's slot here."""
        token = self.held.get(execution_id)
        if token is None:  # the renewal saw the lease taken (or it was never ours): refused as well
            raise LeaseLost(f"execution {execution_id}: this replica ({self.owner}) holds no lease on it")
        row = conn.execute(pipeline_executions.update().where(
            _ex.id == execution_id, _ex.lease_owner == self.owner, _ex.lease_token == token)
            .values(lease_expires=self._expires()).returning(_ex.status)).first()
        if row is not None:
            if exe is not None and exe.status == S.RUNNING and row.status not in HOLDING_SLOT:
                self._take_slot(conn, exe)
            return
        self.held.pop(execution_id, None)
        self.lost += 1
        raise LeaseLost(f"execution {execution_id}: lease token {token} is stale (another replica drives it)")

    def check(self, execution_id: str) -> tuple[int, float]:
        """Before a change outside the database (a stage's write to a Kubernetes cluster): the fence's statement on
        its own, which also extends the lease. Returns (token, monotonic deadline): no other replica can claim the
        execution before the deadline, counted from before the statement was sent. LeaseNotHeld otherwise."""
        started = time.monotonic()
        token = self.held.get(execution_id)
        if token is not None:
            with self.engine.begin() as conn:
                row = conn.execute(pipeline_executions.update().where(
                    _ex.id == execution_id, _ex.lease_owner == self.owner, _ex.lease_token == token)
                    .values(lease_expires=self._expires()).returning(_ex.id)).first()
            if row is not None:
                return token, started + self.ttl_ms / 1000
            self.held.pop(execution_id, None)
            self.lost += 1
        raise LeaseNotHeld(f"execution {execution_id}: this replica ({self.replica}) no longer holds its lease "
                           f"(another replica drives it now): the change was not sent",
                           hint="the replica that holds the lease runs this task again")

    def _take_slot(self, conn: Connection, exe: Execution) -> None:
        """limitConcurrent / maxConcurrentExecutions across replicas: the check the driver made before this write
        (concurrency.must_wait) is made again under a per-pipeline lock, so two replicas never both start."""
        limit = concurrency.limit_of(exe)
        if not limit or not exe.pipeline_config_id:
            return
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(exe.pipeline_config_id))))
        holding = conn.execute(sa.select(sa.func.count()).select_from(pipeline_executions).where(
            _ex.pipeline_config_id == exe.pipeline_config_id, _ex.id != exe.id,
            _ex.status.in_(list(HOLDING_SLOT)))).scalar_one()
        if holding >= limit:  # the driver reloads, sees the slot taken and waits BUFFERED
            raise SlotTaken(f"execution {exe.id}: another replica started an execution of this pipeline first "
                            f"({holding} running, limit {limit})")

    def claim(self, execution_id: str) -> bool:
        """Take the lease with a new token when it is free, expired or ours; False if another replica holds it."""
        if execution_id in self.held:
            return True
        with self.engine.begin() as conn:
            row = conn.execute(pipeline_executions.update().where(_ex.id == execution_id, self._mine()).values(
                lease_owner=self.owner, lease_expires=self._expires(), lease_token=_ex.lease_token + 1)
                .returning(_ex.lease_token)).first()
        if row is None:
            return False
        self.held[execution_id] = int(row.lease_token)
        self.claims += 1
        return True

    def release(self, execution_id: str) -> None:
        """Give the lease up (the driver stopped); a no-op when it was lost meanwhile."""
        token = self.held.pop(execution_id, None)
        if token is None:
            return
        with contextlib.suppress(sa.exc.SQLAlchemyError), self.engine.begin() as conn:
            conn.execute(pipeline_executions.update().where(
                _ex.id == execution_id, _ex.lease_owner == self.owner, _ex.lease_token == token)
                .values(lease_owner=None, lease_expires=None))

    def renew(self) -> list[str]:
        """Extend every lease this replica holds; returns the executions whose lease was taken meanwhile."""
        if not self.held:
            return []
        with self.engine.begin() as conn:
            rows = conn.execute(pipeline_executions.update().where(_ex.lease_owner == self.owner)
                                .values(lease_expires=self._expires()).returning(_ex.id, _ex.lease_token)).all()
        current = {r.id: int(r.lease_token) for r in rows}
        lost = [eid for eid, token in list(self.held.items()) if current.get(eid) != token]
        for eid in lost:
            self.held.pop(eid, None)
            self.lost += 1
        return lost

    def claimable(self, limit: int = 500) -> list[str]:
        """Active executions no live replica drives (a BUFFERED one released by its driver waits for its wake), and
        complete ones whose driver died before releasing them (a task call under way when the pipeline halted: the
        new driver cancels its stage, executor._after_halt)."""
        active = [str(s) for s in (S.NOT_STARTED, S.RUNNING, S.PAUSED)]
        q = sa.select(_ex.id).where(sa.or_(_ex.status.in_(active), sa.and_(
            _ex.status == str(S.BUFFERED), _ex.lease_owner.is_not(None)), sa.and_(
            _ex.status.not_in([*active, str(S.BUFFERED)]), _ex.lease_owner.is_not(None))),
            self._mine(), sa.or_(_ex.lease_owner.is_(None), _ex.lease_owner != self.owner)) \
            .order_by(_ex.build_time).limit(limit)
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(q) if r.id not in self.held]

    def driven_elsewhere(self, execution_id: str) -> str | None:
        """The owner id of another live replica driving the execution, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_ex.lease_owner).where(_ex.id == execution_id,
                                                               sa.not_(self._mine()))).first()
        return None if row is None else str(row.lease_owner)

    # ------------------------------------------------------------------ installed on an executor

    def install(self, executor: Any) -> None:
        """Fence the executor's writes and wrap its driver, lifecycle and public commands (see the module doc).
        Everything it changes on the executor is an instance attribute set here."""
        self.executor = executor
        executor.repo.guard = self
        executor.leases = self
        drive, stop = executor._drive, executor.stop  # wrapped below; start is replaced

        async def leased_drive(d: Any) -> None:
            if not self.claim(d.execution_id):  # another replica drives it: route queued commands there
                if executor._drivers.get(d.execution_id) is d:
                    del executor._drivers[d.execution_id]
                while d.commands:
                    _, fut = d.commands.popleft()
                    if not fut.done():
                        fut.set_exception(NotOwner(f"execution {d.execution_id} is driven by another replica"))
                self._send_nowait(d.execution_id, "wake", [], {})
                return
            try:
                await drive(d)
            except LeaseLost as exc:
                log.warning("%s; dropping it", exc)
                self._abandon(d)
            except asyncio.CancelledError:
                self._abandon(d)
                raise
            finally:
                self.release(d.execution_id)

        async def leased_start() -> None:
            # Not the executor's own start (resume every active execution): the loop's first round claims
            # the ones no live replica drives, so executions other replicas drive are left to them.
            self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="pipeline leases")

        async def leased_stop() -> None:
            if self._loop_task is not None:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
            await stop()

        executor._drive, executor.start, executor.stop = leased_drive, leased_start, leased_stop
        for name in COMMANDS:
            self._local[name] = getattr(executor, name)
            setattr(executor, name, self._routed(name, self._local[name]))

    def _abandon(self, d: Any) -> None:
        """The lease is gone: callers waiting on a rolled-back commit are told to resend; tasks stop."""
        for fut, _ in d.answering:
            if not fut.done():
                fut.set_exception(NotOwner(f"execution {d.execution_id} was taken over by another replica"))
        d.answering = []
        for inf in d.inflight.values():
            inf.job.cancel()
        d.inflight.clear()

    def drop(self, execution_id: str) -> None:
        """Stop the driver of an execution whose lease was taken (seen by the renewal)."""
        d = self.executor._drivers.get(execution_id) if self.executor is not None else None
        if d is not None and d.job is not None and not d.job.done():
            d.job.cancel()

    def _routed(self, name: str, local: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(execution_id: str, *args: Any, **kwargs: Any) -> Any:
            if self.driven_elsewhere(execution_id) is None:
                try:
                    return await local(execution_id, *args, **kwargs)
                except NotOwner:
                    pass
                except GraylaneError:
                    if self.driven_elsewhere(execution_id) is None:
                        raise
            return await self.send(execution_id, name, list(args), kwargs)

        call.__name__ = name
        return call

    # ------------------------------------------------------------------ commands between replicas

    def _send_nowait(self, execution_id: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(pipeline_commands.insert().values(
                execution_id=execution_id, method=method, arguments=json.dumps({"args": args, "kwargs": kwargs}),
                sent_by=self.owner, created_at=int(time.time() * 1000), state="pending")
                .returning(_cmd.id)).scalar_one())

    async def send(self, execution_id: str, method: str, args: list[Any], kwargs: dict[str, Any],
                   timeout_s: float | None = None) -> Any:
        """Queue a command for the replica driving the execution and wait for its answer (polled: the
        owner picks commands up every poll_s, so the answer takes up to about two poll intervals).

        A command still pending when no live replica drives the execution any more is taken back and applied
        here: its owner died before answering and the execution finished (or was released) before another
        replica picked the command up, so nobody else would answer it."""
        self.remote_sent += 1
        command_id = self._send_nowait(execution_id, method, args, kwargs)
        limit = timeout_s if timeout_s is not None else 3 * self.ttl_ms / 1000 + 30
        deadline = time.monotonic() + limit
        next_check = time.monotonic() + self.poll_s
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(_cmd.state, _cmd.result, _cmd.error).where(_cmd.id == command_id)).first()
            if row is not None and row.state == "pending" and time.monotonic() >= next_check:
                next_check = time.monotonic() + self.poll_s
                if not self.executor._stopping and self.driven_elsewhere(execution_id) is None \
                        and self._take_back(command_id):
                    self.taken_back += 1
                    return await getattr(self.executor, method)(execution_id, *args, **kwargs)
            if row is not None and row.state == "done":
                with self.engine.begin() as conn:
                    conn.execute(pipeline_commands.delete().where(_cmd.id == command_id))
                if row.error:
                    err = json.loads(row.error)
                    raise _ERRORS.get(err.get("type"), GraylaneError)(
                        err.get("message") or "the command failed", where=err.get("where"), hint=err.get("hint"))
                return json.loads(row.result) if row.result else None
            if time.monotonic() >= deadline:
                raise GraylaneError(f"execution {execution_id}: the replica driving it did not answer within "
                                    f"{limit:g}s", hint="try again; `graylane execution show` says what happened")
            await asyncio.sleep(min(0.05, self.poll_s / 4))  # another process answers: no event to await

    def _take_back(self, command_id: int) -> bool:
        """Withdraw a command nobody has answered; False when an owner answered (or withdrew) it meanwhile."""
        with self.engine.begin() as conn:
            return conn.execute(pipeline_commands.delete().where(_cmd.id == command_id, _cmd.state == "pending")
                                .returning(_cmd.id)).first() is not None

    def _pending(self) -> list[Any]:
        owned = sa.select(_ex.id).where(_ex.lease_owner == self.owner)
        with self.engine.connect() as conn:
            return [r for r in conn.execute(sa.select(pipeline_commands).where(
                _cmd.state == "pending", _cmd.execution_id.in_(owned)).order_by(_cmd.id))
                    if r.id not in self._applying]

    async def _apply_all(self, rows: list[Any]) -> None:
        by_execution: dict[str, list[Any]] = {}
        for row in rows:
            self._applying.add(row.id)
            by_execution.setdefault(row.execution_id, []).append(row)

        async def one_execution(batch: list[Any]) -> None:
            for row in batch:  # in the order they were sent
                try:
                    await self._apply(row)
                finally:
                    self._applying.discard(row.id)

        await asyncio.gather(*(one_execution(b) for b in by_execution.values()))

    async def _apply(self, row: Any) -> None:
        data = json.loads(row.arguments)
        result = error = None
        try:
            if row.method == "wake":
                if not self.executor._stopping:
                    self.executor._ensure_driver(row.execution_id).wake.set()
            else:
                result = json.dumps(await self._local[row.method](row.execution_id, *data.get("args", []),
                                                                  **data.get("kwargs", {})), default=str)
        except NotOwner:
            return  # taken over meanwhile: the new owner applies it
        except GraylaneError as exc:
            if row.execution_id not in self.held and self.driven_elsewhere(row.execution_id):
                return  # refused because the lease went meanwhile (nothing committed): the new owner applies it
            if self.executor is not None and self.executor._stopping:
                return  # this replica is stopping (its driver was canceled): the next owner applies it
            error = json.dumps({"type": type(exc).__name__, "message": exc.message, "where": exc.where,
                                "hint": exc.hint})
        except Exception as exc:  # boundary: the sender gets an answer whatever went wrong
            log.exception("execution %s: command %s from another replica failed", row.execution_id, row.method)
            error = json.dumps({"type": "GraylaneError", "message": f"{type(exc).__name__}: {exc}"})
        self.remote_applied += 1
        with self.engine.begin() as conn:
            if row.method == "wake":
                conn.execute(pipeline_commands.delete().where(_cmd.id == row.id))
            else:
                conn.execute(pipeline_commands.update().where(_cmd.id == row.id, _cmd.state == "pending").values(
                    state="done", result=result, error=error, applied_by=self.owner))

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        """Renew, take over, apply commands; every poll_s. A database error is logged and retried."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # boundary: the database may be briefly unreachable; the fence protects writes
                log.warning("pipeline leases: a round failed", exc_info=True)
            await asyncio.sleep(self.poll_s)

    async def tick(self) -> None:
        """One round: renew (every ttl/3), claim what no live replica drives, apply queued commands."""
        ex = self.executor
        if time.monotonic() - self._last_renew >= self.ttl_ms / 3000:
            self._last_renew = time.monotonic()
            for eid in self.renew():
                log.warning("execution %s: lease taken by another replica; dropping it", eid)
                self.drop(eid)
        if ex._stopping:
            return
        for eid in self.claimable():
            if eid not in ex._drivers:
                self.takeovers += 1
                ex._ensure_driver(eid)
        rows = self._pending()
        if rows:
            asyncio.get_running_loop().create_task(self._apply_all(rows))
        if time.monotonic() - self._last_sweep >= 60:  # nobody waits on a command this old any more
            self._last_sweep = time.monotonic()
            with self.engine.begin() as conn:
                conn.execute(pipeline_commands.delete().where(
                    _cmd.created_at < int(time.time() * 1000) - COMMAND_MAX_AGE_MS))


def install(executor: Any) -> Leases | None:
    """Leases for this executor when its database can be shared by replicas (PostgreSQL), else None."""
    if not enabled_for(executor.repo.engine):
        log.info("pipeline leases off (%s): one control plane per database", executor.repo.engine.dialect.name)
        return None
    leases = Leases(executor.repo.engine)
    leases.install(executor)
    log.info("pipeline leases: replica %s (ttl %.1fs, poll %.1fs)", leases.owner, leases.ttl_ms / 1000,
             leases.poll_s)
    return leases
