"""runJobManifest on the local target (containers as processes with the pod's env), findArtifactFromExecution
and findArtifactsFromResource, through the executor over a real store."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from graylane.pipelines.executor import Executor
from graylane.pipelines.services import TaskServices
from graylane.pipelines.stages.run_job_manifest import properties_from_log
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import Document, ResourceKey, Source
from graylane.store import Store
from graylane.targets.local import LocalTarget

CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "db", "namespace": "default"},
          "data": {"url": "postgres://db:5432/shop"}}
SCRIPT = """
import os, sys
print("migrating", os.environ["DB_URL"], "as", os.environ["POD_NAMESPACE"])
print("SPINNAKER_PROPERTY_SCHEMA_VERSION=42")
print('SPINNAKER_CONFIG_JSON={"tables": ["a", "b"]}')
sys.exit(int(os.environ.get("EXIT", "0")))
"""


def job(exit_code: int = 0) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "migrate", "image": "local", "command": [sys.executable, "-c", SCRIPT],
                "env": [{"name": "EXIT", "value": str(exit_code)},
                        {"name": "DB_URL", "valueFrom": {"configMapKeyRef": {"name": "db", "key": "url"}}}]}]}}}}


def stage(ref: str, stype: str, name: str, requires: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    return {"refId": ref, "type": stype, "name": name, "requisiteStageRefIds": list(requires), **fields}


def run(tmp_path: Path, scenario: Any) -> Any:
    async def go() -> Any:
        store = Store.open(f"sqlite:///{tmp_path / 'j.db'}")
        store.apply([Document(body=CONFIG, source=Source("<test>", 1, 0))], actor="user:ops")
        target = LocalTarget(store)

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            return target

        ex = Executor(store.engine, services=TaskServices(get_target=get_target))
        await ex.start()
        try:
            return await scenario(ex, store)
        finally:
            await ex.stop()
            store.close()

    return asyncio.run(go())


async def start(ex: Executor, body: dict[str, Any], **trigger: Any) -> Any:
    config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
    full = build_trigger(config, {"type": "manual", "user": "t", **trigger}, ex)
    exe = await ex.start_execution(config, full, user="t")
    return await ex.wait_until_complete(exe.id, timeout=60)


def test_properties_are_read_as_clouddrivers_property_parser_reads_them() -> None:
    text = ("noise\nSPINNAKER_PROPERTY_IMAGE_TAG=v3\r\n  SPINNAKER_PROPERTY_Ok=yes=no\n"
            "SPINNAKER_CONFIG_JSON={\"n\": 1}\n")
    assert properties_from_log(text) == {"image_tag": "v3", "ok": "yes=no", "n": 1}


def test_run_job_runs_the_container_with_the_pods_env_and_outputs_status_logs_and_properties(
        tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "migrate", "stages": [
        stage("1", "runJobManifest", "migrate", account="local", source="text", manifest=job(),
              propertyFile="migrate"),
        stage("2", "evaluateVariables", "read", ("1",), variables=[
            {"key": "schema", "value": "${#stage('migrate')['outputs']['schema_version']}"},
            {"key": "state", "value": "${#stage('migrate')['context']['jobStatus']['jobState']}"},
            {"key": "code", "value": "${#stage('migrate')['context']['jobStatus']['completionDetails']['exitCode']}"},
            {"key": "tables", "value": "${#stage('migrate')['outputs']['tables'].size()}"}])]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        assert done.status == S.SUCCEEDED, [s.context.get("exception") for s in done.stages]
        migrate = done.stage("migrate")
        status = migrate.outputs["jobStatus"]
        assert status["jobState"] == "Succeeded" and status["completionDetails"]["exitCode"] == 0
        assert status["name"].startswith("migrate-") and status["location"] == "default"
        assert "migrating postgres://db:5432/shop as default" in status["logs"]["migrate"]  # the pod's env
        assert migrate.outputs["propertyFileContents"] == {"schema_version": "42", "tables": ["a", "b"]}
        read = done.stage("read").outputs
        assert (read["schema"], read["state"], str(read["code"]), str(read["tables"])) == ("42", "Succeeded", "0", "2")
        assert migrate.context["deploy.jobs"] == {"default": [f"job {status['name']}"]}

    run(tmp_path, scenario)


def test_a_failing_job_fails_the_stage_with_its_exit_code_and_follows_failure_options(
        tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "migrate-bad", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifest=job(exit_code=3), propertyFile="migrate",
              failPipeline=False, continuePipeline=True),
        stage("2", "wait", "after", ("1",), waitTime=0)]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        migrate = done.stage("migrate")
        assert (str(migrate.status), str(done.status), str(done.stage("after").status)) == (
            "FAILED_CONTINUE", "SUCCEEDED", "SUCCEEDED")
        error = migrate.context["exception"]["details"]["error"]
        pod = migrate.context["jobStatus"]["mostRecentPodName"]
        assert error == (f"Job: '{migrate.context['jobName']}' failed. Reason: BackoffLimitExceeded. "  # backoffLimit 0
                         "Details: Job has reached the specified backoff limit. "
                         f"Additional Details: Pod: '{pod}' had errors.\n Container: 'migrate' exited with code: 3.\n "
                         "Status: Error.")  # orca's message, clouddriver's failureDetails
        assert migrate.context["jobStatus"]["completionDetails"]["exitCode"] == 3
        assert migrate.context["jobStatus"]["failed"] == 1
        assert migrate.context["propertyFileContents"]["schema_version"] == "42"  # read from failed jobs too

    run(tmp_path, scenario)


def test_run_job_refuses_anything_but_one_job(tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "not-a-job", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifests=[CONFIG])]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        assert done.status == S.TERMINAL
        error = done.stage("migrate").context["exception"]["details"]["error"]
        assert "Run Job only supports manifests with a single Job (found: ConfigMap)" in error

    run(tmp_path, scenario)


IMAGE = "docker.io/istio/examples-bookinfo-reviews-v2:1.20.3"
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v2", "namespace": "default"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reviews"}},
                   "template": {"metadata": {"labels": {"app": "reviews"}}, "spec": {
                       "containers": [{"name": "reviews", "image": IMAGE,
                                       "envFrom": [{"configMapRef": {"name": "db"}}]}],
                       "volumes": [{"name": "s", "secret": {"secretName": "tls"}}]}}}}


def test_find_artifacts_from_resource_then_from_execution(tmp_path: Path, state_dir: Path) -> None:
    producer = {"application": "shop", "name": "producer", "stages": [
        stage("1", "findArtifactsFromResource", "what runs", manifestName="deployment reviews-v2",
              location="default")]}
    consumer = {"application": "shop", "name": "consumer", "stages": [
        stage("1", "findArtifactFromExecution", "last image", application="shop", pipeline="producer",
              executionOptions={"successful": True},
              expectedArtifacts=[{"id": "img", "matchArtifact": {"type": "docker/image", "name": ".*reviews-v2"}}]),
        stage("2", "findArtifactFromExecution", "missing", ("1",), application="shop", pipeline="producer",
              executionOptions={"successful": True}, failPipeline=False,
              expectedArtifacts=[{"id": "x", "matchArtifact": {"type": "docker/image", "name": "nginx"}}])]}

    async def scenario(ex: Executor, store: Store) -> None:
        store.apply([Document(body=DEPLOY, source=Source("<test>", 1, 0))], actor="user:ops")
        produced = await start(ex, producer)
        assert produced.status == S.SUCCEEDED, produced.stage("what runs").context.get("exception")
        arts = produced.stage("what runs").outputs["artifacts"]
        assert arts == [
            {"type": "docker/image", "name": "docker.io/istio/examples-bookinfo-reviews-v2", "reference": IMAGE,
             "version": "1.20.3"},
            {"type": "kubernetes/secret", "name": "tls", "reference": "tls", "location": "default"},
            {"type": "kubernetes/configMap", "name": "db", "reference": "db", "location": "default"}]
        consumed = await start(ex, consumer)
        found = consumed.stage("last image")
        assert found.status == S.SUCCEEDED
        assert found.outputs["artifacts"] == [arts[0]]
        assert found.outputs["resolvedExpectedArtifacts"][0]["boundArtifact"]["reference"] == IMAGE
        missing = consumed.stage("missing")
        assert missing.status == S.STOPPED
        assert "Unmatched expected artifact 'x'" in missing.context["exception"]["details"]["error"]

    run(tmp_path, scenario)


def test_canceling_the_execution_stops_the_jobs_process(tmp_path: Path, state_dir: Path) -> None:
    sleeper = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "long"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                   "name": "main", "image": "local",
                   "command": [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]}]}}}}
    body = {"application": "shop", "name": "long", "stages": [
        stage("1", "runJobManifest", "long job", source="text", manifest=sleeper)]}

    async def scenario(ex: Executor, store: Store) -> None:
        config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
        exe = await ex.start_execution(config, build_trigger(config, {"type": "manual", "user": "t"}, ex), user="t")
        for _ in range(500):
            running = ex.get(exe.id).stage("long job")
            if running is not None and running.context.get("deploy.jobs"):
                break
            await asyncio.sleep(0.02)
        await ex.cancel(exe.id, user="t", reason="enough")
        done = await ex.wait_until_complete(exe.id, timeout=30)
        assert str(done.status) == "CANCELED"
        target = await ex.services.target("local")
        key = ResourceKey("batch", "Job", "default", str(done.stage("long job").context["jobName"]))
        for _ in range(250):
            status = await target.job_status(key)
            if status.state != "Running":
                break
            await asyncio.sleep(0.02)
        assert status.state == "Failed" and status.exit_code == -15  # SIGTERM, as a deleted Job's pod gets

    run(tmp_path, scenario)


def test_restarting_the_stage_runs_a_new_job(tmp_path: Path, state_dir: Path) -> None:
    body = {"application": "shop", "name": "again", "stages": [
        stage("1", "runJobManifest", "migrate", source="text", manifest=job(exit_code=3), propertyFile="migrate")]}

    async def scenario(ex: Executor, store: Store) -> None:
        first = await start(ex, body)
        assert str(first.status) == "TERMINAL"
        name = first.stage("migrate").context["jobName"]
        await ex.restart_stage(first.id, "migrate", user="t")
        again = await ex.wait_until_complete(first.id, timeout=60)
        renamed = again.stage("migrate").context["jobName"]
        assert renamed != name and renamed.startswith("migrate-")
        assert again.stage("migrate").context["jobStatus"]["completionDetails"]["exitCode"] == 3  # it ran again

    run(tmp_path, scenario)


def test_a_job_that_outlives_the_stage_timeout_is_stopped(tmp_path: Path, state_dir: Path) -> None:
    sleeper = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "slow"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
                   "name": "main", "image": "local",
                   "command": [sys.executable, "-c", "import time; time.sleep(60)"]}]}}}}
    body = {"application": "shop", "name": "slow", "stages": [
        stage("1", "runJobManifest", "slow job", source="text", manifest=sleeper, stageTimeoutMs=1500)]}

    async def scenario(ex: Executor, store: Store) -> None:
        done = await start(ex, body)
        slow = done.stage("slow job")
        assert str(slow.status) == "TERMINAL"
        assert slow.context["exception"]["details"]["error"] == \
            "WaitOnJobCompletionTask of stage slow job timed out after 1.5s"
        target = await ex.services.target("local")
        key = ResourceKey("batch", "Job", "default", str(slow.context["jobName"]))
        for _ in range(250):
            status = await target.job_status(key)
            if status.state != "Running":
                break
            await asyncio.sleep(0.02)
        assert status.exit_code == -15

    run(tmp_path, scenario)
