"""runJobManifest on a running local mesh: the job's container calls a service by name through its own sidecar.

`graylane up` in a private state folder, Bookinfo's details service applied, then a pipeline whose Job fetches
http://details:9080/details/0 with the HTTP_PROXY the runtime's launch rules give a pod.
"""

from __future__ import annotations

import json
import sys
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
