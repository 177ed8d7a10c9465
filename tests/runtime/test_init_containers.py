"""A Deployment's init containers run first, one after another, each to exit 0, before its main container; a failing
one is retried with the crash-loop backoff; a restarted runtime re-adopts a running one. Real processes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from graylane.cli.main import app
from graylane.errors import NotFound
from graylane.resources.document import ResourceKey
from graylane.runtime.backoff import BackoffPolicy
from graylane.runtime.process import init_log_path, start_ticks
from graylane.runtime.reconciler import Runtime
from graylane.store import Store

from .conftest import deployment, eventually

pytestmark = pytest.mark.asyncio
KEY = ResourceKey("apps", "Deployment", "default", "echo")

# Appends "NAME pid PID" to TRACE; waits for GATE (if set) to exist; exits with the code GATE holds, else EXIT.
STEP = """
import os, sys, time
name, trace, gate = sys.argv[1], os.environ["TRACE"], os.environ.get("GATE_" + sys.argv[1].replace("-", "_"))
with open(trace, "a") as f:
    f.write(f"{name} pid {os.getpid()} as {os.environ['POD_NAME']}\\n")
print(name, "running", flush=True)
while gate and not os.path.exists(gate):
    time.sleep(0.02)
sys.exit(int(open(gate).read() or 0) if gate else int(os.environ.get("EXIT_" + name.replace("-", "_"), "0")))
"""


def with_inits(trace: Path, *names: str, env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    body = deployment(replicas=1)
    spec = body["spec"]["template"]["spec"]
    common = [{"name": "TRACE", "value": str(trace)}, *(env or [])]
    spec["initContainers"] = [{"name": n, "image": "local", "command": [sys.executable, "-c", STEP, n], "env": common}
                              for n in names]
    return body


def steps(trace: Path) -> list[str]:
    return [line.split()[0] for line in trace.read_text().splitlines()] if trace.exists() else []


async def test_init_containers_run_one_after_another_before_the_main_container(
        store: Store, runtime: Runtime, state_dir: Path, tmp_path: Path) -> None:
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    store.apply([with_inits(trace, "init-schema", "init-seed", env=[{"name": "GATE_init_schema", "value": str(gate)}])],
                actor="user:test")
    waiting = await eventually(lambda: next((p for p in runtime.pods() if p["status"] == "Init:0/2"), None),
                               what="Init:0/2")
    await eventually(lambda: steps(trace) == ["init-schema"], what="init-schema running")
    assert not waiting["isReady"] and runtime.pods()[0]["status"] == "Init:0/2"
    assert not runtime.endpoints()  # not an endpoint while initializing
    gate.write_text("0")
    await runtime.wait_ready([KEY], timeout=20)
    (running,) = runtime.pods()
    assert (running["status"], running["restarts"], running["name"]) == ("Running", 0, waiting["name"])
    assert steps(trace) == ["init-schema", "init-seed"]
    assert all(f"as {running['name']}" in line for line in trace.read_text().splitlines())  # the pod's env
    body = httpx.get(f"http://127.0.0.1:{running['port']}/", timeout=2, trust_env=False).json()
    assert body["env"]["POD_NAME"] == running["name"]
    assert "init-seed running" in init_log_path(state_dir, "default", running["name"], "init-seed").read_text()
    assert [e.pod for e in runtime.endpoints()] == [running["name"]]
    runner = CliRunner()  # `graylane logs -c`, as kubectl logs -c
    init_log = runner.invoke(app, ["logs", "deploy/echo", "-c", "init-seed"])
    assert init_log.exit_code == 0 and "init-seed running" in init_log.output, init_log.output
    main_log = runner.invoke(app, ["logs", "deploy/echo", "-c", "echo"])
    assert "serving v1" in main_log.output and "init-seed" not in main_log.output
    assert "serving v1" in runner.invoke(app, ["logs", "deploy/echo"]).output
    unknown = runner.invoke(app, ["logs", "deploy/echo", "-c", "nope"])
    assert isinstance(unknown.exception, NotFound) and "container nope is not valid" in str(unknown.exception)


async def test_a_failing_init_container_is_retried_with_backoff_and_the_main_one_waits(
        store: Store, state_dir: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    rt = Runtime(store, state_dir, tick_s=0.05, backoff=BackoffPolicy(initial_s=0.5))
    await rt.start()
    try:
        store.apply([with_inits(trace, "init-ok", "init-db", env=[{"name": "EXIT_init_db", "value": "3"}])],
                    actor="user:test")
        failing = await eventually(lambda: next((p for p in rt.pods() if p["status"] == "Init:CrashLoopBackOff"),
                                                None), what="Init:CrashLoopBackOff")
        assert "init container init-db exited with code 3" in failing["reason"]
        assert "back-off" in failing["reason"] and failing["restarts"] >= 1
        assert set(steps(trace)) == {"init-ok", "init-db"}
        assert steps(trace).count("init-ok") == 1  # a completed init container is not run again
        assert not rt.endpoints() and not failing["isReady"]
        status = rt.deployment_status("default", "echo")
        assert status is not None and status["availableReplicas"] == 0
        # Fixed: the next retry succeeds and the main container starts.
        store.apply([with_inits(trace, "init-ok", "init-db")], actor="user:test")
        await rt.wait_ready([KEY], timeout=20)
        assert [p["status"] for p in rt.pods() if p["status"] != "Terminating"] == ["Running"]
    finally:
        await rt.shutdown_workloads()


async def test_a_restarted_runtime_adopts_a_running_init_container_and_goes_on(
        store: Store, state_dir: Path, tmp_path: Path) -> None:
    trace, gate = tmp_path / "trace", tmp_path / "gate"
    first = Runtime(store, state_dir, tick_s=0.05)
    await first.start()
    store.apply([with_inits(trace, "init-wait", "init-next", env=[{"name": "GATE_init_wait", "value": str(gate)}])],
                actor="user:test")
    waiting = await eventually(lambda: next((p for p in first.pods() if p["status"] == "Init:0/2"), None),
                               what="Init:0/2")
    await first.stop()  # the control plane goes away; the init container runs on
    assert start_ticks(waiting["pid"]) is not None
    second = Runtime(store, state_dir, tick_s=0.05)
    await second.start()
    try:
        (adopted,) = second.pods()
        assert (adopted["name"], adopted["pid"], adopted["status"], adopted["adopted"]) == (
            waiting["name"], waiting["pid"], "Init:0/2", True)
        gate.write_text("0")  # it exits 0 while a runtime that did not start it watches: the exit record says so
        await second.wait_ready([KEY], timeout=20)
        assert steps(trace) == ["init-wait", "init-next"]  # each once
        assert second.pods()[0]["restarts"] == 0
    finally:
        await second.shutdown_workloads()


async def test_an_init_container_no_local_image_runs_is_a_replica_failure(store: Store, runtime: Runtime,
                                                                          tmp_path: Path) -> None:
    body = with_inits(tmp_path / "trace", "init-x")
    body["spec"]["template"]["spec"]["initContainers"][0] = {"name": "init-x", "image": "example.com/migrator:1"}
    store.apply([body], actor="user:test")

    def failure() -> Any:
        status = runtime.deployment_status("default", "echo") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "ReplicaFailure"), None)

    condition = await eventually(failure, what="ReplicaFailure")
    assert condition["reason"] == "ImageNotRunnableLocally"
    assert condition["message"].startswith('init container init-x: no LocalImage matches "example.com/migrator:1"')
    assert runtime.pods()[0]["status"] == "Init:Error"
