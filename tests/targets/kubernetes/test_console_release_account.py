"""The console's release header for an execution releasing to a Kubernetes account (issue 21): the configured
weights are the cluster's VirtualService, read through the account, not the local store's namesake."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
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


def configured_weights(state: Path) -> list[dict[str, Any]]:
    """Run the pipeline through the API, then ask the console what it labels the topology's edges with."""
    store = Store.open()
    store.apply(load_text(route(100, 0)), "user:setup")  # the local store's namesake: what the bug showed
    try:
        with TestClient(create_app(ControlPlane(store=store), start_components=False),
                        base_url="http://127.0.0.1:7380") as c:
            token = {"Authorization": f"Bearer {c.app.state.cli_token}"}  # type: ignore[attr-defined]
            saved = c.post("/api/v1/pipelines", json=PIPELINE, headers=token)
            assert saved.status_code == 200, saved.text
            started = c.post("/api/v1/pipelines/reviews-on-staging/start", json={"application": "bookinfo"},
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
