"""The local mesh heals itself: the supervisor `graylane up` starts restarts a SIGKILLed data plane or control plane.

Nobody runs `graylane up` again in these tests. The data plane comes back under load on the listening sockets the
supervisor kept (only requests in flight on the dead process fail), the restart shows in `graylane status` and
the dead run's log in `graylane logs data-plane --previous`; a data plane
restarted while the control plane cannot answer serves the snapshot it last ACKed; a control plane SIGKILLed
mid-pipeline comes back and the execution finishes with every stage applied once. The mesh helpers come from
tests/e2e/test_local_mesh.py and the pipeline helpers from tests/pipelines/test_crash.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_local_mesh import BASE, Load, Mesh, deployment, fresh_mesh, virtual_service
from tests.pipelines.test_crash import Server, _free_port, _pipeline

pytestmark = pytest.mark.timeout(240)


def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def _record(state: Path, file: str) -> dict[str, Any]:
    try:
        return dict(json.loads((state / file).read_text()))
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _restarted(state: Path, file: str, old_pid: int) -> int:
    """The pid of the part's new process once the supervisor recorded it, else 0."""
    pid = int(_record(state, file).get("pid") or 0)
    return pid if pid not in (0, old_pid) and _alive(pid) else 0


def _admin_ready(admin_port: int) -> dict[str, Any] | None:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{admin_port}/ready", trust_env=False, timeout=1).json())
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state = tmp_path_factory.mktemp("self-healing") / "state"
    state.mkdir()
    m = Mesh(state)
    m.up()
    m.apply(BASE + "---" + deployment("web-v1", "v1", 2) + "---" + virtual_service(100, 0), "app.yaml")
    try:
        yield m
    finally:
        m.cli("down", check=False)
        m.api.close()


def _sigkill_under_load(mesh: Mesh) -> list[tuple[float, int | str, str]]:
    """SIGKILL the data plane under load, wait for the supervisor's restart and 50 good requests in a row after
    it; the requests that failed."""
    old = int(_record(mesh.state, "dataplane.json")["pid"])
    with Load(mesh.url) as load:
        load.wait_for(50)
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        until(lambda: _restarted(mesh.state, "dataplane.json", old), "the supervisor to restart the data plane")

        def served_again() -> bool:
            after = [status for t, status, _ in list(load.results) if t > killed]
            return len(after) >= 50 and all(s == 200 for s in after[-50:])

        until(served_again, "50 requests in a row to succeed through the gateway after the kill")
    failed = [r for r in load.results if r[1] != 200]
    print(f"data plane SIGKILL under load: {len(failed)} of {len(load.results)} requests failed: {failed}")
    return failed


def test_sigkill_of_the_data_plane_under_load_recovers_by_itself(mesh: Mesh) -> None:
    failed = _sigkill_under_load(mesh)
    new = int(_record(mesh.state, "dataplane.json")["pid"])
    # The supervisor kept the listening sockets: connections made while no data plane ran waited for the new
    # one, so only a request in flight on the dead process (at most one per client connection) was lost.
    assert len(failed) <= 2, failed

    status = mesh.cli("status").stdout
    assert re.search(rf"^data plane\s+{new}\s+running.*\s1 \(\S+ ago\)", status, re.M), status
    assert "data plane: last exit killed by signal 9 (SIGKILL)" in status, status
    previous = mesh.cli("logs", "data-plane", "--previous").stdout
    assert "graylane.mesh.proxy --admin-port" in previous and "data plane admin on" in previous, previous
    current = mesh.cli("logs", "data-plane").stdout
    assert "restored snapshot version" in current, current  # the new run started from the kept snapshot
    assert "took over 3 listening sockets from the previous run" in current, current  # gateway + 2 sidecars


def test_sigkill_of_a_data_plane_with_two_workers_loses_only_requests_in_flight(tmp_path: Path) -> None:
    # `graylane up --proxy-workers 2`: the workers share the primary's sockets, which the supervisor keeps.
    with fresh_mesh(tmp_path, "--proxy-workers", "2") as m:
        m.apply_api(BASE + "---" + deployment("web-v1", "v1", 1) + "---" + virtual_service(100, 0), "app.yaml")
        m.rollout("web-v1")
        failed = _sigkill_under_load(m)  # the primary: its workers stop when their channel closes
        assert len(failed) <= 2, failed  # at most the one in flight on each client's connection
        workers = httpx.get(f"http://127.0.0.1:{m.admin_port}/workers", trust_env=False, timeout=10).json()
        assert len(workers["workers"]) == 2, workers
        current = m.cli("logs", "data-plane").stdout
        assert "took over 2 listening sockets from the previous run" in current, current  # gateway + sidecar


def test_data_plane_restarted_while_the_control_plane_is_down_serves_the_last_acked_config(mesh: Mesh) -> None:
    admin = int(_record(mesh.state, "dataplane.json")["admin_port"])
    acked = until(lambda: (_admin_ready(admin) or {}).get("version"), "the data plane to report its version")
    kept = mesh.state / "dataplane" / "proxy-snapshot.json"
    until(lambda: _record(kept.parent, kept.name).get("version") == acked, "the ACKed snapshot to be kept on disk")
    control = mesh.server_pid()
    os.kill(control, signal.SIGSTOP)  # alive but deaf: it can neither push nor be restarted
    try:
        old = int(_record(mesh.state, "dataplane.json")["pid"])
        os.kill(old, signal.SIGKILL)
        until(lambda: _restarted(mesh.state, "dataplane.json", old), "the supervisor to restart the data plane")
        ready = until(lambda: _admin_ready(admin), "the restarted data plane's admin port")
        assert ready["version"] == acked and ready["acked"], ready
        with httpx.Client(trust_env=False, timeout=5) as client:
            resp = client.get(mesh.url)
        assert resp.status_code == 200 and resp.json()["version"] == "v1", resp.text
        log = (mesh.state / "logs" / "dataplane.log").read_text()
        assert f"restored snapshot version {acked} from {kept}: serving it" in log, log
    finally:
        os.kill(control, signal.SIGCONT)
    # The control plane, running again, pushes to the new data plane (a new pid is a new identity).
    until(lambda: (_admin_ready(admin) or {}).get("version") != acked, "the control plane to push again")


@pytest.mark.slow
def test_sigkill_of_the_control_plane_mid_pipeline_recovers_by_itself(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    srv = Server(state, _free_port(), _free_port())
    pfile = tmp_path / "crash.json"
    pfile.write_text(json.dumps(_pipeline()))
    srv.start()  # the only `graylane up`
    try:
        assert srv.cli("pipeline", "import", str(pfile)).returncode == 0
        r = srv.cli("pipeline", "run", "crash-test", "-p", "ratio=25")
        assert r.returncode == 0, r.stderr
        eid = r.stdout.split()[1]

        def healthy_again(old: int) -> bool:
            if not _restarted(state, "server.json", old):
                return False
            try:
                return srv.http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        soak = srv.wait_stage(eid, "soak", "RUNNING")
        old = srv.pid()
        srv.kill()  # 1: while the wait stage runs
        until(lambda: healthy_again(old), "the supervisor to restart the control plane", timeout=60)
        assert srv.wait_stage(eid, "soak", "SUCCEEDED")["startTime"] == soak["startTime"]
        srv.wait_stage(eid, "设置灰度比例", "RUNNING")
        old = srv.pid()
        srv.kill()  # 2: while the judgment waits (a second crash within 20 s: restarted after a 1 s backoff)
        until(lambda: healthy_again(old), "the supervisor to restart the control plane again", timeout=60)
        r = srv.cli("judge", eid, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=50")
        assert r.returncode == 0, r.stderr
        r = srv.cli("execution", "wait", eid, "--timeout", "30")
        assert r.returncode == 0, r.stdout + r.stderr

        exe = srv.execution(eid)
        assert exe["status"] == "SUCCEEDED"
        assert [s["status"] for s in exe["stages"]] == ["SUCCEEDED"] * len(exe["stages"])
        for name in ("baseline", "canary"):
            hist = srv.http.get(f"/api/v1/resources/configmaps/{name}/history", params={"namespace": "default"}).json()
            items = hist.get("items", hist) if isinstance(hist, dict) else hist
            assert len(items) == 1, items  # each deployManifest stage applied exactly once despite two kills
        status = srv.cli("status").stdout
        assert re.search(rf"^control plane\s+{srv.pid()}\s+running\s+2 \(\S+ ago\)", status, re.M), status
        assert "control plane: last exit killed by signal 9 (SIGKILL)" in status, status

        # `graylane down` stops the supervisor first: nothing it stops afterwards comes back.
        pids = [int(_record(state, f)["pid"]) for f in ("supervisor.json", "server.json", "dataplane.json")]
        down = srv.cli("down")
        assert down.returncode == 0 and down.stdout.splitlines()[0] == f"stopped supervisor (pid {pids[0]})", down
        assert not any(_alive(pid) for pid in pids)
        assert not any((state / f).exists() for f in ("supervisor.json", "server.json", "dataplane.json"))
    finally:
        srv.down()
