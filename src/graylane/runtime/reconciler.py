"""The local kubelet + Deployment controller: keeps replica processes matching the store.

One asyncio task reconciles (store changes wake it; a short tick supervises processes); one task
per replica runs its probes. Pods are recorded in the state folder and re-adopted on restart.
Endpoint changes are announced to listeners (mesh control), whose ACKs gate rollouts.

A pod's `initContainers` run first, one after another, each to exit 0, before its main container
starts (the replica is `Init:N/M`, out of the endpoints); a failing one is restarted with the
crash-loop backoff (`Init:Error`, `Init:CrashLoopBackOff`), as the kubelet does under
`restartPolicy: Always`. A main container that crashes later is restarted alone.

Around it: `init_containers` (the init-container sequence and the `Init:N/M` status), `prober` (one
replica's readiness and liveness probes), `views` (the kubectl-shaped pods and Deployments it answers with).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from graylane.errors import GraylaneError, NotFound
from graylane.runtime import views
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.env import PodIdentity
from graylane.runtime.init_containers import InitContainers, init_name, initializing
from graylane.runtime.launch import (
    LaunchProblem,
    LaunchSpec,
    Resources,
    build_launch,
    container_port,
    grace_period_s,
    index_resources,
    init_containers,
    main_container,
    pod_name,
    template_hash,
)
from graylane.runtime.plan import ActionKind, ObservedPod, desired_from, plan
from graylane.runtime.prober import probe_loop, probe_once
from graylane.runtime.process import PodRecord, Process, RecordStore, describe_exit, log_path, rotate_if_large
from graylane.runtime.replica import Phase, Replica, free_port
from graylane.workloads import Endpoint, Sidecar

log = logging.getLogger(__name__)

WATCHED_KINDS = ("Deployment", "LocalImage", "ConfigMap", "Secret", "Service")


class Runtime:
    """Deployments -> replica processes; exposes endpoints, sidecars, pod and Deployment status."""

    def __init__(self, store: Any, state: Path, *, backoff: BackoffPolicy | None = None, tick_s: float = 0.2,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.state = state
        self.backoff = backoff or BackoffPolicy()
        self.tick_s = tick_s
        self.base_env = dict(base_env if base_env is not None else os.environ)
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            self.base_env.pop(var, None)
        self.records = RecordStore(state)
        self.replicas: dict[str, Replica] = {}
        self.res = Resources()
        self.problems: dict[tuple[str, str], LaunchProblem] = {}
        self.observed: dict[tuple[str, str], str] = {}
        self.first_seen: dict[tuple[str, str], float] = {}
        self.progress_at: dict[tuple[str, str], float] = {}
        self.seq = 0  # bumps on every endpoint or sidecar change
        self._listeners: list[Callable[[], None]] = []
        self.extra_sidecars: dict[tuple[str, str], Sidecar] = {}  # processes started elsewhere (Jobs)
        self._published: Callable[[int], bool] = lambda seq: True
        self._wake = asyncio.Event()
        self.inits = InitContainers(state, self.records, wake=self._wake.set, retry_s=self.backoff.initial_s)
        self._dirty = True
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Condition()
        self._loaded_revision = -1
        self._stopping = False
        self._change_count = 0  # store changes seen (bumped in the committing thread)
        self._loaded_count = -1  # ...of which the loaded resources include this many
        self.reconciled_revision = -1  # store revision the controller has acted on

    # === lifecycle ===

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(AttributeError):
            self.store.subscribe(self._on_store_change)
        await self._adopt()
        await self._reload()
        self._task = asyncio.create_task(self._run(), name="graylane-runtime")

    async def stop(self) -> None:
        """Stop reconciling; replica processes keep running (they are re-adopted on next start)."""
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for r in self.replicas.values():
            for t in (r.probe_task,):
                if t:
                    t.cancel()
        stops = [r.stop_task for r in self.replicas.values() if r.stop_task]
        if stops:
            await asyncio.gather(*stops, return_exceptions=True)

    async def shutdown_workloads(self) -> list[str]:
        """Stop every replica (graylane down)."""
        self._stopping = True
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        names = sorted(self.replicas)
        for r in list(self.replicas.values()):
            self._terminate(r, wait_for_mesh=False)
        tasks = [r.stop_task for r in self.replicas.values() if r.stop_task]
        await asyncio.gather(*tasks, return_exceptions=True)
        return names

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (in the loop) whenever endpoints or sidecars change."""
        self._listeners.append(callback)

    def set_publication_gate(self, gate: Callable[[int], bool]) -> None:
        """`gate(seq)` is True once the data plane serves endpoints as of `seq` (mesh control sets it)."""
        self._published = gate

    def poke(self) -> None:
        """Re-evaluate now (mesh control calls this after an ACK)."""
        self._wake.set()

    def _on_store_change(self, keys: Sequence[Any] = ()) -> None:
        kinds = {getattr(k, "kind", None) for k in keys}
        if keys and not kinds & set(WATCHED_KINDS):
            return
        self._dirty = True
        self._change_count += 1
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    def _bump(self) -> None:
        self.seq += 1
        for cb in self._listeners:
            try:
                cb()
            except Exception:  # a listener bug must not stop the kubelet
                log.exception("endpoint listener failed")

    # === the loop ===

    async def _run(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._dirty:
                    await self._reload()
                self._supervise()
                self._reconcile()
                self.reconciled_revision = self._loaded_revision
            except Exception:
                log.exception("runtime reconcile failed; retrying")
                await asyncio.sleep(1)
            async with self._changed:
                self._changed.notify_all()

    async def _reload(self) -> None:
        self._dirty = False
        count = self._change_count
        revision, stored = await asyncio.to_thread(self._list_store)
        self.res = index_resources(stored)
        self._loaded_revision = revision
        self._loaded_count = count

    def _list_store(self) -> tuple[int, dict[str, list[Any]]]:
        revision = int(self.store.revision())  # read first: the listing holds at least this revision
        return revision, {kind: list(self.store.list(kind=kind)) for kind in WATCHED_KINDS}

    async def _adopt(self) -> None:
        """Re-adopt recorded replicas still running as the same processes (no restart)."""
        probes = []
        for rec in self.records.load_all():
            r = Replica(rec=rec, adopted=True)
            r.proc = Process.adopt(rec.pid, rec.ticks)
            if initializing(r):
                self.inits.adopt(r)
            elif r.proc is None:
                r.reason = "ContainerExited"  # died while the control plane was away: restart it
                r.phase = Phase.FAILED
                rec.last_exit = "exited while the control plane was down"
            else:
                r.phase = Phase.RUNNING
                r.proc.watch(asyncio.get_running_loop(), self._wake.set)
                r.started_mono = time.monotonic() - max(0.0, time.time() - rec.started)
                probes.append(r)
            self.replicas[rec.key] = r
        # One probe round first, so the first snapshot after a restart keeps serving them.
        await self.res_reload_quiet()
        results = await asyncio.gather(*(probe_once(self._template(r), r.rec.port) for r in probes))
        for r, ok in zip(probes, results, strict=True):
            if ok:
                r.ready, r.reason = True, ""
            log.info("re-adopted %s (pid %s, %s)", r.rec.key, r.rec.pid, "ready" if ok else "not ready")
            template = self._template(r)
            launch = self._launch(r, template) if template else None
            if isinstance(launch, LaunchSpec):
                r.launch = launch
                r.probe_task = asyncio.create_task(probe_loop(r, launch, self._ready_changed, adopted=True))
        if self.replicas:
            self._bump()
            for r in probes:
                r.ready_seq = self.seq

    async def res_reload_quiet(self) -> None:
        with contextlib.suppress(Exception):
            await self._reload()

    def _template(self, r: Replica) -> Mapping[str, Any] | None:
        body = self.res.deployments.get((r.rec.namespace, r.rec.deployment))
        if body is None:
            return None
        template = (body.get("spec") or {}).get("template") or {}
        return template if template_hash(template) == r.rec.template_hash else None

    # === supervision (kubelet) ===

    def _supervise(self) -> None:
        now = time.monotonic()
        for r in list(self.replicas.values()):
            if r.terminating:
                continue
            if r.proc is not None and not r.proc.running:
                self._on_exit(r, r.proc.exit_status())
            if r.proc is None and r.phase in (Phase.FAILED, Phase.CRASH_LOOP) and now >= r.next_start:
                self._start_process(r, restart=True)
            elif r.proc is None and r.phase is Phase.PENDING and initializing(r):  # adopted between two
                self._start_process(r, restart=False)
            if r.proc is not None:
                rotate_if_large(self.inits.log_path(r, self._template(r)) if initializing(r)
                                else log_path(self.state, r.rec.namespace, r.rec.name))

    def _on_exit(self, r: Replica, code: int | None) -> None:
        init = initializing(r)
        if init:
            code = self.inits.exit_code(r, code)
            if code == 0:
                self.inits.completed(r, self._template(r))
                self._start_process(r, restart=False)  # the next init container, or the main one
                return
        ran_s = time.monotonic() - r.started_mono
        r.rec.crashes = self.backoff.next_crash_count(r.rec.crashes, ran_s)
        r.rec.last_exit = describe_exit(code) or "exited"
        if init:
            name = init_name(self._template(r), r.rec.init_done)
            r.rec.last_exit = f"init container {name} {r.rec.last_exit}"
        delay = self.backoff.delay_s(r.rec.crashes)
        r.proc = None
        if r.probe_task:
            r.probe_task.cancel()
            r.probe_task = None
        r.next_start = time.monotonic() + delay
        r.phase = Phase.CRASH_LOOP if delay > 0 else Phase.FAILED
        what = "init container" if init else "container"
        r.reason = (f"back-off {delay:g}s restarting failed {what} ({r.rec.last_exit})" if delay
                    else r.rec.last_exit)
        r.logger().warning("%s%s; restart in %gs", "" if init else "container ", r.rec.last_exit, delay)
        r.ready = False
        self.records.save(r.rec)
        self._bump()

    def _start_process(self, r: Replica, *, restart: bool) -> None:
        body = self.res.deployments.get((r.rec.namespace, r.rec.deployment))
        template = self._template(r)
        if body is None or template is None:
            return  # outdated or orphaned: the controller will remove it
        if initializing(r):
            launch = self._launch(r, template, init_containers(template)[r.rec.init_done])
            problem = self.inits.start(r, template, launch, retry=restart)
            if problem is None:
                self.problems.pop((r.rec.namespace, r.rec.deployment), None)
            else:
                self.problems[(r.rec.namespace, r.rec.deployment)] = problem
            return
        launch = self._launch(r, template)
        if isinstance(launch, LaunchProblem):
            self.problems[(r.rec.namespace, r.rec.deployment)] = launch
            r.phase, r.reason = Phase.FAILED, f"{launch.reason}: {launch.message}"
            r.next_start = time.monotonic() + 2.0
            return
        self.problems.pop((r.rec.namespace, r.rec.deployment), None)
        current = log_path(self.state, r.rec.namespace, r.rec.name)
        if restart and current.exists():
            os.replace(current, log_path(self.state, r.rec.namespace, r.rec.name, previous=True))
        try:
            r.proc = Process.spawn(launch.argv, env=launch.env, cwd=launch.cwd, log=current)
        except OSError as exc:
            problem = LaunchProblem("CreateContainerError", f"cannot start {launch.argv[0]}: {exc.strerror}")
            self.problems[(r.rec.namespace, r.rec.deployment)] = problem
            r.phase, r.reason = Phase.FAILED, f"{problem.reason}: {problem.message}"
            r.next_start = time.monotonic() + self.backoff.initial_s
            return
        if restart:
            r.rec.restarts += 1
        r.proc.watch(asyncio.get_running_loop(), self._wake.set)  # leave the endpoints at once on exit
        r.launch = launch
        r.rec.pid, r.rec.ticks, r.rec.started = r.proc.pid, r.proc.ticks, time.time()
        r.started_mono = time.monotonic()
        r.phase, r.ready, r.reason = Phase.RUNNING, False, "ContainersNotReady"
        self.records.save(r.rec)
        r.logger().info("started pid %s: %s", r.proc.pid, " ".join(launch.argv))
        r.probe_task = asyncio.create_task(probe_loop(r, launch, self._ready_changed))
        self._bump()

    def _launch(self, r: Replica, template: Mapping[str, Any],
                container: Mapping[str, Any] | None = None) -> LaunchSpec | LaunchProblem:
        """What to run for `container` of `r` (default its main container), or why it cannot run."""
        md = template.get("metadata") or {}
        identity = PodIdentity(namespace=r.rec.namespace, name=r.rec.name, labels=r.rec.labels,
                               annotations=dict(md.get("annotations") or {}), port=r.rec.port,
                               sidecar_port=r.rec.sidecar_port, service_account=r.rec.service_account)
        return build_launch(template, identity, self.res, self.base_env,
                            source_dir=self.res.source_dirs.get((r.rec.namespace, r.rec.deployment)),
                            container=container)

    def _ready_changed(self, r: Replica) -> None:
        """The prober changed `r.ready`: publish it (endpoints as of the new seq) and re-evaluate rollouts."""
        self._bump()
        r.ready_seq = self.seq
        self._wake.set()

    # === the Deployment controller ===

    def _reconcile(self) -> None:
        now = time.monotonic()
        by_deploy: dict[tuple[str, str], list[Replica]] = {}
        for r in self.replicas.values():
            by_deploy.setdefault((r.rec.namespace, r.rec.deployment), []).append(r)
        for key, body in self.res.deployments.items():
            self.first_seen.setdefault(key, now)
            spec = body.get("spec") or {}
            template = spec.get("template") or {}
            hash_ = template_hash(template)
            desired = desired_from(spec, hash_)
            live = [r for r in by_deploy.get(key, []) if not r.terminating]
            observed = [ObservedPod(r.rec.name, r.rec.template_hash, self.available(r), r.rec.created)
                        for r in live]
            before = self.observed.get(key)
            for action in plan(desired, observed):
                if action.kind is ActionKind.CREATE:
                    if not self._create(key, template, hash_):
                        break
                else:
                    doomed = self.replicas.get(f"{key[0]}/{action.pod}")
                    if doomed is not None:
                        self._terminate(doomed)
            self.observed[key] = self.res.versions.get(key, "")
            if before != self.observed[key]:
                self.progress_at[key] = now
        for key, replicas in by_deploy.items():
            if key not in self.res.deployments:
                self.problems.pop(key, None)
                for r in replicas:
                    if not r.terminating:
                        self._terminate(r)
        for key in list(self.observed):
            if key not in self.res.deployments:
                self.observed.pop(key, None)
                self.first_seen.pop(key, None)

    def available(self, r: Replica) -> bool:
        """Ready, and in the endpoints the data plane serves (what a rollout counts)."""
        return r.ready and r.proc is not None and self._published(r.ready_seq)

    def _create(self, key: tuple[str, str], template: Mapping[str, Any], hash_: str) -> bool:
        container = main_container(template)
        launch = build_launch(template, PodIdentity(key[0], "check", {}, {}, 0, 0), self.res, self.base_env,
                              source_dir=self.res.source_dirs.get(key))
        if isinstance(launch, LaunchProblem):
            if key not in self.problems:
                log.warning("Deployment %s/%s: %s: %s", key[0], key[1], launch.reason, launch.message)
            self.problems[key] = launch
            return False
        self.problems.pop(key, None)
        md = template.get("metadata") or {}
        taken = {p for r in self.replicas.values() for p in (r.rec.port, r.rec.sidecar_port)}
        port = free_port(taken)
        sidecar = free_port(taken | {port})
        labels = {**{str(k): str(v) for k, v in (md.get("labels") or {}).items()}, "pod-template-hash": hash_}
        spec = template.get("spec") or {}
        rec = PodRecord(namespace=key[0], name=pod_name(key[1], hash_), deployment=key[1], template_hash=hash_,
                        labels=labels, port=port, sidecar_port=sidecar, container_port=container_port(container),
                        service_account=str(spec.get("serviceAccountName") or "default"),
                        grace_s=grace_period_s(template), container=str(container.get("name") or ""),
                        init_total=len(init_containers(template)))
        r = Replica(rec=rec)
        self.replicas[rec.key] = r
        self._start_process(r, restart=False)
        return True

    def _terminate(self, r: Replica, *, wait_for_mesh: bool = True) -> None:
        if r.terminating:
            return
        r.terminating, r.ready, r.phase, r.reason = True, False, Phase.TERMINATING, "Terminating"
        self._bump()
        seq = self.seq
        r.stop_task = asyncio.create_task(self._stop(r, seq, r.rec.grace_s, wait_for_mesh))

    async def _stop(self, r: Replica, seq: int, grace_s: float, wait_for_mesh: bool) -> None:
        # Leave the endpoints first (the data plane ACKs a snapshot without us), then SIGTERM.
        deadline = time.monotonic() + 5.0
        while wait_for_mesh and not self._published(seq) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if r.probe_task:
            r.probe_task.cancel()
        if r.proc is not None:
            code = await r.proc.stop(grace_s)
            r.logger().info("stopped (%s)", describe_exit(code))
        self.records.remove(r.rec)
        self.replicas.pop(r.rec.key, None)
        self._bump()
        self._wake.set()

    # === what others read ===

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(namespace=r.rec.namespace, pod=r.rec.name, labels=dict(r.rec.labels), host="127.0.0.1",
                         port=r.rec.port, container_port=r.rec.container_port, ready=r.ready,
                         workload=r.rec.deployment, service_account=r.rec.service_account)
                for r in self.replicas.values() if not r.terminating and r.proc is not None and not initializing(r)]

    def sidecars(self) -> list[Sidecar]:
        return [Sidecar(namespace=r.rec.namespace, pod=r.rec.name, labels=dict(r.rec.labels),
                        port=r.rec.sidecar_port, workload=r.rec.deployment, service_account=r.rec.service_account)
                for r in self.replicas.values()] + list(self.extra_sidecars.values())

    def add_sidecar(self, sidecar: Sidecar) -> None:
        """An outbound listener for a process the runtime does not run (a Job's container, pipelines' runJob)."""
        self.extra_sidecars[(sidecar.namespace, sidecar.pod)] = sidecar
        self._bump()

    def remove_sidecar(self, namespace: str, pod: str) -> None:
        if self.extra_sidecars.pop((namespace, pod), None) is not None:
            self._bump()

    def ports_in_use(self) -> set[int]:
        """Ports of replicas and extra sidecars, so a new listener picks another."""
        return {p for r in self.replicas.values() for p in (r.rec.port, r.rec.sidecar_port)} | {
            sc.port for sc in self.extra_sidecars.values()}

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return views.pods(self.replicas.values(), namespace)

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Kubernetes-shaped `status` for a Deployment (None if the runtime does not know it)."""
        return views.deployment_status(self, namespace, name)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Deployment as `deployments()` lists it (see views.deployment); None if the runtime does not know it."""
        return views.deployment(self, namespace, name)

    def deployments(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return views.deployments(self, namespace)

    @property
    def loaded_every_change(self) -> bool:
        """The loaded resources include every store change seen so far."""
        return self._loaded_count == self._change_count

    async def wait_ready(self, keys: Sequence[Any], timeout: float,
                         progress: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        """Wait until every Deployment among `keys` is rolled out (kubectl rollout status)."""
        deadline = time.monotonic() + timeout
        asked_at = await asyncio.to_thread(self.store.revision)
        targets = [(str(k.namespace or "default"), str(k.name)) for k in keys if getattr(k, "kind", "") == "Deployment"]
        for ns, name in targets:
            while True:
                stored = await asyncio.to_thread(self._stored_version, ns, name)
                if stored is None:
                    raise NotFound(f"Deployment {ns}/{name} not found")
                status = self.deployment_status(ns, name) if self.observed.get((ns, name)) == stored else None
                if status is not None:
                    if progress:
                        progress(f"{ns}/{name}", status)
                    if status["complete"]:
                        break
                    # A replica failure of the spec asked about is final for this wait (kubectl would
                    # wait out its timeout; the reason is known now, so say it now).
                    problem = self.problems.get((ns, name))
                    if problem is not None and self.reconciled_revision >= asked_at:
                        raise GraylaneError(f"Deployment {ns}/{name}: {problem.reason}: {problem.message}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    detail = (f"{status['updatedReplicas']} of {status.get('replicas')} updated, "
                              f"{status['availableReplicas']} available") if status else "not reconciled yet"
                    raise GraylaneError(f"Deployment {ns}/{name} not rolled out after {timeout:g}s ({detail})",
                                        hint=f"graylane get pods; graylane logs deploy/{name}")
                self._dirty = True if status is None else self._dirty
                self._wake.set()
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(remaining, 0.5)):
                            await self._changed.wait()

    def _stored_version(self, namespace: str, name: str) -> str | None:
        from graylane.resources.document import ResourceKey

        item = self.store.get(ResourceKey("apps", "Deployment", namespace, name))
        if item is None:
            return None
        return str(getattr(item, "generation", None) or getattr(item, "resource_version", "") or "")
