"""runJobManifest on the local target with the Job controller's other knobs: `completions`/`parallelism` (NonIndexed
and Indexed), `podFailurePolicy`, `suspend` and `ttlSecondsAfterFinished`. Real processes throughout; pods that
must overlap wait for each other through files, never for a time."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_job_backoff import counter_job, short_backoff  # noqa: F401 (a fixture)
from tests.pipelines.test_job_init_containers import until
from tests.pipelines.test_job_stages import run, stage, start

from graylane.errors import ValidationError
from graylane.pipelines.executor import Executor
from graylane.resources.document import Document, ResourceKey, Source
from graylane.store import Store
from graylane.targets.local_jobs import LocalJobs

# a pod: says it runs (one file per running pod), notes how many ran with it, waits for a second pod to have
# started (or for a release file), then exits with the code its index's turn says (EXITS: "index:attempt:code,...")
POD = """
import os, sys, time
d = os.environ["DIR"]
me = os.environ["POD_NAME"]
index = os.environ.get("JOB_COMPLETION_INDEX", "-")
open(os.path.join(d, "running-" + me), "w").close()
with open(os.path.join(d, "trace"), "a") as f:
    f.write(f"{me} {index} {os.environ.get('ANNOTATED') or '-'} "
            f"{len([n for n in os.listdir(d) if n.startswith('running-')])}\\n")
attempt = 1  # this index's pods in the order they claimed a slot (atomic: pods starting together race on the trace)
while True:
    try:
        os.close(os.open(os.path.join(d, f"slot-{index}-{attempt}"), os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        attempt += 1
print("pod", me, "index", index, "attempt", attempt, "pid", os.getpid(), flush=True)
wait_for = int(os.environ.get("WAIT_FOR", "1"))
for _ in range(400):
    if os.path.exists(os.path.join(d, "release")) or \\
            len([line for line in open(os.path.join(d, "trace"))]) >= wait_for:
        break
    time.sleep(0.05)
code = dict((f"{i}:{a}", int(c)) for i, a, c in (x.split(":") for x in os.environ.get("EXITS", "").split(",") if x))
os.remove(os.path.join(d, "running-" + me))
sys.exit(code.get(f"{index}:{attempt}", 0))
"""


def pod_job(tmp: Path, name: str, *, wait_for: int = 1, exits: str = "", **spec: Any) -> dict[str, Any]:
    tmp.mkdir(exist_ok=True)
    env = [{"name": "DIR", "value": str(tmp)}, {"name": "WAIT_FOR", "value": str(wait_for)},
           {"name": "EXITS", "value": exits},
           {"name": "ANNOTATED", "valueFrom": {"fieldRef": {
               "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    main = {"name": "main", "image": "local", "command": [sys.executable, "-c", POD], "env": env}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": "Never", "containers": [main]}}}}


def trace(tmp: Path) -> list[list[str]]:
    return [line.split() for line in (tmp / "trace").read_text().splitlines()]


def test_completions_run_parallelism_pods_at_once_until_enough_succeeded(tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "work", source="text", propertyFile="main",
              manifest=pod_job(tmp_path / "w", "work", wait_for=2, completions=5, parallelism=2))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        work = done.stage("work")
        assert str(done.status) == "SUCCEEDED", work.context.get("exception")
        status = work.outputs["jobStatus"]
        assert (status["jobState"], status["succeeded"], status["failed"], status["active"]) == ("Succeeded", 5, 0, 0)
        assert [c["type"] for c in status["conditions"]] == ["Complete"]
        ran = trace(tmp_path / "w")
        assert len(ran) == len(status["pods"]) == 5 and len({r[0] for r in ran}) == 5
        assert int(ran[1][3]) == 2  # the first two ran at once (they waited for each other)
        assert all(r[1] == r[2] == "-" for r in ran)  # NonIndexed: no completion index
        assert all(p["status"]["phase"] == "Succeeded" for p in status["pods"])
        assert status["logs"]["main"].startswith(f"pod {status['mostRecentPodName']} ")

    run(tmp_path, scenario)


def test_a_work_queue_job_runs_parallelism_pods_and_none_new_once_one_succeeded(tmp_path: Path,
                                                                                state_dir: Path) -> None:
    # completions unset, parallelism 3: three workers at once; the second fails, the others succeed; the failure
    # is counted but not replaced (a worker succeeded: the queue is empty), and the Job completes
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "queue", source="text",
              manifest=pod_job(tmp_path / "q", "queue", wait_for=3, exits="-:2:1", parallelism=3))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        queue = done.stage("queue")
        assert str(done.status) == "SUCCEEDED", queue.context.get("exception")
        status = queue.outputs["jobStatus"]
        assert (status["jobState"], status["succeeded"], status["failed"], status["active"]) == ("Succeeded", 2, 1, 0)
        ran = trace(tmp_path / "q")
        assert len(ran) == len(status["pods"]) == 3  # no fourth pod
        assert max(int(r[3]) for r in ran) == 3  # the three ran at once

    run(tmp_path, scenario)


def test_indexed_pods_get_their_index_and_a_failed_index_is_retried_alone(tmp_path: Path, state_dir: Path,
                                                                         short_backoff: float) -> None:  # noqa: F811
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "shards", source="text",
              manifest=pod_job(tmp_path / "s", "shards", wait_for=3, exits="1:1:7", completions=3, parallelism=3,
                               completionMode="Indexed", backoffLimit=1))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        shards = done.stage("shards")
        assert str(done.status) == "SUCCEEDED", shards.context.get("exception")
        status = shards.outputs["jobStatus"]
        assert (status["jobState"], status["succeeded"], status["failed"]) == ("Succeeded", 3, 1)
        ran = trace(tmp_path / "s")
        assert sorted(r[1] for r in ran) == ["0", "1", "1", "2"]  # index 1 failed once and ran again
        assert all(r[1] == r[2] for r in ran)  # the annotation says the index the env var says
        assert max(int(r[3]) for r in ran) == 3
        for pod, index in ((r[0], r[1]) for r in ran):
            assert pod.startswith(f"{status['name']}-{index}-")  # the controller's <job>-<index>-<suffix>
        failed = [p for p in status["pods"] if p["status"]["phase"] == "Failed"]
        assert [p["name"] for p in failed] == [r[0] for r in ran if r[1] == "1"][:1]

    run(tmp_path, scenario)


def test_failures_of_parallel_pods_count_against_the_backoff_limit(tmp_path: Path, state_dir: Path,
                                                                   short_backoff: float) -> None:  # noqa: F811
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "work", source="text",
              manifest=pod_job(tmp_path / "w", "work", wait_for=2, exits="-:1:1,-:2:1,-:3:1,-:4:1", completions=4,
                               parallelism=2, backoffLimit=1))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        work = done.stage("work")
        assert str(done.status) == "TERMINAL"
        status = work.context["jobStatus"]
        assert (status["jobState"], status["reason"], status["failed"]) == ("Failed", "BackoffLimitExceeded", 2)
        assert status["conditions"] == [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                         "message": "Job has reached the specified backoff limit"}]
        assert "Reason: BackoffLimitExceeded." in work.context["exception"]["details"]["error"]

    run(tmp_path, scenario)


RULES = {"rules": [{"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
                   {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}}]}
NOT_IN = {"rules": [{"action": "Count", "onExitCodes": {"operator": "In", "values": [1]}},
                    {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1, 3]}}]}


# The Kubernetes docs' example rule first: accepted, and matching no local pod (nothing evicts a local pod).
DISRUPTION = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


@pytest.mark.parametrize(("rules", "index"), [(RULES, 0), ({"rules": [DISRUPTION, *RULES["rules"]]}, 1)])
def test_the_pod_failure_policy_ignores_a_failure_then_fails_the_job_by_exit_code(
        tmp_path: Path, state_dir: Path, short_backoff: float, rules: dict[str, Any],  # noqa: F811
        index: int) -> None:
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "fail", source="text",  # exit 3 ignored (backoffLimit 0), then 42: FailJob
              manifest=pod_job(tmp_path / "f", "fail", exits="-:1:3,-:2:42", backoffLimit=0, podFailurePolicy=rules))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        assert str(done.status) == "TERMINAL"
        fail = done.stage("fail").context["jobStatus"]
        [ignored, failing] = [r[0] for r in trace(tmp_path / "f")]
        message = (f"Container main for pod default/{failing} failed with exit code 42 matching FailJob rule at index "
                   f"{index}")
        assert (fail["jobState"], fail["reason"], fail["message"], fail["failed"]) == (
            "Failed", "PodFailurePolicy", message, 1)  # the ignored pod is not counted, the FailJob one is
        assert [p["name"] for p in fail["pods"]] == [ignored, failing]
        assert fail["completionDetails"]["exitCode"] == 42
        error = done.stage("fail").context["exception"]["details"]["error"]
        assert f"Reason: PodFailurePolicy. Details: {message}." in error

    run(tmp_path, scenario)


def test_the_pod_failure_policy_counts_a_failure_then_fails_the_job_on_a_code_not_in_its_list(
        tmp_path: Path, state_dir: Path, short_backoff: float) -> None:  # noqa: F811
    body = {"application": "shop", "name": "batch", "stages": [
        stage("1", "runJobManifest", "count", source="text",  # exit 1 counted, then 5 (NotIn): FailJob
              manifest=pod_job(tmp_path / "c", "count", exits="-:1:1,-:2:5", backoffLimit=3, podFailurePolicy=NOT_IN))]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        count = done.stage("count").context["jobStatus"]
        [_, second] = [r[0] for r in trace(tmp_path / "c")]
        assert (count["jobState"], count["reason"], count["failed"]) == ("Failed", "PodFailurePolicy", 2)
        assert count["message"] == (f"Container main for pod default/{second} failed with exit code 5 matching "
                                    "FailJob rule at index 1")

    run(tmp_path, scenario)


async def _done(jobs: LocalJobs, key: ResourceKey) -> Any:
    status = jobs.status(key)
    return status if status.state != "Running" else None


def _doc(body: dict[str, Any]) -> Document:
    return Document(body=body, source=Source("<test>", 1, 0))


def refusal(tmp_path: Path, state_dir: Path, manifest: dict[str, Any]) -> str:
    """The message a Job the local target refuses gets; nothing of it may be left in the state folder."""
    name = manifest["metadata"]["name"]

    async def go() -> str:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            with pytest.raises(ValidationError) as refused:
                await LocalJobs(store, state_dir).run(_doc(manifest))
            assert not (state_dir / "jobs" / "default" / name).exists()
            return refused.value.message
        finally:
            store.close()

    return asyncio.run(go())


def test_a_suspended_job_starts_no_pod_and_a_running_one_is_terminated_until_resumed(tmp_path: Path,
                                                                                     state_dir: Path) -> None:
    waiting = tmp_path / "w"

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        jobs = LocalJobs(store, state_dir)
        try:
            key = await jobs.run(_doc(pod_job(tmp_path / "s", "later", suspend=True)))
            status = jobs.status(key)
            assert (status.state, status.pods, status.active) == ("Running", [], 0)
            assert status.conditions == [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                          "message": "Job suspended"}]
            await jobs.run(_doc(pod_job(tmp_path / "s", "later", suspend=False)))  # applied again: resumed
            status = await until(lambda: _done(jobs, key), "the resumed job's end")
            assert (status.state, len(status.pods), status.conditions) == ("Succeeded", 1, [{"type": "Complete",
                                                                                           "status": "True"}])
            idle = await jobs.run(_doc(pod_job(tmp_path / "i", "idle", suspend=True)))
            await jobs.cancel(idle)  # a stage canceled while its job is suspended
            status = await until(lambda: _done(jobs, idle), "the canceled suspended job's end")
            assert (status.state, status.reason, status.message) == ("Failed", "Stopped",
                                                                     "the job was stopped before any pod started")

            key = await jobs.run(_doc(pod_job(waiting, "paused", wait_for=99)))  # waits for its release file
            first = await until(lambda: _pid(jobs, key), "the first pod running")
            await jobs.run(_doc(pod_job(waiting, "paused", wait_for=99, suspend=True)))
            await until(lambda: _async(not os.path.exists(f"/proc/{first}") or None), "the pod terminated")
            status = await until(lambda: _async(s if (s := jobs.status(key)).active == 0 else None), "no pod active")
            assert (status.state, status.failed, len(status.pods)) == ("Running", 0, 1)  # not counted as failed
            assert status.pods[0]["status"]["phase"] == "Failed"
            (waiting / "release").touch()
            await jobs.run(_doc(pod_job(waiting, "paused", wait_for=99, suspend=False)))
            status = await until(lambda: _done(jobs, key), "the job's end after the resume")
            assert (status.state, status.failed, len(status.pods)) == ("Succeeded", 0, 2)
        finally:
            await jobs.stop()
            store.close()

    asyncio.run(go())


async def _pid(jobs: LocalJobs, key: ResourceKey) -> int | None:
    words = jobs.status(key).logs.get("main", "").split()
    return int(words[words.index("pid") + 1]) if "pid" in words else None


async def _async(value: Any) -> Any:
    return value


def test_a_finished_job_is_deleted_ttl_seconds_after_it_finished_even_across_a_restart(tmp_path: Path,
                                                                                        state_dir: Path) -> None:
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            quick = await first.run(_doc(pod_job(tmp_path / "q", "quick", ttlSecondsAfterFinished=0)))
            kept = await first.run(_doc(pod_job(tmp_path / "k", "kept", ttlSecondsAfterFinished=1)))
            folder = state_dir / "jobs" / "default"
            await until(lambda: _async(not (folder / "quick").exists() or None), "the quick job deleted")
            assert first.status(quick).reason == "NotTracked"
            assert (await until(lambda: _done(first, kept), "the kept job's end")).state == "Succeeded"
            await first.stop()  # before its TTL: the next control plane deletes it
            assert (folder / "kept" / "job.json").exists()
            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 0  # nothing to drive, one deletion pending
            await until(lambda: _async(not (folder / "kept").exists() or None), "the kept job deleted")
            assert second.status(kept).reason == "NotTracked"
            await second.stop()
        finally:
            store.close()

    asyncio.run(go())


def test_no_more_than_parallelism_pods_run_and_those_running_when_the_control_plane_stops_are_adopted(
        tmp_path: Path, state_dir: Path) -> None:
    work = tmp_path / "w"

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        try:
            first = LocalJobs(store, state_dir)
            key = await first.run(_doc(pod_job(work, "pair", wait_for=99, completions=3, parallelism=2)))
            await until(lambda: _async(len(trace(work)) == 2 if (work / "trace").exists() else None), "two pods")
            status = first.status(key)  # both run (they wait for the release file), a third is not created
            assert (status.active, len(status.pods), status.succeeded) == (2, 2, 0)
            await first.stop()
            second = LocalJobs(store, state_dir)
            assert await second.adopt_all() == 1
            (work / "release").touch()
            status = await until(lambda: _done(second, key), "the job's end")
            assert (status.state, status.succeeded, status.failed, len(status.pods)) == ("Succeeded", 3, 0, 3)
            assert len(trace(work)) == 3  # the two adopted pods were not run again
        finally:
            store.close()

    asyncio.run(go())


@pytest.mark.parametrize(("spec", "message"), [
    ({"completionMode": "Indexed"}, "spec.completions: Required value: when completion mode is Indexed"),
    ({"parallelism": 101}, "spec.parallelism: Invalid value: 101: must be less than or equal to 100 on the local"),
    ({"completions": -1}, "spec.completions: Invalid value: -1: must be greater than or equal to 0"),
    ({"suspend": "yes"}, 'spec.suspend: Invalid value: "yes": must be true or false'),
    ({"podFailurePolicy": {"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget",
                                                                                 "status": "Maybe"}]}]}},
     'spec.podFailurePolicy.rules[0].onPodConditions[0].status: Unsupported value: "Maybe"'),
    ({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}],
                                      "onExitCodes": {"operator": "In", "values": [1]}}]}},
     "spec.podFailurePolicy.rules[0]: Invalid value: specify one of onExitCodes and onPodConditions, but not both"),
    ({"podFailurePolicy": {"rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]}},
     'spec.podFailurePolicy.rules[0].action: Unsupported value: "Retry"'),
    ({"podFailurePolicy": {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [0]}}]}},
     "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: 0: must not be 0 for the In operator"),
    ({"podFailurePolicy": {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In",
                                                                          "values": list(range(1, 300))}}]}},
     "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [1, 2, 3"),
])
def test_a_job_spec_the_api_server_would_refuse_is_refused_naming_the_field(tmp_path: Path, state_dir: Path,
                                                                            spec: dict[str, Any],
                                                                            message: str) -> None:
    assert refusal(tmp_path, state_dir, pod_job(tmp_path / "b", "bad", **spec)).startswith(
        f"Job default/bad is invalid: {message}")


def test_a_pod_failure_policy_needs_restart_policy_never(tmp_path: Path, state_dir: Path) -> None:
    manifest = counter_job(tmp_path, 0, name="bad", policy="OnFailure", podFailurePolicy={"rules": []})
    assert refusal(tmp_path, state_dir, manifest) == (
        'Job default/bad is invalid: spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is '
        'supported when podFailurePolicy is specified')


def test_a_rule_matches_only_its_container_and_a_signal_reads_as_128_plus_it() -> None:
    from graylane.targets.local_job_policy import match_failure_policy

    rules = [{"action": "Ignore", "containerName": "sidecar", "operator": "In", "values": [1]},
             {"action": "FailJob", "containerName": None, "operator": "In", "values": [137]}]
    assert match_failure_policy(rules, "p", "default", [("main", 1), ("sidecar", 0)]) is None
    assert match_failure_policy(rules, "p", "default", [("main", 0), ("sidecar", 1)]) == (
        "Ignore", "Container sidecar for pod default/p failed with exit code 1 matching Ignore rule at index 0")
    assert match_failure_policy(rules, "p", "default", [("main", -9)]) == (
        "FailJob", "Container main for pod default/p failed with exit code 137 matching FailJob rule at index 1")
