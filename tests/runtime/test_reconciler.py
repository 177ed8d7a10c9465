"""Deployments become real processes: env, probes, restarts, rolling updates, scale, delete, re-adoption."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from graylane.errors import GraylaneError
from graylane.resources.document import ResourceKey
from graylane.runtime.process import log_path, start_ticks
from graylane.runtime.reconciler import Runtime
from graylane.store import Store

from .conftest import deployment, eventually

pytestmark = pytest.mark.asyncio
KEY = ResourceKey("apps", "Deployment", "default", "echo")


def get(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False).json()


def alive(pid: int) -> bool:
    return start_ticks(pid) is not None


async def test_replicas_run_with_kubernetes_env(store: Store, runtime: Runtime) -> None:
    store.apply([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hello"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
         "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 9080}]}},
        deployment(env=[{"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                        {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "GREETING", "value": "hi from $(POD_NAME)"}]),
    ], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    pods = runtime.pods()
    assert [p["ready"] for p in pods] == ["1/1", "1/1"]
    assert {p["status"] for p in pods} == {"Running"}
    for pod in pods:
        body = get(pod["port"])
        env = body["env"]
        assert body["version"] == "v1"
        assert env["POD_NAME"] == env["HOSTNAME"] == pod["name"]
        assert env["PORT"] == str(pod["port"])
        assert env["HTTP_PROXY"] == f"http://127.0.0.1:{pod['sidecarPort']}"
        assert env["NO_PROXY"] == "localhost,127.0.0.1"
        assert (env["FROM_CM"], env["MY_NS"]) == ("hello", "default")
        assert env["GREETING"] == f"hi from {pod['name']}"
        assert (env["ECHO_SERVICE_HOST"], env["ECHO_SERVICE_PORT"]) == ("echo", "9080")
    status = runtime.deployment_status("default", "echo")
    assert status is not None
    assert (status["readyReplicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2)
    assert {c["type"]: c["reason"] for c in status["conditions"]} == {
        "Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    eps = runtime.endpoints()
    assert sorted(e.port for e in eps) == sorted(p["port"] for p in pods)
    assert all(e.ready and e.labels["version"] == "v1" and e.container_port == 9080 for e in eps)


async def test_killed_replica_leaves_endpoints_and_is_restarted(store: Store, runtime: Runtime,
                                                               state_dir: Path) -> None:
    store.apply([deployment()], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    victim = runtime.pods()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    # Out of the endpoints while it is not ready...
    await eventually(lambda: not any(e.pod == victim["name"] and e.ready for e in runtime.endpoints()),
                     what="killed replica out of endpoints")
    # ...then restarted in place (same pod, same port), ready again.
    pod = await eventually(lambda: next((p for p in runtime.pods() if p["name"] == victim["name"]
                                         and p["restarts"] == 1 and p["isReady"]), None), what="restart")
    assert pod["port"] == victim["port"] and pod["pid"] != victim["pid"]
    assert get(pod["port"])["version"] == "v1"
    previous = log_path(state_dir, "default", victim["name"], previous=True)
    assert "serving v1" in previous.read_text()
    assert "killed by SIGKILL" in pod["lastExit"]


async def test_rolling_update_is_make_before_break(store: Store, runtime: Runtime) -> None:
    store.apply([deployment(replicas=2)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    old_pids = [p["pid"] for p in runtime.pods()]
    store.apply([deployment(version="v2", replicas=2)], actor="user:test")
    seen_available: list[int] = []
    seen_total: list[int] = []

    def sample(_: str, st: dict) -> None:
        seen_available.append(st["availableReplicas"])
        seen_total.append(st["replicas"])

    await runtime.wait_ready([KEY], timeout=30, progress=sample)
    # Default strategy for 2 replicas: maxSurge 1 (25% rounded up), maxUnavailable 0.
    assert min(seen_available) >= 2
    assert max(seen_total) <= 3
    assert {get(p["port"])["version"] for p in runtime.pods() if p["status"] == "Running"} == {"v2"}
    await eventually(lambda: not any(alive(pid) for pid in old_pids), what="old replicas stopped")


async def test_scale_up_down_and_delete(store: Store, runtime: Runtime, state_dir: Path) -> None:
    store.apply([deployment(replicas=1)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    store.apply([deployment(replicas=3)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    assert len(runtime.pods()) == 3
    store.apply([deployment(replicas=1)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    await eventually(lambda: len(runtime.pods()) == 1, what="scale down")
    pids = [p["pid"] for p in runtime.pods()]
    store.delete([KEY], actor="user:test")
    await eventually(lambda: not runtime.pods(), what="pods deleted")
    assert not any(alive(pid) for pid in pids)
    assert not list((state_dir / "runtime" / "pods").glob("*.json"))


async def test_unknown_image_sets_a_condition_and_breaks_nothing_else(store: Store, runtime: Runtime) -> None:
    bad = deployment(name="web")
    # It declares its port: without one (and without a probe) it would be Ready as soon as it runs.
    bad["spec"]["template"]["spec"]["containers"][0] = {"name": "web", "image": "nginx:1.25",
                                                         "ports": [{"containerPort": 80}]}
    store.apply([bad, deployment()], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    status = await eventually(lambda: runtime.deployment_status("default", "web"), what="web status")
    failure = next(c for c in status["conditions"] if c["type"] == "ReplicaFailure")
    assert failure["reason"] == "ImageNotRunnableLocally"
    assert failure["message"] == 'no LocalImage matches "nginx:1.25"; add one with graylane apply'
    with pytest.raises(GraylaneError, match='Deployment default/web: ImageNotRunnableLocally: no LocalImage matches'):
        await runtime.wait_ready([ResourceKey("apps", "Deployment", "default", "web")], timeout=5)
    # Applying a LocalImage for it makes it runnable.
    store.apply([{"apiVersion": "graylane.io/v1alpha1", "kind": "LocalImage", "metadata": {"name": "nginx"},
                  "spec": {"image": "nginx:*", "command": [sys.executable, str(Path(__file__).with_name("echo_app.py")),
                                                           "nginx"]}}], actor="user:test")
    await runtime.wait_ready([ResourceKey("apps", "Deployment", "default", "web")], timeout=20)
    web = [p for p in runtime.pods() if p["deployment"] == "web"]
    assert web and get(web[0]["port"])["version"] == "nginx"


async def test_restarted_runtime_adopts_healthy_replicas(store: Store, state_dir: Path) -> None:
    first = Runtime(store, state_dir, tick_s=0.05)
    await first.start()
    store.apply([deployment()], actor="user:test")
    await first.wait_ready([KEY], timeout=20)
    before = {p["name"]: p["pid"] for p in first.pods()}
    await first.stop()  # the control plane goes away; replicas keep running
    assert all(alive(pid) for pid in before.values())
    second = Runtime(store, state_dir, tick_s=0.05)
    await second.start()
    try:
        await second.wait_ready([KEY], timeout=20)
        after = {p["name"]: (p["pid"], p["restarts"], p["adopted"]) for p in second.pods()}
        assert after == {name: (pid, 0, True) for name, pid in before.items()}
    finally:
        await second.shutdown_workloads()
    assert not any(alive(pid) for pid in before.values())


async def test_liveness_failure_restarts_the_container(store: Store, runtime: Runtime, tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    store.apply([deployment(replicas=1, env=[{"name": "UNHEALTHY_FILE", "value": str(flag)}],
                            livenessProbe={"httpGet": {"path": "/healthz", "port": 9080}, "periodSeconds": 1,
                                           "initialDelaySeconds": 2,
                                           "failureThreshold": 1})], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    flag.write_text("1")
    await eventually(lambda: runtime.pods()[0]["restarts"] >= 1, what="liveness restart")
    flag.unlink()
    await eventually(lambda: runtime.pods()[0]["isReady"], what="ready after restart")


async def test_crash_loop_backs_off(store: Store, runtime: Runtime) -> None:
    crashing = deployment(replicas=1, command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    store.apply([crashing], actor="user:test")
    pod = await eventually(lambda: next((p for p in runtime.pods() if p["status"] == "CrashLoopBackOff"), None),
                           what="CrashLoopBackOff")
    assert pod["restarts"] == 1  # the first restart is immediate, the next waits 10 s
    assert "back-off 10s" in pod["reason"] and "exited with code 3" in pod["reason"]


async def test_records_are_json_in_the_state_folder(store: Store, runtime: Runtime, state_dir: Path) -> None:
    store.apply([deployment(replicas=1)], actor="user:test")
    await runtime.wait_ready([KEY], timeout=20)
    (record,) = [json.loads(p.read_text()) for p in (state_dir / "runtime" / "pods").glob("*.json")]
    pod = runtime.pods()[0]
    assert (record["name"], record["pid"], record["port"]) == (pod["name"], pod["pid"], pod["port"])
    assert record["template_hash"] == pod["labels"]["pod-template-hash"]




async def test_delete_sends_sigterm_then_sigkill_after_the_grace_period(store: Store, runtime: Runtime,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    stubborn = deployment(replicas=1, env=[{"name": "IGNORE_SIGTERM", "value": "1"}])
    stubborn["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    polite = deployment(name="polite", replicas=1)
    store.apply([stubborn, polite], actor="user:test")
    await runtime.wait_ready([KEY, ResourceKey("apps", "Deployment", "default", "polite")], timeout=20)
    pids = [p["pid"] for p in runtime.pods()]
    with caplog.at_level("INFO", logger="graylane.runtime.reconciler"):
        store.delete([KEY, ResourceKey("apps", "Deployment", "default", "polite")], actor="user:test")
        await eventually(lambda: not runtime.pods(), what="pods gone")
    assert not any(alive(pid) for pid in pids)
    stopped = [r.getMessage() for r in caplog.records if "stopped (" in r.getMessage()]
    assert any("echo-" in m and "killed by SIGKILL" in m for m in stopped), stopped
    assert any("polite-" in m and "exited with code 0" in m for m in stopped), stopped
