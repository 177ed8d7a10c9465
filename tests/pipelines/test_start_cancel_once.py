"""A manual start sent with an Idempotency-Key starts one execution (triggers.start_manual_once, table
pipeline_start_keys), and a cancel is recorded once (commands.cancel). Through the real API over a real SQLite
store: copies of a keyed start answer the first one's execution with `duplicate: true`; the key with another
request is refused (409 naming it); a key a day old starts afresh; two cancels write one audit entry. The CLI's
`graylane pipeline run` sends a key and re-sends it when the answer was lost. The same over two replicas on
PostgreSQL: tests/pipelines/test_replicas_once.py."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.pipelines.lossy_proxy import losing_first_answer
from tests.pipelines.test_api import _wait_stage
from tests.pipelines.test_cli import api, cli  # noqa: F401 - api: the fixture (a real server on a socket)
from tests.pipelines.test_judgment_once import run

from graylane.pipelines.repository import START_KEY_TTL_MS, ExecutionRepository

PIPELINE = {"application": "once", "name": "start-once",
            "parameterConfig": [{"name": "version", "default": "v1"}],
            "stages": [{"refId": "j", "type": "manualJudgment", "name": "approve"}]}
START = "/api/v1/pipelines/start-once/start"


async def _saved(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/pipelines", json=PIPELINE)).status_code == 200


async def _executions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/executions", params={"pipeline": "start-once"})
    assert r.status_code == 200, r.text
    return list(r.json())


def test_copies_of_a_keyed_start_start_one_execution(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        await _saved(client)
        key = str(uuid.uuid4())
        body = {"parameters": {"version": "v2"}}
        answers = await asyncio.gather(*(client.post(START, json=body, headers={"Idempotency-Key": key})
                                         for _ in range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert sorted(bool(a.json().get("duplicate")) for a in answers) == [False, True, True]
        assert len({a.json()["id"] for a in answers}) == 1
        eid = answers[0].json()["id"]
        dup = next(a.json() for a in answers if a.json().get("duplicate"))
        assert key in dup["message"] and dup["parameters"] == {"version": "v2"}
        # later, the same start with the key again: still the first execution
        again = await client.post(START, json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["id"] == eid
        assert [e["id"] for e in await _executions(client)] == [eid]
        exe = await _wait_stage(client, eid, "approve", "RUNNING")
        assert exe["trigger"]["idempotencyKey"] == key
        assert [a["action"] for a in exe["audit"]].count("start") == 1
        # another person's start with the same key is theirs: a new execution
        bob = await client.post(START, json=body, headers={"Idempotency-Key": key, "X-Graylane-User": "bob"})
        assert bob.status_code == 200 and not bob.json().get("duplicate") and bob.json()["id"] != eid, bob.text
        # without a key, every start is a new execution
        plain = [await client.post(START, json=body) for _ in range(2)]
        assert all(p.status_code == 200 and not p.json().get("duplicate") for p in plain)
        assert len(await _executions(client)) == 4

    run(tmp_path, scenario)


def test_the_key_of_a_start_with_another_request_is_refused_naming_it(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        await _saved(client)
        other = dict(PIPELINE, name="start-other")
        assert (await client.post("/api/v1/pipelines", json=other)).status_code == 200
        key = str(uuid.uuid4())
        first = await client.post(START, json={"parameters": {"version": "v2"}}, headers={"Idempotency-Key": key})
        assert first.status_code == 200, first.text
        refusals = [
            await client.post(START, json={"parameters": {"version": "v3"}}, headers={"Idempotency-Key": key}),
            await client.post("/api/v1/pipelines/start-other/start", json={"parameters": {"version": "v2"}},
                              headers={"Idempotency-Key": key}),
        ]
        assert [r.status_code for r in refusals] == [409, 409], [r.text for r in refusals]
        errors = [r.json()["error"] for r in refusals]
        assert all(f"Idempotency-Key {key!r}" in e["message"] and first.json()["id"] in e["message"]
                   and e["where"] == "Idempotency-Key header" for e in errors), errors
        assert "other parameters" in errors[0]["message"] and "another pipeline" in errors[1]["message"]
        assert len(await _executions(client)) == 1
        other_runs = (await client.get("/api/v1/executions", params={"pipeline": "start-other"})).json()
        assert other_runs == []

    run(tmp_path, scenario)


@pytest.mark.parametrize("key", ["", "x" * 201, "has space", "ключ"])
def test_a_bad_start_key_is_refused_naming_the_header(tmp_path: Path, key: str) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        await _saved(client)
        r = await client.post(START, json={}, headers={"Idempotency-Key": key.encode()})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["where"] == "Idempotency-Key header"
        assert await _executions(client) == []

    run(tmp_path, scenario)


def test_a_start_key_a_day_old_starts_afresh(tmp_path: Path) -> None:
    """Keys are kept a day (START_KEY_TTL_MS): the record of an older one no longer counts (and is replaced, or
    pruned)."""
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        await _saved(client)
        key, stale = "deploy-42", "deploy-41"
        for k in (key, stale):
            assert (await client.post(START, json={}, headers={"Idempotency-Key": k})).status_code == 200
        with cp.store.engine.begin() as conn:  # as if both were sent a day and a minute ago
            conn.execute(sa.text("UPDATE pipeline_start_keys SET created_at = created_at - :age"),
                         {"age": START_KEY_TTL_MS + 60_000})
        again = await client.post(START, json={}, headers={"Idempotency-Key": key})
        assert again.status_code == 200 and not again.json().get("duplicate"), again.text
        assert len(await _executions(client)) == 3
        # the pruning (at most hourly, before a keyed start) forgets the stale record and keeps the fresh one
        assert ExecutionRepository(cp.store.engine).prune_start_keys(int(time.time() * 1000)) == 1
        with cp.store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT idempotency_key, execution_id FROM pipeline_start_keys")).all()
        assert [tuple(r) for r in rows] == [(key, again.json()["id"])]

    run(tmp_path, scenario)


def test_two_cancels_are_recorded_once(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        await _saved(client)
        eid = (await client.post(START, json={})).json()["id"]
        await _wait_stage(client, eid, "approve", "RUNNING")
        path = f"/api/v1/executions/{eid}/cancel"
        answers = await asyncio.gather(client.post(path, json={"reason": "wrong build"}),
                                       client.post(path, json={"reason": "wrong build"},
                                                   headers={"X-Graylane-User": "bob"}))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert sorted(bool(a.json().get("duplicate")) for a in answers) == [False, True]
        first = next(a.json() for a in answers if not a.json().get("duplicate"))
        dup = next(a.json() for a in answers if a.json().get("duplicate"))
        assert dup["canceled"] is True and f"canceled already by {first['canceledBy']}" in dup["message"]
        exe = await _wait_stage(client, eid, "approve", "CANCELED")
        late = await client.put(path)  # a client's retry after it ended
        assert late.status_code == 200 and late.json()["duplicate"] is True and late.json()["status"] == "CANCELED"
        exe = (await client.get(f"/api/v1/executions/{eid}")).json()
        cancels = [a for a in exe["audit"] if a["action"] == "cancel"]
        assert len(cancels) == 1 and cancels[0]["details"]["reason"] == "wrong build", exe["audit"]

    run(tmp_path, scenario)


def test_graylane_pipeline_run_resends_with_its_key_when_the_answer_is_lost(
        api: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811 - the fixture
    http_ = httpx.Client(base_url=api, trust_env=False,
                         headers={"Authorization": f"Bearer {os.environ['GRAYLANE_TOKEN']}"})
    assert http_.post("/api/v1/pipelines", json=PIPELINE).status_code == 200
    with losing_first_answer(api, lambda method, path: method == "POST" and path.endswith("/start")) as (address, keys):
        monkeypatch.setenv("GRAYLANE_SERVER", address)
        code, out = cli("pipeline", "run", "start-once", "-p", "version=v7")
    assert code == 0, out
    assert "started (recorded already: nothing new started)" in out
    first, again = keys
    assert first and first == again and str(uuid.UUID(first)) == first  # one key, sent again
    runs = http_.get("/api/v1/executions", params={"pipeline": "start-once"}).json()
    assert len(runs) == 1 and runs[0]["trigger"]["idempotencyKey"] == first
    assert runs[0]["trigger"]["parameters"] == {"version": "v7"} and runs[0]["id"] in out
