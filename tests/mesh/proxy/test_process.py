"""The data plane as its own process (`python -m graylane.mesh.proxy`, what `graylane proxy` runs): admin
contract, snapshot kept across restarts, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import Upstream, free_port, loop_thread, proxy_workers, sidecar, svc


def start(admin: int, state: str, *flags: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(admin),
                             "--state-dir", state, "--concurrency", str(proxy_workers()), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "proxy did not start")


def test_proxy_process_acks_serves_and_restores_its_last_snapshot(tmp_path):
    admin, port = free_port(), free_port()
    with loop_thread() as lt:
        up = Upstream("details")
        lt.run(up.start())
        from graylane.mesh.state import Endpoint

        ep = Endpoint("default", "details-v1-0", {"app": "details", "version": "v1"}, "127.0.0.1", up.port, 9080,
                      True, "details-v1")
        snap = compile_snapshot([svc("details")], [ep], [sidecar(port)], MeshOptions(), 7)
        proc = start(admin, str(tmp_path))
        try:
            assert httpx.put(f"http://127.0.0.1:{admin}/config", json=snap).json() == {"ack": 7}
            bad = httpx.put(f"http://127.0.0.1:{admin}/config", content=b"{nope")
            assert bad.status_code == 400 and "not JSON" in bad.json()["reason"]
            with httpx.Client(proxy=f"http://127.0.0.1:{port}") as c:
                assert c.get("http://details:9080/details/0").json()["name"] == "details"
            for _ in range(100):
                if (tmp_path / "proxy-snapshot.json").exists():
                    break
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        proc = start(admin, str(tmp_path))  # the control plane is away: serve the last ACKed snapshot
        try:
            assert httpx.get(f"http://127.0.0.1:{admin}/config_dump").json()["version"] == 7
            with httpx.Client(proxy=f"http://127.0.0.1:{port}") as c:
                assert c.get("http://details:9080/details/0").status_code == 200
            metrics = httpx.get(f"http://127.0.0.1:{admin}/stats/prometheus").text
            assert 'istio_requests_total{reporter="source",source_workload="productpage-v1"' in metrics
            assert 'istio_request_duration_milliseconds_bucket{' in metrics and 'le="0.5"' in metrics
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(10) == 0


def test_downstream_timeouts_are_flags_of_the_proxy_process(tmp_path):
    admin, port = free_port(), free_port()
    snap = compile_snapshot([svc("details")], [], [sidecar(port)], MeshOptions(), 1)
    proc = start(admin, str(tmp_path), "--header-timeout", "0.3", "--stream-idle-timeout", "0.3")
    try:
        assert httpx.put(f"http://127.0.0.1:{admin}/config", json=snap).json() == {"ack": 1}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET http://details:9080/ HTTP/1.1\r\nhost: det")  # never finished
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
