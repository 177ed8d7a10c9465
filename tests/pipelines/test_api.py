"""The pipelines API over a real store (migrations included), through the ASGI app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from graylane.server.app import create_app  # noqa: E402
from graylane.server.context import ControlPlane  # noqa: E402
from graylane.store import Store  # noqa: E402

CANARY = {
    "application": "bookinfo", "name": "reviews-canary",
    "parameterConfig": [{"name": "base_version", "default": "v1", "required": True},
                        {"name": "canary_version", "required": True},
                        {"name": "mode", "default": "fast", "hasOptions": True,
                         "options": [{"value": "fast"}, {"value": "slow"}]}],
    "stages": [
        {"refId": "1", "type": "manualJudgment", "name": "设置灰度比例", "requisiteStageRefIds": [],
         "customParamConfig": [{"name": "canary_ratio", "type": "int", "min": 0, "max": 100, "required": True}]},
        {"refId": "2", "type": "evaluateVariables", "name": "weights", "requisiteStageRefIds": ["1"],
         "variables": [
             {"key": "canary", "value": '${#toInt(#stage("设置灰度比例")["context"]["customParams"]["canary_ratio"])}'},
             {"key": "base", "value": "${100 - canary}"},
             {"key": "subset", "value": "${parameters.canary_version}"}]},
    ],
}


async def _client(tmp_path: Path) -> tuple[httpx.AsyncClient, ControlPlane]:
    store = Store.open(f"sqlite:///{tmp_path / 'api.db'}")
    cp = ControlPlane(store=store)
    app = create_app(cp, start_components=False)
    transport = httpx.ASGITransport(app=app)
    # as the CLI does: the operator's token (graylane.server.auth), naming the acting user
    client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                               headers={"X-Graylane-User": "alice", "Authorization": f"Bearer {app.state.cli_token}"})
    return client, cp


def run(tmp_path: Path, scenario: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def go() -> Any:
        client, cp = await _client(tmp_path)
        try:
            return await scenario(client)
        finally:
            await client.aclose()
            comp = cp.components.get("pipelines")
            if comp is not None:
                await comp.executor.stop()
            cp.store.close()

    return asyncio.run(go())


async def _wait_stage(client: httpx.AsyncClient, eid: str, name: str, status: str) -> dict:
    for _ in range(300):
        exe = (await client.get(f"/api/v1/executions/{eid}")).json()
        st = next(s for s in exe["stages"] if s["name"] == name)
        if st["status"] == status:
            return exe
        await asyncio.sleep(0.02)
    raise AssertionError(f"stage {name} never reached {status}: {st['status']}")


async def _wait_done(client: httpx.AsyncClient, eid: str) -> dict:
    for _ in range(300):
        exe = (await client.get(f"/api/v1/executions/{eid}")).json()
        if exe["status"] in ("SUCCEEDED", "TERMINAL", "CANCELED", "STOPPED"):
            return exe
        await asyncio.sleep(0.02)
    raise AssertionError(f"execution still {exe['status']}")


def test_import_run_judge_and_read_customparams_downstream(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        r = await client.post("/api/v1/pipelines", json=CANARY)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["action"] == "created"
        r = await client.post("/api/v1/pipelines/reviews-canary/start", json={"parameters": {}})
        assert r.status_code == 422 and "canary_version is required" in r.json()["error"]["message"]
        r = await client.post("/api/v1/pipelines/reviews-canary/start",
                              json={"parameters": {"canary_version": "v2", "mode": "medium"}})
        assert r.status_code == 422 and "not one of the options fast, slow" in r.json()["error"]["message"]
        r = await client.post("/api/v1/pipelines/reviews-canary/start", json={"parameters": {"canary_version": "v2"}})
        eid = r.json()["id"]
        exe = await _wait_stage(client, eid, "设置灰度比例", "RUNNING")
        assert exe["trigger"]["parameters"] == {"base_version": "v1", "canary_version": "v2", "mode": "fast"}
        r = await client.patch(f"/api/v1/executions/{eid}/stages/设置灰度比例",
                               json={"judgmentStatus": "continue", "customParams": {"canary_ratio": "150"}})
        assert r.status_code == 422
        assert "customParams.canary_ratio: 150 is above the maximum 100" in r.json()["error"]["message"]
        exe = (await client.get(f"/api/v1/executions/{eid}")).json()
        assert exe["stages"][0]["status"] == "RUNNING" and "judgmentStatus" not in exe["stages"][0]["context"]
        r = await client.patch(f"/api/v1/executions/{eid}/stages/设置灰度比例",
                               json={"judgmentStatus": "continue", "customParams": {"canary_ratio": "30"}})
        assert r.status_code == 200, r.text
        exe = await _wait_done(client, eid)
        assert exe["status"] == "SUCCEEDED"
        assert exe["stages"][0]["context"]["customParams"] == {"canary_ratio": "30"}
        assert exe["stages"][1]["outputs"] == {"canary": 30, "base": 70, "subset": "v2"}
        assert [(a["user"], a["action"]) for a in exe["audit"]] == [("alice", "start"), ("alice", "judgment")]
        r = await client.post(f"/api/v1/executions/{eid}/evaluate",
                              json={"expression": "${#stage('weights')['outputs']['base'] + 1}"})
        assert r.json()["result"] == 71

    run(tmp_path, scenario)


def test_import_errors_are_precise_and_change_nothing(tmp_path: Path) -> None:
    cases = [
        ({"type": "deployManifes"}, "unknown stage type 'deployManifes'"),
        ({"requisiteStageRefIds": ["9"]}, "requisite refId '9' points to no stage"),
        ({"refId": "1"}, "duplicate refId '1'"),
        ({"type": "manualJudgment", "name": ""}, "a manualJudgment stage needs a `name`"),
        ({"waitTime": "${1 +}"}, "expression does not parse"),
    ]

    async def scenario(client: httpx.AsyncClient) -> None:
        for change, message in cases:
            first = {"refId": "1", "type": "wait", "name": "a", "waitTime": 1}
            second = {"refId": "2", "type": "wait", "name": "b", "waitTime": 1, "requisiteStageRefIds": ["1"]}
            second.update(change)
            body = {"application": "app", "name": "bad", "stages": [first, second]}
            r = await client.post("/api/v1/pipelines", json=body)
            assert r.status_code == 422, (change, r.text)
            assert message in r.json()["error"]["message"], r.json()
        cyc = {"application": "app", "name": "cyc", "stages": [
            {"refId": "a", "type": "wait", "requisiteStageRefIds": ["b"]},
            {"refId": "b", "type": "wait", "requisiteStageRefIds": ["a"]}]}
        r = await client.post("/api/v1/pipelines", json=cyc)
        assert r.status_code == 422 and "cycle" in r.json()["error"]["message"]
        assert (await client.get("/api/v1/pipelines")).json() == []

    run(tmp_path, scenario)


def test_versions_export_roundtrip_diff_and_restore(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        await client.post("/api/v1/pipelines", json=CANARY)
        exported = (await client.get("/api/v1/pipelines/reviews-canary/export")).json()
        r = await client.post("/api/v1/pipelines", json=exported)
        assert r.json()["results"][0]["action"] == "unchanged"
        changed = json.loads(json.dumps(exported))
        changed["stages"][0]["instructions"] = "set the ratio"
        r = await client.post("/api/v1/pipelines", json=changed)
        assert r.json()["results"][0] == {**r.json()["results"][0], "action": "configured", "version": 2}
        hist = (await client.get("/api/v1/pipelines/reviews-canary/history")).json()
        assert [(h["version"], h["actor"]) for h in hist] == [(1, "user:alice"), (2, "user:alice")]
        diff = (await client.get("/api/v1/pipelines/reviews-canary/diff", params={"a": 1, "b": 2})).text
        assert '+      "instructions": "set the ratio",' in diff
        r = await client.post("/api/v1/pipelines/reviews-canary/restore/1")
        assert r.json()["version"] == 3
        now = (await client.get("/api/v1/pipelines/reviews-canary/export")).json()
        assert now == exported

    run(tmp_path, scenario)


def test_webhook_trigger_with_artifacts_constraints_and_signature(tmp_path: Path) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n"
    pipeline = {
        "application": "ci", "name": "on-push",
        "parameterConfig": [{"name": "tag", "required": True}],
        "expectedArtifacts": [
            {"id": "manifest", "displayName": "manifest",
             "matchArtifact": {"type": "embedded/base64", "name": "cfg.*"}},
            {"id": "extra", "matchArtifact": {"type": "http/file", "name": "never"},
             "useDefaultArtifact": True,
             "defaultArtifact": {"type": "embedded/base64", "name": "fallback", "reference": "eA=="}}],
        "triggers": [{"type": "webhook", "source": "ci", "enabled": True, "secret": "s3cret",
                      "payloadConstraints": {"branch": "main|release-.*"}}],
        "stages": [{"refId": "1", "type": "evaluateVariables", "name": "read",
                    "variables": [{"key": "ref", "value": "${trigger.resolvedExpectedArtifacts[0].boundArtifact"
                                                          ".name}"},
                                  {"key": "tag", "value": "${parameters.tag}"}]}],
    }
    payload = {"branch": "main", "parameters": {"tag": "1.2.3"},
               "artifacts": [{"type": "embedded/base64", "name": "cfg.yaml",
                              "reference": base64.b64encode(manifest.encode()).decode()}]}
    raw = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/pipelines", json=pipeline)).status_code == 200
        headers = {"Content-Type": "application/json"}
        r = await client.post("/api/v1/webhooks/webhook/ci", content=raw,
                              headers={**headers, "X-Hub-Signature-256": "sha256=00"})
        assert r.status_code == 403 and "signature does not match" in r.json()["error"]["message"]
        other = json.dumps({**payload, "branch": "feature-x"}).encode()
        r = await client.post("/api/v1/webhooks/webhook/ci", content=other, headers={
            **headers, "X-Hub-Signature-256": "sha256=" + hmac.new(b"s3cret", other, hashlib.sha256).hexdigest()})
        assert r.json()["executions"] == []  # payloadConstraints did not hold
        r = await client.post("/api/v1/webhooks/webhook/ci", content=raw,
                              headers={**headers, "X-Hub-Signature-256": sig})
        assert r.status_code == 202, r.text
        [started] = r.json()["executions"]
        exe = await _wait_done(client, started["executionId"])
        assert exe["status"] == "SUCCEEDED"
        trig = exe["trigger"]
        assert trig["type"] == "webhook" and trig["parameters"] == {"tag": "1.2.3"}
        bound = {e["id"]: e["boundArtifact"]["name"] for e in trig["resolvedExpectedArtifacts"]}
        assert bound == {"manifest": "cfg.yaml", "extra": "fallback"}
        assert exe["stages"][0]["outputs"] == {"ref": "cfg.yaml", "tag": "1.2.3"}

    run(tmp_path, scenario)


def test_sse_stream_reports_stage_transitions(tmp_path: Path) -> None:
    """Over a real uvicorn socket: ASGITransport buffers whole responses, so SSE needs a server."""
    import socket

    import uvicorn

    async def go() -> None:
        store = Store.open(f"sqlite:///{tmp_path / 'sse.db'}")
        cp = ControlPlane(store=store)
        app = create_app(cp, start_components=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                                   headers={"X-Graylane-User": "alice",
                                            "Authorization": f"Bearer {app.state.cli_token}"})
        try:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            await client.post("/api/v1/pipelines", json=CANARY)
            eid = (await client.post("/api/v1/pipelines/reviews-canary/start",
                                     json={"parameters": {"canary_version": "v2"}})).json()["id"]
            await _wait_stage(client, eid, "设置灰度比例", "RUNNING")
            seen: list[tuple[str, str]] = []
            connected = asyncio.Event()

            async def listen() -> None:
                async with client.stream("GET", f"/api/v1/executions/{eid}/events") as resp:
                    event = None
                    async for line in resp.aiter_lines():
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                            if event == "snapshot":
                                connected.set()
                        elif line.startswith("data:") and event in ("stage", "execution"):
                            data = json.loads(line.split(":", 1)[1])
                            seen.append((data.get("name"), data["status"]))
                            if event == "execution" and data["status"] == "SUCCEEDED":
                                return

            task = asyncio.create_task(listen())
            await asyncio.wait_for(connected.wait(), 10)
            await client.patch(f"/api/v1/executions/{eid}/stages/1",
                               json={"judgmentStatus": "continue", "customParams": {"canary_ratio": 5}})
            await asyncio.wait_for(task, 10)
            assert ("设置灰度比例", "SUCCEEDED") in seen and ("weights", "SUCCEEDED") in seen
            assert seen[-1] == ("reviews-canary", "SUCCEEDED")
        finally:
            await client.aclose()
            server.should_exit = True
            await serving
            store.close()

    asyncio.run(go())


def test_alertmanager_webhook_starts_a_circuit_breaking_pipeline(tmp_path: Path) -> None:
    breaker = {
        "application": "bookinfo", "name": "break-ratings",
        "triggers": [{"type": "webhook", "source": "alertmanager", "enabled": True,
                      "payloadConstraints": {"status": "firing", "commonLabels.alertname": "HighErrorRate"}}],
        "stages": [{"refId": "1", "type": "evaluateVariables", "name": "which",
                    "variables": [{"key": "service", "value": "${trigger.payload.commonLabels.destination_service}"}]}],
    }
    alert = {"receiver": "graylane", "status": "firing", "groupLabels": {"alertname": "HighErrorRate"},
             "commonLabels": {"alertname": "HighErrorRate", "destination_service": "ratings.default.svc"},
             "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate"}}]}

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post("/api/v1/pipelines", json=breaker)).status_code == 200
        r = await client.post("/api/v1/webhooks/webhook/alertmanager", json={**alert, "status": "resolved"})
        assert r.json()["executions"] == []
        r = await client.post("/api/v1/webhooks/webhook/alertmanager", json=alert)
        [started] = r.json()["executions"]
        exe = await _wait_done(client, started["executionId"])
        assert exe["stages"][0]["outputs"] == {"service": "ratings.default.svc"}
        renamed = {**breaker, "description": "open the circuit on ratings"}
        r = await client.put("/api/v1/pipelines/break-ratings", json=renamed)
        assert r.json()["action"] == "configured" and r.json()["version"] == 2

    run(tmp_path, scenario)


def test_reads_never_build_a_scheduler(tmp_path: Path) -> None:
    async def go() -> None:
        client, cp = await _client(tmp_path)
        try:
            r = await client.post("/api/v1/pipelines", json={"application": "shop", "name": "p", "stages": [
                {"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]})
            assert r.status_code == 200, r.text
            for path in ("/api/v1/pipelines", "/api/v1/pipelines/p", "/api/v1/executions"):
                assert (await client.get(path)).status_code == 200
            assert (await client.get("/api/v1/executions/nope")).status_code == 404
            assert "pipelines" not in cp.components  # reading and importing built no executor
            r = await client.post("/api/v1/pipelines/p/start", json={})
            assert r.status_code == 200, r.text
            assert "pipelines" in cp.components  # a command did
        finally:
            await client.aclose()
            comp = cp.components.get("pipelines")
            if comp is not None:
                await comp.executor.stop()
            cp.store.close()

    asyncio.run(go())
