"""Pipelining without reading the replies, against the proxy as its own process: its memory stays bounded.

The proxy serves one request per connection at a time, keeps the next ones unparsed, stops reading while a
response waits and stops answering while the client does not read (Envoy's and nginx's HTTP/1 behaviour), so the
backlog stays in the client's socket. Measured as the proxy's peak RSS (VmHWM), not as time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import Endpoint, MeshOptions

from ..helpers import Upstream, free_port, loop_thread, proxy_workers, sidecar, svc, vs

N = 20_000
GROWTH_BOUND_KB = 12 * 1024  # generous: the backlog held by the proxy (one request, one read) is well under 1 MB
PAUSED_WRITING = "graylane_proxy_downstream_flow_control_paused_writing_total"


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def admin_counter(admin: int, name: str) -> float:
    for line in httpx.get(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc (VmHWM, clear_refs)")
def test_pipelined_requests_without_reading_keep_the_proxy_rss_bounded():
    admin, port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "graylane.mesh.proxy", "--admin-port", str(admin),
                             "--log-level", "warning", "--concurrency", str(proxy_workers())],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with loop_thread() as lt:
            up = Upstream("reviews")
            lt.run(up.start())
            ep = Endpoint("default", "reviews-v1-0", {"app": "reviews", "version": "v1"}, "127.0.0.1", up.port,
                          9080, True, "reviews-v1")
            snap = compile_snapshot([svc("reviews"), vs("reviews", ["reviews"], [
                {"route": [{"destination": {"host": "reviews"}}]}])], [ep], [sidecar(port)], MeshOptions(), 1)
            for _ in range(200):
                try:
                    if httpx.put(f"http://127.0.0.1:{admin}/config", json=snap, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            else:
                raise AssertionError("the proxy process did not come up")
            with httpx.Client(proxy=f"http://127.0.0.1:{port}") as c:  # warm every code path up once
                for _ in range(200):
                    assert c.get("http://reviews:9080/warm").status_code == 200
            pids = serving_pids(admin, proc.pid)  # the proxy, or every worker (the one serving this client)
            for pid in pids:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            base = {pid: status_kb(pid, "VmRSS") for pid in pids}
            paused_before = admin_counter(admin, PAUSED_WRITING)

            # 4 KiB replies: the proxy's kernel send buffer (autotuned up to tcp_wmem's 4 MiB) fills after ~1000 of
            # them, so the proxy itself must hold back. With ~900-byte replies the kernel took ~4400 and the client's
            # own stack stopped sending mid-head before the proxy ever had to wait (seen under load, 2 workers).
            request = b"GET http://reviews:9080/chunks/4 HTTP/1.1\r\nhost: reviews\r\n\r\n"
            payload = request * (N - 1) + request.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")
            s = socket.socket()
            # Small fixed buffers (no autotuning): the replies cannot all hide in the kernel of a non-reading client.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            s.connect(("127.0.0.1", port))
            with s:
                sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
                sender.start()
                # The event: the proxy stopped answering because this client does not read.
                end = time.monotonic() + 60
                while admin_counter(admin, PAUSED_WRITING) == paused_before:
                    assert time.monotonic() < end, "the proxy never waited for the client to read"
                    time.sleep(0.05)
                peak_unread = max(status_kb(pid, "VmHWM") - base[pid] for pid in pids)
                received = bytearray()
                s.settimeout(60)
                while chunk := s.recv(1 << 20):
                    received += chunk
                sender.join(10)
            peak = max(status_kb(pid, "VmHWM") - base[pid] for pid in pids)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert received.count(b"HTTP/1.1 200 ") == N
    assert peak_unread < GROWTH_BOUND_KB, f"RSS grew {peak_unread} kB while the client did not read"
    assert peak < GROWTH_BOUND_KB, f"RSS grew {peak} kB under {N} pipelined requests"


def serving_pids(admin: int, pid: int) -> list[int]:
    """The processes that serve traffic: `pid` itself, or its workers (`--concurrency` > 1)."""
    if proxy_workers() == 1:
        return [pid]
    return [int(w["pid"]) for w in httpx.get(f"http://127.0.0.1:{admin}/workers", timeout=5).json()["workers"]]
