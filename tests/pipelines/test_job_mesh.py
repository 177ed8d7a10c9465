"""runJobManifest on a running local mesh: the job's container calls a service by name through its own sidecar.

`graylane up` in a private state folder, Bookinfo's details service applied, then a pipeline whose Job fetches
http://details:9080/details/0 with the HTTP_PROXY the runtime's launch rules give a pod.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from tests.pipelines.test_crash import Server, _free_port

import graylane.demos.bookinfo as bookinfo

DETAILS = Path(bookinfo.__file__).parent / "platform/kube/bookinfo-reviews-v1.yaml"
CALL = """
import json, os, urllib.request
print("proxy", os.environ["HTTP_PROXY"])
book = json.loads(urllib.request.urlopen("http://details:9080/details/0", timeout=20).read())
print("SPINNAKER_PROPERTY_AUTHOR=" + book["author"])
"""
PIPELINE = {"application": "shop", "name": "smoke", "stages": [
    {"refId": "1", "type": "runJobManifest", "name": "smoke test", "account": "local", "source": "text",
     "propertyFile": "smoke", "manifest": {
         "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "smoke"},
         "spec": {"template": {"metadata": {"labels": {"app": "smoke"}}, "spec": {
             "restartPolicy": "Never",
             "containers": [{"name": "smoke", "image": "local", "command": [sys.executable, "-c", CALL]}]}}}}}]}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_job_reaches_services_by_name_through_its_sidecar(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    srv = Server(state, _free_port(), _free_port())
    srv.start()
    try:
        details = tmp_path / "details.yaml"
        docs = DETAILS.read_text(encoding="utf-8").split("\n---")
        details.write_text("\n---".join(d for d in docs if "details" in d))  # Service, ServiceAccount, Deployment
        r = srv.cli("apply", "-f", str(details), "--wait", "--timeout", "90")
        assert r.returncode == 0, r.stdout + r.stderr
        (tmp_path / "smoke.json").write_text(json.dumps(PIPELINE))
        assert srv.cli("pipeline", "import", str(tmp_path / "smoke.json")).returncode == 0
        r = srv.cli("pipeline", "run", "smoke")
        assert r.returncode == 0, r.stderr
        eid = r.stdout.split()[1]
        r = srv.cli("execution", "wait", eid, "--timeout", "90")
        stage = next(s for s in srv.execution(eid)["stages"] if s["name"] == "smoke test")
        assert r.returncode == 0, json.dumps(stage, ensure_ascii=False)[:3000]
        assert stage["outputs"]["author"] == "William Shakespeare"
        log = stage["outputs"]["jobStatus"]["logs"]["smoke"]
        assert "proxy http://127.0.0.1:" in log  # its own sidecar listener, not a direct connection
    finally:
        srv.down()


WAIT_THEN_CALL = """
import json, os, time, urllib.request
print("main pid", os.getpid(), flush=True)
while not os.path.exists(os.environ["FLAG"]):
    time.sleep(0.05)
book = json.loads(urllib.request.urlopen("http://details:9080/details/0", timeout=20).read())
print("SPINNAKER_PROPERTY_AUTHOR=" + book["author"])
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_job_running_when_the_control_plane_is_killed_is_adopted_and_reports_its_outcome(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    flag = tmp_path / "go"
    pipeline = {"application": "shop", "name": "smoke-restart", "stages": [
        {"refId": "1", "type": "runJobManifest", "name": "smoke test", "account": "local", "source": "text",
         "propertyFile": "smoke", "manifest": {
             "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "smoke"},
             "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "smoke"}}, "spec": {
                 "restartPolicy": "Never",
                 "initContainers": [{"name": "prepare", "image": "local",
                                     "command": [sys.executable, "-c", "print('prepared')"]}],
                 "containers": [{"name": "smoke", "image": "local", "command": [sys.executable, "-c", WAIT_THEN_CALL],
                                 "env": [{"name": "FLAG", "value": str(flag)}]}]}}}}}]}
    srv = Server(state, _free_port(), _free_port())
    srv.start()
    try:
        details = tmp_path / "details.yaml"
        docs = DETAILS.read_text(encoding="utf-8").split("\n---")
        details.write_text("\n---".join(d for d in docs if "details" in d))
        r = srv.cli("apply", "-f", str(details), "--wait", "--timeout", "90")
        assert r.returncode == 0, r.stdout + r.stderr
        (tmp_path / "smoke.json").write_text(json.dumps(pipeline))
        assert srv.cli("pipeline", "import", str(tmp_path / "smoke.json")).returncode == 0
        r = srv.cli("pipeline", "run", "smoke-restart")
        assert r.returncode == 0, r.stderr
        eid = r.stdout.split()[1]
        stage = srv.wait_stage(eid, "smoke test", "RUNNING")
        deadline = time.monotonic() + 30
        log = state / "jobs" / "default"
        while not any("main pid" in p.read_text() for p in log.glob("smoke-*/smoke.log")):
            assert time.monotonic() < deadline, "the job's main container never started"
            time.sleep(0.05)

        srv.kill()  # the job runs on in its own session; its sidecar listener stays on the data plane
        srv.start()
        flag.write_text("go")  # now it calls details through the mesh, with a control plane that did not start it

        r = srv.cli("execution", "wait", eid, "--timeout", "90")
        stage = next(s for s in srv.execution(eid)["stages"] if s["name"] == "smoke test")
        assert r.returncode == 0, json.dumps(stage, ensure_ascii=False)[:3000]
        assert stage["outputs"]["author"] == "William Shakespeare"
        status = stage["outputs"]["jobStatus"]
        assert status["jobState"] == "Succeeded"
        assert status["logs"]["smoke"].count("main pid") == 1  # adopted, not started again
        assert status["logs"]["prepare"] == "prepared\n"
    finally:
        srv.down()
