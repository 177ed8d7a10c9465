"""runJobManifest on the local target with the Job controller's per-index back-off (Indexed Jobs):
`backoffLimitPerIndex`, `maxFailedIndexes` and the podFailurePolicy action `FailIndex`. Real processes throughout;
pods that must overlap wait for each other (or a release file) through files, never for a time."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_job_backoff import short_backoff  # noqa: F401 (a fixture)
from tests.pipelines.test_job_init_containers import until
from tests.pipelines.test_job_parallel import _doc, pod_job, refusal, trace
from tests.pipelines.test_job_stages import run, stage, start

from graylane.pipelines.executor import Executor
from graylane.resources.document import ResourceKey
from graylane.store import Store
from graylane.targets.local_job_record import JobRecord
from graylane.targets.local_jobs import LocalJobs

# a pod that notes its index, exits at once with the code NOW gives its index ("index:code,..."), else waits for
# the release file (and succeeds)
GATED = """
import os, sys, time
d = os.environ["DIR"]
index = os.environ["JOB_COMPLETION_INDEX"]
with open(os.path.join(d, "trace"), "a") as f:
    f.write(f"{os.environ['POD_NAME']} {index}\\n")
codes = dict(x.split(":") for x in os.environ.get("NOW", "").split(",") if x)
if index in codes:
    sys.exit(int(codes[index]))
for _ in range(1200):
    if os.path.exists(os.path.join(d, "release")):
        break
    time.sleep(0.05)
"""


def gated_job(tmp: Path, name: str, now: str, **spec: Any) -> dict[str, Any]:
    tmp.mkdir(exist_ok=True)
    env = [{"name": "DIR", "value": str(tmp)}, {"name": "NOW", "value": now}]
    main = {"name": "main", "image": "local", "command": [sys.executable, "-c", GATED], "env": env}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"completionMode": "Indexed", **spec,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [main]}}}}


def test_an_index_past_its_own_limit_fails_alone_and_the_job_fails_with_failed_indexes(
        tmp_path: Path, state_dir: Path, short_backoff: float) -> None:  # noqa: F811
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "shards", source="text",
              manifest=pod_job(tmp_path / "s", "shards", wait_for=3, exits="1:1:1,1:2:1", completions=3,
                               parallelism=3, completionMode="Indexed", backoffLimitPerIndex=1))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        shards = done.stage("shards")
        assert str(done.status) == "TERMINAL"
        status = shards.context["jobStatus"]
        assert (status["jobState"], status["reason"], status["message"]) == ("Failed", "FailedIndexes",
                                                                             "Job has failed indexes")
        assert (status["succeeded"], status["failed"], status["active"]) == (2, 2, 0)
        assert (status["completedIndexes"], status["failedIndexes"]) == ("0,2", "1")
        assert status["conditions"] == [{"type": "Failed", "status": "True", "reason": "FailedIndexes",
                                         "message": "Job has failed indexes"}]
        assert sorted(r[1] for r in trace(tmp_path / "s")) == ["0", "1", "1", "2"]  # index 1 retried once only
        error = shards.context["exception"]["details"]["error"]
        assert "Reason: FailedIndexes. Details: Job has failed indexes." in error

    run(tmp_path, scenario)


def test_more_failed_indexes_than_max_failed_indexes_fail_the_job_at_once(tmp_path: Path, state_dir: Path) -> None:
    # index 1 fails while 0 and 2 wait for a release file that never comes: the Job fails at once and they are
    # terminated
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "shards", source="text",
              manifest=gated_job(tmp_path / "m", "shards", "1:1", completions=3, parallelism=3,
                                 backoffLimitPerIndex=0, maxFailedIndexes=0))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        assert str(done.status) == "TERMINAL"
        status = done.stage("shards").context["jobStatus"]
        assert (status["jobState"], status["reason"], status["message"]) == (
            "Failed", "MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes")
        assert (status["succeeded"], status["failed"], status["failedIndexes"]) == (0, 1, "1")
        assert [r[1] for r in trace(tmp_path / "m")].count("1") == 1  # index 1 not retried
        # the other two were terminated (SIGTERM) while they waited, before or after their first line (or never started)
        assert [p["status"]["phase"] for p in status["pods"]] == ["Failed"] * 3
        codes = {p["name"].split("-")[-2]: p["status"]["containerStatuses"][0]["exitCode"] for p in status["pods"]}
        assert codes["1"] == 1 and {codes["0"], codes["2"]} <= {-15, None}  # None: halted before it started
        assert "Reason: MaxFailedIndexesExceeded." in done.stage("shards").context["exception"]["details"]["error"]

    run(tmp_path, scenario)


FAIL_INDEX = {"rules": [{"action": "FailIndex", "onExitCodes": {"containerName": "main", "operator": "In",
                                                                "values": [42]}}]}


def test_a_fail_index_rule_fails_the_index_without_a_retry(tmp_path: Path, state_dir: Path,
                                                           short_backoff: float) -> None:  # noqa: F811
    # index 0 exits 1 (counted: retried), index 1 exits 42 (FailIndex: failed at once, though its limit is 3)
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "shards", source="text",
              manifest=pod_job(tmp_path / "f", "shards", wait_for=2, exits="0:1:1,1:1:42", completions=2,
                               parallelism=2, completionMode="Indexed", backoffLimitPerIndex=3,
                               podFailurePolicy=FAIL_INDEX))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        assert str(done.status) == "TERMINAL"
        status = done.stage("shards").context["jobStatus"]
        assert (status["jobState"], status["reason"], status["failed"], status["succeeded"]) == (
            "Failed", "FailedIndexes", 2, 1)
        assert (status["completedIndexes"], status["failedIndexes"]) == ("0", "1")
        assert sorted(r[1] for r in trace(tmp_path / "f")) == ["0", "0", "1"]

    run(tmp_path, scenario)


async def _done(jobs: LocalJobs, key: ResourceKey) -> Any:
    status = jobs.status(key)
    return status if status.state != "Running" else None


async def _failed_once(jobs: LocalJobs, key: ResourceKey) -> Any:
    return True if jobs.status(key).failed == 1 else None




def test_a_failed_index_stays_failed_across_a_control_plane_restart(tmp_path: Path, state_dir: Path) -> None:
    work = tmp_path / "r"

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            key = await first.run(_doc(gated_job(work, "shards", "1:1", completions=2, parallelism=2,
                                                 backoffLimitPerIndex=0)))
            await until(lambda: _failed_once(first, key), "index 1 failed")
            assert first.status(key).to_json()["failedIndexes"] == "1"
            await first.stop()
            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 1
            (work / "release").touch()
            status = (await until(lambda: _done(second, key), "the job's end")).to_json()
            assert (status["jobState"], status["reason"], status["completedIndexes"], status["failedIndexes"]) == (
                "Failed", "FailedIndexes", "0", "1")
            assert sorted(r[1] for r in trace(work)) == ["0", "1"]  # the failed index did not run again
        finally:
            store.close()

    asyncio.run(go())


INDEXED = {"completionMode": "Indexed", "completions": 2}


@pytest.mark.parametrize(("spec", "message"), [
    ({"completions": 2, "backoffLimitPerIndex": 1},
     "spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode"),
    ({**INDEXED, "podFailurePolicy": FAIL_INDEX},
     'spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be '
     'set'),
    ({**INDEXED, "maxFailedIndexes": 1},
     "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified"),
    ({**INDEXED, "backoffLimitPerIndex": 1, "maxFailedIndexes": 3},
     "spec.maxFailedIndexes: Invalid value: 3: must be less than or equal to completions"),
    ({**INDEXED, "backoffLimitPerIndex": -1},
     "spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0"),
])
def test_per_index_fields_the_api_server_would_refuse_are_refused_naming_the_field(
        tmp_path: Path, state_dir: Path, spec: dict[str, Any], message: str) -> None:
    assert refusal(tmp_path, state_dir, pod_job(tmp_path / "b", "bad", **spec)) == \
        f"Job default/bad is invalid: {message}"


def test_per_index_needs_restart_policy_never(tmp_path: Path, state_dir: Path) -> None:
    manifest = pod_job(tmp_path / "b", "bad", backoffLimitPerIndex=1, **INDEXED)
    manifest["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert refusal(tmp_path, state_dir, manifest) == (
        'Job default/bad is invalid: spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is '
        'supported when backoffLimitPerIndex is specified')


def test_indexes_read_as_the_job_status_writes_them() -> None:
    from graylane.targets.local_job_record import index_ranges

    assert [index_ranges(x) for x in ([], [1], [5, 3, 4, 1], [0, 1, 2, 7, 9, 10])] == ["", "1", "1,3-5", "0-2,7,9-10"]


def test_the_per_index_state_is_kept_in_the_record() -> None:
    job = JobRecord(ResourceKey("batch", "Job", "default", "j"), 1, {}, {}, "default", indexed=True, completions=4,
                    backoff_limit_per_index=1, max_failed_indexes=2, index_failures={0: 1, 3: 2},
                    index_retry_at_ms={0: 99}, failed_indexes=[3])
    again = JobRecord.from_record(job.record())
    assert (again.backoff_limit_per_index, again.max_failed_indexes, again.index_failures, again.index_retry_at_ms,
            again.failed_indexes) == (1, 2, {0: 1, 3: 2}, {0: 99}, [3])
