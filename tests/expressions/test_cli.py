"""`graylane expr`: evaluate offline against an execution snapshot, print the result and the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from graylane.cli import expr as expr_cli
from graylane.errors import GraylaneError, NotFound


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    expr_cli.register(app)
    return app


@pytest.fixture
def snapshot(tmp_path: Path, article: Any) -> Path:
    path = tmp_path / "execution.json"
    path.write_text(json.dumps(article(canary_ratio="1"), ensure_ascii=False), encoding="utf-8")
    return path


def test_prints_typed_result(app: typer.Typer, snapshot: Path) -> None:
    result = CliRunner().invoke(app, ["expr", '100 - #toInt(#stage("设置灰度比例")["context"]["customParams"]'
                                              '["canary_ratio"])', "--context", str(snapshot)])
    assert result.exit_code == expr_cli.EXIT_OK, result.output
    assert result.output.strip() == "result: 99"


def test_stage_option_sets_the_root(app: typer.Typer, snapshot: Path) -> None:
    result = CliRunner().invoke(app, ["expr", "waitTime * 2", "-c", str(snapshot), "--stage", "灰度比例生效"])
    assert result.exit_code == 0 and result.output.strip() == "result: 60"


def test_failure_prints_summary_and_exits_1(app: typer.Typer, snapshot: Path) -> None:
    result = CliRunner().invoke(app, ["expr", "weight: ${#toInt(#stage('设置灰度')['context'])}", "-c", str(snapshot)])
    assert result.exit_code == expr_cli.EXIT_EXPRESSION_FAILED
    lines = result.output.splitlines()
    assert lines[0] == "result: \"weight: ${#toInt(#stage('设置灰度')['context'])}\""
    assert lines[1] == "expressionEvaluationSummary:"
    assert lines[2].startswith("ERROR Failed to evaluate [#toInt(#stage('设置灰度')['context'])] "
                               '#stage("设置灰度"): no stage named "设置灰度" in this execution')
    assert lines[-1] == "       ^"


def test_json_output(app: typer.Typer, snapshot: Path) -> None:
    result = CliRunner().invoke(app, ["expr", "${parameters}", "-c", str(snapshot), "-o", "json"])
    assert result.exit_code == 0
    answer = json.loads(result.output)
    assert answer == {"result": {"base_version": "v1", "canary_version": "v2", "replicas": "3", "dry": "true"},
                      "summary": {}, "failed": False}


def test_unknown_stage_is_a_user_error(app: typer.Typer, snapshot: Path) -> None:
    result = CliRunner().invoke(app, ["expr", "1", "-c", str(snapshot), "--stage", "nope"])
    assert isinstance(result.exception, NotFound)
    assert 'no stage named "nope"' in str(result.exception)


@pytest.mark.parametrize(("content", "message"), [
    pytest.param("{not json", "not valid JSON", id="bad-json"),
    pytest.param("[1, 2]", "must be a JSON object", id="not-object"),
    pytest.param('{"stages": 5}', "field stages must be a list", id="bad-stages"),
])
def test_bad_snapshot_names_the_file(app: typer.Typer, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = CliRunner().invoke(app, ["expr", "1", "-c", str(path)])
    assert isinstance(result.exception, GraylaneError)
    assert message in str(result.exception) and str(path) in str(result.exception)


def test_real_command_line(snapshot: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "graylane.cli.main", "expr", "#judgment('是否全量发布')", "-c", str(snapshot)],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 1
    assert "the manual judgment \"是否全量发布\" has no judgmentInput (status NOT_STARTED)" in done.stdout


def test_missing_snapshot_is_one_line(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["expr", "1", "-c", "/nonexistent.json"])
    assert isinstance(result.exception, GraylaneError)
    assert str(result.exception) == "/nonexistent.json: cannot read the execution snapshot: No such file or directory"


def test_execution_option_asks_the_control_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 app: typer.Typer) -> None:
    """Against a real control plane on loopback: a stored execution, judged with customParams."""
    import threading
    import time

    import httpx
    import uvicorn

    from graylane.server.app import create_app
    from graylane.server.context import ControlPlane
    from graylane.store import Store

    port = __import__("socket").socket()
    port.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    store = Store.open(f"sqlite:///{tmp_path / 'cp.db'}")
    cp = ControlPlane(store=store)
    control_plane = create_app(cp, start_components=False)
    server = uvicorn.Server(uvicorn.Config(control_plane, host="127.0.0.1",
                                           port=int(address.rsplit(":", 1)[1]), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    pipeline = {
        "application": "bookinfo", "name": "ratio-only",
        "stages": [
            {"refId": "1", "type": "manualJudgment", "name": "设置灰度比例", "requisiteStageRefIds": [],
             "customParamConfig": [{"name": "canary_ratio", "type": "int", "min": 0, "max": 100}]},
            {"refId": "2", "type": "evaluateVariables", "name": "weights", "requisiteStageRefIds": ["1"],
             "variables": [{"key": "canary", "value": '${#toInt(#stage("设置灰度比例")["context"]'
                                                        '["customParams"]["canary_ratio"])}'}]},
        ],
    }
    base = f"http://{address}"
    try:
        with httpx.Client(base_url=base, trust_env=False, headers={  # the operator's token, as the CLI sends it
                "X-Graylane-User": "alice", "Authorization": f"Bearer {control_plane.state.cli_token}"}) as http:
            deadline = time.monotonic() + 20
            while not server.started:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.02)
            assert http.post("/api/v1/pipelines", json=pipeline).status_code == 200
            eid = http.post("/api/v1/pipelines/ratio-only/start", json={"parameters": {}}).json()["id"]

            def stage_status(name: str) -> str:
                exe = http.get(f"/api/v1/executions/{eid}").json()
                return next(s["status"] for s in exe["stages"] if s["name"] == name)

            while stage_status("设置灰度比例") != "RUNNING":
                assert time.monotonic() < deadline, "the judgment never started"
                time.sleep(0.02)
            monkeypatch.setenv("GRAYLANE_SERVER", address)
            waiting = CliRunner().invoke(app, ["expr", "#judgment('设置灰度比例')", "--execution", eid])
            assert waiting.exit_code == 1
            assert 'the manual judgment "设置灰度比例" has no judgmentInput (status RUNNING)' in waiting.output
            r = http.patch(f"/api/v1/executions/{eid}/stages/设置灰度比例",
                           json={"judgmentStatus": "continue", "customParams": {"canary_ratio": "1"}})
            assert r.status_code == 200, r.text
            while stage_status("weights") != "SUCCEEDED":
                assert time.monotonic() < deadline, "the weights stage never finished"
                time.sleep(0.02)
        weight = CliRunner().invoke(app, ["expr", '100 - #toInt(#stage("设置灰度比例")["context"]["customParams"]'
                                                  '["canary_ratio"])', "-e", eid])
        assert weight.exit_code == 0 and weight.output.strip() == "result: 99"
        own = CliRunner().invoke(app, ["expr", "canary * 10", "-e", eid, "--stage", "weights"])
        assert own.exit_code == 0 and own.output.strip() == "result: 10"
        missing = CliRunner().invoke(app, ["expr", "1", "-e", "no-such-execution"])
        assert isinstance(missing.exception, NotFound)
        both = CliRunner().invoke(app, ["expr", "1", "-e", eid, "-c", "x.json"])
        assert "--context and --execution cannot be used together" in str(both.exception)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        comp = cp.components.get("pipelines")
        if comp is not None:
            import asyncio

            asyncio.run(comp.executor.stop())
        store.close()
