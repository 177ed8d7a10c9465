"""Control-plane replicas on one PostgreSQL (pipelines/leases.py): fencing, commands through any replica, takeover.

The system tests run two real `graylane server` processes (own state folder and port, one fresh Postgres schema).
One Alertmanager notification sent to both at once starts one execution; pause, resume and cancel sent to the
replica that does not drive an execution are applied once by the one that does; one judgment sent to both at
once and again is recorded once. The big one (200 executions, one replica SIGKILLed again and again) is
tests/pipelines/test_replicas_sigkill.py, over the harness here (`Replica`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from tests import system
from tests.pipelines.alertmanager import alert, notification

from graylane.errors import Conflict, NotFound
from graylane.pipelines import concurrency, triggers
from graylane.pipelines.execution import new_execution
from graylane.pipelines.executor import Executor
from graylane.pipelines.leases import LeaseLost, Leases, SlotTaken
from graylane.pipelines.repository import ExecutionRepository
from graylane.pipelines.status import ExecutionStatus as S
from graylane.settings import read_cli_token

pytestmark = pytest.mark.postgres
GRAYLANE = [sys.executable, "-m", "graylane.cli.main"]


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A fresh schema of the test PostgreSQL (migrated by whoever opens it first), dropped afterwards."""
    base = system.postgres_url()
    schema = f"r_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def schema_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def pg(schema_url: str) -> Iterator[sa.Engine]:
    from graylane.store import Store

    store = Store.open(schema_url)
    yield store.engine
    store.close()


# The ConfigMap each execution's deploy stage applies: its execution, its stage and a value new on every apply.
# An embedded artifact's expressions are evaluated by the deploy task when it applies (a `text` manifest is
# evaluated once, at stage start), so a second apply of the same stage (its task run again after a takeover)
# writes another `apply` and leaves a second revision in the resource history, instead of an identical
# document the store answers `unchanged` without a trace.
CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata: {name: "${parameters.cm}", namespace: default}
data:
  execution: "${execution.id}"
  stage: "${#stage('deploy')['id']}"
  apply: "${T(java.util.UUID).randomUUID().toString()}"
"""


def _pipeline(name: str = "replicated") -> dict[str, Any]:
    manifest = {"type": "embedded/base64", "name": "configmap.yaml",
                "reference": base64.b64encode(CONFIGMAP.encode()).decode()}
    return {"application": "replicas", "name": name, "limitConcurrent": False,
            "parameterConfig": [{"name": "cm", "required": True}],
            "stages": [
                {"refId": "deploy", "type": "deployManifest", "name": "deploy", "account": "local",
                 "source": "artifact", "manifestArtifact": manifest},
                {"refId": "judge", "type": "manualJudgment", "name": "approve", "requisiteStageRefIds": ["deploy"]},
                {"refId": "wait", "type": "wait", "name": "soak", "waitTime": 2, "requisiteStageRefIds": ["judge"]}]}


# ---------------------------------------------------------------------------------------------- unit: fencing


def test_a_stale_token_write_is_refused_and_writes_nothing(pg: sa.Engine) -> None:
    a, b = Leases(pg, replica="a", ttl_s=30), Leases(pg, replica="b", ttl_s=30)
    repo_a, repo_b = ExecutionRepository(pg), ExecutionRepository(pg)
    repo_a.guard, repo_b.guard = a, b
    exe = new_execution(_pipeline(), {"type": "manual", "user": "ci", "parameters": {"cm": "x"}}, 1000)
    repo_a.insert(exe)
    assert a.held == {exe.id: 1}
    assert not b.claim(exe.id)  # a live lease is not taken

    with pg.begin() as conn:  # a's lease runs out (its process hangs, say)
        conn.exec_driver_sql("UPDATE pipeline_executions SET lease_expires = 0")
    assert b.claim(exe.id) and b.held == {exe.id: 2}

    exe.status = S.RUNNING
    with pytest.raises(LeaseLost, match="lease token 1 is stale"):
        repo_a.store(exe, exe.stages)  # UPDATE ... WHERE id = :id AND lease_token = 1 matches nothing
    assert exe.id not in a.held
    assert repo_a.load(exe.id).status == S.NOT_STARTED  # the refused transaction wrote nothing
    with pytest.raises(LeaseLost, match="holds no lease"):
        repo_a.store(exe)  # a no longer holds it at all
    repo_b.store(exe, exe.stages)
    assert repo_b.load(exe.id).status == S.RUNNING
    assert a.renew() == [] and b.renew() == []
    b.release(exe.id)
    assert a.claim(exe.id) and a.held[exe.id] == 3  # released: claimed at once, with a new token


def test_two_replicas_never_both_start_a_limit_concurrent_pipeline(pg: sa.Engine) -> None:
    config = _pipeline() | {"id": "limited", "limitConcurrent": True}
    repos = []
    for name in ("a", "b"):
        repo = ExecutionRepository(pg)
        repo.guard = Leases(pg, replica=name, ttl_s=30)
        repos.append(repo)
    first, second = (new_execution(config, {"type": "manual", "user": "ci", "parameters": {"cm": c}}, 1000 + n)
                     for n, c in enumerate(("p", "q")))
    repos[0].insert(first)
    repos[1].insert(second)
    # both drivers saw no running execution of the pipeline (concurrency.must_wait) and both write RUNNING
    first.status = second.status = S.RUNNING
    repos[0].store(first)
    with pytest.raises(SlotTaken, match="started an execution of this pipeline first"):
        repos[1].store(second)
    assert repos[1].load(second.id).status == S.NOT_STARTED  # refused whole; its driver retries and waits
    second.status = S.BUFFERED
    repos[1].store(second)
    repos[0].store(first)  # later writes of the running one are not slot checks


def test_a_start_that_lost_the_slot_race_waits_buffered(pg: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        one, two = Executor(pg), Executor(pg)
        for ex, name in ((one, "one"), (two, "two")):
            Leases(pg, replica=name, ttl_s=30, poll_s=0.05).install(ex)
            await ex.start()
        try:
            saved = one.pipelines.save(_pipeline("limited") | {"limitConcurrent": True, "stages": [
                {"refId": "judge", "type": "manualJudgment", "name": "approve"}]}, actor="ci")
            config = one.pipelines.get(saved.id)
            first = await one.start_execution(config, {"parameters": {"cm": "p"}}, user="ci")
            assert first.status == S.RUNNING
            real, raced = concurrency.must_wait, []

            def stale_check(repo: Any, exe: Any) -> bool:  # two checked a moment before one's start committed
                if not raced:
                    raced.append(exe.id)
                    return False
                return real(repo, exe)

            monkeypatch.setattr(concurrency, "must_wait", stale_check)
            second = await two.start_execution(config, {"parameters": {"cm": "q"}}, user="ci")
            assert raced == [second.id] and second.status == S.BUFFERED  # the fence refused RUNNING; it waits
            await one.update_stage(first.id, "approve", {"judgmentStatus": "continue"}, user="bob")
            await one.wait_until_complete(first.id, timeout=10)
            await two.wait_for_stage(second.id, "approve", {S.RUNNING}, timeout=10)  # its turn now
        finally:
            await one.stop()
            await two.stop()

    asyncio.run(scenario())


@contextlib.asynccontextmanager
async def _leased_pair(pg: sa.Engine, name: str, cm: str) -> AsyncIterator[tuple[Executor, Executor, Any]]:
    """Two in-process replicas `one` and `two` on one database (5 s leases), and an execution of a one-judgment
    pipeline `name` started by `one` and waiting at its judgment `approve`."""
    one, two = Executor(pg), Executor(pg)
    for ex, replica in ((one, "one"), (two, "two")):
        Leases(pg, replica=replica, ttl_s=5, poll_s=0.05).install(ex)
        await ex.start()
    try:
        saved = one.pipelines.save(_pipeline(name) | {"stages": [
            {"refId": "judge", "type": "manualJudgment", "name": "approve"}]}, actor="ci")
        exe = await one.start_execution(one.pipelines.get(saved.id), {"parameters": {"cm": cm}}, user="ci")
        await one.wait_for_stage(exe.id, "approve", {S.RUNNING}, timeout=10)
        yield one, two, exe
    finally:
        await one.stop()
        await two.stop()


def test_a_command_sent_to_the_other_replica_is_applied_by_the_owner(pg: sa.Engine) -> None:
    async def scenario() -> None:
        async with _leased_pair(pg, "judged", "y") as (one, two, exe):
            with pytest.raises(NotFound, match="has no stage 'nope'"):  # the owner's refusal, as the same error
                await two.update_stage(exe.id, "nope", {"judgmentStatus": "continue"}, user="bob")
            stage = await two.update_stage(exe.id, "approve", {"judgmentStatus": "continue"}, user="bob")
            assert stage["name"] == "approve"
            done = await one.wait_until_complete(exe.id, timeout=10)
            assert done.status == S.SUCCEEDED
            assert two.leases.remote_sent == 2 and one.leases.remote_applied == 2
            with pytest.raises(Conflict):  # finished: its lease is free, so two applies (refuses) it itself
                await two.cancel(exe.id, user="bob")

    asyncio.run(scenario())


def test_a_command_its_owner_never_answered_is_answered_by_its_sender(pg: sa.Engine) -> None:
    """`one` applied a judgment `two` sent and died before writing the answer; the execution finished before any
    replica picked the command up again. Once no live replica drives the execution, `two` takes the command back
    and answers it itself instead of waiting out its 45 s timeout: the judgment it carries is recorded already, so
    the answer is that record (`duplicate: true`), and the judgment is recorded once."""
    async def scenario() -> None:
        async with _leased_pair(pg, "unanswered", "u") as (one, two, exe):
            assert one.leases is not None and one.leases._loop_task is not None
            one.leases._loop_task.cancel()  # one no longer picks commands up nor answers them
            judgment = {"judgmentStatus": "continue"}
            sent = asyncio.create_task(two.update_stage(exe.id, "approve", judgment, user="bob"))
            while not _count(pg, "SELECT count(*) FROM pipeline_commands WHERE execution_id = %(e)s", e=exe.id):
                await asyncio.sleep(0.02)
            await one.leases._local["update_stage"](exe.id, "approve", judgment, user="bob")  # applied, unanswered
            assert (await one.wait_until_complete(exe.id, timeout=10)).status == S.SUCCEEDED  # lease released
            answer = await asyncio.wait_for(sent, 5)
            assert answer["duplicate"] is True and answer["status"] == "SUCCEEDED"
            assert answer["context"]["judgmentRecord"]["user"] == "bob"
            assert two.leases is not None and two.leases.taken_back == 1
            assert [e["action"] for e in one.repo.audit(exe.id)].count("judgment") == 1

    asyncio.run(scenario())


def test_a_stopped_replica_hands_its_executions_over_at_once(pg: sa.Engine) -> None:
    async def scenario() -> None:
        one, two = Executor(pg), Executor(pg)
        for ex, name in ((one, "one"), (two, "two")):
            Leases(pg, replica=name, ttl_s=30, poll_s=0.05).install(ex)  # expiry would take 30 s
            await ex.start()
        try:
            saved = one.pipelines.save(_pipeline("handover") | {"stages": [
                {"refId": "judge", "type": "manualJudgment", "name": "approve"}]}, actor="ci")
            exe = await one.start_execution(one.pipelines.get(saved.id), {"parameters": {"cm": "z"}}, user="ci")
            await one.wait_for_stage(exe.id, "approve", {S.RUNNING}, timeout=10)
            stopped = time.monotonic()
            await one.stop()  # SIGTERM: the driver stops and releases the lease
            while exe.id not in two.leases.held:
                assert time.monotonic() - stopped < 5, "two did not take the execution over"
                await asyncio.sleep(0.02)
            await two.update_stage(exe.id, "approve", {"judgmentStatus": "continue"}, user="bob")
            assert (await two.wait_until_complete(exe.id, timeout=10)).status == S.SUCCEEDED
        finally:
            await two.stop()

    asyncio.run(scenario())


def test_triggers_fire_once_however_many_replicas_see_them(pg: sa.Engine) -> None:
    repo = ExecutionRepository(pg)
    repo.set_trigger_fired("cron:x:0", 1000)
    assert repo.claim_trigger_fire("cron:x:0", 1000, 2000)
    assert not repo.claim_trigger_fire("cron:x:0", 1000, 2001)  # the other replica read 1000 too: it lost
    # one webhook delivery received by several replicas at once: the primary key lets one insert win
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: triggers._claim(pg, "github", "delivery:abc"), range(8)))
    assert won.count(True) == 1

    async def scenario() -> None:  # a pipeline trigger's hook run by two replicas starts one execution
        one, two = Executor(pg), Executor(pg)
        parent = one.pipelines.get(one.pipelines.save({"application": "app", "name": "parent", "stages": [
            {"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}, actor="ci").id)
        child = one.pipelines.save({"application": "app", "name": "child", "triggers": [
            {"type": "pipeline", "pipeline": parent["id"], "status": ["successful"]}], "stages": [
            {"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}, actor="ci")
        done = new_execution(parent, {"type": "manual", "user": "ci"}, 1000)
        done.status, done.end_time = S.SUCCEEDED, 2000
        try:
            await triggers.on_execution_complete(one, done)
            await triggers.on_execution_complete(two, done)
            assert len(one.repo.list(pipeline_config_id=child.id)) == 1
        finally:
            await one.stop()
            await two.stop()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------- system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One `graylane server` process: its own state folder and port, the shared database."""

    def __init__(self, name: str, root: Path, url: str) -> None:
        self.name, self.port = name, _free_port()
        self.state = root / name
        self.state.mkdir()
        self.log = root / f"{name}.log"
        self.env = {**os.environ, "GRAYLANE_STATE": str(self.state), "GRAYLANE_DATABASE_URL": url,
                    "GRAYLANE_SERVER": f"127.0.0.1:{self.port}", "GRAYLANE_USER": "ci",
                    "GRAYLANE_REPLICA": name, "GRAYLANE_LEASE_TTL_S": "2", "GRAYLANE_LEASE_POLL_S": "0.2",
                    "GRAYLANE_LOCAL_RUNTIME": "off"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=30)

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_healthy(timeout)

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*GRAYLANE, "server", "--port", str(self.port), "--log-level", "warning"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.http.get("/healthz", timeout=1).status_code == 200:
                    self.http.headers["Authorization"] = f"Bearer {read_cli_token(self.state)}"
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica {self.name} did not answer within {timeout}s")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> float:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        self.proc.wait(10)
        return killed

    def terminate(self) -> float:
        """SIGTERM, as a rolling update stops a pod: the replica releases its leases and exits."""
        assert self.proc is not None
        self.proc.terminate()
        stopped = time.monotonic()
        self.proc.wait(15)
        return stopped

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _owners(db: sa.Engine) -> dict[str, str | None]:
    """Active execution id -> the lease owner driving it (`<replica>#<run>`; None: nobody)."""
    with db.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, lease_owner FROM pipeline_executions WHERE status IN "
                                    "('NOT_STARTED', 'RUNNING', 'PAUSED', 'BUFFERED')").all()
    return {r.id: r.lease_owner for r in rows}


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica, sa.Engine]]:
    """Two `graylane server` processes on one fresh schema, shared by the tests below (each its own pipeline)."""
    with fresh_schema() as url:
        root = tmp_path_factory.mktemp("replicas")
        a, b = Replica("a", root, url), Replica("b", root, url)
        db = sa.create_engine(url)
        try:
            a.launch()
            b.launch()  # starting together: one migrates the schema, the other waits for it
            a.wait_healthy()
            b.wait_healthy()
            yield a, b, db
        finally:
            a.stop()
            b.stop()
            db.dispose()


def _until(check: Any, what: str, timeout: float = 20) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout}s")


def test_an_alertmanager_notification_sent_to_both_replicas_starts_one_execution(
        two_replicas: tuple[Replica, Replica, sa.Engine]) -> None:
    """Alertmanager retries a notification, or two HA peers send it, and the load balancer spreads the copies
    over the replicas: the copies race on PostgreSQL's primary key of `webhook_deliveries`; one starts the
    pipeline, every other copy answers `duplicate`. A notification with another alert set is a new event."""
    a, b, db = two_replicas
    on_alert = {"application": "replicas", "name": "on-alert",
                "triggers": [{"type": "webhook", "source": "alertmanager", "enabled": True}],
                "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}
    assert a.http.post("/api/v1/pipelines", json=on_alert).status_code == 200
    hook = "/api/v1/webhooks/webhook/alertmanager"

    def send_everywhere(body: dict[str, Any], copies: int = 3) -> list[dict[str, Any]]:
        gate = threading.Barrier(2 * copies)

        def send(replica: Replica) -> dict[str, Any]:
            gate.wait(10)
            with httpx.Client(base_url=str(replica.http.base_url), trust_env=False, timeout=30) as anonymous:
                r = anonymous.post(hook, json=body)  # Alertmanager sends no token
            assert r.status_code in (200, 202), r.text
            return dict(r.json())

        with ThreadPoolExecutor(2 * copies) as pool:
            return list(pool.map(send, [a, b] * copies))

    def started() -> list[dict[str, Any]]:
        return [e for e in a.http.get("/api/v1/executions", params={"pipeline": "on-alert"}).json()
                if e["name"] == "on-alert"]

    first = alert("3f9c2a61d0b4e7a8", pod="reviews-v2-0")
    answers = send_everywhere(notification(first))
    assert sorted(len(x["executions"]) for x in answers) == [0, 0, 0, 0, 0, 1], answers
    assert sum(1 for x in answers if x.get("duplicate")) == 5
    assert len({x["dedupeKey"] for x in answers if x.get("duplicate")}) == 1
    answers = send_everywhere(notification(first, alert("77d0e5b3c2a19f40", pod="reviews-v2-1")))
    assert sorted(len(x["executions"]) for x in answers) == [0, 0, 0, 0, 0, 1], answers
    runs = started()
    assert len(runs) == 2 and [len(e["trigger"]["payload"]["alerts"]) for e in runs] in ([1, 2], [2, 1])
    with db.connect() as conn:
        keys = conn.exec_driver_sql("SELECT delivery_key FROM webhook_deliveries WHERE source = 'alertmanager'")
        assert all(k.startswith("alertmanager:") for (k,) in keys)


def test_cancel_pause_and_resume_through_the_replica_that_does_not_drive_the_execution(
        two_replicas: tuple[Replica, Replica, sa.Engine]) -> None:
    """An execution waiting at a judgment, driven by `a`: pause, resume and cancel are sent to `b`, which queues
    them for `a` (`pipeline_commands`); each is applied once by `a`, which keeps the lease throughout, `b` answers
    with `a`'s result (or its refusal; a cancel's retry is answered as a duplicate), and the audit trail has each
    once."""
    a, b, db = two_replicas
    held = _pipeline("held") | {"stages": [
        {"refId": "judge", "type": "manualJudgment", "name": "approve"},
        {"refId": "wait", "type": "wait", "name": "soak", "waitTime": 2, "requisiteStageRefIds": ["judge"]}]}
    assert a.http.post("/api/v1/pipelines", json=held).status_code == 200
    r = a.http.post("/api/v1/pipelines/held/start", json={"parameters": {"cm": "held"}})
    assert r.status_code == 200, r.text
    eid = r.json()["id"]

    def execution() -> dict[str, Any]:
        res = b.http.get(f"/api/v1/executions/{eid}")  # reads the database: current on every replica
        assert res.status_code == 200, res.text
        return dict(res.json())

    def stage(exe: dict[str, Any], name: str) -> str:
        return str(next(st["status"] for st in exe["stages"] if st["name"] == name))

    _until(lambda: stage(execution(), "approve") == "RUNNING", "the judgment did not start waiting")
    owner = _owners(db)[eid]
    assert owner is not None and owner.startswith("a#")  # the replica that started it drives it

    paused = b.http.post(f"/api/v1/executions/{eid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "PAUSED", paused.text
    exe = execution()
    assert exe["status"] == "PAUSED" and stage(exe, "approve") == "PAUSED"
    lease_during = [_owners(db)[eid]]
    again = b.http.post(f"/api/v1/executions/{eid}/pause")
    assert again.status_code == 409 and "only a RUNNING execution can be paused" in again.text
    resumed = b.http.post(f"/api/v1/executions/{eid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "RUNNING", resumed.text
    assert stage(execution(), "approve") == "RUNNING"
    lease_during.append(_owners(db)[eid])

    canceled = b.http.post(f"/api/v1/executions/{eid}/cancel", json={"reason": "wrong build"})
    assert canceled.status_code == 200 and canceled.json()["canceled"] is True, canceled.text
    exe = _until(lambda: (e := execution())["status"] == "CANCELED" and e, "the execution did not end CANCELED")
    assert stage(exe, "approve") == "CANCELED" and stage(exe, "soak") == "NOT_STARTED"
    late = b.http.post(f"/api/v1/executions/{eid}/cancel")  # a client's retry: answered, recorded once
    assert late.status_code == 200 and late.json()["duplicate"] is True, late.text
    assert late.json()["status"] == "CANCELED" and "canceled already" in late.json()["message"]
    actions = [entry["action"] for entry in execution()["audit"]]
    assert actions.count("cancel") == 1 and actions.count("pause") == 1 and actions.count("resume") == 1, actions
    assert "judgment" not in actions
    cancel = next(entry for entry in execution()["audit"] if entry["action"] == "cancel")
    assert cancel["details"].get("reason") == "wrong build"
    assert lease_during == [owner, owner]  # a drove it throughout: b queued the commands, a applied them


def test_one_judgment_sent_to_both_replicas_at_once_and_again_is_recorded_once(
        two_replicas: tuple[Replica, Replica, sa.Engine]) -> None:
    """A client that re-sends a judgment before it heard back, through a load balancer that spreads the copies
    over both replicas: three copies to each at once, all with the judgment's Idempotency-Key. Every copy is
    answered 200, one applies it and the other five say `duplicate`; the audit trail and `pipeline_judgments`
    hold it once. A re-send after the stage moved on is still answered as a duplicate; another judgment is
    refused (409) naming the stage and who judged it."""
    a, b, db = two_replicas
    twice = _pipeline("judged-once") | {"stages": [
        {"refId": "judge", "type": "manualJudgment", "name": "approve"},
        {"refId": "wait", "type": "wait", "name": "soak", "waitTime": 1, "requisiteStageRefIds": ["judge"]}]}
    assert a.http.post("/api/v1/pipelines", json=twice).status_code == 200
    r = b.http.post("/api/v1/pipelines/judged-once/start", json={"parameters": {"cm": "judged-once"}})
    assert r.status_code == 200, r.text
    eid = r.json()["id"]

    def execution() -> dict[str, Any]:
        return dict(a.http.get(f"/api/v1/executions/{eid}").json())

    _until(lambda: execution()["stages"][0]["status"] == "RUNNING", "the judgment did not start waiting")
    key = str(uuid.uuid4())
    path = f"/api/v1/executions/{eid}/stages/approve"
    gate = threading.Barrier(6)

    def send(replica: Replica) -> httpx.Response:
        gate.wait(10)
        return replica.http.patch(path, json={"judgmentStatus": "continue"}, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, [a, b] * 3))
    assert [x.status_code for x in answers] == [200] * 6, [x.text for x in answers]
    assert sorted(bool(x.json().get("duplicate")) for x in answers) == [False] + [True] * 5
    done = _until(lambda: (e := execution())["status"] == "SUCCEEDED" and e, "the execution did not succeed")
    late = b.http.patch(path, json={"judgmentStatus": "continue"}, headers={"Idempotency-Key": key})
    assert late.status_code == 200 and late.json()["duplicate"] is True, late.text
    other = a.http.patch(path, json={"judgmentStatus": "stop"})
    assert other.status_code == 409 and "stage 'approve' was judged already: continue by " in other.text
    judged = [x for x in done["audit"] if x["action"] == "judgment"]
    assert len(judged) == 1 and judged[0]["details"]["idempotencyKey"] == key
    assert _count(db, "SELECT count(*) FROM pipeline_judgments WHERE execution_id = %(e)s", e=eid) == 1


def _count(db: sa.Engine, sql: str, **params: Any) -> int:
    with db.connect() as conn:
        return int(conn.exec_driver_sql(sql, params).scalar() or 0)
