"""The kubernetes Target against kmock's emulated API server over real HTTP (lightkube is the real client)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from graylane_k8s_emulator import APPLY, kubeconfig_text  # loaded by conftest.py

from graylane.errors import Conflict, GraylaneError, NotFound, ValidationError
from graylane.resources.document import Document, ResourceKey, Source
from graylane.targets.base import Target
from graylane.targets.kubernetes import KubernetesTarget, rollout_status

pytestmark = pytest.mark.asyncio

DEPLOY = ResourceKey("apps", "Deployment", "bookinfo", "reviews-v2")


def deployment(name: str = "reviews-v2", replicas: int = 2, image: str = "istio/examples-bookinfo-reviews-v2:1.20.3",
               namespace: str | None = "bookinfo") -> Document:
    app, _, version = name.rpartition("-")
    meta: dict[str, Any] = {"name": name, "labels": {"app": app, "version": version}}
    if namespace:
        meta["namespace"] = namespace
    return Document({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app, "version": version}},
                 "template": {"metadata": {"labels": {"app": app, "version": version}},
                              "spec": {"containers": [{"name": app, "image": image,
                                                       "ports": [{"containerPort": 9080}]}]}}},
    }, source=Source("reviews.yaml", 1))


def service(namespace: str | None = "bookinfo") -> Document:
    meta: dict[str, Any] = {"name": "reviews"}
    if namespace:
        meta["namespace"] = namespace
    return Document({"apiVersion": "v1", "kind": "Service", "metadata": meta,
                     "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}},
                    source=Source("reviews.yaml", 30))


def destination_rule(namespace: str | None = "bookinfo") -> Document:
    meta: dict[str, Any] = {"name": "reviews"}
    if namespace:
        meta["namespace"] = namespace
    return Document({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": meta,
                     "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                            {"name": "v2", "labels": {"version": "v2"}}]}},
                    source=Source("destination-rule-reviews.yaml", 1))


def virtual_service(v2_weight: int = 20, namespace: str | None = "bookinfo") -> Document:
    meta: dict[str, Any] = {"name": "reviews"}
    if namespace:
        meta["namespace"] = namespace
    return Document({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": meta,
                     "spec": {"hosts": ["reviews"], "http": [{"route": [
                         {"destination": {"host": "reviews", "subset": "v1"}, "weight": 100 - v2_weight},
                         {"destination": {"host": "reviews", "subset": "v2"}, "weight": v2_weight}]}]}},
                    source=Source("virtual-service-reviews-80-20.yaml", 1))


def target(cluster: Any, **kwargs: Any) -> KubernetesTarget:
    return KubernetesTarget("staging", kubeconfig=cluster.kubeconfig, poll_interval=0.02, **kwargs)


def patches(api: Any) -> list[Any]:
    return [r for r in list(api) if r.method.value == "PATCH" and r.params.get("dryRun") != "All"]


async def test_is_a_target(cluster: Any) -> None:
    async with target(cluster) as t:
        assert isinstance(t, Target)
        assert t.namespace == "default"  # from the kubeconfig context


async def test_server_side_apply_in_make_before_break_order(cluster: Any) -> None:
    async with target(cluster) as t:
        docs = [virtual_service(), destination_rule(), deployment(), service()]
        applied = await t.apply(docs, actor="user:alice")
        assert [a.key.kind for a in applied] == ["Service", "Deployment", "DestinationRule", "VirtualService"]
        assert {a.action for a in applied} == {"created"}
        sent = patches(cluster.api)
        assert [r.url.path.rsplit("/", 2)[-2] for r in sent] == [
            "services", "deployments", "destinationrules", "virtualservices"]
        assert all(r.headers["Content-Type"] == APPLY and r.params["fieldManager"] == "graylane" for r in sent)
        assert all(r.params.get("force") is None for r in sent)
        vs = cluster.api.object("networking.istio.io/v1/virtualservices", "bookinfo", "reviews")
        assert vs["spec"]["http"][0]["route"][1]["weight"] == 20

        again = await t.apply(docs, actor="user:alice")
        assert {a.action for a in again} == {"unchanged"}

        shifted = await t.apply([virtual_service(50)], actor="pipeline:e1/s2")
        assert [a.action for a in shifted] == ["configured"]
        assert shifted[0].body["spec"]["http"][0]["route"][1]["weight"] == 50
        assert shifted[0].body["metadata"]["generation"] == 2
        got = await t.get(ResourceKey("networking.istio.io", "VirtualService", "bookinfo", "reviews"))
        assert got is not None and got["spec"]["http"][0]["route"][0]["weight"] == 50


async def test_apply_removes_fields_graylane_no_longer_sets(cluster: Any) -> None:
    async with target(cluster) as t:
        dr = destination_rule()
        dr.body["spec"]["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}}
        await t.apply([dr], actor="user:alice")
        await t.apply([destination_rule()], actor="user:alice")
        got = await t.get(ResourceKey("networking.istio.io", "DestinationRule", "bookinfo", "reviews"))
        assert got is not None and "trafficPolicy" not in got["spec"]


async def test_namespaces_default_and_override(cluster: Any) -> None:
    cluster.api.add_namespace("canary")
    async with target(cluster) as t:
        applied = await t.apply([service(namespace=None)], actor="user:alice")
        assert applied[0].key.namespace == "default"
        moved = await t.apply([service(), virtual_service()], actor="user:alice", namespace_override="canary")
        assert {a.key.namespace for a in moved} == {"canary"}
        assert cluster.api.object("v1/services", "canary", "reviews") is not None
        assert cluster.api.object("v1/services", "bookinfo", "reviews") is None
    async with KubernetesTarget("x", kubeconfig=cluster.kubeconfig, namespace="canary") as t2:
        assert (await t2.get(ResourceKey("", "Service", "", "reviews"))) is not None


async def test_namespace_created_in_the_same_batch(cluster: Any) -> None:
    ns = Document({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    async with target(cluster) as t:
        applied = await t.apply([service("team-a"), ns], actor="user:alice")
        assert [a.key.kind for a in applied] == ["Namespace", "Service"]
        assert cluster.api.object("v1/services", "team-a", "reviews") is not None
        # without the Namespace document the API server refuses, and says so
        with pytest.raises(NotFound, match="namespaces \"nowhere\" not found"):
            await t.apply([service("nowhere")], actor="user:alice")


async def test_dry_run_changes_nothing(cluster: Any) -> None:
    async with target(cluster) as t:
        applied = await t.apply([deployment(), service()], actor="user:alice", dry_run=True)
        assert [a.action for a in applied] == ["created", "created"]
        assert cluster.api.object("apps/v1/deployments", "bookinfo", "reviews-v2") is None
        await t.apply([service()], actor="user:alice")
        changed = service()
        changed.body["spec"]["ports"][0]["port"] = 9081
        result = await t.apply([changed, service()], actor="user:alice", dry_run=True)
        assert {a.action for a in result} == {"configured", "unchanged"}
        assert cluster.api.object("v1/services", "bookinfo", "reviews")["spec"]["ports"][0]["port"] == 9080


async def test_missing_istio_crds_stop_the_whole_batch(bare_cluster: Any) -> None:
    async with target(bare_cluster) as t:
        with pytest.raises(NotFound) as err:
            await t.apply([deployment(namespace="default"), virtual_service(namespace="default")],
                          actor="user:alice")
        assert "networking.istio.io" in str(err.value)
        assert "istioctl install" in str(err.value)
        assert err.value.where == "virtual-service-reviews-80-20.yaml:1"
        assert bare_cluster.api.object("apps/v1/deployments", "default", "reviews-v2") is None  # nothing applied
        vs_key = ResourceKey("networking.istio.io", "VirtualService", "default", "reviews")
        with pytest.raises(NotFound, match="istioctl install"):
            await t.get(vs_key)
        assert await t.delete([vs_key], actor="user:alice") == []  # nothing of that kind can exist
        assert not await t.istio_installed()
        info = await t.check()
        assert info["istio"] is False and info["version"].startswith("v1.")


async def test_istio_detected(cluster: Any) -> None:
    async with target(cluster) as t:
        assert await t.istio_installed()


async def test_conflicts_with_another_field_manager(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment(replicas=2)], actor="user:alice")
        # someone scales by hand: `kubectl apply --server-side` as field manager "kubectl"
        other = copy.deepcopy(deployment(replicas=5).body)
        other["metadata"]["namespace"] = "bookinfo"
        async with cluster.api.patch("/apis/apps/v1/namespaces/bookinfo/deployments/reviews-v2",
                                     params={"fieldManager": "kubectl", "force": "true"},
                                     json={"apiVersion": "apps/v1", "kind": "Deployment",
                                           "metadata": {"name": "reviews-v2"}, "spec": {"replicas": 5}},
                                     headers={"Content-Type": APPLY,
                                              "Authorization": "Bearer graylane-test-token"}) as resp:
            assert resp.status == 200
        with pytest.raises(Conflict) as err:
            await t.apply([deployment(replicas=3)], actor="user:alice")
        assert 'conflict with "kubectl"' in str(err.value) and ".spec.replicas" in str(err.value)
        assert "force" in str(err.value)
        assert cluster.api.object("apps/v1/deployments", "bookinfo", "reviews-v2")["spec"]["replicas"] == 5
    async with target(cluster, force_conflicts=True) as forced:
        await forced.apply([deployment(replicas=3)], actor="user:alice")
        assert cluster.api.object("apps/v1/deployments", "bookinfo", "reviews-v2")["spec"]["replicas"] == 3
        assert patches(cluster.api)[-1].params.get("force") == "true"


async def test_patch_strategic_merge_json(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment()], actor="user:alice")
        body = await t.patch(DEPLOY, {"spec": {"template": {"spec": {"containers": [
            {"name": "reviews", "image": "reviews:v2.1"}]}}}}, "strategic", actor="user:alice")
        container = body["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "reviews:v2.1" and container["ports"] == [{"containerPort": 9080}]
        body = await t.patch(DEPLOY, {"metadata": {"labels": {"canary": "true"}}}, "merge", actor="user:alice")
        assert body["metadata"]["labels"] == {"app": "reviews", "version": "v2", "canary": "true"}
        body = await t.patch(DEPLOY, [{"op": "replace", "path": "/spec/replicas", "value": 4}], "json",
                             actor="user:alice")
        assert body["spec"]["replicas"] == 4
        sent = [r.headers["Content-Type"] for r in patches(cluster.api)[-3:]]
        assert sent == ["application/strategic-merge-patch+json", "application/merge-patch+json",
                        "application/json-patch+json"]
        with pytest.raises(ValidationError):
            await t.patch(DEPLOY, {"spec": {}}, "json", actor="user:alice")
        # custom resources take no strategic merge patch: sent as a merge patch
        await t.apply([virtual_service()], actor="user:alice")
        vs_key = ResourceKey("networking.istio.io", "VirtualService", "bookinfo", "reviews")
        body = await t.patch(vs_key, {"metadata": {"labels": {"canary": "true"}}}, "strategic", actor="user:alice")
        assert body["metadata"]["labels"] == {"canary": "true"}
        assert patches(cluster.api)[-1].headers["Content-Type"] == "application/merge-patch+json"
        with pytest.raises(ValidationError):
            await t.patch(DEPLOY, [{"op": "test", "path": "/spec/replicas", "value": 1}], "json", actor="user:alice")
        with pytest.raises(NotFound):
            await t.patch(DEPLOY._replace(name="nope"), {"spec": {}}, "merge", actor="user:alice")


async def test_delete_cascades_routes_first(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment(), service(), destination_rule(), virtual_service()], actor="user:alice")
        keys = [DEPLOY, ResourceKey("", "Service", "bookinfo", "reviews"),
                ResourceKey("networking.istio.io", "VirtualService", "bookinfo", "reviews"),
                ResourceKey("networking.istio.io", "DestinationRule", "bookinfo", "reviews"),
                ResourceKey("apps", "Deployment", "bookinfo", "never-existed")]
        gone = await t.delete(keys, actor="user:alice", grace_period_seconds=5)
        assert [k.kind for k in gone] == ["VirtualService", "DestinationRule", "Deployment", "Service"]
        assert [d["resource"] for d in cluster.api.deletions] == [
            "virtualservices", "destinationrules", "deployments", "services"]
        assert {d["propagationPolicy"] for d in cluster.api.deletions} == {"Background"}
        assert {d["gracePeriodSeconds"] for d in cluster.api.deletions} == {"5"}
        assert await t.get(DEPLOY) is None
        await t.apply([deployment()], actor="user:alice")
        await t.delete([DEPLOY], actor="user:alice", cascade=False)
        assert cluster.api.deletions[-1]["propagationPolicy"] == "Orphan"
        assert await t.delete([DEPLOY], actor="user:alice") == []


async def test_list(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment("reviews-v1"), deployment("reviews-v2"), virtual_service()], actor="user:alice")
        names = sorted(d["metadata"]["name"] for d in await t.list("Deployment", "bookinfo"))
        assert names == ["reviews-v1", "reviews-v2"]
        assert await t.list("Deployment", "default") == []
        assert len(await t.list("VirtualService", "*", group="networking.istio.io")) == 1
        await t.apply([service(namespace=None)], actor="user:alice")
        assert sorted(s["metadata"]["namespace"] for s in await t.list("Service")) == ["default"]
        await t.apply([service()], actor="user:alice")
        assert sorted(s["metadata"]["namespace"] for s in await t.list("Service")) == ["bookinfo", "default"]


async def test_wait_ready_like_rollout_status(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment(), service()], actor="user:alice")
        await t.wait_ready([DEPLOY, ResourceKey("", "Service", "bookinfo", "reviews")], timeout=10)
        got = await t.get(DEPLOY)
        assert got is not None and got["status"]["availableReplicas"] == 2


async def test_stuck_rollout_fails_with_the_reason(cluster: Any) -> None:
    cluster.api.rollouts["reviews-v3"] = "stuck"
    async with target(cluster) as t:
        await t.apply([deployment("reviews-v3")], actor="user:alice")
        with pytest.raises(GraylaneError) as err:
            await t.wait_ready([DEPLOY._replace(name="reviews-v3")], timeout=10)
        assert "exceeded its progress deadline" in str(err.value)
        assert 'ReplicaSet "reviews-v3-1" has timed out progressing' in str(err.value)


async def test_rollout_that_does_not_finish_times_out(cluster: Any) -> None:
    cluster.api.rollouts["reviews-v2"] = "manual"
    async with target(cluster) as t:
        await t.apply([deployment()], actor="user:alice")
        with pytest.raises(GraylaneError, match="spec update to be observed"):
            await t.wait_ready([DEPLOY], timeout=0.3)
        with pytest.raises(GraylaneError, match="does not exist"):
            await t.wait_ready([DEPLOY._replace(name="ghost")], timeout=0.2)


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_rollout_status_messages() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "r", "generation": 3},
           "spec": {"replicas": 3}, "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 1}}
    assert rollout_status(dep) == (False, 'Waiting for deployment "r" rollout to finish: '
                                          "1 out of 3 new replicas have been updated...")
    dep["status"].update(updatedReplicas=3)
    assert "1 old replicas are pending termination" in rollout_status(dep)[1]
    dep["status"].update(replicas=3, availableReplicas=2)
    assert "2 of 3 updated replicas are available" in rollout_status(dep)[1]
    dep["status"].update(availableReplicas=3)
    assert rollout_status(dep) == (True, 'deployment "r" successfully rolled out')  # kubectl's %q quoting


async def test_bad_documents_change_nothing(cluster: Any) -> None:
    nameless = Document({"apiVersion": "v1", "kind": "Service", "metadata": {}}, source=Source("svc.yaml", 7),
                        positions={("metadata",): 9})
    async with target(cluster) as t:
        with pytest.raises(ValidationError) as err:
            await t.apply([service(), nameless], actor="user:alice")
        assert err.value.where == "svc.yaml:9"
        assert patches(cluster.api) == []


async def test_wrong_token_is_an_auth_error(cluster: Any, tmp_path: Path) -> None:
    kc = tmp_path / "bad-kubeconfig"
    kc.write_text(kubeconfig_text(cluster.url, token="expired"))
    async with KubernetesTarget("staging", kubeconfig=kc) as t:
        with pytest.raises(GraylaneError) as err:
            await t.apply([service()], actor="user:alice")
        assert "401 Unauthorized" in str(err.value) and "'staging'" in str(err.value)
        with pytest.raises(GraylaneError, match="401"):
            await t.get(DEPLOY)


async def test_forbidden_verbs_are_reported(cluster: Any, tmp_path: Path) -> None:
    cluster.api.tokens["read-only"] = {"get", "list", "watch"}
    kc = tmp_path / "ro-kubeconfig"
    kc.write_text(kubeconfig_text(cluster.url, token="read-only"))
    async with KubernetesTarget("viewer", kubeconfig=kc) as t:
        assert await t.get(DEPLOY) is None
        with pytest.raises(GraylaneError) as err:
            await t.apply([service()], actor="user:alice")
        text = str(err.value)
        assert "may not apply" in text and 'cannot patch resource "services"' in text
        assert "deploy/rbac.yaml" in text
        assert cluster.api.object("v1/services", "bookinfo", "reviews") is None


async def test_unreachable_api_server(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubeconfig_text(f"http://127.0.0.1:{port}", token="t"))
    async with KubernetesTarget("gone", kubeconfig=kc, request_timeout=2) as t:
        with pytest.raises(GraylaneError) as err:
            await t.apply([service()], actor="user:alice")
        assert "cannot reach the Kubernetes API server of account 'gone'" in str(err.value)
        assert f"127.0.0.1:{port}" in str(err.value)
        with pytest.raises(GraylaneError, match="cannot reach"):
            await t.get(DEPLOY)


async def test_bad_kubeconfig(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubeconfig_text("http://127.0.0.1:1"))
    with pytest.raises(GraylaneError, match="kubeconfig"):
        KubernetesTarget("x", kubeconfig=kc, context="nope").client()
    with pytest.raises(GraylaneError, match="kubeconfig"):
        KubernetesTarget("x", kubeconfig=tmp_path / "missing").client()


def _replica_set(owner: dict[str, Any], revision: int, image: str) -> Document:
    """What the Deployment controller leaves behind for each rollout (the emulator runs no controller)."""
    template = copy.deepcopy(owner["spec"]["template"])
    template["metadata"]["labels"]["pod-template-hash"] = f"h{revision}"
    template["spec"]["containers"][0]["image"] = image
    md = owner["metadata"]
    return Document({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": f"{md['name']}-h{revision}", "namespace": md["namespace"],
        "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": md["name"],
                             "uid": md.get("uid", "")}]},
        "spec": {"replicas": 0, "selector": owner["spec"]["selector"], "template": template}},
        source=Source("rs.yaml", 1))


async def test_history_is_the_deployments_replicaset_revisions(cluster: Any) -> None:
    async with target(cluster) as t:
        await t.apply([deployment(image="reviews:v3")], actor="user:alice")
        live = await t.get(DEPLOY)
        assert live is not None
        await t.apply([_replica_set(live, 2, "reviews:v3"), _replica_set(live, 1, "reviews:v2")], actor="user:alice")
        history = await t.history(DEPLOY)
        assert [r.revision for r in history] == [1, 2]
        first = history[0].body["spec"]["template"]
        assert first["spec"]["containers"][0]["image"] == "reviews:v2"
        assert "pod-template-hash" not in first["metadata"]["labels"]  # the controller's label is not the spec's
        with pytest.raises(GraylaneError, match="only a Deployment's ReplicaSets keep one"):
            await t.history(ResourceKey("", "Service", "bookinfo", "reviews"))
