"""Durability: SIGKILL a real `graylane server` mid-stage and mid-judgment; the execution still completes once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from graylane.settings import read_cli_token

GRAYLANE = [sys.executable, "-m", "graylane.cli.main"]


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"ratio": "${parameters.ratio}"}}


def _pipeline() -> dict[str, Any]:
    stages: list[dict[str, Any]] = [
        {"refId": "deploy", "type": "deployManifest", "name": "deploy baseline",
         "account": "local", "source": "text", "manifests": [_configmap("baseline")]},
        {"refId": "wait", "type": "wait", "name": "soak", "waitTime": 3, "requisiteStageRefIds": ["deploy"]},
        {"refId": "judge", "type": "manualJudgment", "name": "设置灰度比例", "requisiteStageRefIds": ["wait"],
         "customParamConfig": [{"name": "canary_ratio", "type": "int", "min": 0, "max": 100, "required": True}]},
        {"refId": "vars", "type": "evaluateVariables", "name": "weights", "requisiteStageRefIds": ["judge"],
         "variables": [{"key": "canary", "value": '${#toInt(#stage("设置灰度比例")["context"]["customParams"]'
                                                  '["canary_ratio"])}'}]},
    ]
    stages.append({"refId": "deploy2", "type": "deployManifest", "name": "deploy canary",
                   "requisiteStageRefIds": ["vars"], "manifests": [_configmap("canary")]})
    return {"application": "crash", "name": "crash-test", "parameterConfig": [{"name": "ratio", "default": "10"}],
            "stages": stages}


class Server:
    """`graylane up` (control plane + data plane) in a private state folder; `kill` SIGKILLs the control plane."""

    def __init__(self, state: Path, port: int, admin_port: int) -> None:
        self.state, self.port, self.admin_port = state, port, admin_port
        self.env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}",
                    "GRAYLANE_USER": "ci", "COLUMNS": "200"}
        self.env.pop("GRAYLANE_DATABASE_URL", None)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                                 headers={"X-Graylane-User": "ci"})

    def start(self) -> None:
        r = self.cli("up", "--port", str(self.port), "--admin-port", str(self.admin_port), "--timeout", "60")
        assert r.returncode == 0, r.stdout + r.stderr
        assert self.http.get("/healthz").status_code == 200

    def pid(self) -> int:
        return int(json.loads((self.state / "server.json").read_text())["pid"])

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"control plane pid {pid} survived SIGKILL")

    def down(self) -> None:
        self.cli("down")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GRAYLANE, *args], env=self.env, capture_output=True, text=True, timeout=90)

    def execution(self, eid: str) -> dict[str, Any]:
        return self.http.get(f"/api/v1/executions/{eid}").json()

    def wait_stage(self, eid: str, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exe = self.execution(eid)
            st = next(s for s in exe["stages"] if s["name"] == name)
            if st["status"] == status:
                return st
            time.sleep(0.1)
        raise AssertionError(f"stage {name} is {st['status']}, never {status}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_while_running_and_while_judging_completes_with_each_stage_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    srv = Server(state, _free_port(), _free_port())
    pfile = tmp_path / "crash.json"
    pfile.write_text(json.dumps(_pipeline()))
    srv.start()
    try:
        r = srv.cli("pipeline", "import", str(pfile))
        assert r.returncode == 0, r.stderr
        r = srv.cli("pipeline", "run", "crash-test", "-p", "ratio=25")
        assert r.returncode == 0, r.stderr
        eid = r.stdout.split()[1]
        soak = srv.wait_stage(eid, "soak", "RUNNING")

        srv.kill()  # 1: while the wait stage is RUNNING
        srv.start()
        resumed = srv.wait_stage(eid, "soak", "SUCCEEDED")
        assert resumed["startTime"] == soak["startTime"]  # resumed, not started again
        judge = srv.wait_stage(eid, "设置灰度比例", "RUNNING")

        srv.kill()  # 2: while the judgment waits
        srv.start()
        auth = {"Authorization": f"Bearer {read_cli_token(srv.state)}"}  # writes need the operator's token
        r = srv.http.patch(f"/api/v1/executions/{eid}/stages/设置灰度比例", headers=auth,
                           json={"judgmentStatus": "continue", "customParams": {"canary_ratio": "150"}})
        assert r.status_code == 422 and "150 is above the maximum 100" in r.json()["error"]["message"]
        r = srv.cli("judge", eid, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
        assert r.returncode == 0, r.stderr
        r = srv.cli("execution", "wait", eid, "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr

        exe = srv.execution(eid)
        assert exe["status"] == "SUCCEEDED"
        assert all(s["status"] == "SUCCEEDED" for s in exe["stages"])
        assert next(s for s in exe["stages"] if s["name"] == "设置灰度比例")["startTime"] == judge["startTime"]
        assert next(s for s in exe["stages"] if s["name"] == "weights")["outputs"] == {"canary": 50}
        assert [(a["user"], a["action"]) for a in exe["audit"]] == [("ci", "start"), ("ci", "judgment")]
        shown = srv.cli("execution", "show", eid)
        audit = shown.stdout[shown.stdout.index("audit"):]
        assert "ci" in audit and "judgment" in audit and '"canary_ratio": "50"' in audit
        assert "continue by ci" in shown.stdout
        for name in ("baseline", "canary"):
            hist = srv.http.get(f"/api/v1/resources/configmaps/{name}/history",
                                params={"namespace": "default"}).json()
            items = hist.get("items", hist) if isinstance(hist, dict) else hist
            assert len(items) == 1, items  # applied exactly once despite two kills
            assert items[0]["actor"].startswith(f"pipeline:{eid}/")
        body = srv.http.get("/api/v1/resources/configmaps/canary", params={"namespace": "default"}).json()
        assert body["data"] == {"ratio": "25"}  # the manifest's ${parameters.ratio} was evaluated
    finally:
        srv.down()
