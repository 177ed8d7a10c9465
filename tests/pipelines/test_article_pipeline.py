"""The article's canary pipeline (the demo's coding-cd-template) through the engine, on the local target."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import graylane.demos.bookinfo as bookinfo  # noqa: E402
from graylane.cli.pipelines import load_pipeline_file  # noqa: E402
from graylane.pipelines.executor import Executor  # noqa: E402
from graylane.pipelines.services import TaskServices  # noqa: E402
from graylane.pipelines.status import ExecutionStatus as S  # noqa: E402
from graylane.pipelines.triggers import build_trigger  # noqa: E402
from graylane.resources.document import ResourceKey  # noqa: E402
from graylane.store import Store  # noqa: E402
from graylane.targets.local import LocalTarget  # noqa: E402

DEMO = Path(bookinfo.__file__).parent
TEMPLATE = DEMO / "coding-cd-template"


@pytest.fixture(autouse=True)
def _demo_folder_may_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The artifacts are the demo folder on disk: the operator allows it, as docs/security.md says."""
    monkeypatch.setenv("GRAYLANE_ARTIFACT_FILE_ROOTS", str(DEMO))


def _artifacts(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each expected git/file artifact, read from the demo folder on disk instead of CODING's repository."""
    return [{**ea["matchArtifact"], "reference": str(DEMO)} for ea in config.get("expectedArtifacts") or []]


def _on_disk(body: dict[str, Any]) -> dict[str, Any]:
    """Stage artifacts named inline read the demo folder as it is on disk (no branch: it is not the demo's repo)."""
    for stage in body["stages"]:
        art = stage.get("manifestArtifact")
        if isinstance(art, dict):
            art.update(reference=str(DEMO))
            art.pop("version", None)
    return body


@pytest.mark.parametrize(("choice", "expected_weights"), [
    pytest.param("全量发布", [("v2", 100)], id="promote"),
    pytest.param("结束发布", [("v1", 70), ("v2", 30)], id="end"),
])
def test_reviews_canary_with_ratio_then_promote_or_end(tmp_path: Path, state_dir: Path, choice: str,
                                                        expected_weights: list[tuple[str, int]]) -> None:
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
        target = LocalTarget(store)

        async def get_target(account: str | None, namespace: str | None = None) -> Any:
            return target

        ex = Executor(store.engine, services=TaskServices(get_target=get_target))
        await ex.start()
        try:
            [baseline] = load_pipeline_file(TEMPLATE / "bookinfo-baseline.json")
            [canary] = load_pipeline_file(TEMPLATE / "reviews-canary.json")
            canary = _on_disk(canary)
            for body in (baseline, canary):
                config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
                trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": {},
                                                 "artifacts": _artifacts(config)}, ex)
                exe = await ex.start_execution(config, trigger, user="t")
                if body is baseline:
                    done = await ex.wait_until_complete(exe.id, timeout=60)
                    assert done.status == S.SUCCEEDED, [s.context.get("exception") for s in done.stages]
            await ex.wait_for_stage(exe.id, "设置灰度比例", {S.RUNNING}, timeout=60)
            await ex.update_stage(exe.id, "设置灰度比例",
                                  {"judgmentStatus": "continue", "customParams": {"canary_ratio": "30"}}, user="a")
            await ex.wait_for_stage(exe.id, "是否全量发布", {S.RUNNING}, timeout=60)
            vs = store.get(ResourceKey("networking.istio.io", "VirtualService", "default", "reviews"))
            route = vs.body["spec"]["http"][-1]["route"]
            assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 70), ("v2", 30)]
            await ex.update_stage(exe.id, "是否全量发布", {"judgmentStatus": "continue", "judgmentInput": choice},
                                  user="a")
            done = await ex.wait_until_complete(exe.id, timeout=60)
            assert done.status == S.SUCCEEDED, json.dumps([s.context.get("exception") for s in done.stages])
            vs = store.get(vs.key)
            route = vs.body["spec"]["http"][-1]["route"]
            assert [(r["destination"]["subset"], r.get("weight", 100)) for r in route] == expected_weights
            v1 = store.get(ResourceKey("apps", "Deployment", "default", "reviews-v1"))
            assert (v1 is None) == (choice == "全量发布")  # promote deletes the baseline
            skipped = {s.name for s in done.stages if s.status == S.SKIPPED}
            assert skipped == ({"结束发布"} if choice == "全量发布" else {"全量发布", "删除基准版本"})
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())


async def _baseline_then_canary(store: Store, ex: Executor, parameters: dict[str, str]) -> Any:
    [baseline] = load_pipeline_file(TEMPLATE / "bookinfo-baseline.json")
    [canary] = load_pipeline_file(TEMPLATE / "reviews-canary.json")
    exe = None
    for body in (baseline, _on_disk(canary)):
        config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
        trigger = build_trigger(config, {"type": "manual", "user": "t", "artifacts": _artifacts(config),
                                         "parameters": parameters if body is not baseline else {}}, ex)
        exe = await ex.start_execution(config, trigger, user="t")
        if body is baseline:
            done = await ex.wait_until_complete(exe.id, timeout=60)
            assert done.status == S.SUCCEEDED, [s.context.get("exception") for s in done.stages]
    return exe


def _executor(store: Store) -> Executor:
    target = LocalTarget(store)

    async def get_target(account: str | None, namespace: str | None = None) -> Any:
        return target

    return Executor(store.engine, services=TaskServices(get_target=get_target))


def test_canary_version_v3_deploys_reviews_v3_and_both_subsets(tmp_path: Path, state_dir: Path) -> None:
    """Issue #20: base v1 + canary v3 deploys reviews-v3, a DestinationRule with v1 and v3, and routes to them."""
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'v3.db'}")
        ex = _executor(store)
        await ex.start()
        try:
            exe = await _baseline_then_canary(store, ex, {"base_version": "v1", "canary_version": "v3"})
            await ex.wait_for_stage(exe.id, "设置灰度比例", {S.RUNNING}, timeout=60)
            assert store.get(ResourceKey("apps", "Deployment", "default", "reviews-v3")) is not None
            assert store.get(ResourceKey("apps", "Deployment", "default", "reviews-v2")) is None
            dr = store.get(ResourceKey("networking.istio.io", "DestinationRule", "default", "reviews"))
            assert [(s["name"], s["labels"]["version"]) for s in dr.body["spec"]["subsets"]] == [
                ("v1", "v1"), ("v3", "v3")]
            await ex.update_stage(exe.id, "设置灰度比例",
                                  {"judgmentStatus": "continue", "customParams": {"canary_ratio": "20"}}, user="a")
            await ex.wait_for_stage(exe.id, "是否全量发布", {S.RUNNING}, timeout=60)
            vs = store.get(ResourceKey("networking.istio.io", "VirtualService", "default", "reviews"))
            route = vs.body["spec"]["http"][-1]["route"]
            assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 80), ("v3", 20)]
            await ex.cancel(exe.id, user="t")
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())


def test_a_version_without_a_manifest_is_refused_before_anything_is_applied(tmp_path: Path,
                                                                            state_dir: Path) -> None:
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'v9.db'}")
        ex = _executor(store)
        await ex.start()
        try:
            exe = await _baseline_then_canary(store, ex, {"base_version": "v1", "canary_version": "v9"})
            before = store.revision()
            done = await ex.wait_until_complete(exe.id, timeout=60)
            assert done.status == S.TERMINAL
            first = done.stage("1")
            assert first is not None and first.status == S.TERMINAL
            error = first.context["exception"]["details"]["error"]
            assert "platform/kube/bookinfo-reviews-v9.yaml" in error, error
            assert {s.name: str(s.status) for s in done.stages}["更新 Destination Rule"] == "NOT_STARTED"
            assert store.revision() == before  # no DestinationRule with a v9 subset, no Deployment
            dr = store.get(ResourceKey("networking.istio.io", "DestinationRule", "default", "reviews"))
            assert [s["name"] for s in dr.body["spec"]["subsets"]] == ["v1"]
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())


def test_a_base_version_that_is_not_running_is_refused_before_anything_is_applied(tmp_path: Path,
                                                                                  state_dir: Path) -> None:
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'b9.db'}")
        ex = _executor(store)
        await ex.start()
        try:
            exe = await _baseline_then_canary(store, ex, {"base_version": "v9", "canary_version": "v2"})
            before = store.revision()
            done = await ex.wait_until_complete(exe.id, timeout=60)
            assert done.status == S.TERMINAL
            check = done.stage("0")
            assert check is not None and check.status == S.TERMINAL
            assert "deployment reviews-v9 does not exist in default" in check.context["exception"]["details"]["error"]
            assert {s.name: str(s.status) for s in done.stages}["部署灰度版本 (canary Deployment)"] == "NOT_STARTED"
            assert store.revision() == before
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())
