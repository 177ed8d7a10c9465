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
    missing = subprocess.run([sys.executable, "-m", "graylane.cli.main", "expr", "1", "-c", "/nonexistent.json"],
                             capture_output=True, text=True, timeout=60, env=env, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: /nonexistent.json: cannot read the execution snapshot: No such file " \
                                     "or directory"
