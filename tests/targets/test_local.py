"""LocalTarget (graylane.targets.local) over a real store: apply, patch kinds, delete, wait_ready."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graylane.errors import Conflict, NotFound, ValidationError
from graylane.resources.document import Document, ResourceKey
from graylane.resources.load import load_text
from graylane.store import Store
from graylane.targets.base import Target
from graylane.targets.local import LocalTarget, json_merge_patch, strategic_merge

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, labels: {app: reviews}}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec:
      containers:
      - name: reviews
        image: reviews:v2
        env: [{name: COLOR, value: black}, {name: MODE, value: a}]
      - name: logger
        image: logger:1
"""
VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""
DEPLOY_KEY = ResourceKey("apps", "Deployment", "default", "reviews-v2")
VS_KEY = ResourceKey("networking.istio.io", "VirtualService", "default", "reviews")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def target(store: Store) -> LocalTarget:
    t = LocalTarget(store)
    run(t.apply(load_text(DEPLOY) + load_text(VS), actor="user:setup"))
    return t


def test_local_target_implements_the_target_protocol(store: Store) -> None:
    assert isinstance(LocalTarget(store), Target)
    assert LocalTarget(store).account == "local"


def test_apply_with_namespace_override_records_the_actor(store: Store) -> None:
    t = LocalTarget(store)
    [applied] = run(t.apply(load_text(VS), actor="pipeline:01HX/stage2", namespace_override="shop"))
    assert (applied.key.namespace, applied.action) == ("shop", "created")
    key = ResourceKey("networking.istio.io", "VirtualService", "shop", "reviews")
    assert store.history(key)[0].actor == "pipeline:01HX/stage2"
    [again] = run(t.apply(load_text(VS), actor="user:x", namespace_override="shop", dry_run=True))
    assert again.action == "unchanged"


def test_get_and_list_accept_short_names(target: LocalTarget) -> None:
    assert run(target.get(VS_KEY))["spec"]["hosts"] == ["reviews"]  # type: ignore[index]
    assert [o["metadata"]["name"] for o in run(target.list("vs"))] == ["reviews"]
    assert [o["metadata"]["name"] for o in run(target.list("Deployment", namespace="default"))] == ["reviews-v2"]
    assert run(target.get(ResourceKey("", "Service", "default", "nope"))) is None


def test_strategic_patch_merges_containers_and_env_by_name(target: LocalTarget, store: Store) -> None:
    patch = {"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "reviews", "image": "reviews:v3", "env": [{"name": "COLOR", "value": "red"}]}]}}}}
    body = run(target.patch(DEPLOY_KEY, patch, "strategic", actor="pipeline:e1/patch"))
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("reviews", "reviews:v3"), ("logger", "logger:1")]
    assert containers[0]["env"] == [{"name": "COLOR", "value": "red"}, {"name": "MODE", "value": "a"}]
    assert body["spec"]["replicas"] == 3 and body["metadata"]["generation"] == 2
    assert store.history(DEPLOY_KEY)[-1].actor == "pipeline:e1/patch"


def test_strategic_patch_deletes_a_container_with_the_directive(target: LocalTarget) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "logger", "$patch": "delete"}]}}}}
    body = run(target.patch(DEPLOY_KEY, patch, "strategic", actor="user:a"))
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["reviews"]


def test_strategic_patch_on_a_custom_resource_is_refused_like_the_api_server(target: LocalTarget) -> None:
    with pytest.raises(ValidationError, match="not supported for VirtualService"):
        run(target.patch(VS_KEY, {"spec": {"hosts": ["x"]}}, "strategic", actor="user:a"))


def test_merge_patch_replaces_lists_and_null_deletes(target: LocalTarget) -> None:
    patch = {"metadata": {"labels": {"app": None, "canary": "true"}},
             "spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}
    body = run(target.patch(VS_KEY, patch, "merge", actor="user:a"))
    assert body["metadata"]["labels"] == {"canary": "true"}
    assert body["spec"]["http"] == [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]
    assert body["spec"]["hosts"] == ["reviews"]


def test_json_patch_moves_weights(target: LocalTarget) -> None:
    ops = [{"op": "test", "path": "/spec/http/0/route/0/weight", "value": 90},
           {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
           {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50}]
    body = run(target.patch(VS_KEY, ops, "json", actor="user:a"))
    assert [r["weight"] for r in body["spec"]["http"][0]["route"]] == [50, 50]


def test_failed_json_patch_test_changes_nothing(target: LocalTarget, store: Store) -> None:
    before = store.get(VS_KEY)
    ops = [{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 0},
           {"op": "test", "path": "/spec/hosts/0", "value": "ratings"}]
    with pytest.raises(Conflict, match="test failed"):
        run(target.patch(VS_KEY, ops, "json", actor="user:a"))
    assert store.get(VS_KEY) == before


def test_patch_results_are_validated_and_identity_is_fixed(target: LocalTarget) -> None:
    with pytest.raises(ValidationError, match="may not change"):
        run(target.patch(VS_KEY, {"metadata": {"name": "other"}}, "merge", actor="user:a"))
    with pytest.raises(ValidationError):
        run(target.patch(VS_KEY, [{"op": "remove", "path": "/spec/nothing"}], "json", actor="user:a"))
    with pytest.raises(NotFound):
        run(target.patch(ResourceKey("", "Service", "default", "ghost"), {"spec": {}}, "merge", actor="user:a"))


def test_patch_with_a_stale_resource_version_precondition_conflicts(target: LocalTarget) -> None:
    with pytest.raises(Conflict):
        run(target.patch(VS_KEY, {"metadata": {"resourceVersion": "999"}, "spec": {"hosts": ["r"]}}, "merge",
                         actor="user:a"))


def test_delete_returns_what_existed(target: LocalTarget) -> None:
    gone = run(target.delete([VS_KEY, ResourceKey("", "Service", "default", "x")], actor="user:a"))
    assert gone == [VS_KEY]
    assert run(target.get(VS_KEY)) is None


class Recorder:
    """Stands in for the runtime and mesh components at their seam: records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float]] = []

    async def wait_ready(self, keys: list[ResourceKey], timeout: float) -> None:
        self.calls.append(("ready", keys, timeout))

    async def wait_acked(self, revision: int, timeout: float) -> float:
        self.calls.append(("acked", revision, timeout))
        return 0.0


def test_wait_ready_asks_the_runtime_then_the_mesh_for_the_current_revision(store: Store) -> None:
    runtime, mesh = Recorder(), Recorder()
    t = LocalTarget(store, runtime=runtime, mesh=mesh)
    run(t.apply(load_text(DEPLOY), actor="user:a"))
    run(t.wait_ready([DEPLOY_KEY], timeout=30))
    assert [c[:2] for c in runtime.calls] == [("ready", [DEPLOY_KEY])]
    assert [c[:2] for c in mesh.calls] == [("acked", store.revision())]
    assert 0 < mesh.calls[0][2] <= 30
    with pytest.raises(NotFound):
        run(t.wait_ready([VS_KEY], timeout=1))


def test_strategic_merge_directives() -> None:
    original = {"a": {"b": 1, "c": 2}, "finalizers": ["x"], "ports": [{"containerPort": 80}, {"containerPort": 81}]}
    assert strategic_merge(original, {"a": {"$patch": "replace", "d": 4}})["a"] == {"d": 4}
    assert "a" not in strategic_merge(original, {"a": {"$patch": "delete"}})
    assert strategic_merge(original, {"finalizers": ["y", "x"]})["finalizers"] == ["x", "y"]
    assert strategic_merge(original, {"$deleteFromPrimitiveList/finalizers": ["x"]})["finalizers"] == []
    assert strategic_merge(original, {"a": {"$retainKeys": ["b"], "b": 5}})["a"] == {"b": 5}
    reordered = strategic_merge(original, {"$setElementOrder/ports": [{"containerPort": 81}, {"containerPort": 80}]})
    assert reordered["ports"] == [{"containerPort": 81}, {"containerPort": 80}]
    assert original["a"] == {"b": 1, "c": 2}  # inputs untouched


def test_json_merge_patch_rfc7386_examples() -> None:
    # RFC 7386 §3's worked example.
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
              "tags": ["example", "sample"], "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
             "tags": ["example"]}
    assert json_merge_patch(target, patch) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
        "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}


def test_apply_takes_plain_documents(store: Store) -> None:
    doc = Document(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}})
    [applied] = run(LocalTarget(store).apply([doc], actor="user:a"))
    assert applied.action == "created" and applied.body["metadata"]["resourceVersion"] == applied.resource_version


class InterleavingStore:
    """The real store, with another writer's change landing between the patch's read and its write."""

    def __init__(self, store: Store, key: ResourceKey, change: dict[str, Any]) -> None:
        self._store, self._key, self._change, self.interleaved = store, key, change, 0

    def get(self, key: ResourceKey) -> Any:
        got = self._store.get(key)
        if key == self._key and self.interleaved == 0:
            self.interleaved += 1
            body = {k: v for k, v in got.body.items() if k != "metadata"}  # type: ignore[union-attr]
            body["metadata"] = {"name": key.name, "namespace": key.namespace, "labels": self._change}
            self._store.apply([body], actor="user:someone-else")
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_patch_retries_when_another_writer_lands_in_between(target: LocalTarget, store: Store) -> None:
    racing = LocalTarget(InterleavingStore(store, VS_KEY, {"touched": "yes"}))
    body = run(racing.patch(VS_KEY, {"spec": {"hosts": ["reviews", "reviews.default.svc.cluster.local"]}}, "merge",
                            actor="user:patcher"))
    assert body["metadata"]["labels"] == {"touched": "yes"}  # the other writer's change survived
    assert body["spec"]["hosts"] == ["reviews", "reviews.default.svc.cluster.local"]
    assert [h.actor for h in store.history(VS_KEY)][-2:] == ["user:someone-else", "user:patcher"]


def test_json_patch_can_test_the_resource_version(target: LocalTarget, store: Store) -> None:
    rv = store.get(VS_KEY).resource_version  # type: ignore[union-attr]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "add", "path": "/metadata/labels", "value": {"canary": "on"}}]
    body = run(target.patch(VS_KEY, ops, "json", actor="user:a"))
    assert body["metadata"]["labels"] == {"canary": "on"} and body["metadata"]["resourceVersion"] != rv
    with pytest.raises(Conflict):
        run(target.patch(VS_KEY, ops, "json", actor="user:a"))  # the version it tests is gone now
