"""Fuzz the JSON API bodies: whatever arrives, the answer is never a 500, and every error has the API's
shape `{"error": {message, where, hint}}`. Brief by design (it runs in `make test`)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store

SCALARS = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
KEYS = st.sampled_from(["apiVersion", "kind", "metadata", "name", "spec", "stages", "refId", "type", "triggers",
                        "parameters", "artifacts", "application", "files", "text", "documents", "items",
                        "judgmentStatus", "customParams", "expression", "stage", "reason"]) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                    max_leaves=25)
BODIES = JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200) | st.integers(1, 3000).map(
    lambda n: b"[" * n + b"]" * n)
ROUTES = [("POST", "/api/v1/apply"), ("POST", "/api/v1/delete"), ("POST", "/api/v1/pipelines"),
          ("PUT", "/api/v1/pipelines/fuzz"), ("POST", "/api/v1/pipelines/fuzz/start"),
          ("POST", "/api/v1/webhooks/webhook/fuzz"), ("PATCH", "/api/v1/executions/{eid}/stages/1"),
          ("POST", "/api/v1/executions/{eid}/evaluate"), ("POST", "/api/v1/executions/{eid}/cancel")]
FUZZ_PIPELINE = {"application": "fuzz", "name": "fuzz",
                 "triggers": [{"type": "webhook", "source": "fuzz", "enabled": True}],
                 "stages": [{"refId": "1", "type": "manualJudgment", "name": "gate", "judgmentInputs": []}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    state = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAYLANE_STATE", str(state))
        mp.delenv("GRAYLANE_DATABASE_URL", raising=False)
        store = Store.open()
        app = create_app(ControlPlane(store=store), start_components=False)
        with TestClient(app, base_url="http://127.0.0.1:7380", raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {app.state.cli_token}"}) as client:
            assert client.post("/api/v1/pipelines", json=FUZZ_PIPELINE).status_code == 200
            eid = client.post("/api/v1/pipelines/fuzz/start", json={}).json()["id"]
            yield client, eid
        store.close()


def assert_error_shape(status: int, text: str) -> None:
    assert status < 500, text
    if status >= 400:
        err = json.loads(text)["error"]
        assert set(err) == {"message", "where", "hint"} and isinstance(err["message"], str), text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=BODIES,
       content_type=st.sampled_from(["application/json", "application/yaml", "text/plain"]))
def test_any_body_gets_an_answer_in_the_api_shape(api: tuple[TestClient, str], route: tuple[str, str], body: bytes,
                                                  content_type: str) -> None:
    client, eid = api
    method, path = route
    resp = client.request(method, path.format(eid=eid), content=body, headers={"content-type": content_type})
    assert_error_shape(resp.status_code, resp.text)


def test_the_fuzzed_routes_exist(api: tuple[TestClient, str]) -> None:
    """Guards against a fuzz target that only ever meets the router's 404/405."""
    client, eid = api
    for method, path in ROUTES:
        resp = client.request(method, path.format(eid=eid), json={})
        assert resp.status_code != 405, path
        assert resp.status_code != 404 or resp.json()["error"]["message"] != "Not Found", path
    assert client.get("/api/v1/no-such-route").json()["error"]["message"] == "Not Found"
