"""Stage types against real parts: expressions, a real HTTP server for webhooks, child pipelines, git artifacts."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.pipelines import artifacts
from graylane.pipelines.executor import Executor
from graylane.pipelines.repository import PipelineRepository
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.triggers import Cron, build_trigger
from graylane.pipelines.window import in_window


def stage(ref: str, stype: str, name: str, requires: tuple[str, ...] = (), **fields: Any) -> dict:
    return {"refId": ref, "type": stype, "name": name, "requisiteStageRefIds": list(requires), **fields}


async def _start(ex: Executor, body: dict, parameters: dict | None = None) -> str:
    repo = PipelineRepository(ex.repo.engine)
    config = repo.get(repo.save(body, actor="user:t").id)
    trigger = build_trigger(config, {"type": "manual", "user": "t", "parameters": parameters or {}}, ex)
    return (await ex.start_execution(config, trigger, user="t")).id


def run(engine: sa.Engine, scenario: Any) -> Any:
    async def go() -> Any:
        ex = Executor(engine)
        await ex.start()
        try:
            return await scenario(ex)
        finally:
            await ex.stop()

    return asyncio.run(go())


def test_restart_re_evaluates_downstream_expressions(engine: sa.Engine) -> None:
    ratio = '#stage("gate")["context"]["customParams"]["ratio"]'
    body = {"application": "app", "name": "restart", "stages": [
        stage("1", "manualJudgment", "gate", customParamConfig=[{"name": "ratio", "type": "int"}]),
        stage("2", "wait", "note", ("1",), waitTime=0, comments="ratio=${" + ratio + "}"),
        stage("3", "evaluateVariables", "vars", ("2",), variables=[
            {"key": "weight", "value": "${100 - #toInt(" + ratio + ")}"}])]}

    async def scenario(ex: Executor) -> None:
        eid = await _start(ex, body)
        await ex.wait_for_stage(eid, "gate", {S.RUNNING})
        await ex.update_stage(eid, "gate", {"judgmentStatus": "continue", "customParams": {"ratio": "10"}}, user="a")
        first = await ex.wait_until_complete(eid)
        assert first.stage("note").context["comments"] == "ratio=10"
        assert first.stage("vars").outputs == {"weight": 90}
        await ex.restart_stage(eid, "gate", user="b")
        await ex.wait_for_stage(eid, "gate", {S.RUNNING})
        await ex.update_stage(eid, "gate", {"judgmentStatus": "continue", "customParams": {"ratio": "20"}}, user="b")
        again = await ex.wait_until_complete(eid)
        assert again.status == S.SUCCEEDED
        assert again.stage("note").context["comments"] == "ratio=20"  # evaluated afresh from the original config
        assert again.stage("vars").outputs == {"weight": 80}
        assert again.stage("vars").context["variables"][0]["sourceValue"].startswith("${100 - #toInt(")
        assert [a["action"] for a in ex.repo.audit(eid)] == ["start", "judgment", "restart", "judgment"]

    run(engine, scenario)


def test_stage_enabled_expression_on_judgment_input_and_invalid_result(engine: sa.Engine) -> None:
    body = {"application": "app", "name": "branch", "stages": [
        stage("1", "manualJudgment", "是否全量发布", judgmentInputs=[{"value": "promote"}, {"value": "end"}]),
        stage("2", "wait", "promote", ("1",), waitTime=0,
              stageEnabled={"type": "expression", "expression": "#judgment('是否全量发布') == 'promote'"}),
        stage("3", "wait", "cleanup", ("1",), waitTime=0,
              stageEnabled={"type": "expression", "expression": "${#judgment('是否全量发布') == 'end'}"}),
        stage("4", "wait", "bad", ("1",), waitTime=0,
              stageEnabled={"type": "expression", "expression": "parameters.missing"}),
        stage("5", "wait", "after", ("2", "3", "4"), waitTime=0)]}

    async def scenario(ex: Executor) -> None:
        eid = await _start(ex, body)
        await ex.wait_for_stage(eid, "是否全量发布", {S.RUNNING})
        await ex.update_stage(eid, "是否全量发布", {"judgmentStatus": "continue", "judgmentInput": "end"}, user="a")
        exe = await ex.wait_until_complete(eid)
        got = {s.name: str(s.status) for s in exe.stages}
        assert got == {"是否全量发布": "SUCCEEDED", "promote": "SKIPPED", "cleanup": "SUCCEEDED", "bad": "SKIPPED",
                       "after": "SUCCEEDED"}
        assert "not true/false" in exe.stage("bad").context["stageEnabledResult"]

    run(engine, scenario)


def test_check_preconditions_fail_pipeline_per_precondition(engine: sa.Engine) -> None:
    body = {"application": "app", "name": "pre", "parameterConfig": [{"name": "env", "default": "prod"}],
            "stages": [
                stage("1", "checkPreconditions", "soft", preconditions=[
                    {"type": "expression", "context": {"expression": "parameters.env == 'prod'"}},
                    {"type": "expression", "failPipeline": False,
                     "context": {"expression": "${parameters.env == 'staging'}"}}]),
                stage("2", "wait", "after soft", ("1",), waitTime=0),
                stage("3", "checkPreconditions", "status", preconditions=[
                    {"type": "stageStatus", "context": {"stageName": "soft", "stageStatus": "STOPPED"}}],
                      requisiteStageRefIds=[])]}

    async def scenario(ex: Executor) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body))
        soft = exe.stage("soft")
        assert soft.status == S.STOPPED and exe.status == S.SUCCEEDED
        assert [r["passed"] for r in soft.context["preconditionResults"]] == [True, False]
        assert exe.stage("after soft").status == S.NOT_STARTED
        assert exe.stage("status").status == S.SUCCEEDED  # soft was STOPPED, as the precondition wants

    run(engine, scenario)


class _Hook(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, dict, Any]] = []
    polls = 0
    fail_first = 1

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        type(self).calls.append(("POST", self.path, dict(self.headers), body))
        if self.path.startswith("/notify"):
            self._reply(200, {})
        elif self.path == "/fast-fail":
            self._reply(504, {"error": "gateway"})
        elif type(self).fail_first > 0:
            type(self).fail_first -= 1
            self._reply(503, {"error": "busy"})
        else:
            self._reply(201, {"job": 7}, {"Location": "/jobs/7"})

    def do_GET(self) -> None:  # noqa: N802
        type(self).polls += 1
        self._reply(200, {"state": "running" if type(self).polls < 2 else "done"})


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hook.calls, _Hook.polls, _Hook.fail_first = [], 0, 1
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_webhook_retries_then_polls_status_until_done(engine: sa.Engine, hook_server: str) -> None:
    body = {"application": "app", "name": "hook", "parameterConfig": [{"name": "v", "default": "v2"}], "stages": [
        stage("1", "webhook", "notify", url=f"{hook_server}/deploy", method="POST",
              customHeaders={"X-Token": "abc"}, payload={"version": "${parameters.v}"},
              waitForCompletion=True, statusUrlResolution="locationHeader", statusJsonPath="$.state",
              successStatuses="DONE", pollInterval=0.05),
        stage("2", "webhook", "fails fast", url=f"{hook_server}/fast-fail", failPipeline=False)]}

    async def scenario(ex: Executor) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body), timeout=30)
        notify = exe.stage("notify")
        assert notify.status == S.SUCCEEDED, notify.context
        assert notify.context["webhook"]["attempts"] == 2  # 503 retried, then 201
        assert notify.context["webhook"]["monitor"]["resolvedValue"] == "done"
        posts = [c for c in _Hook.calls if c[1] == "/deploy"]
        assert posts[-1][3] == {"version": "v2"} and posts[-1][2]["X-Token"] == "abc"
        # one idempotency key for the request, the same on its retry (pipelines/stages/webhook.py)
        assert [p[2]["Idempotency-Key"] for p in posts] == [f"{exe.id}/{notify.id}/0"] * 2
        fast = exe.stage("fails fast")
        assert fast.status == S.STOPPED
        assert "504" in fast.context["exception"]["details"]["error"]
        assert len([c for c in _Hook.calls if c[1] == "/fast-fail"]) == 1  # fail-fast: no retry

    run(engine, scenario)


class _Artifacts(BaseHTTPRequestHandler):
    """GET /<name> answers 200 with the JSON body registered under that name."""

    bodies: dict[str, Any] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        data = json.dumps(type(self).bodies[self.path.lstrip("/")]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_webhook_expected_artifacts_bind_to_the_artifacts_its_answer_carries(engine: sa.Engine) -> None:
    """orca WebhookResponseProcessor + WebhookStage: with expectedArtifacts a 2xx answer must carry `artifacts`, and
    BindProducedArtifactsTask binds the expected artifacts to them (or to a default); unmatched is TERMINAL."""
    nginx = {"type": "gcs/object", "name": "gs://sbws/manifests/nginx.yaml", "reference": "gs://sbws/manifests/nginx.yaml"}
    _Artifacts.bodies = {"nginx": {"artifacts": [nginx]}, "other": {"artifacts": [{**nginx, "name": "gs://x/y"}]},
                         "none": {"status": "ok"}}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Artifacts)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    expected = [{"id": "manifest", "matchArtifact": {"type": "gcs/object", "name": "gs://sbws/manifests/nginx.yaml"},
                 "useDefaultArtifact": False, "usePriorArtifact": False}]
    body = {"application": "app", "name": "artifacts", "stages": [
        stage(ref, "webhook", name, url=f"{base}/{name}", method="GET", expectedArtifacts=expected, failPipeline=False)
        for ref, name in (("1", "nginx"), ("2", "other"), ("3", "none"))] + [
        stage("4", "webhook", "defaulted", url=f"{base}/none", method="GET", expectedArtifacts=[
            {**expected[0], "useDefaultArtifact": True, "defaultArtifact": nginx}], failPipeline=False)]}

    async def scenario(ex: Executor) -> None:
        exe = await ex.wait_until_complete(await _start(ex, body), timeout=30)
        ok = exe.stage("nginx")
        assert ok.status == S.SUCCEEDED, ok.context
        assert [t.name for t in ok.tasks] == ["createWebhook", "bindProducedArtifacts"]
        assert ok.outputs["artifacts"] == [nginx]
        assert ok.outputs["resolvedExpectedArtifacts"][0]["boundArtifact"] == nginx
        other = exe.stage("other")
        assert other.status == S.STOPPED
        assert "Unmatched expected artifact 'manifest'" in other.context["exception"]["details"]["error"]
        none = exe.stage("none")
        assert none.status == S.STOPPED
        assert "has no `artifacts` list" in none.context["exception"]["details"]["error"]
        # the response carries no artifacts, so the create task fails before any default is considered (orca)
        assert exe.stage("defaulted").status == S.STOPPED

    try:
        run(engine, scenario)
    finally:
        srv.shutdown()
        srv.server_close()


def test_child_pipeline_runs_with_parameters_and_parent_waits(engine: sa.Engine) -> None:
    child = {"application": "app", "name": "child", "parameterConfig": [{"name": "who", "required": True}],
             "stages": [stage("1", "evaluateVariables", "greet",
                              variables=[{"key": "greeting", "value": "hi ${parameters.who}"}])]}
    parent = {"application": "app", "name": "parent", "stages": [
        stage("1", "pipeline", "run child", pipeline="${#pipelineId('child')}", pipelineParameters={"who": "bob"}),
        stage("2", "evaluateVariables", "use", ("1",), variables=[{"key": "heard", "value": "${greeting}!"}])]}

    async def scenario(ex: Executor) -> None:
        PipelineRepository(ex.repo.engine).save(child, actor="user:t")
        exe = await ex.wait_until_complete(await _start(ex, parent), timeout=30)
        assert exe.status == S.SUCCEEDED
        cid = exe.stage("run child").context["executionId"]
        assert exe.stage("run child").context["pipeline"] == PipelineRepository(ex.repo.engine).get("child")["id"]
        kid = ex.get(cid)
        assert kid.status == S.SUCCEEDED and kid.trigger["parentExecution"]["id"] == exe.id
        assert exe.stage("use").outputs == {"heard": "hi bob!"}

    run(engine, scenario)


def test_skippable_child_pipeline_stage_can_be_skipped(engine: sa.Engine) -> None:
    child = {"application": "app", "name": "slow-child", "stages": [stage("1", "manualJudgment", "hold")]}
    parent = {"application": "app", "name": "skip-parent", "stages": [
        stage("1", "pipeline", "run child", pipeline="slow-child", skippable=True),
        stage("2", "wait", "then", ("1",), waitTime=0),
        stage("3", "wait", "not skippable", waitTime=60)]}

    async def scenario(ex: Executor) -> None:
        PipelineRepository(ex.repo.engine).save(child, actor="user:t")
        eid = await _start(ex, parent)
        await ex.wait_for_stage(eid, "run child", {S.RUNNING})
        for _ in range(200):
            if ex.get(eid).stage("run child").context.get("executionId"):
                break
            await asyncio.sleep(0.02)
        from graylane.errors import ValidationError

        with pytest.raises(ValidationError, match="Cannot manually skip stage"):
            await ex.update_stage(eid, "not skippable", {"manualSkip": True}, user="t")
        await ex.update_stage(eid, "run child", {"manualSkip": True}, user="t")
        await ex.wait_for_stage(eid, "then", {S.SUCCEEDED})
        assert ex.get(eid).stage("run child").status == S.SKIPPED
        await ex.cancel(eid, user="t")
        await ex.wait_until_complete(eid)

    run(engine, scenario)


def test_git_file_artifact_read_with_system_git_and_cached(tmp_path: Path, state_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYLANE_ARTIFACT_FILE_ROOTS", str(tmp_path))  # the operator allows local repositories here
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                                   "GIT_COMMITTER_EMAIL": "t@x", "HOME": str(tmp_path)}).stdout

    git("init", "-q", "-b", "main")
    (repo / "deploy").mkdir()
    (repo / "deploy" / "cm.yaml").write_text("kind: ConfigMap\nv: 1\n")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    (repo / "deploy" / "cm.yaml").write_text("kind: ConfigMap\nv: 2\n")
    git("commit", "-q", "-am", "two")
    first = git("rev-parse", "HEAD~1").strip()

    (repo / "deploy" / "cm.yaml").write_text("kind: ConfigMap\nv: working-tree\n")  # not committed
    plain = tmp_path / "plain"
    (plain / "deploy").mkdir(parents=True)
    (plain / "deploy" / "cm.yaml").write_text("v: plain\n")

    async def go() -> tuple[str, str, str]:
        head = await artifacts.fetch_text({"type": "git/file", "reference": str(repo), "version": "main",
                                           "name": "deploy/cm.yaml"})
        sub = await artifacts.fetch_text({"type": "git/file", "reference": str(repo / "deploy"), "version": "main",
                                          "name": "cm.yaml"})
        disk = await artifacts.fetch_text({"type": "git/file", "reference": str(repo), "name": "deploy/cm.yaml"})
        folder = await artifacts.fetch_text({"type": "git/file", "reference": str(plain), "name": "deploy/cm.yaml"})
        assert (sub, disk, folder) == (head, "kind: ConfigMap\nv: working-tree\n", "v: plain\n")
        old = await artifacts.fetch_text({"type": "git/file", "reference": f"file://{repo}", "version": first,
                                          "name": "deploy/cm.yaml"})
        emb = await artifacts.fetch_text({"type": "embedded/base64", "reference": base64.b64encode(b"x: 1").decode()})
        return head, old, emb

    head, old, emb = asyncio.run(go())
    assert head.endswith("v: 2\n") and old.endswith("v: 1\n") and emb == "x: 1"
    assert list((state_dir / "artifacts" / "git" / "files").iterdir())  # cached per commit


def test_cron_and_time_window_calendars() -> None:
    quartz = Cron("0 0/15 9-17 ? * MON-FRI")
    assert quartz.matches(datetime(2026, 11, 25, 9, 30, 0))  # a Wednesday
    assert not quartz.matches(datetime(2026, 11, 29, 9, 30, 0))  # Sunday
    assert not quartz.matches(datetime(2026, 11, 25, 9, 31, 0))
    unix = Cron("*/5 * * * *")
    assert unix.fired_between(datetime(2026, 1, 1, 0, 4, 59), datetime(2026, 1, 1, 0, 5, 0))
    assert not unix.fired_between(datetime(2026, 1, 1, 0, 5, 0), datetime(2026, 1, 1, 0, 9, 59))
    window = {"whitelist": [{"startHour": 22, "startMin": 0, "endHour": 6, "endMin": 0}], "days": [2, 3, 4, 5, 6]}
    assert in_window(window, datetime(2026, 11, 25, 23, 0))  # Wednesday night
    assert not in_window(window, datetime(2026, 11, 25, 12, 0))
    assert not in_window(window, datetime(2026, 11, 29, 23, 0))  # Sunday (calendar day 1)


def test_judgment_and_pipeline_notifications_are_posted_after_commit(engine: sa.Engine, hook_server: str) -> None:
    from graylane.pipelines.notifications import Notifier

    body = {"application": "app", "name": "notify",
            "notifications": [{"type": "webhook", "address": f"{hook_server}/notify/pipeline", "level": "pipeline",
                               "when": ["pipeline.starting", "pipeline.complete"],
                               "message": {"pipeline.complete": {"text": "done"}}},
                              {"type": "email", "address": "ops@example.com", "when": ["pipeline.complete"]}],
            "stages": [stage("1", "manualJudgment", "approve", instructions="**check** the dashboards",
                             notifications=[{"type": "webhook", "address": f"{hook_server}/notify/judge",
                                             "when": ["manualJudgment", "manualJudgmentContinue"]}])]}

    async def scenario(ex: Executor) -> None:
        notifier = Notifier(ex)
        notifier.start()
        try:
            eid = await _start(ex, body)
            await ex.wait_for_stage(eid, "approve", {S.RUNNING})
            await ex.update_stage(eid, "approve", {"judgmentStatus": "continue"}, user="a")
            await ex.wait_until_complete(eid)
            for _ in range(200):
                if len(notifier.sent) >= 5:
                    break
                await asyncio.sleep(0.02)
        finally:
            await notifier.stop()
        posted = [(c[1], c[3]["event"]) for c in _Hook.calls if c[1].startswith("/notify")]
        assert posted == [("/notify/pipeline", "pipeline.starting"), ("/notify/judge", "manualJudgment"),
                          ("/notify/judge", "manualJudgmentContinue"), ("/notify/pipeline", "pipeline.complete")]
        judge = next(c[3] for c in _Hook.calls if c[1] == "/notify/judge")
        assert judge["stage"]["instructions"] == "**check** the dashboards" and judge["executionId"] == eid
        done = next(c[3] for c in _Hook.calls if c[3].get("event") == "pipeline.complete")
        assert done["message"] == "done" and done["status"] == "SUCCEEDED"
        last = notifier.sent[-1]
        assert (last["type"], last["sent"]) == ("email", False)

    run(engine, scenario)
