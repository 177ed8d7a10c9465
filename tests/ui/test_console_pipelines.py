"""Pipeline and execution pages through the real app and executor (the browser flow is test_console_flow.py)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from tests.ui.signin import sign_in

from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store

WEIGHT = "${100 - #toInt(#stage('设置灰度比例')['context']['customParams']['canary_ratio'])}"
PIPELINE = {
    "application": "shop", "name": "gate",
    "parameterConfig": [{"name": "canary_version", "label": "Canary", "default": "v2", "required": True}],
    "stages": [
        {"refId": "1", "type": "manualJudgment", "name": "设置灰度比例", "instructions": "Type the ratio",
         "customParamConfig": [{"name": "canary_ratio", "label": "Canary ratio", "type": "int", "min": 0,
                                "max": 100, "required": True}]},
        {"refId": "2", "requisiteStageRefIds": ["1"], "type": "evaluateVariables", "name": "compute",
         "variables": [{"key": "weight", "value": WEIGHT}]},
    ],
}


@pytest.fixture
def console(state_dir, monkeypatch):
    monkeypatch.setenv("GRAYLANE_BIND_HOST", "127.0.0.1")
    store = Store.open()
    with TestClient(create_app(ControlPlane(store=store)), base_url="http://127.0.0.1:7380") as c:
        c.headers.update(sign_in(c))
        yield c
    store.close()


def wait_for(c, execution_id, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exe = c.get(f"/api/v1/executions/{execution_id}").json()
        if predicate(exe):
            return exe
        time.sleep(0.1)
    raise AssertionError(f"execution never reached the state; last: {exe['status']}")


def stage(exe, name):
    return next(s for s in exe["stages"] if s["name"] == name)


def test_import_shows_validation_errors_inline_and_saves_nothing(console):
    bad = {**PIPELINE, "stages": [{"refId": "1", "type": "noSuchStage", "name": "x"}]}
    r = console.post("/ui/pipelines/import", data={"pipeline": json.dumps(bad)})
    assert 'role="alert"' in r.text and "noSuchStage" in r.text
    assert console.post("/ui/pipelines/import", data={"pipeline": "{not json"}).text.count("not JSON") == 1
    assert console.get("/api/v1/pipelines").json() == []


def test_start_judge_and_see_the_result_through_the_console(console):
    r = console.post("/ui/pipelines/import", data={"pipeline": json.dumps(PIPELINE)})
    assert "Imported gate." in r.text
    listing = console.get("/pipelines").text
    assert "gate" in listing and "canary_version" in listing
    form = console.get(f"/pipelines/{console.get('/api/v1/pipelines').json()[0]['id']}/start").text
    assert 'name="p_canary_version"' in form and 'value="v2"' in form and "required" in form
    pid = console.get("/api/v1/pipelines").json()[0]["id"]
    start_key = "0d8e7c55-8f3a-4b1e-9c2d-6a5b4c3d2e1f"  # console.js: one per start, the same on a re-send
    started = console.post(f"/ui/pipelines/{pid}/start", data={"p_canary_version": "v3"},
                           headers={"Idempotency-Key": start_key})
    assert started.status_code == 204
    execution_id = started.headers["HX-Redirect"].rsplit("/", 1)[-1]
    resent = console.post(f"/ui/pipelines/{pid}/start", data={"p_canary_version": "v3"},
                          headers={"Idempotency-Key": start_key})
    assert resent.status_code == 204 and resent.headers["HX-Redirect"] == started.headers["HX-Redirect"]
    assert [e["id"] for e in console.get("/api/v1/executions").json()] == [execution_id]  # one start, not two
    exe = wait_for(console, execution_id, lambda e: stage(e, "设置灰度比例")["status"] == "RUNNING")
    page = console.get(f"/executions/{execution_id}").text
    assert "Type the ratio" in page and 'data-number="int"' in page and 'data-max="100"' in page
    assert "<label for=\"cp-" in page  # labelled input
    assert "设置灰度比例" in console.get("/").text  # the overview lists the judgment waiting
    sid = stage(exe, "设置灰度比例")["id"]
    refused = console.post(f"/ui/executions/{execution_id}/stages/{sid}/judge",
                           data={"judgmentStatus": "continue", "cp_canary_ratio": "150"})
    assert 'role="alert"' in refused.text and "150" in refused.text
    assert stage(console.get(f"/api/v1/executions/{execution_id}").json(), "设置灰度比例")["status"] == "RUNNING"
    key = "5b0f0c52-4a3e-4f0e-9d8a-2c1d7e6f9a10"  # console.js: one per judgment, the same when it is sent again
    ok = console.post(f"/ui/executions/{execution_id}/stages/{sid}/judge",
                      data={"judgmentStatus": "continue", "cp_canary_ratio": "30"}, headers={"Idempotency-Key": key})
    assert "Continued. The pipeline moves on." in ok.text
    again = console.post(f"/ui/executions/{execution_id}/stages/{sid}/judge",
                         data={"judgmentStatus": "continue", "cp_canary_ratio": "30"}, headers={"Idempotency-Key": key})
    assert "Continued already: this judgment was recorded before" in again.text and 'role="alert"' not in again.text
    exe = wait_for(console, execution_id, lambda e: e["status"] == "SUCCEEDED")
    judged = [a for a in exe["audit"] if a["action"] == "judgment"]
    assert len(judged) == 1 and judged[0]["details"]["idempotencyKey"] == key
    assert stage(exe, "compute")["outputs"]["weight"] == 70
    panel = console.get(f"/ui/executions/{execution_id}/panel").text
    assert "Judged <strong>continue</strong>" in panel and "canary_ratio=30" in panel
    graph = console.get(f"/ui/executions/{execution_id}/graph").json()
    assert graph["status"] == "SUCCEEDED" and len([e for e in graph["elements"] if e["group"] == "edges"]) == 1
    assert "SUCCEEDED" in console.get("/executions").text
