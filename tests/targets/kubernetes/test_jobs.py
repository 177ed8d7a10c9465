"""runJobManifest on a Kubernetes account: the Job is created in the cluster and watched until it completes.

The emulator has no Job controller: the test plays it (status and a pod labelled job-name), as a cluster would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kmock
import pytest
from tests.targets.kubernetes.executors import started_executor

from graylane.targets import accounts

pytestmark = [pytest.mark.asyncio]

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "smoke"},
       "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
           {"name": "smoke", "image": "curlimages/curl:8.1", "command": ["curl", "-f", "http://productpage:9080"]}]}}}}


async def _job_created(api: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        jobs = [o.raw for (r, _, _), o in api.objects.items() if r.plural == "jobs" and not o.deleted]
        if jobs:
            return dict(jobs[0])
        await asyncio.sleep(0.05)
    raise AssertionError("no Job was created in the cluster")


async def _finish(api: Any, job: dict[str, Any], *, succeeded: bool) -> None:
    name = job["metadata"]["name"]
    key = (kmock.resource("batch/v1/jobs"), "default", name)
    condition = {"type": "Complete", "status": "True"} if succeeded else \
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{name}-x7k2p", "namespace": "default", "labels": {"job-name": name}},
           "status": {"phase": "Succeeded" if succeeded else "Failed", "containerStatuses": [
               {"name": "smoke", "state": {"terminated": {"exitCode": 0 if succeeded else 22,
                                                          "reason": "Completed" if succeeded else "Error"}}}]}}
    api.objects[kmock.resource("v1/pods"), "default", pod["metadata"]["name"]] = api._stamp(pod, None)
    status = {"succeeded": 1, "conditions": [condition]} if succeeded else {"failed": 1, "conditions": [condition]}
    assert await api._set_status(key, int(job["metadata"]["generation"]), status)


@pytest.mark.parametrize("succeeded", [True, False], ids=["complete", "failed"])
async def test_run_job_manifest_creates_the_job_and_follows_it(cluster: Any, state_dir: Path, tmp_path: Path,
                                                               succeeded: bool) -> None:
    from tests.targets.kubernetes.test_deploy import cluster_role

    from graylane.pipelines.repository import PipelineRepository
    from graylane.pipelines.status import ExecutionStatus as S
    from graylane.pipelines.triggers import start_manual

    cluster.api.tokens["sa-token"] = cluster_role()  # what deploy/rbac.yaml grants an in-cluster Graylane
    accounts.add_account("staging", kubeconfig=cluster.write_kubeconfig(tmp_path / "sa", token="sa-token"),
                         namespace="default")
    run = await started_executor(tmp_path)
    engine, ex = run.engine, run.ex
    try:
        body = {"application": "shop", "name": "smoke", "stages": [
            {"refId": "1", "type": "runJobManifest", "name": "smoke test", "account": "staging",
             "cloudProvider": "kubernetes", "source": "text", "manifest": JOB}]}
        saved = PipelineRepository(engine).save(body, actor="user:alice")
        exe = await start_manual(ex, saved.id, user="alice")
        job = await _job_created(cluster.api)
        assert job["metadata"]["name"].startswith("smoke-") and job["spec"] == JOB["spec"]
        await ex.wait_for_stage(exe.id, "smoke test", {S.RUNNING})
        await _finish(cluster.api, job, succeeded=succeeded)
        done = await ex.wait_until_complete(exe.id, timeout=30)
        stage = done.stage("smoke test")
        status = stage.context["jobStatus"]
        assert status["name"] == job["metadata"]["name"] and status["location"] == "default"
        if succeeded:
            assert str(done.status) == "SUCCEEDED"
            assert status["jobState"] == "Succeeded" and status["completionDetails"]["exitCode"] == 0
        else:
            assert str(done.status) == "TERMINAL"
            assert status["jobState"] == "Failed" and status["completionDetails"]["exitCode"] == 22
            assert stage.context["exception"]["details"]["error"] == (
                f"Job: '{job['metadata']['name']}' failed. Reason: BackoffLimitExceeded. "
                "Details: Job has reached the specified backoff limit. "
                f"Additional Details: Pod: '{job['metadata']['name']}-x7k2p' had errors.\n "
                "Container: 'smoke' exited with code: 22.\n Status: Error.")  # clouddriver's failureDetails
            assert (status["failed"], status["mostRecentPodName"]) == (1, f"{job['metadata']['name']}-x7k2p")
        assert {("batch", "jobs", "create"), ("", "pods", "list")} <= cluster.api.used
    finally:
        await run.close()


async def test_canceling_deletes_the_job_from_the_cluster(cluster: Any, state_dir: Path, tmp_path: Path) -> None:
    from graylane.pipelines.repository import PipelineRepository
    from graylane.pipelines.status import ExecutionStatus as S
    from graylane.pipelines.triggers import start_manual

    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    run = await started_executor(tmp_path)
    engine, ex = run.engine, run.ex
    try:
        body = {"application": "shop", "name": "smoke", "stages": [
            {"refId": "1", "type": "runJobManifest", "name": "smoke test", "account": "staging",
             "source": "text", "manifest": JOB}]}
        saved = PipelineRepository(engine).save(body, actor="user:alice")
        exe = await start_manual(ex, saved.id, user="alice")
        job = await _job_created(cluster.api)
        for _ in range(200):
            if ex.get(exe.id).stage("smoke test").context.get("deploy.jobs"):
                break
            await asyncio.sleep(0.02)
        await ex.cancel(exe.id, user="alice", reason="no need")
        done = await ex.wait_until_complete(exe.id, timeout=30)
        assert done.status == S.CANCELED
        assert cluster.api.object("batch/v1/jobs", "default", job["metadata"]["name"]) is None
    finally:
        await run.close()


async def test_a_failed_init_container_is_the_jobs_exit_code_and_its_log_is_read() -> None:
    from graylane.targets.kubernetes_jobs import status_from

    job = {"metadata": {"name": "migrate", "namespace": "default"},
           "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                   "message": "Job has reached the specified backoff limit"}]}}
    pod = {"metadata": {"name": "migrate-x7k2p"}, "status": {
        "phase": "Failed",
        "initContainerStatuses": [
            {"name": "init-ok", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "init-schema", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
        "containerStatuses": [{"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}}]}}
    status = status_from(job, [pod], {"init-schema": "foo"}, "prod")
    assert (status.state, status.exit_code, status.reason) == ("Failed", 1, "BackoffLimitExceeded")
    assert status.failure_details == ("Pod: 'migrate-x7k2p' had errors.\n Container: 'init-schema' exited with code: "
                                      "1.\n Status: Error.")  # init containers first, as clouddriver reads them


async def test_pods_are_read_oldest_first_the_last_one_says_and_the_first_failed_one_is_detailed() -> None:
    from graylane.targets.kubernetes_jobs import status_from

    job = {"metadata": {"name": "flaky", "namespace": "default"},
           "status": {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                   "message": "Job has reached the specified backoff limit"}]}}

    def pod(name: str, started: str, code: int) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"phase": "Failed", "startTime": started, "containerStatuses": [
            {"name": "main", "state": {"terminated": {"exitCode": code, "reason": "Error", "message": f"m{code}"}}}]}}

    status = status_from(job, [pod("flaky-b", "2024-01-01T00:00:20Z", 4), pod("flaky-a", "2024-01-01T00:00:00Z", 3)],
                         {}, "prod")
    assert (status.exit_code, status.failed, status.most_recent_pod) == (4, 2, "flaky-b")
    assert (status.to_json()["conditions"], status.active, status.succeeded) == (job["status"]["conditions"], 0, 0)
    assert status.failure_details == ("Pod: 'flaky-a' had errors.\n Container: 'main' exited with code: 3.\n "
                                      "Status: Error.\n Logs: m3")
