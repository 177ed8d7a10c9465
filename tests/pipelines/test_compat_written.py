"""Pipelines as their authors wrote them elsewhere, re-written here (their sources' licences do not let us store
the files): imported as the API imports them and run to the statuses orca's rules give.

Sources (each pipeline keeps its stages, fields and values; names of people and hosts are neutral):
  KANAL  = io.pivotal.kanal's basicPipelineJson (a Kotlin DSL's test pipeline for Spinnaker)
  ARMORY = armory/docs, policy engine `spinnaker.http.authz` Pipelines payload ("scale deployments")
  STAGE_ENABLED = stageEnabled expressions from public pipelines: a child-pipeline stage gated on a canary
           (quoted `"${...}"`), a Kubernetes leg per target (`${parameters.target == 'qa'}`), a bare artifact
           version check, a Jenkins region leg (`== "True" || #stage(...)`), and Armory's hard-disabled `false`
  TRIGGERS = one trigger of each type Deck registers (Igor's CI and repositories, Pub/Sub, Artifactory, Nexus,
           Helm, plugins, CDEvents, cron, webhook, pipeline), with the fields Deck writes for each
Orca's rules used: OptionalStageSupport (stageEnabled is evaluated with the stage context first, then as
`${expression}`; anything but true/false skips), WaitStage (waitTime is coerced to a number), CheckPreconditions
with no preconditions succeeds, ArtifactUtils.resolveArtifacts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa
from tests.pipelines.test_compat_suite import _tick, fast_clock, load

from graylane.errors import ValidationError
from graylane.pipelines import triggers
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository

KANAL: dict[str, Any] = {
    "application": "kanal", "name": "basic", "appConfig": {}, "description": "desc1", "expectedArtifacts": [],
    "keepWaitingPipelines": False, "lastModifiedBy": "anonymous", "limitConcurrent": False, "notifications": [],
    "parameterConfig": [], "updateTs": "0",
    "triggers": [{"branch": "master", "enabled": True, "project": "project1", "secret": "secret1", "slug": "slug1",
                  "source": "github", "type": "git"},
                 {"enabled": True, "job": "does-nothing", "master": "my-jenkins-master", "type": "jenkins"}],
    "stages": [
        {"name": "Check Preconditions", "preconditions": [], "refId": "1", "requisiteStageRefIds": [],
         "type": "checkPreconditions"},
        {"comments": "woah", "name": "Server Group Timeout", "refId": "2", "requisiteStageRefIds": ["1"],
         "type": "wait", "waitTime": "420"},
        {"failPipeline": True, "instructions": "Give a thumbs up if you like it.", "judgmentInputs": [],
         "name": "Thumbs Up?", "notifications": [], "refId": "3", "requisiteStageRefIds": ["1"],
         "type": "manualJudgment"},
        {"failPipeline": True, "method": "POST", "name": "Do that nonstandard thing", "refId": "4",
         "requisiteStageRefIds": ["2", "3"], "type": "webhook", "url": "https://example.com/hook",
         "user": "someone@example.com", "waitForCompletion": True}]}

_TRAFFIC = {"enabled": False, "options": {"enableTraffic": False, "services": []}}
ARMORY: dict[str, Any] = {
    "application": "hostname", "name": "scale deployments", "id": "7db1e350-dedb-4dc1-9976-e71f97b5f132", "index": 0,
    "keepWaitingPipelines": False, "lastModifiedBy": "someone", "limitConcurrent": True, "spelEvaluator": "v4",
    "updateTs": "1620677311000",
    "expectedArtifacts": [
        {"id": "0cf98032-1b0f-48db-9314-09c69293b3a6", "displayName": "hostname-deploy",
         "defaultArtifact": {"artifactAccount": "someone", "id": "4aa85178", "name": "manifests/deploy-spinnaker.yaml",
                             "reference": "https://api.github.com/repos/someone/hostname/contents/manifests/"
                                          "deploy-spinnaker.yaml", "type": "github/file", "version": "master"},
         "matchArtifact": {"artifactAccount": "someone", "customKind": True, "id": "3f72ed8e",
                           "name": "manifests/deploy-spinnaker.yaml", "type": "github/file"},
         "useDefaultArtifact": True, "usePriorArtifact": False},
        {"id": "425d20a8-2942-4902-8d2b-277769a1492c", "displayName": "service-hostname",
         "defaultArtifact": {"artifactAccount": "someone", "id": "e79162ab", "name": "manifests/service-spinnaker.yaml",
                             "reference": "https://api.github.com/repos/someone/hostname/contents/manifests/"
                                          "service-spinnaker.yaml", "type": "github/file"},
         "matchArtifact": {"artifactAccount": "someone", "customKind": True, "id": "d7ac7eca",
                           "name": "manifests/service-spinnaker", "type": "github/file"},
         "useDefaultArtifact": True, "usePriorArtifact": False}],
    "parameterConfig": [
        {"default": "", "description": "", "hasOptions": False, "label": "", "name": "replicas",
         "options": [{"value": ""}], "pinned": False, "required": False},
        {"default": "staging", "description": "", "hasOptions": False, "label": "", "name": "namespace",
         "options": [{"value": ""}], "pinned": False, "required": True}],
    "stages": [
        {"account": "spinnaker", "cloudProvider": "kubernetes", "manifestArtifactId":
            "0cf98032-1b0f-48db-9314-09c69293b3a6", "moniker": {"app": "hostname"}, "name": "Deploy (Manifest) g",
         "refId": "2", "requisiteStageRefIds": [], "skipExpressionEvaluation": False, "source": "artifact",
         "trafficManagement": _TRAFFIC, "type": "deployManifest"},
        {"account": "spinnaker", "cloudProvider": "kubernetes", "manifestArtifactId":
            "425d20a8-2942-4902-8d2b-277769a1492c", "moniker": {"app": "hostname"},
         "name": "Deploy service (Manifest)", "refId": "3", "requisiteStageRefIds": [],
         "skipExpressionEvaluation": False, "source": "artifact", "trafficManagement": _TRAFFIC,
         "type": "deployManifest"},
        {"completeOtherBranchesThenFail": False, "continuePipeline": True, "failPipeline": False,
         "instructions": "is the new service working?", "judgmentInputs": [], "name": "Manual Judgment",
         "notifications": [], "refId": "4", "requisiteStageRefIds": ["2", "3"], "stageTimeoutMs": 60000,
         "type": "manualJudgment"},
        {"account": "spinnaker", "app": "hostname", "cloudProvider": "kubernetes", "location": "staging",
         "manifestName": "deployment hostname", "mode": "static", "name": "Scale (Manifest)", "refId": "5",
         "replicas": "10", "requisiteStageRefIds": ["4"], "type": "scaleManifest"}],
    "triggers": [{"branch": "master", "enabled": True, "expectedArtifactIds": [
        "0cf98032-1b0f-48db-9314-09c69293b3a6", "425d20a8-2942-4902-8d2b-277769a1492c"], "project": "someone",
        "secret": "spinnaker", "slug": "hostname", "source": "github", "type": "git"}]}


def _wait(ref: str, name: str, requisites: list[str], expression: Any = None) -> dict[str, Any]:
    stage: dict[str, Any] = {"refId": ref, "requisiteStageRefIds": requisites, "type": "wait", "name": name,
                             "waitTime": 1}
    if expression is not None:
        stage["stageEnabled"] = {"type": "expression", "expression": expression}
    return stage


STAGE_ENABLED: dict[str, Any] = {
    "application": "gates", "name": "stageEnabled forms", "stages": [
        _wait("1", "Canary Analysis", []),
        _wait("2", "Deploy to Production", ["1"],
              "\"${ #stage('Canary Analysis')['status'].toString() == 'SUCCEEDED'}\""),
        _wait("3", "Deploy qa leg", ["1"], "${parameters.target == 'qa'}"),
        _wait("4", "Deploy Application Test", ["1"],
              "trigger['artifacts'][0]['version'].matches(\"(pull-|master-|release-).*\") && "
              "trigger['parameters']['deployToTest'] == \"true\""),
        _wait("5", "Deploy fiat", ["1"], "false"),
        _wait("6", "us-west-2 Build Launch Details", ["1"],
              "${ parameters.deploy_us_west_default == \"True\" || "
              "#stage('Canary Analysis')['status'] == \"SUCCEEDED\" }"),
        _wait("7", "Undefined gate", ["1"], "${ parameters.nope.length() > 0 }"),
    ]}

TRIGGERS: dict[str, Any] = {
    "application": "zoo", "name": "every trigger", "stages": [_wait("1", "w", [])],
    "triggers": [
        {"type": "git", "source": "github", "project": "org", "slug": "repo", "branch": "main", "enabled": True},
        {"type": "docker", "account": "dockerhub", "registry": "index.docker.io", "organization": "library",
         "repository": "library/nginx", "tag": "^1\\..*", "enabled": True},
        {"type": "jenkins", "master": "jenkins", "job": "build-app", "propertyFile": "build.properties",
         "enabled": True},
        {"type": "travis", "master": "travis", "job": "org/repo/main", "enabled": True},
        {"type": "wercker", "master": "wercker", "app": "org/app", "pipeline": "build", "enabled": True},
        {"type": "concourse", "account": "concourse", "team": "main", "project": "ci", "jobName": "build",
         "enabled": True},
        {"type": "pubsub", "pubsubSystem": "google", "subscriptionName": "gcr-triggers", "payloadConstraints": {},
         "attributeConstraints": {}, "enabled": True},
        {"type": "artifactory", "artifactorySearchName": "libs-release", "enabled": True},
        {"type": "nexus", "nexusSearchName": "releases", "enabled": True},
        {"type": "helm", "account": "helm-charts", "chart": "nginx", "version": "1.*", "enabled": True},
        {"type": "plugin", "pluginId": "Armory.AwsLambda", "enabled": False},
        {"type": "cdevents", "source": "cdevents-source", "enabled": True,
         "attributeConstraints": {"type": "dev.cdevents.artifact.packaged.0.1.0"}},
        {"type": "cron", "cronExpression": "0 0 10 ? * MON-FRI", "enabled": False},
        {"type": "webhook", "source": "zoo", "enabled": True},
        {"type": "pipeline", "application": "zoo", "pipeline": "upstream-id", "status": ["successful"],
         "enabled": True}]}


async def _run(ex: Executor, body: dict[str, Any], trigger: dict[str, Any],
               until: Any = None) -> tuple[str, dict[str, str], dict[str, dict[str, Any]]]:
    [saved], warnings = ex.pipelines.import_many([body], actor="user:compat")
    assert saved.action == "created" and warnings == []
    exe = await ex.start_execution(ex.pipelines.get(saved.id), trigger, user="compat")
    ticker = asyncio.get_running_loop().create_task(_tick(ex, exe.id))
    try:
        if until is None:
            done = await ex.wait_until_complete(exe.id, timeout=30)
        else:
            deadline = time.monotonic() + 30
            while not until(done := ex.get(exe.id)) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    finally:
        ticker.cancel()
    return str(done.status), {s.name: str(s.status) for s in done.stages}, {s.name: s.context for s in done.stages}


def _go(engine: sa.Engine, body: dict[str, Any], trigger: dict[str, Any],
        until: Any = None) -> tuple[str, dict[str, str], dict[str, dict[str, Any]]]:
    async def go() -> tuple[str, dict[str, str], dict[str, dict[str, Any]]]:
        ex = Executor(engine, clock=fast_clock())
        await ex.start()
        try:
            return await _run(ex, body, trigger, until)
        finally:
            await ex.stop()
    return asyncio.run(go())


def test_kanal_pipeline_runs_to_its_judgment(engine: sa.Engine) -> None:
    # no preconditions succeed; the wait's "420" is a number of seconds; both branches meet at the webhook,
    # which waits for the judgment
    def judging(exe: Any) -> bool:
        return any(s.name == "Thumbs Up?" and str(s.status) == "RUNNING" for s in exe.stages) and \
            any(s.name == "Server Group Timeout" and str(s.status) == "SUCCEEDED" for s in exe.stages)

    status, stages, contexts = _go(engine, KANAL, {}, until=judging)
    assert (status, stages) == ("RUNNING", {"Check Preconditions": "SUCCEEDED", "Server Group Timeout": "SUCCEEDED",
                                            "Thumbs Up?": "RUNNING", "Do that nonstandard thing": "NOT_STARTED"})
    assert contexts["Check Preconditions"]["preconditionResults"] == []


def test_stage_enabled_forms_decide_as_orca_does(engine: sa.Engine) -> None:
    trigger = {"type": "manual", "user": "compat",
               "parameters": {"target": "prod", "deployToTest": "true", "deploy_us_west_default": "False"},
               "artifacts": [{"type": "docker/image", "name": "app", "reference": "app:master-42",
                              "version": "master-42"}]}
    status, stages, contexts = _go(engine, STAGE_ENABLED, trigger)
    assert (status, stages) == ("SUCCEEDED", {
        "Canary Analysis": "SUCCEEDED",
        "Deploy to Production": "SUCCEEDED",      # "\"true\"" -> ${"true"} -> true
        "Deploy qa leg": "SKIPPED",               # false
        "Deploy Application Test": "SUCCEEDED",   # the bare expression, wrapped in ${}
        "Deploy fiat": "SKIPPED",                 # hard-disabled
        "us-west-2 Build Launch Details": "SUCCEEDED",
        "Undefined gate": "SKIPPED"})             # an expression that fails skips the stage (InvalidExpression)
    assert "evaluated to false" in contexts["Deploy qa leg"]["stageEnabledResult"]
    assert "could not be evaluated" in contexts["Undefined gate"]["stageEnabledResult"]


def test_every_spinnaker_trigger_type_imports_and_a_manual_run_succeeds(engine: sa.Engine) -> None:
    status, stages, _ = _go(engine, TRIGGERS, {})
    assert (status, stages) == ("SUCCEEDED", {"w": "SUCCEEDED"})


def test_unknown_trigger_types_are_still_refused_naming_spinnakers_types(engine: sa.Engine) -> None:
    body = {**TRIGGERS, "triggers": [{"type": "dokcer", "enabled": True}]}
    with pytest.raises(ValidationError, match="unknown trigger type 'dokcer' .Spinnaker's types: artifactory, "
                                              "cdevents, concourse, cron, docker, git, helm, jenkins, manual, nexus, "
                                              "pipeline, plugin, pubsub, travis, webhook, wercker; Graylane fires "
                                              "cron, manual, pipeline, webhook."):
        PipelineRepository(engine).import_many([body], actor="user:compat")


def test_armory_scale_pipeline_imports_warning_of_its_account(engine: sa.Engine, state_dir: Any) -> None:
    [saved], warnings = PipelineRepository(engine).import_many([ARMORY], actor="user:compat")
    assert saved.action == "created"
    assert [w.split(": account")[0] for w in warnings] == [
        "pipeline hostname/scale deployments stages[0] ('Deploy (Manifest) g')",
        "pipeline hostname/scale deployments stages[1] ('Deploy service (Manifest)')",
        "pipeline hostname/scale deployments stages[3] ('Scale (Manifest)')"]
    # both expected artifacts use their defaults on a manual start (orca's ArtifactUtils.resolveArtifacts)
    config = PipelineRepository(engine).get(saved.id)
    trigger = triggers.build_trigger(config, {"type": "manual", "user": "compat", "parameters": {}})
    assert [e["boundArtifact"]["name"] for e in trigger["resolvedExpectedArtifacts"]] == [
        "manifests/deploy-spinnaker.yaml", "manifests/service-spinnaker.yaml"]
    assert trigger["parameters"] == {"replicas": "", "namespace": "staging"}


def test_an_expected_artifact_nothing_asks_for_does_not_block_a_manual_start(engine: sa.Engine) -> None:
    config = load("orca/expectedArtifactsInheritance-expected.json")
    trigger = triggers.build_trigger(config, {"type": "manual", "user": "compat", "parameters": {}})
    assert trigger["resolvedExpectedArtifacts"] == []
