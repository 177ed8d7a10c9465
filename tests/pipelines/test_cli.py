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
    monkeypatch.setenv("GRAYLANE_TOKEN", app_.state.cli_token)  # the operator's token, as `graylane up` writes it
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


RATIO_YAML = """\
application: shop
name: ratio
parameterConfig:
  - {name: base_version, required: true, default: v1}
  - {name: canary_version, required: true}
  - {name: region, hasOptions: true, options: [{value: east}, {value: west}], default: east}
stages:
  - refId: "1"
    type: manualJudgment
    name: 设置灰度比例
    customParamConfig: [{name: canary_ratio, type: int, min: 0, max: 100, required: true}]
"""


def refused(*args: str) -> str:
    """The one-line error a refused command shows (main() prints the GraylaneError and its hint)."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code != 0, result.output
    return str(result.exception)


def _wait_running(http: httpx.Client, eid: str) -> None:
    for _ in range(250):
        if http.get(f"/api/v1/executions/{eid}").json()["stages"][0]["status"] == "RUNNING":
            return
        time.sleep(0.02)
    raise AssertionError(f"execution {eid} never reached its judgment")


def test_run_honours_parameter_config_and_reports_buffered_runs(api: str, tmp_path: Path) -> None:
    (tmp_path / "ratio.yaml").write_text(RATIO_YAML)
    assert cli("pipeline", "import", str(tmp_path / "ratio.yaml"))[0] == 0
    out = refused("pipeline", "run", "ratio", "-p", "canary_version=v3", "-p", "bogus=1")
    assert "does not declare the parameter(s) bogus" in out
    assert "declared: base_version, canary_version, region" in out
    assert "canary_version is required" in refused("pipeline", "run", "ratio")
    out = refused("pipeline", "run", "ratio", "-p", "canary_version=v3", "-p", "region=north")
    assert "'north' is not one of the options east, west" in out
    code, out = cli("pipeline", "run", "ratio", "-p", "canary_version=v3")
    assert code == 0, out
    first = out.split()[1]
    assert f"execution {first} started\n" in out
    assert "parameters: base_version=v1 (default), canary_version=v3, region=east (default)" in out
    http = httpx.Client(base_url=api, trust_env=False)
    _wait_running(http, first)
    code, out = cli("pipeline", "run", "ratio", "-p", "canary_version=v2")
    assert code == 0, out
    second = out.split()[1]
    assert f"execution {second} BUFFERED: queued behind {first} (RUNNING): limitConcurrent is true" in out
    assert http.get(f"/api/v1/executions/{second}").json()["status"] == "BUFFERED"
    # judgments: inputs and parameters the stage does not declare are refused, and nothing is recorded
    out = refused("judge", first, "--stage", "设置灰度比例", "--continue", "--input", "全量发布",
                  "-P", "canary_ratio=50")
    assert "judgmentInput '全量发布': this judgment declares no judgmentInputs" in out
    out = refused("judge", first, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50", "-P", "speed=9")
    assert "unknown parameter(s) speed" in out and "declared: canary_ratio" in out
    stage = http.get(f"/api/v1/executions/{first}").json()["stages"][0]
    assert stage["status"] == "RUNNING" and "judgmentStatus" not in stage["context"]
    code, out = cli("judge", first, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
    assert code == 0 and "judgment 设置灰度比例: continue" in out
    code, out = cli("execution", "wait", first, "--timeout", "20")
    assert code == 0 and "SUCCEEDED" in out
    _wait_running(http, second)  # the queued run starts once the first ends


QUICK_WAIT = {"application": "shop", "name": "waits", "stages": [
    {"refId": "1", "type": "wait", "name": "long", "waitTime": 30}]}


def test_stage_types_refuse_input_they_do_not_take(api: str, tmp_path: Path) -> None:
    (tmp_path / "w.json").write_text(json.dumps(QUICK_WAIT))
    assert cli("pipeline", "import", str(tmp_path / "w.json"))[0] == 0
    code, out = cli("pipeline", "run", "waits")
    eid = out.split()[1]
    http = httpx.Client(base_url=api, trust_env=False)
    _wait_running(http, eid)
    out = refused("judge", eid, "--stage", "long", "--continue")
    assert "stage 'long' (wait) does not take judgmentStatus" in out
    assert "a wait stage takes: manualSkip, skipRemainingWait" in out
    code, out = cli("execution", "skip-wait", eid, "--stage", "long")
    assert code == 0
    code, out = cli("execution", "wait", eid, "--timeout", "20")
    assert code == 0


COMPAT = Path(__file__).parent / "compat"


def test_import_names_the_files_of_pipelines_sharing_an_id_and_warns_about_accounts(api: str, tmp_path: Path) -> None:
    first, second = COMPAT / "orca/dependsOn-expected.json", COMPAT / "orca/example-expected.json"
    out = refused("pipeline", "import", str(first), str(second))
    assert f"pipelines myApp/Stage dependsOn test ({first}) and myApp/My super awesome pipeline ({second}) share " \
           "the id 'unknown'" in out
    assert "dependsOn" not in cli("pipeline", "list")[1]  # nothing was saved
    prod = {"application": "shop", "name": "to-prod", "stages": [
        {"refId": "1", "type": "wait", "name": "settle", "waitTime": 0},
        {"refId": "2", "type": "deleteManifest", "name": "Clean up", "account": "k8s-prod",
         "manifestName": "configmap old", "location": "default"}]}
    (tmp_path / "prod.json").write_text(json.dumps(prod))
    code, out = cli("pipeline", "import", str(tmp_path / "prod.json"))
    assert code == 0 and "pipeline shop/to-prod created" in out
    assert "warning: pipeline shop/to-prod stages[1] ('Clean up'): account 'k8s-prod' does not exist" in out
