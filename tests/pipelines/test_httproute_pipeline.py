"""The Bookinfo canary through the Kubernetes Gateway API (`reviews-canary-httproute`): the article's flow
(judgment with a ratio -> HTTPRoute backendRef weights -> full-release judgment) on the local target, and the
mesh snapshot compiled from what it leaves in the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.pipelines.test_article_pipeline import TEMPLATE, _artifacts, _executor, _on_disk

from graylane.cli.pipelines import load_pipeline_file
from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import build_trigger
from graylane.resources.document import ResourceKey
from graylane.store import Store

HTTPROUTE = ResourceKey("gateway.networking.k8s.io", "HTTPRoute", "default", "reviews")
VS = ResourceKey("networking.istio.io", "VirtualService", "default", "reviews")


@pytest.fixture(autouse=True)
def _demo_folder_may_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_ARTIFACT_FILE_ROOTS", str(TEMPLATE.parent))


def _weights(store: Store) -> list[tuple[str, int]]:
    route = store.get(HTTPROUTE)
    assert route is not None
    [rule] = route.body["spec"]["rules"]
    return [(b["name"], b.get("weight", 1)) for b in rule["backendRefs"]]


def _mesh_split(store: Store) -> list[tuple[str, int]]:
    """The reviews mesh route the control plane would push for what is in the store."""
    bodies = [dict(r.body) for r in store.list()]
    snap = compile_snapshot(bodies, [], [], MeshOptions(), 1, isolate=True)
    assert not snap["rejected"], snap["rejected"]
    [vs] = [v for v in snap["virtual_services"] if v["hosts"] == ["reviews.default.svc.cluster.local"]]
    return [(d["host"].split(".")[0], d["weight"]) for d in vs["http"][0]["route"]]


def test_the_ratio_stage_applies_the_shipped_httproute_template() -> None:
    [pipeline] = load_pipeline_file(TEMPLATE / "reviews-canary-httproute.json")
    template = yaml.safe_load((TEMPLATE / "reviews-canary-httproute.yaml.tmpl").read_text(encoding="utf-8"))
    [stage] = [s for s in pipeline["stages"] if s["name"] == "灰度比例生效"]
    assert stage["manifests"] == [template]


@pytest.mark.parametrize(("choice", "expected"), [
    pytest.param("全量发布", [("reviews-v2", 1)], id="promote"),
    pytest.param("结束发布", [("reviews-v1", 70), ("reviews-v2", 30)], id="end"),
])
def test_httproute_canary_with_ratio_then_promote_or_end(tmp_path: Path, state_dir: Path, choice: str,
                                                         expected: list[tuple[str, int]]) -> None:
    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'h.db'}")
        ex = _executor(store)
        await ex.start()
        try:
            [baseline] = load_pipeline_file(TEMPLATE / "bookinfo-baseline.json")
            [canary] = load_pipeline_file(TEMPLATE / "reviews-canary-httproute.json")
            exe: Any = None
            for body in (baseline, _on_disk(canary)):
                config = ex.pipelines.get(ex.pipelines.save(body, actor="user:t").id)
                params = {"base_version": "v1", "canary_version": "v2"} if body is not baseline else {}
                trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": params,
                                                 "artifacts": _artifacts(config)}, ex)
                exe = await ex.start_execution(config, trigger, user="t")
                if body is baseline:
                    done = await ex.wait_until_complete(exe.id, timeout=60)
                    assert done.status == S.SUCCEEDED, [s.context.get("exception") for s in done.stages]
                    assert store.get(VS) is not None  # the baseline routes reviews with a VirtualService
            await ex.wait_for_stage(exe.id, "设置灰度比例", {S.RUNNING}, timeout=60)
            assert _weights(store) == [("reviews-v1", 100), ("reviews-v2", 0)]
            assert store.get(VS) is None  # the HTTPRoute took over
            for version in ("v1", "v2"):
                svc = store.get(ResourceKey("", "Service", "default", f"reviews-{version}"))
                assert svc is not None and svc.body["spec"]["selector"] == {"app": "reviews", "version": version}
            assert _mesh_split(store) == [("reviews-v1", 100)]
            await ex.update_stage(exe.id, "设置灰度比例",
                                  {"judgmentStatus": "continue", "customParams": {"canary_ratio": "30"}}, user="a")
            await ex.wait_for_stage(exe.id, "是否全量发布", {S.RUNNING}, timeout=60)
            assert _weights(store) == [("reviews-v1", 70), ("reviews-v2", 30)]
            assert _mesh_split(store) == [("reviews-v1", 70), ("reviews-v2", 30)]
            await ex.update_stage(exe.id, "是否全量发布", {"judgmentStatus": "continue", "judgmentInput": choice},
                                  user="a")
            done = await ex.wait_until_complete(exe.id, timeout=60)
            assert done.status == S.SUCCEEDED, json.dumps([s.context.get("exception") for s in done.stages])
            assert _weights(store) == expected
            v1 = store.get(ResourceKey("apps", "Deployment", "default", "reviews-v1"))
            assert (v1 is None) == (choice == "全量发布")  # promote deletes the baseline
            if choice == "全量发布":
                assert _mesh_split(store) == [("reviews-v2", 100)]
            skipped = {s.name for s in done.stages if s.status == S.SKIPPED}
            assert skipped == ({"结束发布"} if choice == "全量发布" else {"全量发布", "删除基准版本"})
        finally:
            await ex.stop()
            store.close()

    asyncio.run(go())
