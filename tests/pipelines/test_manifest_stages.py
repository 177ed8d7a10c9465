"""deploy/patch/scale/delete/undoRollout stages through LocalTarget over a real store."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest

from graylane.pipelines.executor import Executor  # noqa: E402
from graylane.pipelines.services import TaskServices  # noqa: E402
from graylane.pipelines.status import ExecutionStatus as S  # noqa: E402
from graylane.pipelines.triggers import build_trigger  # noqa: E402
from graylane.resources.document import ResourceKey  # noqa: E402
from graylane.store import Store  # noqa: E402
from graylane.targets.local import LocalTarget  # noqa: E402

DR = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
      "metadata": {"name": "reviews", "namespace": "default"},
      "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                              {"name": "v2", "labels": {"version": "v2"}}]}}
RATIO = '#toInt(#stage("设置灰度比例")["context"]["customParams"]["canary_ratio"])'
VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": "reviews", "namespace": "default"},
      "spec": {"hosts": ["reviews"], "http": [{"route": [
          {"destination": {"host": "reviews", "subset": "${parameters.base_version}"},
           "weight": "${100 - " + RATIO + "}"},
          {"destination": {"host": "reviews", "subset": "${parameters.canary_version}"}, "weight": "${" + RATIO + "}"},
      ]}]}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v2", "namespace": "default"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reviews", "version": "v2"}},
                   "template": {"metadata": {"labels": {"app": "reviews", "version": "v2"}},
                                "spec": {"containers": [{"name": "reviews", "image": "reviews:v2"}]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
           "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}}
DEPLOY_V1 = {**DEPLOY, "metadata": {"name": "reviews-v1", "namespace": "default"},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
                      "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                                   "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}}


def live(store: Store, *bodies: dict) -> None:
    """What runs before the pipeline starts (applied by a person, not the pipeline)."""
    from graylane.resources.document import Document, Source

    store.apply([Document(body=b, source=Source("<test>", 1, i)) for i, b in enumerate(bodies)], actor="user:ops")


def stage(ref: str, stype: str, name: str, requires: tuple[str, ...] = (), **fields: Any) -> dict:
    return {"refId": ref, "type": stype, "name": name, "requisiteStageRefIds": list(requires), **fields}


def run(tmp_path: Path, scenario: Any) -> Any:
    async def go() -> Any:
        store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
        target = LocalTarget(store)

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            assert account in (None, "local")
            return target

        ex = Executor(store.engine, services=TaskServices(get_target=get_target))
        await ex.start()
        try:
            return await scenario(ex, store)
        finally:
            await ex.stop()
            store.close()

    return asyncio.run(go())


async def _start(ex: Executor, body: dict, **trigger: Any) -> str:
    config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
    full = build_trigger(config, {"type": "manual", "user": "t", **trigger}, ex)
    return (await ex.start_execution(config, full, user="t")).id


def test_article_canary_weights_from_judgment_custom_params(tmp_path: Path) -> None:
    body = {"application": "bookinfo", "name": "reviews-canary",
            "parameterConfig": [{"name": "base_version", "default": "v1"}, {"name": "canary_version", "default": "v2"}],
            "stages": [
                stage("1", "deployManifest", "deploy canary", source="text", manifests=[DEPLOY, DR]),
                stage("2", "manualJudgment", "设置灰度比例", ("1",), customParamConfig=[
                    {"name": "canary_ratio", "type": "int", "min": 0, "max": 100, "required": True}]),
                stage("3", "deployManifest", "灰度比例生效", ("2",), manifest=VS),  # CODING's singular `manifest`
            ]}

    async def scenario(ex: Executor, store: Store) -> None:
        live(store, SERVICE, DEPLOY_V1)
        eid = await _start(ex, body)
        await ex.wait_for_stage(eid, "设置灰度比例", {S.RUNNING})
        await ex.update_stage(eid, "设置灰度比例",
                              {"judgmentStatus": "continue", "customParams": {"canary_ratio": "1"}}, user="a")
        exe = await ex.wait_until_complete(eid)
        assert exe.status == S.SUCCEEDED, [s.context.get("exception") for s in exe.stages]
        vs = store.get(ResourceKey("networking.istio.io", "VirtualService", "default", "reviews"))
        route = vs.body["spec"]["http"][0]["route"]
        assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 99), ("v2", 1)]
        first = exe.stage("deploy canary")
        assert first.outputs["outputs.manifestNamesByNamespace"] == {
            "default": ["deployment reviews-v2", "destinationrule reviews"]}
        hist = store.history(vs.key)
        assert [h.actor for h in hist] == [f"pipeline:{eid}/{exe.stage('灰度比例生效').id}"]

    run(tmp_path, scenario)


def test_deploy_validates_every_document_first_and_applies_nothing_on_error(tmp_path: Path) -> None:
    bad = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "broken", "namespace": "default"},
           "spec": {"hosts": ["reviews"],
                    "http": [{"route": [{"destination": {"host": "reviews"}}], "timeout": "abc"}]}}
    body = {"application": "app", "name": "bad", "stages": [
        stage("1", "deployManifest", "deploy", manifests=[DR, bad])]}

    async def scenario(ex: Executor, store: Store) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body))
        assert exe.status == S.TERMINAL
        assert "invalid duration 'abc'" in exe.stage("deploy").context["exception"]["details"]["error"]
        assert store.get(ResourceKey("networking.istio.io", "DestinationRule", "default", "reviews")) is None

    run(tmp_path, scenario)


def test_failed_manifest_expressions_fail_the_stage_when_asked(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "${#stage('nope')}"}}
    env = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "env"}, "data": {"x": "${ENV}"}}
    body = {"application": "app", "name": "expr", "stages": [
        stage("1", "deployManifest", "strict", manifests=[cm], failOnFailedExpressions=True, failPipeline=False),
        stage("2", "deployManifest", "raw", manifests=[env], skipExpressionEvaluation=True)]}

    async def scenario(ex: Executor, store: Store) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body))
        assert exe.stage("strict").status == S.STOPPED
        assert "nope" in exe.stage("strict").context["exception"]["details"]["error"]
        assert store.get(ResourceKey("", "ConfigMap", "default", "c")) is None
        raw = store.get(ResourceKey("", "ConfigMap", "default", "env"))
        assert raw.body["data"] == {"x": "${ENV}"}  # left for the app, as skipExpressionEvaluation promises

    run(tmp_path, scenario)


def test_a_deploy_task_run_again_applies_only_what_its_first_run_did_not(tmp_path: Path) -> None:
    """The apply committed and the replica died before the task's result did: the next owner runs the task again.
    Its manifest (an artifact, evaluated by the task) gives another value on each evaluation, so a second apply
    would be a second revision; the run again applies only the document the first run did not write. A restarted
    stage (a new attempt) applies again."""
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: once}\n"
            "data: {apply: '${T(java.util.UUID).randomUUID().toString()}'}\n")
    body = {"application": "app", "name": "once", "stages": [
        stage("1", "deployManifest", "deploy", source="artifact", manifestArtifact={
            "type": "embedded/base64", "name": "once.yaml", "reference": base64.b64encode(text.encode()).decode()}),
        stage("2", "manualJudgment", "approve", ("1",))]}
    once = ResourceKey("", "ConfigMap", "default", "once")
    later = ResourceKey("", "ConfigMap", "default", "later")

    async def scenario(ex: Executor, store: Store) -> None:
        from graylane.pipelines.scheduling import view
        from graylane.pipelines.stages.deploy_manifest import DeployManifestTask

        eid = await _start(ex, body)
        await ex.wait_for_stage(eid, "approve", {S.RUNNING})
        exe = ex.repo.load(eid)
        deploy = exe.stage("deploy")
        assert [h.revision for h in store.history(once)] == [1]
        written = store.get(once).body["data"]["apply"]
        # the run again sees one more document (the artifact's second one): that one is new, the first is not
        deploy.context["manifestArtifact"]["reference"] = base64.b64encode(
            (text + "---\n" + text.replace("once", "later")).encode()).decode()
        again = await DeployManifestTask().run(view(exe, deploy, ex.services, ex.now_ms(), detached=True))
        assert again.status == S.SUCCEEDED
        assert [(a["key"][3], a["action"]) for a in again.context["deploy.applied"]] == [
            ("once", "created"), ("later", "created")]
        assert [h.revision for h in store.history(once)] == [1] and [h.revision for h in store.history(later)] == [1]
        assert store.get(once).body["data"]["apply"] == written
        assert again.outputs["manifests"][0]["data"]["apply"] == written  # the stage records what is live
        deploy.attempt += 1  # restarted: everything is applied again
        restarted = await DeployManifestTask().run(view(exe, deploy, ex.services, ex.now_ms(), detached=True))
        assert [a["action"] for a in restarted.context["deploy.applied"]] == ["configured", "configured"]
        assert [h.revision for h in store.history(once)] == [1, 2]

    run(tmp_path, scenario)


def test_artifact_manifest_patch_scale_undo_and_delete(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config}\ndata: {version: '${parameters.v}'}\n"
    body = {"application": "app", "name": "ops", "parameterConfig": [{"name": "v", "default": "1"}],
            "expectedArtifacts": [{"id": "cfg", "matchArtifact": {"type": "embedded/base64", "name": "cfg"}}],
            "stages": [
                stage("1", "deployManifest", "from artifact", source="artifact", manifestArtifactId="cfg"),
                stage("2", "deployManifest", "deployment", ("1",), manifests=[DEPLOY]),
                stage("3", "patchManifest", "patch", ("2",), manifestName="configmap app-config", location="default",
                      patchBody=[{"data": {"patched": "yes"}}], options={"mergeStrategy": "strategic"}),
                stage("4", "scaleManifest", "scale", ("3",), manifestName="deployment reviews-v2", replicas=3),
                stage("5", "undoRolloutManifest", "undo", ("4",), manifestName="deployment reviews-v2",
                      numRevisionsBack=1),
                stage("6", "deleteManifest", "delete", ("5",), manifestName="configmap app-config",
                      location="default")]}
    art = {"type": "embedded/base64", "name": "cfg", "reference": base64.b64encode(text.encode()).decode()}

    async def scenario(ex: Executor, store: Store) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body, parameters={"v": "7"}, artifacts=[art]))
        assert exe.status == S.SUCCEEDED, [(s.name, s.context.get("exception")) for s in exe.stages]
        key = ResourceKey("", "ConfigMap", "default", "app-config")
        versions = [h.body.get("data") for h in store.history(key) if not h.deleted]
        assert versions == [{"version": "7"}, {"version": "7", "patched": "yes"}]
        assert store.get(key) is None  # deleted last
        dep = store.get(ResourceKey("apps", "Deployment", "default", "reviews-v2"))
        assert dep.body["spec"]["replicas"] == 1  # scaled to 3, then rolled back one revision
        replicas = [h.body["spec"]["replicas"] for h in store.history(dep.key)]
        assert replicas == [1, 3, 1]

    run(tmp_path, scenario)


ROUTE_CASES = [
    # (what is live, what the stage applies, the finding, stage options)
    ("subset-not-defined", [SERVICE, DEPLOY_V1, DEPLOY, DR], "v3",
     'IST0101] (VirtualService default/reviews', 'Referenced host+subset in destinationrule '
     'not found: "reviews+v3"'),
    ("subset-selects-no-pods", [SERVICE, DEPLOY_V1, DR], "v2",
     "IST0173] (DestinationRule default/reviews",
     "The Subset v2 defined in the DestinationRule does not select any pods"),
    ("host-not-found", [DEPLOY_V1, DEPLOY, DR], "v2", "IST0101] (VirtualService default/reviews",
     'Referenced host not found: "reviews"'),
]


def _route_to(canary: str) -> dict:
    return {**VS, "spec": {"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
        {"destination": {"host": "reviews", "subset": canary}, "weight": 20}]}]}}


@pytest.mark.parametrize(("case", "live_bodies", "canary", "origin", "finding"),
                         [pytest.param(*c, id=c[0]) for c in ROUTE_CASES])
def test_deploy_refuses_routes_into_nothing_before_applying(tmp_path: Path, case: str, live_bodies: list[dict],
                                                            canary: str, origin: str, finding: str) -> None:
    checked = {"application": "app", "name": "route", "stages": [
        stage("1", "deployManifest", "shift traffic", manifests=[_route_to(canary)])]}
    anyway = {"application": "app", "name": "route-anyway", "stages": [
        stage("1", "deployManifest", "shift anyway", manifests=[_route_to(canary)], skipRouteCheck=True)]}

    async def scenario(ex: Executor, store: Store) -> None:
        live(store, *live_bodies)
        exe = await ex.wait_until_complete(await _start(ex, checked))
        assert exe.status == S.TERMINAL
        error = exe.stage("shift traffic").context["exception"]["details"]["error"]
        assert error.startswith("stage shift traffic: nothing was applied: the routes would send traffic to nothing")
        assert origin in error and finding in error and "set skipRouteCheck: true" in error
        key = ResourceKey("networking.istio.io", "VirtualService", "default", "reviews")
        assert store.get(key) is None  # refused before applying
        exe = await ex.wait_until_complete(await _start(ex, anyway))
        assert exe.status == S.SUCCEEDED, exe.stage("shift anyway").context.get("exception")
        assert store.get(key) is not None  # the option turns the check off

    run(tmp_path, scenario)


def test_route_check_passes_when_subsets_exist_and_select_pods(tmp_path: Path) -> None:
    body = {"application": "app", "name": "ok", "stages": [
        stage("1", "deployManifest", "shift traffic", manifests=[_route_to("v2")])]}

    async def scenario(ex: Executor, store: Store) -> None:
        live(store, SERVICE, DEPLOY_V1, DEPLOY, DR)
        exe = await ex.wait_until_complete(await _start(ex, body))
        assert exe.status == S.SUCCEEDED, exe.stage("shift traffic").context.get("exception")

    run(tmp_path, scenario)


class _Runtime:
    """What the local runtime says about Deployments: reviews-v2 runs but is not ready yet."""

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        ready = 0 if name == "reviews-v2" else 1
        return {"replicas": 1, "readyReplicas": ready, "availableReplicas": ready}

    async def wait_ready(self, keys: Any, timeout: float) -> None:
        return None


def test_route_check_refuses_a_subset_whose_pods_are_not_ready(tmp_path: Path) -> None:
    body = {"application": "app", "name": "not-ready", "stages": [
        stage("1", "deployManifest", "shift traffic", manifests=[_route_to("v2")])]}

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
        target = LocalTarget(store, runtime=_Runtime())

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            return target

        ex = Executor(store.engine, services=TaskServices(get_target=get_target))
        await ex.start()
        try:
            live(store, SERVICE, DEPLOY_V1, DEPLOY, DR)
            exe = await ex.wait_until_complete(await _start(ex, body))
            assert exe.status == S.TERMINAL
            error = exe.stage("shift traffic").context["exception"]["details"]["error"]
            assert "[IST0173] (DestinationRule default/reviews" in error
            assert "The Subset v2 defined in the DestinationRule does not select any pods" in error
            assert "(Deployment default/reviews-v2: 0 of 1 replicas ready)" in error
            assert store.get(ResourceKey("networking.istio.io", "VirtualService", "default", "reviews")) is None
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())
