"""The pipeline CLI (typer's runner) against a real control plane API on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from graylane.cli.main import app  # noqa: E402
from graylane.server.app import create_app  # noqa: E402
from graylane.server.context import ControlPlane  # noqa: E402
from graylane.store import Store  # noqa: E402

PIPELINE_YAML = """\
application: shop
name: release
parameterConfig:
  - {name: version, required: true}
stages:
  - refId: "1"
    type: manualJudgment
    name: 是否全量发布
    judgmentInputs: [{value: promote}, {value: end}]
    failPipeline: true
  - refId: "2"
    type: wait
    name: settle
    requisiteStageRefIds: ["1"]
    waitTime: 0
"""


@pytest.fixture
def api(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real uvicorn server in a thread with its own loop (the CLI is synchronous)."""
    import uvicorn

    store = Store.open(f"sqlite:///{tmp_path / 'cli.db'}")
    app_ = create_app(ControlPlane(store=store), start_components=False)
    server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    monkeypatch.setenv("GRAYLANE_SERVER", f"127.0.0.1:{port}")
    monkeypatch.setenv("GRAYLANE_USER", "carol")
    monkeypatch.setenv("COLUMNS", "200")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    store.close()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_import_errors_name_file_and_line_offline(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(PIPELINE_YAML.replace("requisiteStageRefIds: [\"1\"]", "requisiteStageRefIds: [\"9\"]"))
    result = CliRunner().invoke(app, ["pipeline", "import", str(bad)])
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)
    assert f"{bad}:14" in str(result.exception) and "requisite refId '9' points to no stage" in str(result.exception)


def test_import_run_judge_wait_show_export(api: str, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "release.yaml").write_text(PIPELINE_YAML)
    code, out = cli("pipeline", "import", str(folder))
    assert code == 0 and "pipeline shop/release created (version 1" in out
    code, out = cli("pipeline", "list")
    assert code == 0 and "release" in out
    code, out = cli("pipeline", "show", "release")
    assert code == 0 and "parameters: version*" in out and "是否全量发布" in out and "manualJudgment" in out
    code, out = cli("pipeline", "run", "release")
    assert code != 0
    code, out = cli("pipeline", "run", "release", "-p", "version=1.4")
    assert code == 0
    eid = out.split()[1]
    http = httpx.Client(base_url=api, trust_env=False)
    for _ in range(200):
        if http.get(f"/api/v1/executions/{eid}").json()["stages"][0]["status"] == "RUNNING":
            break
        time.sleep(0.02)
    code, out = cli("judge", eid, "--stage", "是否全量发布", "--continue", "--input", "maybe")
    assert code != 0
    code, out = cli("judge", eid, "--stage", "是否全量发布", "--stop", "--input", "end")
    assert code == 0 and "judgment 是否全量发布: stop (end)" in out
    code, out = cli("execution", "wait", eid, "--timeout", "20")
    assert code == 1 and "TERMINAL" in out  # a CI gate: only SUCCEEDED exits 0
    code, out = cli("execution", "show", eid)
    assert code == 0 and "stop by carol: end" in out and "judgment" in out
    code, out = cli("execution", "show", eid, "-o", "json")
    assert json.loads(out)["status"] == "TERMINAL"
    code, out = cli("execution", "restart", eid, "--stage", "是否全量发布")
    assert code == 0
    for _ in range(200):
        if http.get(f"/api/v1/executions/{eid}").json()["stages"][0]["status"] == "RUNNING":
            break
        time.sleep(0.02)
    code, out = cli("judge", eid, "--stage", "是否全量发布", "--continue", "--input", "promote")
    assert code == 0
    code, out = cli("execution", "wait", eid, "--timeout", "20")
    assert code == 0 and "SUCCEEDED" in out
    code, out = cli("execution", "list", "--pipeline", "release")
    assert code == 0 and eid in out and "manual by carol" in out
    code, out = cli("pipeline", "history", "release")
    assert code == 0 and "user:carol" in out
    code, out = cli("pipeline", "export", "release")
    exported = json.loads(out)
    assert exported["stages"][0]["name"] == "是否全量发布" and "_version" not in exported
    (tmp_path / "again.json").write_text(out)
    code, out = cli("pipeline", "import", str(tmp_path / "again.json"))
    assert "unchanged" in out
    quick = {"application": "shop", "name": "quick", "stages": [
        {"refId": "1", "type": "wait", "name": "short", "waitTime": 0.2},
        {"refId": "2", "type": "wait", "name": "skipped", "requisiteStageRefIds": ["1"], "waitTime": 0,
         "stageEnabled": {"type": "expression", "expression": "false"}}]}
    (tmp_path / "quick.json").write_text(json.dumps(quick))
    assert cli("pipeline", "import", str(tmp_path / "quick.json"))[0] == 0
    code, out = cli("pipeline", "run", "quick", "--watch")
    assert code == 0, out
    assert "SUCCEEDED" in out and "SKIPPED" in out and "evaluated to false" in out
