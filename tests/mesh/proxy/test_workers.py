"""The data plane as worker processes (`--concurrency 2`): connections spread, pushes ACKed by all, one view.

A real `python -m graylane.mesh.proxy --concurrency 2` process (whatever GRAYLANE_TEST_PROXY_WORKERS says),
driven through its admin port; upstreams on loopback in this process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from graylane.mesh.state import MeshOptions

from ..helpers import Mesh, counter, free_port, loop_thread, proxy_process, series, sidecar, svc, vs

URL = "http://reviews:9080/"


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with loop_thread() as lt, proxy_process(2, idle_timeout_s=2.0, header_timeout_s=1.0) as (_proc, port, log):
        yield Mesh(lt, port, None, log)


@pytest.fixture
def port(mesh: Mesh) -> int:
    up = mesh.upstream("reviews-v1")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)], MeshOptions(access_log="json"))
    return port


def fresh_requests(port: int, n: int) -> list[int]:
    """`n` requests, each on a new connection (a new source port: the kernel hashes it to some worker)."""
    codes = []
    for _ in range(n):
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
            codes.append(c.get(URL).status_code)
    return codes


def workers(mesh: Mesh) -> list[dict]:
    r = mesh.get("/workers")
    assert r.status_code == 200, r.text
    return r.json()["workers"]


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_both_workers_receive_connections(mesh, port):
    before = [w["requests"] for w in workers(mesh)]
    assert fresh_requests(port, 40) == [200] * 40
    after = [w["requests"] for w in workers(mesh)]
    served = [a - b for a, b in zip(after, before, strict=True)]
    # Each request counts twice in istio_requests_total: the sidecar reports it as source and as destination.
    assert sum(served) == 80 and all(n > 0 for n in served), served  # all on one: odds 2**-39


def test_metrics_are_summed_across_workers(mesh, port):
    before = series(mesh, reporter="source", destination_service_name="reviews", response_code="200")
    fresh_requests(port, 20)
    assert series(mesh, reporter="source", destination_service_name="reviews", response_code="200") - before == 20
    text = mesh.get("/stats/prometheus").text
    assert "graylane_proxy_workers 2" in text.splitlines()
    assert text.count("# TYPE istio_requests_total counter") == 1  # one exposition, not one per worker
    total = sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                if line.startswith("istio_requests_total{"))
    assert total == sum(w["requests"] for w in workers(mesh))


def test_access_log_gathers_every_workers_entries(mesh, port):
    fresh_requests(port, 20)
    log = mesh.get("/access_log").json()
    assert log["enabled"] is True
    starts = [e["start"] for e in log["entries"]]
    assert len(starts) >= 20 and starts == sorted(starts)


def test_push_is_acked_only_once_every_worker_acked(mesh, port):
    stopped = workers(mesh)[1]
    new_port = free_port()
    up = mesh.upstream("late")
    snap_result: dict = {}
    os.kill(stopped["pid"], signal.SIGSTOP)
    try:
        def push() -> None:
            snap_result["body"] = mesh.push(
                [svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
                [mesh.endpoint(up, "reviews", "v1")], [sidecar(new_port)])

        pusher = threading.Thread(target=push)
        pusher.start()
        # Worker 0 took the snapshot: it serves the new listener (worker 1, stopped, has not bound it) ...
        eventually(lambda: _serves(new_port), "worker 0 never served the pushed listener")
        pusher.join(0.5)
        assert pusher.is_alive() and "body" not in snap_result  # ... but the push waits for worker 1
    finally:
        os.kill(stopped["pid"], signal.SIGCONT)
    pusher.join(30)
    assert "ack" in snap_result["body"]
    assert {w["version"] for w in workers(mesh)} == {snap_result["body"]["ack"]}


def _serves(port: int) -> bool:
    try:
        return fresh_requests(port, 1) == [200]
    except httpx.HTTPError:
        return False


def test_a_nack_from_the_snapshot_is_reported_and_every_worker_keeps_serving(mesh, port):
    version = workers(mesh)[0]["version"]
    r = httpx.put(f"{mesh.admin}/config", json={"version": 999_999, "listeners": "not a list"}, timeout=10)
    assert r.status_code == 400
    assert r.json()["nack"] == 999_999 and "listeners" in r.json()["reason"]
    assert mesh.get("/ready").json()["last_nack"] == r.json()["reason"]
    assert {w["version"] for w in workers(mesh)} == {version}
    assert fresh_requests(port, 10) == [200] * 10


def test_a_killed_worker_is_replaced_and_serves_the_current_snapshot(mesh, port):
    version = workers(mesh)[0]["version"]
    victim = workers(mesh)[1]
    os.kill(victim["pid"], signal.SIGKILL)

    def replaced() -> bool:
        w = workers(mesh)[1]
        return w["up"] and w["pid"] != victim["pid"] and w.get("version") == version

    eventually(replaced, "worker 1 was not replaced with the current snapshot")
    assert workers(mesh)[1]["restarts"] == victim["restarts"] + 1
    before = [w["requests"] for w in workers(mesh)]
    assert fresh_requests(port, 40) == [200] * 40
    after = [w["requests"] for w in workers(mesh)]
    assert after[1] > before[1]  # the new worker serves the listener too
    restarts = sum(w["restarts"] for w in workers(mesh))
    assert restarts >= 1 and counter(mesh, "graylane_proxy_worker_restarts_total") == restarts


def test_the_workers_share_one_listening_socket_no_other_process_can_join(mesh, port):
    # Workers binding a socket each with SO_REUSEPORT would let any process of the same user bind the port too and
    # take a share of the connections; they accept from the primary's one socket instead.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
    assert fresh_requests(port, 10) == [200] * 10


def test_a_listener_gone_from_the_snapshot_frees_its_port(mesh, port):
    assert fresh_requests(port, 2) == [200] * 2
    other = free_port()
    up = mesh.upstream("reviews-v1")
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(other)])

    def freed() -> bool:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not past a listener
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    eventually(freed, "the port of a removed listener stayed bound")  # the primary's and every worker's copy
    assert fresh_requests(other, 4) == [200] * 4


def test_the_primary_exiting_stops_its_workers():
    admin = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(admin),
                             "--concurrency", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: _ready(admin), "the proxy did not start")
        pids = [w["pid"] for w in httpx.get(f"http://127.0.0.1:{admin}/workers", timeout=10).json()["workers"]]
        proc.kill()  # no goodbye: the workers see their channel close
        proc.wait()
        eventually(lambda: not any(_alive(p) for p in pids), "workers outlived the primary")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_concurrency_one_is_a_single_process():
    admin = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(admin),
                             "--concurrency", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: _ready(admin), "the proxy did not start")
        assert httpx.get(f"http://127.0.0.1:{admin}/workers", timeout=10).status_code == 404
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            assert f.read().split() == []
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_bad_concurrency_is_refused_naming_the_flag():
    out = subprocess.run([sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", "1", "--concurrency", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--concurrency" in out.stderr


def _ready(admin: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_spans_from_every_worker_in_one_numbered_ring(mesh):
    up = mesh.upstream("traced")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)], MeshOptions(trace_sampling=100.0))
    since = mesh.get("/spans?since=0").json()["next"]
    before = [w["requests"] for w in workers(mesh)]
    assert fresh_requests(port, 20) == [200] * 20
    assert all(a > b for a, b in zip([w["requests"] for w in workers(mesh)], before, strict=True))
    page = mesh.get(f"/spans?since={since}").json()
    seqs = [s["seq"] for s in page["spans"]]
    assert seqs == list(range(since, since + len(seqs))) and page["next"] == since + len(seqs)
    assert len({s["traceId"] for s in page["spans"]}) == 20  # one trace per request, from both workers
    assert mesh.get(f"/spans?since={page['next']}").json()["spans"] == []


@pytest.mark.parametrize("cpus", ["0", ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))])
def test_the_default_is_one_worker_per_cpu_the_proxy_may_run_on(cpus):
    admin = free_port()
    proc = subprocess.Popen(["taskset", "-c", cpus, sys.executable, "-m", "graylane.mesh.proxy", "--admin-port",
                             str(admin)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: _ready(admin), "the proxy did not start")
        r = httpx.get(f"http://127.0.0.1:{admin}/workers", timeout=10)
        n = len(cpus.split(","))
        assert r.status_code == 404 if n == 1 else len(r.json()["workers"]) == n
    finally:
        proc.terminate()
        proc.wait(15)
