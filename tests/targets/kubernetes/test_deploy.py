"""deploy/: the ClusterRole grants exactly the verbs the kubernetes target sends; the manifests hang together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from graylane_k8s_emulator import kubeconfig_text  # loaded by conftest.py

from graylane.errors import GraylaneError
from graylane.resources.document import Document, ResourceKey
from graylane.targets import accounts
from graylane.targets.kubernetes import KubernetesTarget

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def cluster_role() -> dict[tuple[str, str], set[str]]:
    role = next(d for d in docs("rbac.yaml") if d["kind"] == "ClusterRole")
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for plural in rule["resources"]:
                grants.setdefault((group, plural), set()).update(rule["verbs"])
    return grants


def doc(body: dict[str, Any]) -> Document:
    return Document(body)


WORKLOAD = [
    doc({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    doc({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reviews", "namespace": "shop"}}),
    doc({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reviews", "namespace": "shop"},
         "data": {"STAR_COLOR": "black"}}),
    doc({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}}),
    doc({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews-v1", "namespace": "shop"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
                  "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                               "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}}),
    doc({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
    doc({"apiVersion": "networking.istio.io/v1alpha3", "kind": "Gateway",
         "metadata": {"name": "shop-gateway", "namespace": "shop"},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}),
    doc({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}}),
]


@pytest.mark.asyncio
async def test_cluster_role_is_exactly_what_graylane_uses(cluster: Any, tmp_path: Path, state_dir: Path) -> None:
    grants = cluster_role()
    cluster.api.tokens["sa-token"] = grants
    kubeconfig = tmp_path / "sa-kubeconfig"
    kubeconfig.write_text(kubeconfig_text(cluster.url, token="sa-token"))
    accounts.add_account("in-cluster", kubeconfig=kubeconfig, namespace="shop")
    async with KubernetesTarget("in-cluster", kubeconfig=kubeconfig, poll_interval=0.02) as t:
        applied = await t.apply(WORKLOAD, actor="pipeline:e1/1")  # create via server-side apply
        assert {a.action for a in applied} == {"created"}
        await t.wait_ready([a.key for a in applied], timeout=10)
        deployment = ResourceKey("apps", "Deployment", "shop", "reviews-v1")
        await t.patch(deployment, {"spec": {"replicas": 2}}, "merge", actor="user:alice")
        await t.apply(WORKLOAD, actor="pipeline:e1/2")  # apply over existing objects
        assert await t.list("Deployment", "shop")
        live = await accounts.alive_context("in-cluster")
        assert {d["kind"] for d in live} == {"Service", "Deployment", "DestinationRule", "Gateway", "VirtualService"}
        gone = await t.delete([a.key for a in applied], actor="user:alice")
        assert len(gone) == len(WORKLOAD)

    used_verbs = {verb for _, _, verb in cluster.api.used}
    granted_verbs = {v for verbs in grants.values() for v in verbs}
    assert used_verbs == granted_verbs == {"get", "list", "create", "patch", "delete"}
    assert {(g, p) for g, p, _ in cluster.api.used} <= set(grants)


@pytest.mark.asyncio
async def test_without_create_the_first_apply_is_refused(cluster: Any, tmp_path: Path) -> None:
    cluster.api.tokens["no-create"] = {k: v - {"create"} for k, v in cluster_role().items()}
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(kubeconfig_text(cluster.url, token="no-create"))
    async with KubernetesTarget("x", kubeconfig=kubeconfig) as t:
        refused = "account 'x' may not apply Service default/reviews .*cannot create resource \"services\""
        with pytest.raises(GraylaneError, match=refused):
            await t.apply([WORKLOAD[3].with_namespace("default")], actor="user:alice")


def test_manifests_hang_together() -> None:
    rbac = {d["kind"]: d for d in docs("rbac.yaml")}
    server = {d["kind"]: d for d in docs("graylane.yaml")}
    db = {d["kind"]: d for d in docs("postgres.yaml")}
    sa = rbac["ServiceAccount"]["metadata"]
    binding = rbac["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == rbac["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]
    pod = server["Deployment"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == sa["name"]
    assert server["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    secret_ref = next(e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == "GRAYLANE_DATABASE_URL")
    assert secret_ref["name"] == db["Secret"]["metadata"]["name"]
    url = db["Secret"]["stringData"][secret_ref["key"]]
    assert url.startswith("postgresql+psycopg://") and db["Service"]["metadata"]["name"] in url
    pg_labels = db["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert db["Service"]["spec"]["selector"].items() <= pg_labels.items()
    # the declared accounts are ones our loader accepts
    accounts_yaml = yaml.safe_load(server["ConfigMap"]["data"]["accounts.yaml"])
    assert accounts_yaml["accounts"][0]["name"] == "in-cluster"
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml")
                                                       if p.name != "kustomization.yaml")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["graylane"]' in dockerfile and "7380" in dockerfile


def test_declared_accounts_load(state_dir: Path) -> None:
    server = {d["kind"]: d for d in docs("graylane.yaml")}
    (state_dir / "accounts.yaml").write_text(server["ConfigMap"]["data"]["accounts.yaml"])
    acc = accounts.get_account("in-cluster")
    assert acc.type == "kubernetes" and acc.kubeconfig is None and acc.namespace == "default"
    assert acc.prometheus == "http://prometheus.istio-system.svc:9090"
