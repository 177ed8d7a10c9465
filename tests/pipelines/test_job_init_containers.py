"""runJobManifest on the local target: init containers run first, one after another, each to exit 0; a failing one
fails the pod; and a job's processes are re-adopted by a runner that did not start them (a restarted control
plane), which reports their real outcome. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.pipelines.test_job_stages import run, stage, start
from typer.testing import CliRunner

from graylane.cli.main import app
from graylane.pipelines.executor import Executor
from graylane.resources.document import Document, ResourceKey, Source
from graylane.store import Store
from graylane.targets.local_jobs import LocalJobs

STEP = """
import os, sys, time
name, trace = os.environ["STEP"], os.environ["TRACE"]
with open(trace, "a") as f:
    f.write(name + " start\\n")
print(name, "ran as", os.environ["POD_NAME"], flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
with open(trace, "a") as f:
    f.write(name + " end\\n")
if name == "main":
    print("SPINNAKER_PROPERTY_SEEN=" + ",".join(open(trace).read().split()))
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def container(name: str, trace: Path, *, exit_code: int = 0, sleep: float = 0.0) -> dict[str, Any]:
    return {"name": name, "image": "local", "command": [sys.executable, "-c", STEP],
            "env": [{"name": "STEP", "value": name}, {"name": "TRACE", "value": str(trace)},
                    {"name": "EXIT", "value": str(exit_code)}, {"name": "SLEEP", "value": str(sleep)}]}


def job(inits: list[dict[str, Any]], mains: list[dict[str, Any]], name: str = "migrate") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "initContainers": inits, "containers": mains}}}}


def test_init_containers_run_first_one_after_another_and_their_logs_are_the_stages(
        tmp_path: Path, state_dir: Path) -> None:
    trace = tmp_path / "trace"
    manifest = job([container("init-schema", trace, sleep=0.4), container("init-seed", trace)],
                   [container("main", trace)])
    body = {"application": "shop", "name": "migrate", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifest=manifest, propertyFile="main")]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        migrate = done.stage("migrate")
        assert str(done.status) == "SUCCEEDED", migrate.context.get("exception")
        assert trace.read_text().split("\n")[:-1] == [
            "init-schema start", "init-schema end", "init-seed start", "init-seed end", "main start", "main end"]
        assert migrate.outputs["seen"] == ("init-schema,start,init-schema,end,init-seed,start,init-seed,end,"
                                           "main,start,main,end")  # main saw both init containers' work
        status = migrate.outputs["jobStatus"]
        assert list(status["logs"]) == ["init-schema", "init-seed", "main"]  # per container, init ones first
        pod = status["pods"][0]
        assert all(f"ran as {pod['name']}" in status["logs"][c] for c in status["logs"])  # one pod, its env
        assert [(s["name"], s["exitCode"], s["state"]["terminated"]["reason"])
                for s in pod["status"]["initContainerStatuses"]] == [
            ("init-schema", 0, "Completed"), ("init-seed", 0, "Completed")]
        assert pod["status"]["phase"] == "Succeeded"

    run(tmp_path, scenario)


def test_a_failing_init_container_fails_the_pod_and_the_main_containers_never_start(
        tmp_path: Path, state_dir: Path) -> None:
    trace = tmp_path / "trace"
    manifest = job([container("init-ok", trace), container("init-schema", trace, exit_code=2),
                    container("init-never", trace)], [container("main", trace)])
    body = {"application": "shop", "name": "migrate-bad", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifest=manifest)]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        migrate = done.stage("migrate")
        assert str(done.status) == "TERMINAL"
        pod_name = migrate.context["jobStatus"]["mostRecentPodName"]
        assert migrate.context["exception"]["details"]["error"] == (
            f"Job: '{migrate.context['jobName']}' failed. Reason: BackoffLimitExceeded. "
            "Details: Job has reached the specified backoff limit. "
            f"Additional Details: Pod: '{pod_name}' had errors.\n Container: 'init-schema' exited with code: 2.\n "
            "Status: Error.")
        assert trace.read_text().split() == ["init-ok", "start", "init-ok", "end", "init-schema", "start",
                                             "init-schema", "end"]  # neither the next init nor main ran
        status = migrate.context["jobStatus"]
        assert status["completionDetails"] == {"exitCode": 2, "reason": "BackoffLimitExceeded",
                                               "message": "Job has reached the specified backoff limit"}
        assert list(status["logs"]) == ["init-ok", "init-schema"]
        assert "init-schema ran as" in status["logs"]["init-schema"]
        pod = status["pods"][0]["status"]
        assert pod["phase"] == "Failed"
        assert [(s["name"], s["exitCode"]) for s in pod["initContainerStatuses"]] == [
            ("init-ok", 0), ("init-schema", 2), ("init-never", None)]
        assert pod["initContainerStatuses"][1]["state"]["terminated"]["reason"] == "Error"
        assert pod["containerStatuses"] == [
            {"name": "main", "exitCode": None, "state": {"waiting": {"reason": "PodInitializing"}}, "restartCount": 0}]

    run(tmp_path, scenario)


def test_an_init_container_that_cannot_start_says_so(tmp_path: Path, state_dir: Path) -> None:
    trace = tmp_path / "trace"
    missing = {"name": "init-tool", "image": "local", "command": [str(tmp_path / "no-such-tool")]}
    body = {"application": "shop", "name": "no-tool", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifest=job([missing], [container("main", trace)]))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        status = done.stage("migrate").context["jobStatus"]
        assert status["completionDetails"]["exitCode"] == 128
        assert status["failureDetails"].startswith(
            f"Pod: '{status['mostRecentPodName']}' had errors.\n Container: 'init-tool' exited with code: 128.\n "
            f"Status: StartError.\n Logs: {tmp_path}/no-such-tool")
        init = status["pods"][0]["status"]["initContainerStatuses"][0]["state"]["terminated"]
        assert (init["exitCode"], init["reason"]) == (128, "StartError")
        assert not trace.exists()

    run(tmp_path, scenario)


# --- re-adoption: a runner that did not start the job (a restarted control plane) takes it over ---

WAIT_FOR = """
import os, sys, time
print(os.environ["STEP"], "pid", os.getpid(), flush=True)
while not os.path.exists(os.environ["FLAG"]):
    time.sleep(0.02)
print(os.environ["STEP"], "released", flush=True)
print("SPINNAKER_PROPERTY_DONE=" + os.environ["STEP"])
sys.exit(int(open(os.environ["FLAG"]).read() or 0))
"""


def waiting(name: str, flag: Path) -> dict[str, Any]:
    return {"name": name, "image": "local", "command": [sys.executable, "-c", WAIT_FOR],
            "env": [{"name": "STEP", "value": name}, {"name": "FLAG", "value": str(flag)}]}


async def until(check: Any, what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_restarted_runner_adopts_a_running_job_and_reports_its_real_outcome(
        tmp_path: Path, state_dir: Path) -> None:
    init_flag, main_flag = tmp_path / "init-go", tmp_path / "main-go"
    manifest = job([waiting("init-wait", init_flag)], [waiting("main", main_flag)], name="migrate-x1y2z")
    key = ResourceKey("batch", "Job", "default", "migrate-x1y2z")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=manifest, source=Source("<test>", 1, 0)))
            init_pid = await until(lambda: _pid_in_log(state_dir, "init-wait"), "the init container")
            await first.stop()  # the control plane goes away; the init container runs on

            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 1
            assert (await _status(second, key)).state == "Running"
            init_flag.write_text("0")  # the init container ends: the adopting runner starts main
            main_pid = await until(lambda: _pid_in_log(state_dir, "main"), "main started by the second runner")
            await second.stop()

            third = LocalJobs(store, state_dir)  # adopted lazily, on the first status asked
            status = await _status(third, key)
            assert status.state == "Running"
            main_flag.write_text("3")  # main fails with 3, while a runner that did not start it watches
            status = await until(lambda: _done(third, key), "the job's end")
            assert (status.state, status.exit_code, status.reason) == ("Failed", 3, "BackoffLimitExceeded")
            assert status.failure_details == (f"Pod: '{status.most_recent_pod}' had errors.\n "
                                              "Container: 'main' exited with code: 3.\n Status: Error.")
            assert status.logs["init-wait"].count("init-wait pid") == 1  # the same process throughout, adopted
            assert f"init-wait pid {init_pid}" in status.logs["init-wait"]
            assert f"main pid {main_pid}" in status.logs["main"] and "main released" in status.logs["main"]
            pod = status.pods[0]["status"]
            assert pod["initContainerStatuses"][0]["exitCode"] == 0 and pod["containerStatuses"][0]["exitCode"] == 3
            assert await third.run(Document(body=manifest, source=Source("<test>", 1, 0))) == key  # not run again
            assert (await _status(third, key)).exit_code == 3
        finally:
            store.close()

    asyncio.run(go())


def test_graylane_down_stops_a_running_job_and_the_next_runner_reports_it(tmp_path: Path, state_dir: Path) -> None:
    flag = tmp_path / "never"
    manifest = job([], [waiting("main", flag)], name="orphan-a1b2c")
    key = ResourceKey("batch", "Job", "default", "orphan-a1b2c")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=manifest, source=Source("<test>", 1, 0)))
            await until(lambda: _pid_in_log(state_dir, "main", name="orphan-a1b2c"), "main")
            await first.stop()
            down = await asyncio.to_thread(CliRunner().invoke, app, ["down"])  # no control plane: from the records
            assert "stopped job default/orphan-a1b2c" in down.output, down.output
            second = LocalJobs(store, state_dir)
            status = await until(lambda: _done(second, key), "the job's end")
            assert (status.state, status.exit_code, status.reason) == ("Failed", -15, "Error")  # SIGTERM, recorded
            never = await _status(second, ResourceKey("batch", "Job", "default", "never-run"))
            assert (never.state, never.reason) == ("Failed", "NotTracked")
            assert "no record of job default/never-run" in never.message
        finally:
            store.close()

    asyncio.run(go())


async def _status(jobs: LocalJobs, key: ResourceKey) -> Any:
    return jobs.status(key)


async def _done(jobs: LocalJobs, key: ResourceKey) -> Any:
    status = jobs.status(key)
    return status if status.state != "Running" else None


async def _pid_in_log(state_dir: Path, container: str, name: str = "migrate-x1y2z") -> int | None:
    path = state_dir / "jobs" / "default" / name / f"{container}.log"
    for line in (path.read_text().splitlines() if path.exists() else []):
        if line.startswith(f"{container} pid "):
            pid = int(line.split()[-1])
            assert os.path.exists(f"/proc/{pid}")
            return pid
    return None


def test_a_job_sigkilled_while_no_runner_watched_is_reported_as_lost(tmp_path: Path, state_dir: Path) -> None:
    manifest = job([], [waiting("main", tmp_path / "never")], name="lost-a1b2c")
    key = ResourceKey("batch", "Job", "default", "lost-a1b2c")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=manifest, source=Source("<test>", 1, 0)))
            await until(lambda: _pid_in_log(state_dir, "main", name="lost-a1b2c"), "main")
            await first.stop()
            record = json.loads((state_dir / "jobs" / "default" / "lost-a1b2c" / "job.json").read_text())
            os.killpg(record["pods"][-1]["containers"][0]["pid"], signal.SIGKILL)  # the wrapper too: no exit record
            second = LocalJobs(store, state_dir)
            status = await until(lambda: _done(second, key), "the job's end")
            assert (status.state, status.exit_code, status.reason) == ("Failed", 137, "BackoffLimitExceeded")
            main = status.pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
            assert (main["exitCode"], main["reason"]) == (137, "ContainerStatusUnknown")
            assert main["message"].startswith("it ended while no control plane watched it")
        finally:
            store.close()

    asyncio.run(go())
