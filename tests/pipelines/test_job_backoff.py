"""runJobManifest on the local target follows the Job controller: a failed pod is followed by a new pod after an
exponential back-off until `backoffLimit` is exceeded (`BackoffLimitExceeded`), `activeDeadlineSeconds` ends the
job (`DeadlineExceeded`), `restartPolicy: OnFailure` restarts a container in place; a pending retry and a running
deadline survive a control-plane restart. Real processes throughout, with a short back-off
(`GRAYLANE_JOB_BACKOFF_S`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_job_init_containers import until
from tests.pipelines.test_job_stages import run, stage, start
from typer.testing import CliRunner

from graylane.cli.main import app
from graylane.errors import ValidationError
from graylane.pipelines.executor import Executor
from graylane.resources.document import Document, ResourceKey, Source
from graylane.store import Store
from graylane.targets.local_job_record import pod_backoff_s
from graylane.targets.local_jobs import LocalJobs

COUNTER = """
import os, sys, time
path = os.environ["COUNTER"]
n = int(open(path).read()) + 1 if os.path.exists(path) else 1
open(path, "w").write(str(n))
with open(path + ".starts", "a") as f:
    f.write(f"{time.time()} {os.environ['POD_NAME']}\\n")
print("attempt", n, "as", os.environ["POD_NAME"], "pid", os.getpid(), flush=True)
print("SPINNAKER_PROPERTY_ATTEMPT=" + str(n))
sys.exit(0 if n > int(os.environ["FAILURES"]) else 1)
"""
TRACE = "import os; open(os.environ['TRACE'], 'a').write(os.environ['POD_NAME'] + '\\n')"
SLEEPER = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)"


def counter_job(tmp_path: Path, failures: int, *, name: str = "flaky", policy: str = "Never",
                **spec: Any) -> dict[str, Any]:
    main = {"name": "main", "image": "local", "command": [sys.executable, "-c", COUNTER],
            "env": [{"name": "COUNTER", "value": str(tmp_path / "counter")},
                    {"name": "FAILURES", "value": str(failures)}]}
    init = {"name": "init", "image": "local", "command": [sys.executable, "-c", TRACE],
            "env": [{"name": "TRACE", "value": str(tmp_path / "inits")}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": policy, "initContainers": [init],
                                                   "containers": [main]}}}}


def sleeper_job(name: str = "slow", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "local", "command": [sys.executable, "-c", SLEEPER]}]}}}}


def starts(tmp_path: Path) -> list[tuple[float, str]]:
    lines = (tmp_path / "counter.starts").read_text().splitlines()
    return [(float(t), pod) for t, pod in (line.split() for line in lines)]


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("GRAYLANE_JOB_BACKOFF_S", "0.2")
    return 0.2


def test_the_pod_back_off_doubles_up_to_six_minutes() -> None:
    assert [pod_backoff_s(n, 10.0) for n in (1, 2, 3, 4, 5, 6, 7, 9)] == [10, 20, 40, 80, 160, 320, 360, 360]


def test_a_failed_pod_is_followed_by_new_pods_until_one_succeeds(tmp_path: Path, state_dir: Path,
                                                                  short_backoff: float) -> None:
    body = {"application": "shop", "name": "flaky", "stages": [
        stage("1", "runJobManifest", "flaky", source="text", manifest=counter_job(tmp_path, 2, backoffLimit=2),
              propertyFile="main")]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        flaky = done.stage("flaky")
        assert str(done.status) == "SUCCEEDED", flaky.context.get("exception")
        status = flaky.outputs["jobStatus"]
        assert (status["jobState"], status["failed"], flaky.outputs["attempt"]) == ("Succeeded", 2, "3")
        pods = [p["name"] for p in status["pods"]]
        assert len(set(pods)) == 3 and status["mostRecentPodName"] == pods[-1]
        assert [p["status"]["phase"] for p in status["pods"]] == ["Failed", "Failed", "Succeeded"]
        # each pod is a fresh run of the init containers and containers, under its own name
        assert (tmp_path / "inits").read_text().split() == pods
        ran = starts(tmp_path)
        assert [pod for _, pod in ran] == pods
        assert ran[1][0] - ran[0][0] >= short_backoff and ran[2][0] - ran[1][0] >= 2 * short_backoff  # 1x, then 2x
        assert status["logs"]["main"].startswith(f"attempt 3 as {pods[2]}")  # the last pod's logs
        folder = state_dir / "jobs" / "default" / status["name"]
        assert (folder / pods[0] / "main.log").read_text().startswith(f"attempt 1 as {pods[0]}")  # kept per pod

    run(tmp_path, scenario)


def test_failures_beyond_the_backoff_limit_fail_the_job(tmp_path: Path, state_dir: Path, short_backoff: float) -> None:
    body = {"application": "shop", "name": "flaky", "stages": [
        stage("1", "runJobManifest", "flaky", source="text", manifest=counter_job(tmp_path, 2, backoffLimit=1))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        flaky = done.stage("flaky")
        assert str(done.status) == "TERMINAL"
        status = flaky.context["jobStatus"]
        assert (tmp_path / "counter").read_text() == "2"  # two pods failed; no third one
        assert status["failed"] == 2 and len(status["pods"]) == 2
        assert status["completionDetails"] == {"exitCode": 1, "reason": "BackoffLimitExceeded",
                                               "message": "Job has reached the specified backoff limit"}
        first = status["pods"][0]["name"]
        assert flaky.context["exception"]["details"]["error"] == (
            f"Job: '{flaky.context['jobName']}' failed. Reason: BackoffLimitExceeded. Details: Job has reached the "
            f"specified backoff limit. Additional Details: Pod: '{first}' had errors.\n "
            "Container: 'main' exited with code: 1.\n Status: Error.")  # clouddriver: the first failed pod
        assert status["logs"]["main"].startswith(f"attempt 2 as {status['mostRecentPodName']}")

    run(tmp_path, scenario)


def test_a_job_active_longer_than_its_deadline_is_terminated(tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "slow", "stages": [
        stage("1", "runJobManifest", "slow", source="text", manifest=sleeper_job(activeDeadlineSeconds=1))]}

    async def scenario(ex: Executor, store: Store) -> None:
        began = time.monotonic()
        done = await start(ex, body)
        assert time.monotonic() - began < 6
        slow = done.stage("slow")
        assert str(done.status) == "TERMINAL"
        status = slow.context["jobStatus"]
        assert (status["jobState"], status["reason"], status["message"]) == (
            "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        assert status["completionDetails"]["exitCode"] == -15  # SIGTERM
        assert slow.context["exception"]["details"]["error"].startswith(
            f"Job: '{slow.context['jobName']}' failed. Reason: DeadlineExceeded. "
            "Details: Job was active longer than specified deadline.")
        pid = int(status["logs"]["main"].split()[1])
        assert not os.path.exists(f"/proc/{pid}")

    run(tmp_path, scenario)


def test_on_failure_restarts_the_container_in_place_counted_against_the_limit(
        tmp_path: Path, state_dir: Path, short_backoff: float) -> None:
    body = {"application": "shop", "name": "flaky", "stages": [
        stage("1", "runJobManifest", "ok", source="text",
              manifest=counter_job(tmp_path / "a", 2, name="ok", policy="OnFailure", backoffLimit=3)),
        stage("2", "runJobManifest", "over", ("1",), source="text",  # after "ok": its failure would cancel "ok"
              manifest=counter_job(tmp_path / "b", 2, name="over", policy="OnFailure", backoffLimit=2))]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        ok = done.stage("ok").outputs["jobStatus"]
        assert ok["jobState"] == "Succeeded" and ok["failed"] == 2
        [pod] = ok["pods"]  # one pod throughout; its init container ran once
        assert (tmp_path / "a" / "inits").read_text().split() == [pod["name"]]
        [main] = pod["status"]["containerStatuses"]
        assert (main["restartCount"], main["lastState"]["terminated"]["exitCode"]) == (2, 1)
        assert {p for _, p in starts(tmp_path / "a")} == {pod["name"]}
        assert ok["logs"]["main"].startswith("attempt 3")
        folder = state_dir / "jobs" / "default" / ok["name"]
        assert (folder / "main.previous.log").read_text().startswith("attempt 2")
        over = done.stage("over").context["jobStatus"]  # failed runs reaching the limit fail the job
        assert (over["jobState"], over["reason"], over["failed"]) == ("Failed", "BackoffLimitExceeded", 2)
        assert (tmp_path / "b" / "counter").read_text() == "2"

    run(tmp_path, scenario)


# --- the job runner itself: a control plane restarted during a back-off or a deadline, cancel, refusals ---

async def _done(jobs: LocalJobs, key: ResourceKey) -> Any:
    status = jobs.status(key)
    return status if status.state != "Running" else None


def _record(state_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((state_dir / "jobs" / "default" / name / "job.json").read_text())  # type: ignore[no-any-return]


def test_a_pending_retry_survives_a_control_plane_restart(tmp_path: Path, state_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_JOB_BACKOFF_S", "1.5")
    manifest = counter_job(tmp_path, 1, name="retry-a1b2c", backoffLimit=3)
    key = ResourceKey("batch", "Job", "default", "retry-a1b2c")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=manifest, source=Source("<test>", 1, 0)))
            retry_at = await until(lambda: _async(_record(state_dir, "retry-a1b2c")["retry_at_ms"]), "the retry")
            await first.stop()  # the control plane goes away while the retry is pending
            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 1
            assert (await _async(second.status(key))).state == "Running"
            status = await until(lambda: _done(second, key), "the job's end")
            assert (status.state, status.failed, len(status.pods)) == ("Succeeded", 1, 2)
            ran = starts(tmp_path)
            assert len(ran) == 2 and ran[1][0] >= retry_at / 1000  # not started before its time
        finally:
            store.close()

    asyncio.run(go())


def test_a_deadline_survives_a_control_plane_restart(tmp_path: Path, state_dir: Path) -> None:
    key = ResourceKey("batch", "Job", "default", "slow-a1b2c")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=sleeper_job("slow-a1b2c", activeDeadlineSeconds=2),
                                     source=Source("<test>", 1, 0)))
            await first.stop()
            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 1
            status = await until(lambda: _done(second, key), "the deadline")
            assert (status.reason, status.exit_code) == ("DeadlineExceeded", -15)
            elapsed = time.time() - _record(state_dir, "slow-a1b2c")["created_ms"] / 1000
            assert 2 <= elapsed < 6
            assert not os.path.exists(f"/proc/{int(status.logs['main'].split()[1])}")
        finally:
            store.close()

    asyncio.run(go())


def test_a_deadline_or_a_cancel_during_the_back_off_ends_the_job_with_no_new_pod(
        tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_JOB_BACKOFF_S", "30")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            jobs = LocalJobs(store, state_dir)
            (tmp_path / "d").mkdir()
            (tmp_path / "c").mkdir()
            began = time.monotonic()
            deadline = ResourceKey("batch", "Job", "default", "dl")
            canceled = ResourceKey("batch", "Job", "default", "cx")
            # 4 s: the first pod (an init and a main process) must have failed before the deadline, so that the
            # deadline falls in the 30 s back-off; 1 s raced the two process starts on a loaded machine (CI).
            await jobs.run(Document(body=counter_job(tmp_path / "d", 5, name="dl", activeDeadlineSeconds=4),
                                    source=Source("<test>", 1, 0)))
            await jobs.run(Document(body=counter_job(tmp_path / "c", 5, name="cx"), source=Source("<test>", 1, 0)))
            await until(lambda: _async(_record(state_dir, "cx")["retry_at_ms"]), "the retry")
            await jobs.cancel(canceled)
            stopped = await until(lambda: _done(jobs, canceled), "the canceled job's end")
            assert (stopped.reason, stopped.exit_code, len(stopped.pods)) == ("Error", 1, 1)
            ended = await until(lambda: _done(jobs, deadline), "the deadline")
            assert (ended.reason, ended.exit_code, ended.failed, len(ended.pods)) == ("DeadlineExceeded", 1, 1, 1)
            assert time.monotonic() - began < 12  # the deadline (4 s), not the back-off (30 s), ended it
            assert (tmp_path / "d" / "counter").read_text() == (tmp_path / "c" / "counter").read_text() == "1"
        finally:
            await jobs.stop()
            store.close()

    asyncio.run(go())


def test_graylane_down_during_the_back_off_stops_the_job_for_good(tmp_path: Path, state_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_JOB_BACKOFF_S", "30")
    key = ResourceKey("batch", "Job", "default", "down-a1b2c")

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            await first.run(Document(body=counter_job(tmp_path, 5, name="down-a1b2c"), source=Source("<test>", 1, 0)))
            await until(lambda: _async(_record(state_dir, "down-a1b2c")["retry_at_ms"]), "the retry")
            await first.stop()
            down = await asyncio.to_thread(CliRunner().invoke, app, ["down"])  # no control plane: from the records
            assert "stopped job default/down-a1b2c" in down.output, down.output
            second = LocalJobs(store, state_dir)
            status = await until(lambda: _done(second, key), "the job's end")
            assert (status.state, status.reason, status.failed, len(status.pods)) == ("Failed", "Error", 1, 1)
            assert (tmp_path / "counter").read_text() == "1"  # the retry never ran
        finally:
            store.close()

    asyncio.run(go())


@pytest.mark.parametrize(("spec", "message"), [
    ({"backoffLimit": -1}, "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"),
    ({"activeDeadlineSeconds": "10"},
     'spec.activeDeadlineSeconds: Invalid value: "10": must be greater than or equal to 0'),
    ({"restartPolicy": "Always"},
     'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'),
])
def test_a_job_the_api_server_would_refuse_is_refused(tmp_path: Path, state_dir: Path, spec: dict[str, Any],
                                                     message: str) -> None:
    manifest = sleeper_job("bad", **{k: v for k, v in spec.items() if k != "restartPolicy"})
    if "restartPolicy" in spec:
        manifest["spec"]["template"]["spec"]["restartPolicy"] = spec["restartPolicy"]

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            with pytest.raises(ValidationError) as refused:
                await LocalJobs(store, state_dir).run(Document(body=manifest, source=Source("<test>", 1, 0)))
            assert refused.value.message == f"Job default/bad is invalid: {message}"
            assert not (state_dir / "jobs" / "default" / "bad").exists()
        finally:
            store.close()

    asyncio.run(go())


async def _async(value: Any) -> Any:
    return value


def test_a_record_from_before_retries_reads_as_one_pod_run_once() -> None:
    from graylane.targets.local_job_record import JobRecord

    old = {"namespace": "default", "name": "m-1a2b3", "pod": "m-1a2b3-abcde", "created_ms": 1, "template": {},
           "labels": {"job-name": "m-1a2b3"}, "service_account": "default", "sidecar_port": 4000, "stopped": False,
           "finished": False, "containers": [{"name": "main", "init": False, "pid": 0, "ticks": 0, "exit_code": 3,
                                              "reason": "", "message": ""}]}
    job = JobRecord.from_record(old)
    assert (job.backoff_limit, job.active_deadline_s, job.restart_policy, job.failed) == (0, None, "Never", 0)
    assert [(p.name, p.sidecar_port, [c.exit_code for c in p.containers]) for p in job.pods] == [
        ("m-1a2b3-abcde", 4000, [3])]
    again = JobRecord.from_record(json.loads(json.dumps(job.record())))
    assert again.record() == job.record()
