"""A manual judgment is recorded once per stage attempt (commands.update_stage, stages/manual_judgment.py,
table pipeline_judgments): a re-send answers as the first did with `duplicate: true`; any other judgment of a
judged stage is refused (409) naming who judged it when; the store's key refuses a second row even when the
command's own check is bypassed. Through the real API over a real SQLite store; the CLI's `graylane judge`
sends an Idempotency-Key and says when the judgment was recorded before."""

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
from tests.pipelines.test_api import _client, _wait_done, _wait_stage
from tests.pipelines.test_cli import api, cli  # noqa: F401 - api: the fixture (a real server on a socket)

from graylane.errors import Conflict
from graylane.pipelines.repository import ExecutionRepository, audit_entry, judgment_record

PIPELINE = {"application": "once", "name": "approve-once", "stages": [
    {"refId": "j", "type": "manualJudgment", "name": "approve",
     "judgmentInputs": [{"value": "ship"}, {"value": "hold"}]},
    {"refId": "w", "type": "wait", "name": "soak", "waitTime": 30, "requisiteStageRefIds": ["j"]}]}
PATH = "/api/v1/executions/{eid}/stages/approve"


async def _started(client: httpx.AsyncClient) -> str:
    assert (await client.post("/api/v1/pipelines", json=PIPELINE)).status_code == 200
    r = await client.post("/api/v1/pipelines/approve-once/start", json={})
    assert r.status_code == 200, r.text
    eid = str(r.json()["id"])
    await _wait_stage(client, eid, "approve", "RUNNING")
    return eid


def _judgments(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in audit if a["action"] == "judgment"]


def run(tmp_path: Path, scenario: Any) -> Any:
    async def go() -> Any:
        client, cp = await _client(tmp_path)
        try:
            return await scenario(client, cp)
        finally:
            await client.aclose()
            comp = cp.components.get("pipelines")
            if comp is not None:
                await comp.executor.stop()
            cp.store.close()

    return asyncio.run(go())


def test_a_resent_judgment_is_answered_as_the_first_and_recorded_once(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        key = str(uuid.uuid4())
        body = {"judgmentStatus": "continue", "judgmentInput": "ship"}
        # the same judgment sent three times at once (a client re-sending before it heard back)
        answers = await asyncio.gather(*(client.patch(PATH.format(eid=eid), json=body,
                                                      headers={"Idempotency-Key": key}) for _ in range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert sorted(bool(a.json().get("duplicate")) for a in answers) == [False, True, True]
        first = next(a.json() for a in answers if not a.json().get("duplicate"))
        record = first["context"]["judgmentRecord"]
        assert record["user"] == "alice" and record["idempotencyKey"] == key
        # later, without a key (the same user and request): still the recorded one, nothing written
        again = await client.patch(PATH.format(eid=eid), json={"judgmentInput": "ship", "judgmentStatus": "CONTINUE"})
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
        assert again.json()["context"]["judgmentRecord"] == record
        assert "recorded already" in again.json()["message"]
        exe = await _wait_stage(client, eid, "soak", "RUNNING")
        judged = _judgments(exe["audit"])
        assert len(judged) == 1 and judged[0]["details"]["idempotencyKey"] == key
        with cp.store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT judged_by, status, idempotency_key FROM pipeline_judgments "
                                        "WHERE execution_id = ?", (eid,)).all()
        assert [tuple(r) for r in rows] == [("alice", "continue", key)]

    run(tmp_path, scenario)


def test_a_different_judgment_of_a_judged_stage_is_refused_naming_who_judged_it(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        key = str(uuid.uuid4())
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                               headers={"Idempotency-Key": key})
        assert r.status_code == 200 and not r.json().get("duplicate"), r.text
        refusals = [
            # another decision
            await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "stop", "judgmentInput": "hold"}),
            # the same decision by another person
            await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                               headers={"X-Graylane-User": "bob"}),
            # the key of the first with another request
            await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "stop", "judgmentInput": "hold"},
                               headers={"Idempotency-Key": key}),
        ]
        assert [x.status_code for x in refusals] == [409, 409, 409], [x.text for x in refusals]
        messages = [x.json()["error"]["message"] for x in refusals]
        assert all("stage 'approve'" in m and "continue 'ship' by alice at 20" in m for m in messages), messages
        assert "Idempotency-Key" in messages[2]
        exe = await _wait_stage(client, eid, "soak", "RUNNING")
        assert len(_judgments(exe["audit"])) == 1
        assert exe["stages"][0]["context"]["judgmentInput"] == "ship"
        # the stage moved on: its own judgment re-sent is still answered, another still refused
        late = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                                  headers={"Idempotency-Key": key})
        assert late.status_code == 200 and late.json()["duplicate"] is True and late.json()["status"] == "SUCCEEDED"
        assert (await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "stop"})).status_code == 409

    run(tmp_path, scenario)


def test_a_restarted_judgment_is_judged_again_once(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "stop", "judgmentInput": "hold"})
        assert r.status_code == 200, r.text
        assert (await _wait_done(client, eid))["status"] == "TERMINAL"
        assert (await client.post(f"/api/v1/executions/{eid}/stages/approve/restart")).status_code == 200
        await _wait_stage(client, eid, "approve", "RUNNING")
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"})
        assert r.status_code == 200 and not r.json().get("duplicate"), r.text
        exe = await _wait_stage(client, eid, "soak", "RUNNING")
        assert [j["details"]["judgmentStatus"] for j in _judgments(exe["audit"])] == ["stop", "continue"]
        with cp.store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT attempt, status FROM pipeline_judgments ORDER BY attempt").all() \
                == [(0, "stop"), (1, "continue")]

    run(tmp_path, scenario)


def test_a_keyed_resend_that_outlives_a_restart_does_not_judge_the_new_attempt(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        key = str(uuid.uuid4())
        stop = {"judgmentStatus": "stop", "judgmentInput": "hold"}
        r = await client.patch(PATH.format(eid=eid), json=stop, headers={"Idempotency-Key": key})
        assert r.status_code == 200, r.text
        assert (await _wait_done(client, eid))["status"] == "TERMINAL"
        assert (await client.post(f"/api/v1/executions/{eid}/stages/approve/restart")).status_code == 200
        await _wait_stage(client, eid, "approve", "RUNNING")
        # the first click's answer was lost; its client sends it again, late: the new attempt stays unjudged
        late = await client.patch(PATH.format(eid=eid), json=stop, headers={"Idempotency-Key": key})
        assert late.status_code == 200 and late.json()["duplicate"] is True, late.text
        assert "earlier attempt" in late.json()["message"]
        reused = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                                    headers={"Idempotency-Key": key})
        assert reused.status_code == 409 and key in reused.text
        exe = await _wait_stage(client, eid, "approve", "RUNNING")
        assert [j["details"]["judgmentStatus"] for j in _judgments(exe["audit"])] == ["stop"]
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                               headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 200 and not r.json().get("duplicate"), r.text
        await _wait_stage(client, eid, "soak", "RUNNING")

    run(tmp_path, scenario)


@pytest.mark.parametrize("key", ["", "x" * 201, "has space", "ключ"])
def test_a_bad_idempotency_key_is_refused_naming_the_header(tmp_path: Path, key: str) -> None:
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"},
                               headers={"Idempotency-Key": key.encode()})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["where"] == "Idempotency-Key header"
        exe = (await client.get(f"/api/v1/executions/{eid}")).json()
        assert exe["stages"][0]["status"] == "RUNNING" and not _judgments(exe["audit"])

    run(tmp_path, scenario)


def test_the_store_refuses_a_second_judgment_row_for_a_stage_attempt(tmp_path: Path) -> None:
    """The guard below the command's check: a write carrying a second judgment of the same stage attempt rolls
    back whole (nothing of it is stored)."""
    async def scenario(client: httpx.AsyncClient, cp: Any) -> None:
        eid = await _started(client)
        r = await client.patch(PATH.format(eid=eid), json={"judgmentStatus": "continue", "judgmentInput": "ship"})
        assert r.status_code == 200, r.text
        repo = ExecutionRepository(cp.store.engine)
        exe = repo.load(eid)
        stage = exe.stages[0]
        entry = audit_entry("mallory", "judgment", 1, stage.id, stage="approve", judgmentStatus="stop")
        entry["judgment"] = judgment_record(attempt=stage.attempt, user="mallory", now=1, status="stop", key=None,
                                            request={"judgmentStatus": "stop"})
        exe.name = "renamed by the refused write"
        with pytest.raises(Conflict, match="recorded already"):
            repo.store(exe, [stage], [entry])
        after = (await client.get(f"/api/v1/executions/{eid}")).json()
        assert after["name"] == "approve-once"
        assert [j["user"] for j in _judgments(after["audit"])] == ["alice"]
        with cp.store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pipeline_judgments")).scalar() == 1

    run(tmp_path, scenario)


def test_graylane_judge_resends_with_its_key_when_the_answer_is_lost(api: str,  # noqa: F811 - the fixture
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    http_, eid = _waiting_for_judgment(api)
    with losing_first_answer(api, lambda method, path: method == "PATCH") as (address, keys):
        monkeypatch.setenv("GRAYLANE_SERVER", address)
        code, out = cli("judge", eid, "--stage", "approve", "--continue", "--input", "ship")
    assert code == 0, out
    assert "judgment approve: continue (ship) (recorded already: nothing changed)" in out
    first, again = keys
    assert first and first == again and str(uuid.UUID(first)) == first  # one key, sent again
    audit = http_.get(f"/api/v1/executions/{eid}").json()["audit"]
    assert [(a["user"], a["details"].get("idempotencyKey")) for a in _judgments(audit)] == [("carol", first)]


def test_graylane_judge_sends_again_when_the_replica_says_it_is_stopping(api: str,  # noqa: F811 - the fixture
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A control plane draining for a rolling restart answers 503 with Retry-After; the CLI waits that long and sends
    the judgment again with its key (behind a Service, to another replica): recorded once, no error shown."""
    http_, eid = _waiting_for_judgment(api)
    with losing_first_answer(api, lambda method, path: method == "PATCH", stopping=True) as (address, keys):
        monkeypatch.setenv("GRAYLANE_SERVER", address)
        code, out = cli("judge", eid, "--stage", "approve", "--continue", "--input", "ship")
    assert code == 0, out
    assert "judgment approve: continue (ship)" in out and "recorded already" not in out
    first, again = keys
    assert first and first == again
    audit = http_.get(f"/api/v1/executions/{eid}").json()["audit"]
    assert [a["details"].get("idempotencyKey") for a in _judgments(audit)] == [first]


def _waiting_for_judgment(base_url: str) -> tuple[httpx.Client, str]:
    """A client of the real server and an execution of PIPELINE waiting at its judgment."""
    http_ = httpx.Client(base_url=base_url, trust_env=False,
                         headers={"Authorization": f"Bearer {os.environ['GRAYLANE_TOKEN']}"})
    assert http_.post("/api/v1/pipelines", json=PIPELINE).status_code == 200
    eid = http_.post("/api/v1/pipelines/approve-once/start", json={}).json()["id"]
    for _ in range(300):
        if http_.get(f"/api/v1/executions/{eid}").json()["stages"][0]["status"] == "RUNNING":
            break
        time.sleep(0.02)
    return http_, eid
