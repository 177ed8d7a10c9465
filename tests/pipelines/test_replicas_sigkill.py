"""The big replica system test: two real `graylane server` processes on one fresh PostgreSQL schema (the harness
is tests/pipelines/test_replicas.py), 200 executions started through both before anything else, the judgments
answered a third at a time through the replica that does NOT drive the execution (one Idempotency-Key per
judgment, re-sent with it when nothing was recorded 5 s after a send), replica `a` SIGKILLed right after each
third's first judgment is recorded (and `b` rolling-restarted in between, so the killed one always drives
executions). Every execution must finish SUCCEEDED with its ConfigMap applied once (each apply writes a new value,
so a second apply would be a second revision) and its judgment recorded once. It prints the takeover times
(SIGKILL -> the other replica drives them).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.pipelines.test_replicas import (  # noqa: F401 - schema_url: the fixture
    Replica,
    _count,
    _owners,
    _pipeline,
    _until,
    schema_url,
)

EXECUTIONS = int(os.environ.get("GRAYLANE_TEST_REPLICA_EXECUTIONS", "200"))


class Judge(threading.Thread):
    """Answers each waiting judgment once, through the replica that does not drive the execution; of at most
    `allowed` executions (the test releases them in batches, so executions still wait at every kill)."""

    def __init__(self, db: sa.Engine, replicas: dict[str, Replica], done: threading.Event) -> None:
        super().__init__(daemon=True)
        self.db, self.replicas, self.done = db, replicas, done
        self.allowed = 0
        self.sent: dict[str, float] = {}
        self.keys: dict[str, str] = {}  # one Idempotency-Key per judgment, sent again with each re-send
        self.duplicates = 0
        self.errors: list[str] = []
        self.pool = ThreadPoolExecutor(8)

    def _send(self, eid: str, other: Replica) -> None:
        try:
            r = other.http.patch(f"/api/v1/executions/{eid}/stages/approve", json={"judgmentStatus": "continue"},
                                 headers={"Idempotency-Key": self.keys[eid]}, timeout=40)
            if r.status_code == 503 and "retry-after" in r.headers:
                return  # that replica is stopping (a rolling restart): sent again later, as `graylane judge` does
            if r.status_code != 200:  # a re-send is answered as the first send was (duplicate: true)
                self.errors.append(f"{eid} via {other.name}: {r.status_code} {r.text[:200]}")
            elif r.json().get("duplicate"):
                self.duplicates += 1
        except httpx.HTTPError:
            pass  # the replica was killed mid-request: looked at again later

    def run(self) -> None:
        while not self.done.is_set():
            with self.db.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT s.execution_id, e.lease_owner FROM pipeline_stages s JOIN pipeline_executions e "
                    "ON e.id = s.execution_id WHERE s.ref_id = 'judge' AND s.status = 'RUNNING'").all()
                judged = {r.execution_id for r in conn.exec_driver_sql(
                    "SELECT execution_id FROM pipeline_audit WHERE action = 'judgment'")}
            for row in rows:
                eid = row.execution_id
                # send once; again (with the same key) if nothing was recorded 5 s after a send that may have
                # been lost (a replica killed mid-request) or is still queued: the judgment is recorded once
                if eid in judged or time.monotonic() - self.sent.get(eid, -1e9) < 5 or not row.lease_owner:
                    continue
                if eid not in self.sent and len(self.sent) >= self.allowed:
                    continue
                owner = row.lease_owner.split("#")[0]
                other = next(r for name, r in self.replicas.items() if name != owner)
                if other.alive:
                    self.sent[eid] = time.monotonic()
                    self.keys.setdefault(eid, str(uuid.uuid4()))
                    self.pool.submit(self._send, eid, other)
            self.done.wait(0.2)
        self.pool.shutdown(wait=True)


def _driven_by(db: sa.Engine, owner: str, ids: list[str]) -> bool:
    """Whether each of the executions is driven by replica `owner` (`a#`) or finished."""
    owners = _owners(db)
    return all((owners.get(eid) or f"{owner}done").startswith(owner) for eid in ids)


ACTIVE = "SELECT count(*) FROM pipeline_executions WHERE status IN ('NOT_STARTED', 'RUNNING', 'PAUSED', 'BUFFERED')"
JUDGED = "SELECT count(*) FROM pipeline_audit WHERE action = 'judgment'"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_replicas_200_executions_one_replica_sigkilled_repeatedly(tmp_path: Path,
                                                                     schema_url: str) -> None:  # noqa: F811
    """All 200 start (through both replicas) before the first kill and wait at their judgment; the judgments are
    released in thirds, and right after each third's first judgment is recorded replica `a` is SIGKILLed (and
    started again at once). Between kills `b` is restarted with SIGTERM, as a rolling update would, so `a`
    drives every active execution at the next kill."""
    db = sa.create_engine(schema_url)
    a, b = Replica("a", tmp_path, schema_url), Replica("b", tmp_path, schema_url)
    replicas = {"a": a, "b": b}
    done = threading.Event()
    judge = Judge(db, replicas, done)
    takeovers: list[tuple[int, int, float | None, float]] = []
    handbacks: list[tuple[int, float]] = []
    restarts: list[float] = []
    started_at = time.monotonic()
    try:
        a.start()
        b.start()
        r = a.http.post("/api/v1/pipelines", json=_pipeline())
        assert r.status_code == 200, r.text

        def start(i: int) -> str:
            res = (a, b)[i % 2].http.post("/api/v1/pipelines/replicated/start",
                                          json={"parameters": {"cm": f"cm-{i:03d}"}})
            assert res.status_code == 200, res.text
            return str(res.json()["id"])

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(start, range(EXECUTIONS)))
        start_s = time.monotonic() - t0
        assert len(set(ids)) == EXECUTIONS
        assert _count(db, ACTIVE) == EXECUTIONS  # all running at once: each waits for its judgment
        judge.start()

        kills = 3
        for n in range(kills):
            judged = _count(db, JUDGED)
            judge.allowed = EXECUTIONS * (n + 1) // kills  # the next third of the judgments
            _until(lambda judged=judged: _count(db, JUDGED) > judged, "no judgment of the third was recorded", 30)
            mine = {eid: owner for eid, owner in _owners(db).items() if owner and owner.startswith("a#")}
            assert mine, f"kill {n + 1}: a drives no execution"
            killed = a.kill()
            a.launch()  # restarted at once; it reclaims what b has not taken yet when it is up
            first, by_b = None, 0
            while time.monotonic() < killed + 30:
                owners = _owners(db)
                moved = [eid for eid, was in mine.items() if owners.get(eid, "b#done") != was]
                by_b = sum(1 for eid in moved if (owners.get(eid) or "b#").startswith("b#"))
                if by_b and first is None:
                    first = time.monotonic() - killed
                if len(moved) == len(mine):
                    break
                time.sleep(0.05)
            assert len(moved) == len(mine), f"{len(mine) - len(moved)} of a's executions were never taken over"
            takeovers.append((len(mine), by_b, first, time.monotonic() - killed))
            a.wait_healthy()
            restarts.append(time.monotonic() - killed)
            if n < kills - 1:  # a rolling restart of b: it hands its executions to a at once
                theirs = [eid for eid, owner in _owners(db).items() if owner and owner.startswith("b#")]
                stopped = b.terminate()
                _until(lambda theirs=theirs: _driven_by(db, "a#", theirs), "a did not take b's executions over", 15)
                handbacks.append((len(theirs), time.monotonic() - stopped))
                b.start()
        assert any(t[1] for t in takeovers), "b never took over an execution of a"
        kills_s = time.monotonic() - started_at

        _until(lambda: _count(db, ACTIVE) == 0, "executions were still active", 120)
        done.set()
        judge.join(10)
        wall = time.monotonic() - started_at

        with db.connect() as conn:
            statuses = dict(conn.exec_driver_sql("SELECT id, status FROM pipeline_executions").all())
            stages = conn.exec_driver_sql("SELECT execution_id, ref_id, status FROM pipeline_stages").all()
            audit = conn.exec_driver_sql("SELECT execution_id, action, count(*) AS n FROM pipeline_audit "
                                         "GROUP BY execution_id, action").all()
            deploys = {r.execution_id: r.body for r in conn.exec_driver_sql(
                "SELECT execution_id, body FROM pipeline_stages WHERE ref_id = 'deploy'")}
            history: dict[str, list[Any]] = {}
            for row in conn.exec_driver_sql("SELECT name, revision, action, actor, body FROM resource_history "
                                            "WHERE kind = 'ConfigMap' ORDER BY name, revision"):
                history.setdefault(row.name, []).append(row)
        assert sorted(statuses) == sorted(ids)
        assert {eid: s for eid, s in statuses.items() if s != "SUCCEEDED"} == {}
        assert all(st.status == "SUCCEEDED" for st in stages), [st for st in stages if st.status != "SUCCEEDED"]
        counts = {(row.execution_id, row.action): row.n for row in audit}
        assert {eid: counts.get((eid, "judgment")) for eid in ids if counts.get((eid, "judgment")) != 1} == {}
        assert all(counts.get((eid, "start")) == 1 for eid in ids)
        assert not judge.errors, judge.errors[:5]
        # each judgment recorded once (the store's pipeline_judgments), with the key its sender chose
        with db.connect() as conn:
            keys = {r.execution_id: r.idempotency_key for r in conn.exec_driver_sql(
                "SELECT execution_id, idempotency_key FROM pipeline_judgments")}
        assert keys == {eid: judge.keys.get(eid) for eid in ids}
        # Every stage's side effect once: each apply writes a new `apply` value, so the ConfigMap's revisions
        # count the deploy stage's applies. One revision, written by that execution's deploy stage, holding the
        # apply the stage recorded in its outputs.
        applies = set()
        for i, eid in enumerate(ids):
            deploy = deploys[eid] if isinstance(deploys[eid], dict) else json.loads(deploys[eid])
            recorded = deploy["outputs"]["manifests"][0]["data"]
            revisions = [(rev.revision, rev.action, rev.actor, rev.body["data"])
                         for rev in history.get(f"cm-{i:03d}", [])]
            assert revisions == [(1, "created", f"pipeline:{eid}/{deploy['id']}", recorded)], \
                f"cm-{i:03d} (execution {eid}): {len(revisions)} applies: {revisions}"
            assert recorded["execution"] == eid and recorded["stage"] == deploy["id"]
            applies.add(recorded["apply"])
        assert len(applies) == EXECUTIONS and all(str(uuid.UUID(x)) == x for x in applies)  # evaluated at apply
        r = b.http.get("/api/v1/resources/configmaps/cm-007/history", params={"namespace": "default"})
        assert r.status_code == 200 and len(r.json()["items"]) == 1, r.text  # what `graylane history` shows
        report = {"executions": EXECUTIONS, "kills": kills, "wall_s": round(wall, 1), "starts_s": round(start_s, 1),
                  "kills_s": round(kills_s, 1), "kill_to_a_healthy_s": [round(x, 1) for x in restarts],
                  "load": round(os.getloadavg()[0], 1), "judgments_resent_answered_duplicate": judge.duplicates,
                  "takeovers": [{"executions_of_a": n, "taken_by_b": b_n,
                                 "first_taken_by_b_s": None if f is None else round(f, 2), "all_moved_s": round(e, 2)}
                                for n, b_n, f, e in takeovers],
                  "handbacks": [{"executions_of_b": n, "all_taken_by_a_s": round(t, 2)} for n, t in handbacks]}
        print("\nreplicas:", json.dumps(report))
    finally:
        done.set()
        a.stop()
        b.stop()
        db.dispose()
