"""Compatibility suite: real pipeline files (tests/pipelines/compat/README.md names sources and licences) imported
as the API imports them and, where they run on the local account, run to the final statuses orca's rules give.

Waits run on an accelerated clock (the executor's injected clock), so a 30 s Spinnaker wait takes ~0.1 s here.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.errors import ValidationError
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository

COMPAT = Path(__file__).parent / "compat"
SPEED = 300.0  # clock seconds per real second


def load(rel: str) -> dict[str, Any]:
    return dict(json.loads((COMPAT / rel).read_text(encoding="utf-8")))


def fast_clock() -> Any:
    start = time.time()
    return lambda: start + (time.time() - start) * SPEED


async def _tick(ex: Executor, execution_id: str) -> None:
    """The driver sleeps in real seconds until the next due time it computed on the fast clock: wake it often."""
    while True:
        await asyncio.sleep(0.01)
        ex.wake(execution_id)


def test_every_fixture_is_in_the_suite() -> None:
    files = {str(p.relative_to(COMPAT)) for p in COMPAT.rglob("*.json")} - {
        str(p.relative_to(COMPAT)) for p in (COMPAT / "recorded").rglob("*.json")}  # test_compat_recorded.py
    assert files == set(RUNS) | set(REFUSED)


# file -> (final execution status, {stage name: status})
RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "orca/dependsOn-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in (
        "wait1", "wait2", "wait3", "configWait1", "configWait2")}),
    "orca/example-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in (
        "wait1", "waitChild1", "waitChild2", "finalWait")}),
    "orca/inheritance-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in ("configWait", "wait", "waitChild")}),
    "orca/pipeline-with-pipeline-trigger.json": ("SUCCEEDED", {"Wait": "SUCCEEDED"}),
    # a manual run is not a webhook: the precondition fails, its branch halts, the other branch and the
    # pipeline succeed (stage failPipeline false + precondition failPipeline true)
    "graylane/halt-this-branch.json": ("SUCCEEDED", {"Check Preconditions": "STOPPED",
                                                     "Only for webhooks": "NOT_STARTED", "Other branch": "SUCCEEDED"}),
    # the same diamond as example-expected, with an email notification (logged, not sent)
    "orca/exampleCombined-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in (
        "wait1", "waitChild1", "waitChild2", "finalWait")}),
    # two parallel roots join, then fan out again; refIds with dots
    "orca/loops-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in (
        "Wait with loop variable", "joinWait", "Wait 5 seconds", "Wait 10 seconds")}),
    "orca/modularStageConfig-expected.json": ("SUCCEEDED", {"wait": "SUCCEEDED"}),
    "orca/nestedConditionalStage-expected.json": ("SUCCEEDED", {"wait": "SUCCEEDED"}),
    # a branch (wait3) beside a chain (beforeWait2 -> wait2 -> afterWait2) that both join at `last`
    "orca/stageInjection-expected.json": ("SUCCEEDED", {n: "SUCCEEDED" for n in (
        "first", "wait", "wait3", "beforeWait2", "wait2", "afterWait2", "last")}),
    # a legacy pipeline (no refIds) whose saved trigger is a pipelineRef
    "orca/pipeline-with-pipelineRef-trigger.json": ("SUCCEEDED", {"Wait": "SUCCEEDED"}),
    # no stages: orca's StartExecutionHandler finds no initial stage and ends the execution TERMINAL
    **{f"orca/{name}-expected.json": ("TERMINAL", {}) for name in (
        "conditionalStage", "simple", "parameterInheritance", "variableParameters", "triggerInheritance",
        "expectedArtifactsInheritance")},
}

# file -> what the refusal says
REFUSED: dict[str, list[str]] = {
    "orca/partials-expected.json": [
        "orca/partials-expected.json: stages[1].type: Graylane cannot run this pipeline's stage type: stages[1] "
        "('Build chrome'): 'jenkins' needs a Jenkins master (Igor); stages[2] ('Publish chrome'): 'jenkins' needs a "
        "Jenkins master (Igor). Graylane runs: analysis, blueGreen, canaryRollout, checkPreconditions, deleteManifest, "
        "deployManifest, evaluateVariables, findArtifactFromExecution, findArtifactsFromResource, kayentaCanary, "
        "manualJudgment, patchManifest, pipeline, runJobManifest, scaleManifest, trafficShift, undoRolloutManifest, "
        "wait, webhook"],
    "orca/stageReplacement-expected.json": [
        "'findImageFromTags' needs a cloud provider image catalogue (Clouddriver)",
        "'deploy' needs a cloud provider server group (Clouddriver)", "Graylane runs: analysis, blueGreen,"],
    "orca/save-pipeline-permitted-user.json": ["'savePipeline' needs Front50 (use `graylane pipeline import`)"],
    "orca/deploy-manifest.json": ["stages[0].manifests[0]: stages[0]: manifests[0] is empty (nothing to deploy)"],
    "orca/modules-expected.json": ["stages[1] ('deploy'): 'deploy' needs a cloud provider server group (Clouddriver)"],
    "orca/partialsAndModules-expected.json": ["stages[1] ('Build chrome'): 'jenkins' needs a Jenkins master (Igor)"],
    "orca/save-pipeline-blocked-user.json": ["stages[0]: 'savePipeline' needs Front50"],
    "orca/update-application.json": [
        "stages[0]: 'updateApplication' needs Front50 applications (Graylane has no application objects)"],
    # Netflix's AWS deployment strategy: every cloud stage is named with what it needs, the wait is not
    "orca/pipelinetrigger.json": [
        "'scaleDownCluster' needs a cloud provider cluster (Clouddriver)",
        "'createServerGroup' needs a cloud provider server group (Clouddriver)",
        "'disableCluster' needs a cloud provider cluster (Clouddriver)",
        "'shrinkCluster' needs a cloud provider cluster (Clouddriver)"],
    "graylane/v2-template-instance.json": [
        "this is an instance of a v2 pipeline template (spinnaker://newSpelTemplate): Graylane does not render "
        "managed pipeline templates"],
}


@pytest.mark.parametrize("rel", sorted(RUNS))
def test_real_pipelines_import_and_run_to_orcas_statuses(engine: sa.Engine, rel: str) -> None:
    want_status, want_stages = RUNS[rel]

    async def go() -> tuple[str, dict[str, str]]:
        ex = Executor(engine, clock=fast_clock())
        await ex.start()
        try:
            [saved], warnings = ex.pipelines.import_many([load(rel)], actor="user:compat", where=lambda i: rel)
            assert saved.action == "created" and warnings == []
            exe = await ex.start_execution(ex.pipelines.get(saved.id), {}, user="compat")
            ticker = asyncio.get_running_loop().create_task(_tick(ex, exe.id))
            try:
                done = await ex.wait_until_complete(exe.id, timeout=30)
            finally:
                ticker.cancel()
            return str(done.status), {s.name: str(s.status) for s in done.stages}
        finally:
            await ex.stop()

    status, stages = asyncio.run(go())
    assert (status, stages) == (want_status, want_stages)


@pytest.mark.parametrize("rel", sorted(REFUSED))
def test_pipelines_graylane_cannot_run_are_refused_with_the_reason(engine: sa.Engine, rel: str) -> None:
    repo = PipelineRepository(engine)
    with pytest.raises(ValidationError) as refused:
        repo.import_many([load(rel)], actor="user:compat", where=lambda i: rel)
    text = str(refused.value)
    for fragment in REFUSED[rel]:
        assert fragment in text
    assert repo.list() == []  # nothing saved


def test_pipelines_sharing_an_id_are_refused_naming_both(engine: sa.Engine) -> None:
    repo = PipelineRepository(engine)
    files = ["orca/dependsOn-expected.json", "orca/example-expected.json", "orca/inheritance-expected.json"]
    with pytest.raises(ValidationError) as refused:
        repo.import_many([load(f) for f in files], actor="user:compat", where=lambda i: files[i])
    assert str(refused.value) == (
        "orca/example-expected.json: pipelines myApp/Stage dependsOn test (orca/dependsOn-expected.json) and "
        "myApp/My super awesome pipeline (orca/example-expected.json) share the id 'unknown'; saving both would "
        "overwrite one with the other (give each pipeline its own id, or remove `id` and Graylane assigns one)")
    assert repo.list() == []
    # one at a time: the second is refused against the stored one, which stays as it was
    [first], _ = repo.import_many([load(files[0])], actor="user:compat", where=lambda i: files[0])
    with pytest.raises(ValidationError, match="has the id 'unknown' of the stored pipeline myApp/Stage dependsOn "
                                              "test; importing it would overwrite that pipeline"):
        repo.import_many([load(files[1])], actor="user:compat", where=lambda i: files[1])
    assert [(p["name"], p["_version"]) for p in repo.list()] == [("Stage dependsOn test", 1)]
    without_id = {k: v for k, v in load(files[1]).items() if k != "id"}
    [second], _ = repo.import_many([without_id], actor="user:compat")
    assert second.action == "created" and second.id not in ("unknown", first.id)


def test_accounts_that_do_not_exist_are_warned_about_naming_the_stage(engine: sa.Engine, state_dir: Path) -> None:
    body = {"application": "shop", "name": "to prod", "stages": [
        {"refId": "1", "type": "deployManifest", "name": "Deploy", "account": "k8s-prod", "source": "text",
         "manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]},
        {"refId": "2", "type": "wait", "name": "settle", "waitTime": 1}]}
    [saved], warnings = PipelineRepository(engine).import_many([body], actor="user:t")
    assert saved.action == "created"
    assert warnings == ["pipeline shop/to prod stages[0] ('Deploy'): account 'k8s-prod' does not exist (accounts: "
                        "local); the stage fails when it runs unless it is added first (`graylane account add`)"]
