"""setCanaryScale on the local mesh with real processes: `graylane up` in a private state folder, reviews v1 and v2
running, a canaryRollout that scales the canary to 2 replicas (two reviews-v2 processes, both ready, what
`graylane release status` shows), then an abort: traffic back on v1, then the canary's processes stopped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_crash import Server, _free_port

import graylane.demos.bookinfo as bookinfo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KUBE = Path(bookinfo.__file__).parent / "platform/kube"
RULE = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
PIPELINE = {"application": "bookinfo", "name": "reviews-scale", "stages": [
    {"refId": "1", "type": "canaryRollout", "name": "reviews canary", "account": "local", "service": "reviews",
     "stableSubset": "v1", "canarySubset": "v2",
     "steps": [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}, {"pause": {}}]}]}


def status(srv: Server) -> dict[str, Any]:
    r = srv.cli("release", "status", "reviews", "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def canary_pods(srv: Server) -> list[dict[str, Any]]:
    items = srv.http.get("/api/v1/pods", params={"namespace": "default"}).json()["items"]
    return [p for p in items if p["deployment"] == "reviews-v2"]


def until(check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_set_canary_scale_starts_and_abort_stops_canary_processes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    srv = Server(state, _free_port(), _free_port())
    srv.start()
    try:
        docs = (KUBE / "bookinfo-reviews-v1.yaml").read_text(encoding="utf-8").split("\n---")
        world = "\n---".join(d for d in docs if "reviews" in d) + "\n---\n" + \
            (KUBE / "bookinfo-reviews-v2.yaml").read_text(encoding="utf-8") + RULE
        (tmp_path / "world.yaml").write_text(world)
        r = srv.cli("apply", "-f", str(tmp_path / "world.yaml"), "--wait", "--timeout", "120")
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(canary_pods(srv)) == 1
        (tmp_path / "p.json").write_text(json.dumps(PIPELINE))
        assert srv.cli("pipeline", "import", str(tmp_path / "p.json")).returncode == 0
        assert srv.cli("pipeline", "run", "reviews-scale").returncode == 0

        s = until(lambda: (st := status(srv))["phase"] == "Paused" and st)
        assert s["weights"] == {"reviews": {"v1": 80, "v2": 20}}
        assert s["canary"]["deployments"] == [{"deployment": "default/reviews-v2", "desired": 2, "replicas": 2,
                                               "ready": 2}]  # the step waited for both
        pods = canary_pods(srv)
        assert len(pods) == 2 and all(p["isReady"] for p in pods), pods
        text = srv.cli("release", "status", "reviews").stdout
        assert 'Canary:    default/reviews-v2  desired 2  ready 2  (setCanaryScale {"replicas": 2})' in text

        assert srv.cli("release", "abort", "reviews").returncode == 0
        s = until(lambda: (st := status(srv))["phase"] == "Aborted" and st)
        assert s["weights"] == {"reviews": {"v1": 100, "v2": 0}}
        assert s["canary"]["deployments"][0]["desired"] == 0
        until(lambda: canary_pods(srv) == [])  # the canary's processes are stopped
        assert len([p for p in srv.http.get("/api/v1/pods").json()["items"] if p["deployment"] == "reviews-v1"]) == 1
    finally:
        srv.down()
