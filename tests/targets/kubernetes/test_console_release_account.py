"""The console's release header for an execution releasing to a Kubernetes account (issue 21): the configured
weights are the cluster's VirtualService, or its Gateway API HTTPRoute's backendRef weights, read through the
account (`/api/v1/accounts/NAME/live`), not the local store's namesake."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from tests.ui.signin import sign_in

from graylane.resources.load import load_text
from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store
from graylane.targets import accounts

pytestmark = [pytest.mark.asyncio]

RULE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}}


def route(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {v2}}}
"""


PIPELINE = {"application": "bookinfo", "name": "reviews-on-staging", "stages": [
    {"refId": "1", "type": "deployManifest", "name": "reviews rule", "account": "staging", "source": "text",
     "skipExpressionEvaluation": True, "manifests": [RULE]},
    {"refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment", "name": "go on?",
     "judgmentInputs": [{"value": "yes"}]}]}


def configured_weights(state: Path, pipeline: dict[str, Any] = PIPELINE, local: str = "") -> list[dict[str, Any]]:
    """Run the pipeline through the API, then ask the console what it labels the topology's edges with."""
    store = Store.open()
    store.apply(load_text(local or route(100, 0)), "user:setup")  # the local store's namesake: what the bug showed
    try:
        with TestClient(create_app(ControlPlane(store=store), start_components=False),
                        base_url="http://127.0.0.1:7380") as c:
            token = {"Authorization": f"Bearer {c.app.state.cli_token}"}  # type: ignore[attr-defined]
            saved = c.post("/api/v1/pipelines", json=pipeline, headers=token)
            assert saved.status_code == 200, saved.text
            started = c.post(f"/api/v1/pipelines/{pipeline['name']}/start", json={"application": "bookinfo"},
                             headers=token)
            assert started.status_code == 200, started.text
            execution = started.json()["id"]
            deadline = time.monotonic() + 60
            while True:
                exe = c.get(f"/api/v1/executions/{execution}", headers=token).json()
                stages = {s["refId"]: s["status"] for s in exe["stages"]}
                if stages.get("2") == "RUNNING":
                    break
                assert exe["status"] in ("RUNNING", "NOT_STARTED") and time.monotonic() < deadline, exe
                time.sleep(0.1)
            sign_in(c)
            got = c.get("/ui/topology/releases")
            assert got.status_code == 200, got.text
            shares = c.get(f"/ui/executions/{execution}/release/shares")
            assert shares.status_code == 200
            return [*got.json(), {"shares": shares.text}]
    finally:
        store.close()


async def test_the_release_header_reads_weights_from_the_executions_account(cluster: Any, state_dir: Path) -> None:
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    target = accounts.get_target("staging", None, namespace=None)
    await target.apply(load_text(route(70, 30)), actor="user:setup")
    *releases, shares = await asyncio.to_thread(configured_weights, state_dir)
    assert [(r["service"], r["configured"]) for r in releases] == [("reviews", {"v1": 70.0, "v2": 30.0})]
    assert cluster.api.object("networking.istio.io/v1/destinationrules", "default", "reviews") is not None
    # the execution page's header shows the same: each version's configured share from the cluster
    assert 'style="width:70.0%"></span></span> 70%' in shares["shares"]
    assert 'style="width:30.0%"></span></span> 30%' in shares["shares"]


SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{port: 9080, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: default}
spec: {selector: {app: reviews, version: v1}, ports: [{port: 9080, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: default}
spec: {selector: {app: reviews, version: v2}, ports: [{port: 9080, name: http}]}
"""


def http_route(v1: int, v2: int) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
                     "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 9080, "weight": v1},
                                                {"name": "reviews-v2", "port": 9080, "weight": v2}]}]}}


async def test_the_release_header_reads_an_http_routes_weights_from_the_account(cluster: Any,
                                                                               state_dir: Path) -> None:
    cluster.api.install_gateway_api()
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    target = accounts.get_target("staging", None, namespace=None)
    await target.apply(load_text(SERVICES), actor="user:setup")
    # /live lists the cluster's HTTPRoutes (the version the cluster serves), beside the other kinds
    await target.apply(load_text(yaml.safe_dump(http_route(90, 10))), actor="user:setup")
    live = [(b["kind"], b["metadata"]["name"]) for b in await accounts.alive_context("staging", "default")]
    assert ("HTTPRoute", "reviews") in live and ("Service", "reviews-v2") in live
    pipeline = {"application": "bookinfo", "name": "reviews-route-on-staging", "stages": [
        {"refId": "1", "type": "deployManifest", "name": "reviews route", "account": "staging", "source": "text",
         "skipExpressionEvaluation": True, "manifests": [http_route(80, 20)]},
        {"refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment", "name": "go on?",
         "judgmentInputs": [{"value": "yes"}]}]}
    local = yaml.safe_dump_all([*yaml.safe_load_all(SERVICES), http_route(100, 0)])  # the local namesake
    *releases, shares = await asyncio.to_thread(configured_weights, state_dir, pipeline, local)
    assert [(r["service"], r["configured"]) for r in releases] == [("reviews", {"v1": 80.0, "v2": 20.0})]
    assert 'style="width:80.0%"></span></span> 80%' in shares["shares"]
    assert 'style="width:20.0%"></span></span> 20%' in shares["shares"]


async def test_live_skips_http_routes_when_the_cluster_has_no_gateway_api(cluster: Any, state_dir: Path) -> None:
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig, namespace="default")
    target = accounts.get_target("staging", None, namespace=None)
    await target.apply(load_text(route(70, 30)), actor="user:setup")
    live = [b["kind"] for b in await accounts.alive_context("staging", "default")]
    assert "VirtualService" in live and "HTTPRoute" not in live
