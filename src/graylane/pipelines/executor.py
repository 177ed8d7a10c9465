"""The scheduler: drives executions through the stage DAG and is the only writer of execution state.

One driver (an asyncio task) per active execution applies commands (judge, cancel, pause, restart), starts
stages whose upstream is complete, runs tasks, maps failures (orca failureStatus) and completes the
execution. Every transition is committed before events are published or outside effects start, so a
control plane killed at any point resumes from the store: RUNNING tasks run again (tasks are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from graylane.errors import Conflict, GraylaneError, NotFound
from graylane.events import EventBus
from graylane.pipelines import commands, concurrency, evaluation, planning, waiting
from graylane.pipelines.children import ExecutionChildren
from graylane.pipelines.commands import Command
from graylane.pipelines.driver import Driver, Inflight
from graylane.pipelines.evaluation import Evaluator
from graylane.pipelines.execution import Execution, Stage, Task, new_execution
from graylane.pipelines.repository import ExecutionRepository, PipelineRepository, audit_entry
from graylane.pipelines.scheduling import (
    cancel_started,
    completion_status,
    duration,
    halted,
    is_startable,
    task_impls,
    timeout,
    timeout_deadline,
    user_of,
    view,
)
from graylane.pipelines.services import TaskServices
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageView, TaskResult
from graylane.pipelines.tasks import Task as TaskImpl
from graylane.pipelines.tx import Tx, exec_event, finish, stage_event

log = logging.getLogger(__name__)


class Executor:
    """Start it with `await executor.start()`; every public method is safe to call from API handlers.

    Tasks get `services` with the child-pipelines and expression services filled in over this executor;
    they never see the executor itself."""

    def __init__(self, engine: Any, *, bus: EventBus | None = None, services: TaskServices | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.repo = ExecutionRepository(engine, clock=self.now_ms)
        self.pipelines = PipelineRepository(engine, clock=self.now_ms)
        self.bus = bus or EventBus()
        self.services = dataclasses.replace(services or TaskServices(), children=ExecutionChildren(self),
                                            expressions=Evaluator(self.pipeline_lookup))
        self._drivers: dict[str, Driver] = {}
        self._stopping = False
        self.completion_hooks: list[Callable[[Execution], Awaitable[None] | None]] = []

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def pipeline_lookup(self, name: str, application: str | None) -> str | None:
        """`#pipelineId(name)` / `#pipelineIdInApplication(name, app)`: a pipeline config id, or None."""
        try:
            return str(self.pipelines.get(name, application)["id"])
        except GraylaneError:
            return None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Resume every execution the store says is still active (after a restart or a SIGKILL), and cancel the
        stages of halted ones whose task call was lost with the process (_after_halt)."""
        active: list[str] = list(self.repo.active_ids()) + self.repo.halted_with_running_ids()
        for execution_id in active:
            self._ensure_driver(execution_id)

    async def stop(self) -> None:
        self._stopping = True
        jobs = [d.job for d in self._drivers.values() if d.job is not None]
        for d in self._drivers.values():
            for inf in d.inflight.values():
                inf.job.cancel()
            if d.job is not None:
                d.job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        self._drivers.clear()

    def _ensure_driver(self, execution_id: str, exe: Execution | None = None) -> Driver:
        d = self._drivers.get(execution_id)
        if d is None or d.job is None or d.job.done():
            d = Driver(execution_id)
            d.exe = exe
            self._drivers[execution_id] = d
            d.job = asyncio.get_running_loop().create_task(self._drive(d), name=f"execution {execution_id}")
        return d

    def wake(self, execution_id: str) -> None:
        d = self._drivers.get(execution_id)
        if d is not None:
            d.wake.set()

    async def _submit(self, execution_id: str, fn: Command[Any]) -> Any:
        if execution_id not in self._drivers and not self.repo.exists(execution_id):
            raise NotFound(f"no execution {execution_id!r}", hint="`graylane execution list` shows recent executions")
        d = self._ensure_driver(execution_id)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        d.commands.append((fn, fut))
        d.wake.set()
        return await fut

    # ---------------------------------------------------------------- public operations

    async def start_execution(self, config: dict[str, Any], trigger: dict[str, Any], *, user: str,
                              execution_id: str | None = None) -> Execution:
        """Create a NOT_STARTED execution from a pipeline config and hand it to a driver."""
        if config.get("disabled"):
            raise Conflict(f"pipeline {config.get('application')}/{config.get('name')} is disabled and cannot be "
                           "started")
        now = self.now_ms()
        trigger = {"type": "manual", "user": user, "parameters": {}, "artifacts": [], **trigger}
        exe = new_execution(config, trigger, now, execution_id)
        exe.authentication = {"user": user, "allowedAccounts": []}
        self.repo.insert(exe, audit=[audit_entry(user, "start", now, trigger=trigger.get("type"),
                                                 parameters=trigger.get("parameters") or {})])
        self._publish({"kind": "execution", "executionId": exe.id, "status": str(exe.status),
                       "pipelineConfigId": exe.pipeline_config_id, "name": exe.name})
        d = self._ensure_driver(exe.id, copy.deepcopy(exe))
        if not concurrency.limit_of(exe):
            return exe  # it cannot be queued: nothing to wait for
        # answer once the driver decided whether it runs or waits (BUFFERED), so callers report what happened
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(d.first_commit.wait(), timeout=5.0)
        return self.get(exe.id)

    async def update_stage(self, execution_id: str, stage_ref: str, body: dict[str, Any], *, user: str,
                           roles: list[str] | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        """PATCH a running stage (judgment, skipRemainingWait, manualSkip): see commands.update_stage."""
        return dict(await self._submit(execution_id, commands.update_stage(stage_ref, body, user=user, roles=roles,
                                                                           idempotency_key=idempotency_key)))

    async def cancel(self, execution_id: str, *, user: str, reason: str | None = None) -> dict[str, Any]:
        return dict(await self._submit(execution_id, commands.cancel(user=user, reason=reason)))

    async def pause(self, execution_id: str, *, user: str) -> dict[str, Any]:
        return dict(await self._submit(execution_id, commands.pause(user=user)))

    async def resume(self, execution_id: str, *, user: str) -> dict[str, Any]:
        return dict(await self._submit(execution_id, commands.resume(user=user)))

    async def restart_stage(self, execution_id: str, stage_ref: str, *, user: str) -> dict[str, Any]:
        return dict(await self._submit(execution_id, commands.restart_stage(stage_ref, user=user)))

    async def delete_execution(self, execution_id: str, *, user: str) -> None:
        await self._submit(execution_id, commands.delete_execution(user=user))

    async def wait_until_complete(self, execution_id: str, timeout: float = 30.0) -> Execution:
        """Wait for the execution to finish (for tests and `execution wait`)."""
        return await waiting.until_complete(self.bus, self.get, execution_id, timeout)

    async def wait_for_stage(self, execution_id: str, stage_ref: str, statuses: set[S],
                             timeout: float = 30.0) -> Stage:
        return await waiting.for_stage(self.bus, self.get, execution_id, stage_ref, statuses, timeout)

    def buffered_reason(self, exe: Execution) -> str | None:
        """Why an execution is BUFFERED (which executions hold the slots, and what happens next)."""
        return concurrency.buffered_reason(self.repo, exe)

    def get(self, execution_id: str) -> Execution:
        """The execution as committed (never the driver's in-flight state: nothing is reported before commit)."""
        return self.repo.load(execution_id)

    # ---------------------------------------------------------------- the driver

    async def _drive(self, d: Driver) -> None:
        """Run the execution until it completes; an unexpected error reloads from the store and retries."""
        failures = 0
        saw_incomplete = False
        try:
            while not self._stopping:
                try:
                    if d.exe is None or failures:  # a fresh start hands over its in-memory execution
                        d.exe = self.repo.load(d.execution_id)
                    while not self._stopping:
                        d.wake.clear()
                        exe = d.exe
                        saw_incomplete = saw_incomplete or not exe.status.is_complete
                        tx = Tx()
                        d.answering = self._run_commands(d, exe, tx)
                        saw_incomplete = saw_incomplete or not exe.status.is_complete
                        launch = await self._step(d, exe, tx)
                        self._flush(exe, tx)  # one commit for the commands and the step they unblocked
                        d.first_commit.set()
                        for fut, result in d.answering:
                            if not fut.done():
                                fut.set_result(result)
                        d.answering = []
                        for stage, index, task_impl, view in launch:
                            self._launch(d, stage, index, task_impl, view)
                        if exe.status.is_complete and not d.inflight and not d.commands:
                            if saw_incomplete:  # hooks (triggers, parent wake-up) once per completion
                                saw_incomplete = False
                                await self._on_complete(exe)
                                if d.commands:  # sent while the hooks ran: answer them before leaving
                                    continue
                            return
                        if exe.status == S.BUFFERED and not d.inflight and not d.commands:
                            return  # woken again by _start_waiting when a slot frees
                        delay = self._next_delay(d, exe)
                        if delay > 0 and not d.commands:
                            with contextlib.suppress(asyncio.TimeoutError):
                                await asyncio.wait_for(d.wake.wait(), timeout=delay)
                        failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    log.exception("execution %s: scheduler step failed (attempt %d); reloading from the store",
                                  d.execution_id, failures)
                    for fut, _ in d.answering:
                        if not fut.done():
                            fut.set_exception(GraylaneError("the command was not applied (scheduler error); try again"))
                    d.answering = []
                    for inf in d.inflight.values():
                        inf.job.cancel()
                    d.inflight.clear()
                    d.due.clear()
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** failures))
        finally:
            while d.commands:
                _, fut = d.commands.popleft()
                if not fut.done():
                    fut.set_exception(GraylaneError("the execution's scheduler stopped; try again"))
            if self._drivers.get(d.execution_id) is d:
                del self._drivers[d.execution_id]

    def _run_commands(self, d: Driver, exe: Execution, tx: Tx) -> list[tuple[asyncio.Future[Any], Any]]:
        """Apply queued commands; each one that fails leaves no trace. Callers are answered after the commit."""
        answered: list[tuple[asyncio.Future[Any], Any]] = []
        while d.commands:
            fn, fut = d.commands.popleft()
            if fut.done():
                continue
            own = Tx()
            snapshot = copy.deepcopy(exe)
            try:
                result = fn(exe, own, self.now_ms())
            except GraylaneError as exc:
                exe.__dict__.update(snapshot.__dict__)  # the command's changes undone
                fut.set_exception(exc)
                continue
            except Exception as exc:
                log.exception("execution %s: command failed", exe.id)
                exe.__dict__.update(snapshot.__dict__)  # the command's changes undone
                fut.set_exception(exc)
                continue
            for stage_id in own.run_now:
                d.due.pop(stage_id, None)
            tx.merge(own)
            answered.append((fut, result))
        return answered

    def _next_delay(self, d: Driver, exe: Execution) -> float:
        if d.commands:
            return 0
        if exe.status != S.RUNNING:
            return 3600.0
        now = self.now_ms()
        dues = [d.due.get(st.id, now) for st in exe.stages
                if st.status == S.RUNNING and st.id not in d.inflight]
        deadlines = [timeout_deadline(st) for st in exe.stages if st.status == S.RUNNING]
        candidates = dues + [x for x in deadlines if x is not None]
        if not candidates:
            return 3600.0
        return max(0.0, (min(candidates) - now) / 1000.0)

    async def _step(self, d: Driver, exe: Execution, tx: Tx) -> list[tuple[Stage, int, TaskImpl, StageView]]:
        """Advance as far as possible without waiting on the outside; returns tasks to launch after commit."""
        launch: list[tuple[Stage, int, TaskImpl, StageView]] = []
        if exe.status in (S.NOT_STARTED, S.BUFFERED):
            if exe.canceled:
                self._finish(exe, S.CANCELED, tx)
                return launch
            if not self._try_start(exe, tx):
                return launch
        if exe.status in (S.RUNNING, S.PAUSED) and exe.canceled:
            await self._cancel_running(d, exe, tx, S.CANCELED)
            self._finish(exe, S.CANCELED, tx)
            return launch
        if halted(exe):
            await self._after_halt(d, exe, tx)
            return launch
        if exe.status != S.RUNNING:
            return launch
        self._collect_inflight(d, exe, tx)
        progressed = True
        while progressed and exe.status == S.RUNNING:
            progressed = False
            # start every startable stage before running any task: parallel branches start together, as orca's
            # StartExecution / startNext push a StartStage for each at once
            for stage in exe.stages:
                if exe.status == S.RUNNING and stage.status == S.NOT_STARTED and is_startable(exe, stage):
                    await evaluation.off_loop(self._start_stage, exe, stage, tx)  # evaluates expressions
                    progressed = True
            for stage in exe.stages:
                if exe.status != S.RUNNING:
                    break
                if stage.status == S.RUNNING and stage.id not in d.inflight and \
                        await self._advance_stage(d, exe, stage, tx, launch):
                    progressed = True
            if exe.status == S.RUNNING and not progressed:
                status = None if d.inflight else completion_status(exe)
                if status is not None:
                    self._finish(exe, status, tx)
        if halted(exe):
            await self._after_halt(d, exe, tx)
        return launch

    # ---- execution level

    def _try_start(self, exe: Execution, tx: Tx) -> bool:
        """NOT_STARTED/BUFFERED -> RUNNING unless limitConcurrent / maxConcurrentExecutions says wait (orca
        shouldQueue). Commits at once so two drivers never both take the slot."""
        limit = concurrency.limit_of(exe)
        if exe.pipeline_config_id and concurrency.must_wait(self.repo, exe):
            if exe.status != S.BUFFERED:
                exe.status = S.BUFFERED
                tx.header = True
                tx.events.append(exec_event(exe, self.now_ms()))
                self._flush(exe, tx)
            return False
        if exe.status == S.BUFFERED and exe.pipeline_config_id:
            queued = concurrency.queued(self.repo, exe)
            chosen = queued[0][0] if exe.keep_waiting_pipelines else queued[-1][0]
            if queued and chosen != exe.id:
                return False
        exe.status, exe.start_time = S.RUNNING, self.now_ms()
        tx.header = True
        tx.events.append(exec_event(exe, self.now_ms()))
        if limit:
            self._flush(exe, tx)  # take the concurrency slot now; without a limit the step's commit does
        if not exe.stages:
            self._finish(exe, S.TERMINAL, tx)
        return exe.status == S.RUNNING

    def _finish(self, exe: Execution, status: S, tx: Tx) -> None:
        finish(exe, status, tx, self.now_ms())

    async def _after_halt(self, d: Driver, exe: Execution, tx: Tx) -> None:
        """The pipeline halted (TERMINAL, or a stage CANCELED): as orca after CompleteExecutionHandler.

        A task call under way is not interrupted (orca's CancelStage only re-queues RunTask; a task already executing
        completes): its result is applied when it returns, so its stage ends with what the call did. Every other
        RUNNING stage ends CANCELED (RunTaskHandler cancels a task of a complete execution): one that was waiting to
        run its task again, one whose call just succeeded with tasks left, and one whose call was lost with a
        stopped control plane. Then the stages their completion let start end CANCELED too (cancel_started)."""
        self._collect_inflight(d, exe, tx)
        await self._cancel_running(d, exe, tx, S.CANCELED, interrupt=False)
        cancel_started(exe, tx, self.now_ms())

    async def _cancel_running(self, d: Driver, exe: Execution, tx: Tx, status: S, *, interrupt: bool = True) -> None:
        """RUNNING/PAUSED stages end `status`; `interrupt=False` leaves the ones with a task call under way."""
        now = self.now_ms()
        for st in exe.stages:
            if st.status in (S.RUNNING, S.PAUSED):
                if not interrupt and st.id in d.inflight:
                    continue
                inf = d.inflight.pop(st.id, None)
                if inf is not None:
                    inf.job.cancel()
                for t in st.tasks:
                    if not t.status.is_complete:
                        t.status, t.end_time = status, now
                st.status, st.end_time = status, now
                tx.touch(st)
                tx.events.append(stage_event(exe, st, self.now_ms()))
                impls = task_impls(st)
                current = next((i for i, t in enumerate(st.tasks) if t.status == status), None)
                if current is not None and current < len(impls):
                    try:
                        await impls[current].on_cancel(self._view(exe, st))
                    except Exception:
                        log.warning("execution %s stage %s: on_cancel failed", exe.id, st.name, exc_info=True)

    # ---- stage level

    def _start_stage(self, exe: Execution, stage: Stage, tx: Tx) -> None:
        """orca StartStageHandler: evaluate the original config, check stageEnabled, plan tasks."""
        now = self.now_ms()
        stage.start_time = now
        tx.touch(stage)
        try:
            planned = planning.evaluate_config(exe, stage, user_of(exe), self.pipeline_lookup)
        except GraylaneError as exc:
            stage.context = planning.raw_context(stage)
            self._fail_stage(exe, stage, tx, f"stage {stage.name!r} could not be planned: {exc}")
            return
        stage.context = planned.context
        enabled, reason = planning.stage_enabled(exe, stage, user_of(exe), self.pipeline_lookup)
        if not enabled:
            stage.context["stageEnabledResult"] = reason
            stage.status, stage.end_time = S.SKIPPED, now
            tx.events.append(stage_event(exe, stage, self.now_ms()))
            return
        if planned.failed_expressions and stage.context.get("failOnFailedExpressions"):
            self._fail_stage(exe, stage, tx, "Failure evaluating expressions: " + "; ".join(planned.failed_expressions))
            return
        impls = task_impls(stage)
        stage.tasks = [Task(id=str(i + 1), name=impl.name, implementing_class=type(impl).__name__,
                            stage_start=i == 0, stage_end=i == len(impls) - 1) for i, impl in enumerate(impls)]
        stage.status = S.RUNNING
        tx.events.append(stage_event(exe, stage, self.now_ms()))
        if not stage.tasks:
            self._complete_stage(exe, stage, S.SUCCEEDED, tx)

    async def _advance_stage(self, d: Driver, exe: Execution, stage: Stage, tx: Tx,
                             launch: list[tuple[Stage, int, TaskImpl, StageView]]) -> bool:
        """Run or schedule the stage's current task; True if anything changed."""
        task = stage.current_task()
        if task is None:
            self._complete_stage(exe, stage, S.SUCCEEDED, tx)
            return True
        now = self.now_ms()
        idx = stage.tasks.index(task)
        impls = task_impls(stage)
        if idx >= len(impls):
            self._fail_stage(exe, stage, tx, f"stage {stage.name!r} has no task #{idx + 1} any more")
            return True
        impl = impls[idx]
        changed = False
        if task.status == S.NOT_STARTED:
            task.status, task.start_time = S.RUNNING, now
            tx.touch(stage)
            changed = True
        limit = timeout(stage)
        if limit is not None and now >= limit[0]:
            limit_ms = limit[1]
            try:  # orca Task.onTimeout: e.g. a job's wait stops the job
                await impl.on_timeout(self._view(exe, stage))
            except Exception:
                log.warning("execution %s stage %s: on_timeout failed", exe.id, stage.name, exc_info=True)
            self._task_result(exe, stage, task, TaskResult.terminal(
                f"{type(impl).__name__} of stage {stage.name} timed out after {duration(limit_ms)}"), tx)
            return True
        if stage.context.get("manualSkip"):
            self._task_result(exe, stage, task, TaskResult(S.SKIPPED), tx)
            return True
        if d.due.get(stage.id, 0) > now:
            return changed
        stage_view = self._view(exe, stage, detached=not impl.inline)
        if not impl.inline:
            launch.append((stage, idx, impl, stage_view))
            d.inflight[stage.id] = Inflight(stage.attempt, idx, asyncio.get_running_loop().create_future(),
                                             stage_view)
            return changed
        result = await self._call(exe, stage, impl, stage_view)
        return self._task_result(exe, stage, task, result, tx) or changed

    async def _call(self, exe: Execution, stage: Stage, impl: TaskImpl, view: StageView) -> TaskResult:
        try:
            return await impl.run(view)
        except asyncio.CancelledError:
            raise
        except GraylaneError as exc:
            log.warning("execution %s stage %s: %s failed: %s", exe.id, stage.name, impl.name, exc)
            return TaskResult.terminal(str(exc))
        except Exception as exc:
            log.exception("execution %s stage %s: %s raised", exe.id, stage.name, impl.name)
            return TaskResult.terminal(f"{impl.name} failed unexpectedly: {type(exc).__name__}: {exc}")

    def _launch(self, d: Driver, stage: Stage, index: int, impl: TaskImpl, view: StageView) -> None:
        exe = d.exe
        assert exe is not None
        job = asyncio.get_running_loop().create_task(self._call(exe, stage, impl, view))
        d.inflight[stage.id] = Inflight(stage.attempt, index, job, view)
        job.add_done_callback(lambda _j: d.wake.set())

    def _collect_inflight(self, d: Driver, exe: Execution, tx: Tx) -> None:
        for stage_id, inf in list(d.inflight.items()):
            if not inf.job.done():
                continue
            del d.inflight[stage_id]
            if inf.job.cancelled():
                continue
            stage = next((s for s in exe.stages if s.id == stage_id), None)
            if stage is None or stage.attempt != inf.attempt or stage.status != S.RUNNING:
                continue
            task = stage.current_task()
            if task is None or stage.tasks.index(task) != inf.task_index:
                continue
            self._task_result(exe, stage, task, inf.job.result(), tx)

    def _task_result(self, exe: Execution, stage: Stage, task: Task, result: TaskResult, tx: Tx) -> bool:
        """Apply what a task returned (orca RunTaskHandler + CompleteTaskHandler)."""
        d = self._drivers[exe.id]
        now = self.now_ms()
        changed = bool(result.context or result.outputs)
        stage.context.update(result.context)
        stage.outputs.update(result.outputs)
        if result.context or result.outputs:
            tx.touch(stage)
        if result.status == S.RUNNING:
            retry_s = result.retry_after_s if result.retry_after_s is not None else 1.0
            d.due[stage.id] = now + max(10, int(1000 * retry_s))  # never a busy loop inside one step
            if changed:
                tx.events.append(stage_event(exe, stage, self.now_ms(), "context"))
            return changed
        d.due.pop(stage.id, None)
        tx.touch(stage)
        if result.status == S.SUCCEEDED:
            task.status, task.end_time = S.SUCCEEDED, now
            tx.events.append({"kind": "task", "executionId": exe.id, "stageId": stage.id, "taskId": task.id,
                              "name": task.name, "status": str(task.status)})
            if stage.current_task() is None:
                self._complete_stage(exe, stage, S.SUCCEEDED, tx)
            return True
        if result.error:
            task.exception = {"details": {"error": result.error, "errors": [result.error]}}
            stage.context["exception"] = {"details": {"error": result.error, "errors": [result.error]},
                                          "taskName": task.name}
        # orca RunTaskHandler: TERMINAL goes through the stage's failureStatus(); SKIPPED, STOPPED and
        # FAILED_CONTINUE (a task's own verdict, e.g. a precondition's failPipeline: false) are kept as they are.
        status = stage.failure_status if result.status == S.TERMINAL else result.status
        task.status, task.end_time = status, now
        self._complete_stage(exe, stage, status, tx)
        return True

    def _fail_stage(self, exe: Execution, stage: Stage, tx: Tx, error: str) -> None:
        stage.context["exception"] = {"details": {"error": error, "errors": [error]}}
        self._complete_stage(exe, stage, stage.failure_status, tx)

    def _complete_stage(self, exe: Execution, stage: Stage, status: S, tx: Tx) -> None:
        """orca CompleteStageHandler; a TERMINAL stage halts the whole execution at once."""
        if status == S.SUCCEEDED and stage.context.get("failOnFailedExpressions") and \
                planning.summary_errors(stage.context.get("expressionEvaluationSummary") or {}):
            status = S.TERMINAL
        stage.status, stage.end_time = status, self.now_ms()
        tx.touch(stage)
        tx.events.append(stage_event(exe, stage, self.now_ms()))
        if exe.status.is_complete:  # a call that was under way when the pipeline halted: it ends, nothing else
            return
        if status == S.TERMINAL:
            self._finish(exe, S.TERMINAL, tx)
        elif status == S.CANCELED:
            self._finish(exe, S.CANCELED, tx)

    # ---------------------------------------------------------------- helpers

    def _flush(self, exe: Execution, tx: Tx) -> None:
        if not tx.dirty and not tx.events:
            return
        if tx.delete:
            self.repo.delete(exe.id)
        elif tx.dirty:
            self.repo.store(exe, tx.stages.values(), tx.audit)
        events, tx.events = tx.events, []
        tx.stages, tx.audit, tx.header, tx.delete = {}, [], False, False
        for event in events:
            self._publish(event)

    def _publish(self, event: dict[str, Any]) -> None:
        self.bus.publish("execution", **event)

    def _view(self, exe: Execution, stage: Stage, *, detached: bool = False) -> StageView:
        return view(exe, stage, self.services, self.now_ms(), detached=detached)

    # ---- completion

    async def _on_complete(self, exe: Execution) -> None:
        if exe.pipeline_config_id and (exe.limit_concurrent or exe.max_concurrent_executions):
            start, supersede = concurrency.after_completion(self.repo, exe)
            for execution_id in supersede:
                asyncio.get_running_loop().create_task(self._supersede(execution_id))
            if start is not None:
                self._ensure_driver(start).wake.set()
        parent = (exe.trigger.get("parentExecution") or {}).get("id") if isinstance(exe.trigger, dict) else None
        if parent:
            self.wake(parent)
        for hook in self.completion_hooks:
            try:
                res = hook(exe)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:
                log.exception("execution %s: completion hook failed", exe.id)

    async def _supersede(self, execution_id: str) -> None:
        with contextlib.suppress(GraylaneError):
            await self.cancel(execution_id, user="system", reason=concurrency.SUPERSEDED)
