"""Starts and cancels sent to both control-plane replicas at once (the harness is tests/pipelines/test_replicas.py):
copies of one start with its Idempotency-Key race on PostgreSQL's primary key of `pipeline_start_keys` and start
one execution; two cancels of one execution, one to each replica, write one cancel to its audit trail."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.pipelines.test_replicas import (  # noqa: F401 - pg, schema_url, two_replicas: the fixtures
    Replica,
    _count,
    _pipeline,
    _until,
    pg,
    schema_url,
    two_replicas,
)

from graylane.pipelines.execution import new_execution
from graylane.pipelines.repository import ExecutionRepository, StartKeyTaken

pytestmark = pytest.mark.postgres


def _at_once(calls: list[Any]) -> list[httpx.Response]:
    """Run the calls in threads released together."""
    gate = threading.Barrier(len(calls))

    def go(call: Any) -> httpx.Response:
        gate.wait(10)
        return call()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def test_the_store_refuses_a_second_execution_with_one_start_key(pg: sa.Engine) -> None:  # noqa: F811
    """The guard below the lookup: two executions whose triggers carry one user's key (two replicas that both
    found no record) — the second insert is refused whole; another user's key is another start."""
    repo = ExecutionRepository(pg)
    config = {"id": "p1", "application": "replicas", "name": "keyed",
              "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 1}]}

    def keyed(user: str) -> Any:
        return new_execution(config, {"type": "manual", "user": user, "parameters": {}, "artifacts": [],
                                      "idempotencyKey": "k-1"}, 1_700_000_000_000)

    first, second = keyed("alice"), keyed("alice")
    repo.insert(first)
    with pytest.raises(StartKeyTaken, match="'k-1' started an execution already"):
        repo.insert(second)
    assert repo.exists(first.id) and not repo.exists(second.id)
    repo.insert(keyed("bob"))
    assert _count(pg, "SELECT count(*) FROM pipeline_executions") == 2
    assert repo.started_with_key("alice", "k-1", 1_700_000_000_000)["execution_id"] == first.id


def test_one_start_sent_to_both_replicas_at_once_starts_one_execution(
        two_replicas: tuple[Replica, Replica, sa.Engine]) -> None:  # noqa: F811 - the fixture
    """A client re-sending a start before it heard back, through a load balancer: three copies to each replica
    at once with one Idempotency-Key. All six are answered 200 with one execution id, five say `duplicate`;
    the same key with other parameters is refused (409 naming the key) by either replica."""
    a, b, db = two_replicas
    held = _pipeline("start-once") | {"stages": [{"refId": "judge", "type": "manualJudgment", "name": "approve"}]}
    assert a.http.post("/api/v1/pipelines", json=held).status_code == 200
    key = str(uuid.uuid4())
    path = "/api/v1/pipelines/start-once/start"

    def send(replica: Replica) -> Any:
        return lambda: replica.http.post(path, json={"parameters": {"cm": "once"}}, headers={"Idempotency-Key": key})

    answers = _at_once([send(r) for r in [a, b] * 3])
    assert [x.status_code for x in answers] == [200] * 6, [x.text for x in answers]
    assert sorted(bool(x.json().get("duplicate")) for x in answers) == [False] + [True] * 5
    ids = {x.json()["id"] for x in answers}
    assert len(ids) == 1
    eid = ids.pop()
    assert _count(db, "SELECT count(*) FROM pipeline_executions WHERE name = 'start-once'") == 1
    assert _count(db, "SELECT count(*) FROM pipeline_start_keys WHERE execution_id = %(e)s", e=eid) == 1
    for replica in (a, b):
        other = replica.http.post(path, json={"parameters": {"cm": "other"}}, headers={"Idempotency-Key": key})
        assert other.status_code == 409 and key in other.json()["error"]["message"], other.text
    exe = a.http.get(f"/api/v1/executions/{eid}").json()
    assert [x["action"] for x in exe["audit"]].count("start") == 1


def test_two_cancels_sent_to_both_replicas_at_once_are_recorded_once(
        two_replicas: tuple[Replica, Replica, sa.Engine]) -> None:  # noqa: F811 - the fixture
    """One execution waiting at a judgment; a cancel sent to each replica at once (one applies it locally, the
    other queues it for the owner). Both are answered 200, one says `duplicate`; one cancel is in the audit."""
    a, b, db = two_replicas
    held = _pipeline("cancel-once") | {"stages": [{"refId": "judge", "type": "manualJudgment", "name": "approve"}]}
    assert a.http.post("/api/v1/pipelines", json=held).status_code == 200
    r = a.http.post("/api/v1/pipelines/cancel-once/start", json={"parameters": {"cm": "cancel-once"}})
    assert r.status_code == 200, r.text
    eid = r.json()["id"]

    def execution() -> dict[str, Any]:
        return dict(b.http.get(f"/api/v1/executions/{eid}").json())

    _until(lambda: execution()["stages"][0]["status"] == "RUNNING", "the judgment did not start waiting")
    path = f"/api/v1/executions/{eid}/cancel"
    answers = _at_once([lambda r=r: r.http.post(path, json={"reason": f"via {r.name}"}) for r in (a, b)])
    assert [x.status_code for x in answers] == [200, 200], [x.text for x in answers]
    assert sorted(bool(x.json().get("duplicate")) for x in answers) == [False, True]
    assert all(x.json()["canceled"] is True for x in answers)
    done = _until(lambda: (e := execution())["status"] == "CANCELED" and e, "the execution did not end CANCELED")
    cancels = [x for x in done["audit"] if x["action"] == "cancel"]
    assert len(cancels) == 1, done["audit"]
    first = next(x.json() for x in answers if not x.json().get("duplicate"))
    assert cancels[0]["details"]["reason"] == first["cancellationReason"]
