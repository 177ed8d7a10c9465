"""The local mesh end to end: `graylane up`, a two-version app as processes, traffic through the gateway.

Real processes on loopback: the control plane, the data plane, and every replica (small HTTP servers
written for this test, run with `image: local`). Load runs in threads; no request may fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from graylane.settings import read_cli_token

APP = str(Path(__file__).parents[1] / "runtime" / "echo_app.py")  # the runtime tests' versioned echo server
pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mesh:
    """One `graylane up` in a private state folder, driven through the CLI as a user would."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.server_port = free_port()
        self.admin_port = free_port()
        self.gateway_port = free_port()
        self.env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{self.server_port}",
                    "NO_COLOR": "1"}
        self.env.pop("GRAYLANE_DATABASE_URL", None)
        self.url = f"http://127.0.0.1:{self.gateway_port}/"
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.server_port}", trust_env=False, timeout=30)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"graylane {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self, *options: str) -> None:
        self.cli("up", "--admin-port", str(self.admin_port), "--gateway-port", f"80={self.gateway_port}", *options)

    def apply(self, text: str, name: str) -> str:
        path = self.state.parent / name
        path.write_text(text)
        return self.cli("apply", "-f", str(path), "--wait").stdout

    def apply_api(self, text: str, name: str) -> list[dict[str, Any]]:
        """What `graylane apply -f FILE --wait` does, over the API (saves a CLI start per step)."""
        token = read_cli_token(self.state)  # written by the control plane `up` started, as the CLI reads it
        resp = self.api.post("/api/v1/apply", json={"files": [{"name": name, "text": text}]},
                             headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        ack = self.api.get("/api/v1/mesh/ack", params={"revision": body["revision"], "timeout": 30})
        assert ack.status_code == 200, ack.text
        return list(body["results"])

    def rollout(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.api.get(f"/api/v1/namespaces/default/deployments/{name}/status").json()["status"]["complete"]:
            assert time.monotonic() < deadline, f"{name} not rolled out"
            time.sleep(0.1)

    def pods(self) -> list[dict[str, Any]]:
        return list(self.api.get("/api/v1/pods").json()["items"])

    def server_pid(self) -> int:
        return int(json.loads((self.state / "server.json").read_text())["pid"])


class Load:
    """Continuous requests through the gateway from `threads` keep-alive clients; records every outcome."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.url = url
        self.results: list[tuple[float, int | str, str]] = []  # (time, status or error, version)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self.url)
                    version = resp.json().get("version", "") if resp.status_code == 200 else resp.text[:200]
                    outcome: tuple[float, int | str, str] = (time.monotonic(), resp.status_code, version)
                except httpx.HTTPError as exc:
                    outcome = (time.monotonic(), type(exc).__name__, "")
                with self._lock:
                    self.results.append(outcome)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        target = self.count() + n
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, "load generator made no progress"
            time.sleep(0.01)

    def failures(self) -> list[tuple[float, int | str, str]]:
        return [r for r in self.results if r[1] != 200]


@contextmanager
def fresh_mesh(tmp_path: Path, *options: str) -> Iterator[Mesh]:
    """A `graylane up` (with `options`) of its own in `tmp_path`, brought down afterwards."""
    state = tmp_path / "state"
    state.mkdir()
    m = Mesh(state)
    try:
        m.up(*options)
        yield m
    finally:
        m.cli("down", check=False)
        m.api.close()


def versions_seen(url: str, threads: int, each: int, new_connections: bool = False) -> Counter[str]:
    """Which version answered, over `threads` clients sending `each` requests at once (keep-alive, or a new
    connection per request: the kernel then spreads them over the data plane's workers)."""
    versions: Counter[str] = Counter()
    lock = threading.Lock()

    def send() -> None:
        if new_connections:
            got = Counter(httpx.get(url, trust_env=False, timeout=10).json()["version"] for _ in range(each))
        else:
            with httpx.Client(trust_env=False, timeout=10) as client:
                got = Counter(client.get(url).json()["version"] for _ in range(each))
        with lock:
            versions.update(got)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    return versions


def deployment(name: str, version: str, replicas: int, readiness_delay: int = 0) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web, version: {version}}}}}
  template:
    metadata: {{labels: {{app: web, version: {version}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: local
        command: [python, {APP}, {version}]
        ports: [{{containerPort: 9080}}]
        readinessProbe:
          httpGet: {{path: /, port: 9080}}
          periodSeconds: 1
          initialDelaySeconds: {readiness_delay}
"""


BASE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: web-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def virtual_service(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: ["*"]
  gateways: [web-gateway]
  http:
  - route:
    - {{destination: {{host: web, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: web, subset: v2}}, weight: {v2}}}
    # Istio's default retryOn leaves out `reset`, so a request in flight on a SIGKILLed replica would
    # get 503 UC there too; with it, the retry goes to another host and the client never sees it.
    retries: {{attempts: 3, retryOn: "connect-failure,refused-stream,reset,retriable-status-codes"}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state = tmp_path_factory.mktemp("local-mesh") / "state"
    state.mkdir()
    m = Mesh(state)
    m.up()
    m.apply(BASE + "---" + deployment("web-v1", "v1", 2) + "---" + deployment("web-v2", "v2", 2)
            + "---" + virtual_service(80, 20), "app.yaml")
    # `apply --wait` waited for both rollouts (graylane rollout status) and the mesh ACK; check it did.
    for name in ("web-v1", "web-v2"):
        status = m.api.get(f"/api/v1/namespaces/default/deployments/{name}/status").json()["status"]
        assert status["complete"] and status["availableReplicas"] == 2, status
    try:
        yield m
    finally:
        m.cli("down", check=False)
        m.api.close()


def test_gateway_splits_1000_requests_exactly_800_200_then_shifts_with_no_failure(mesh: Mesh) -> None:
    status = mesh.cli("status").stdout
    assert mesh.url in status, status
    # The weighted pick is exact over any window, so concurrency does not change the split.
    assert versions_seen(mesh.url, threads=4, each=250) == {"v1": 800, "v2": 200}

    with Load(mesh.url) as load:
        load.wait_for(100)
        out = mesh.apply(virtual_service(0, 100), "shift.yaml")
        acked_at = time.monotonic()
        load.wait_for(300)
    assert "virtualservice.networking.istio.io/web configured" in out
    assert load.failures() == []
    after = [v for t, _, v in load.results if t > acked_at + 0.05]
    assert after and set(after) == {"v2"}
    assert {"v1", "v2"} <= {v for _, _, v in load.results}  # the shift happened under load


def test_killed_replica_restarts_out_of_endpoints_and_no_request_fails(mesh: Mesh) -> None:
    # A readiness delay keeps the restarted replica visibly not-ready for a while.
    mesh.apply_api(virtual_service(0, 100) + "---" + deployment("web-v2", "v2", 2, readiness_delay=2), "v2.yaml")
    mesh.rollout("web-v2")
    victim = next(p for p in mesh.pods() if p["deployment"] == "web-v2" and p["isReady"])
    with Load(mesh.url) as load:
        load.wait_for(50)
        os.kill(victim["pid"], signal.SIGKILL)
        seen_not_ready_running = False
        deadline = time.monotonic() + 30
        while True:
            # The pod read before and after the endpoints: when both show the same restarted, not-ready process,
            # it was not ready while the endpoints were read, so they must not list it as ready. (One read after
            # the endpoints alone raced the restart: endpoints read, then the runtime noticed the kill.)
            first = next(p for p in mesh.pods() if p["name"] == victim["name"])
            eps = mesh.api.get("/api/v1/mesh/endpoints").json()["items"]
            pod = next(p for p in mesh.pods() if p["name"] == victim["name"])
            in_eps_ready = any(e["pod"] == victim["name"] and e["ready"] for e in eps)
            restarted_not_ready = [p["restarts"] == 1 and p["pid"] and not p["isReady"] for p in (first, pod)]
            if all(restarted_not_ready) and first["pid"] == pod["pid"]:
                assert not in_eps_ready
                seen_not_ready_running = True
            if pod["restarts"] == 1 and pod["isReady"] and in_eps_ready:
                break
            assert time.monotonic() < deadline, f"replica not back: {pod}"
            time.sleep(0.05)
        load.wait_for(100)
    assert seen_not_ready_running
    assert pod["pid"] != victim["pid"] and pod["port"] == victim["port"]
    assert load.failures() == []


def test_control_plane_sigkill_keeps_traffic_and_readopts_workloads(mesh: Mesh) -> None:
    before = {p["name"]: (p["pid"], p["restarts"]) for p in mesh.pods()}
    with Load(mesh.url) as load:
        load.wait_for(50)
        os.kill(mesh.server_pid(), signal.SIGKILL)
        down_at = time.monotonic()
        load.wait_for(300)  # the data plane keeps routing with its last snapshot
        mesh.up()
        up_at = time.monotonic()
        load.wait_for(200)
    during = [r for r in load.results if down_at <= r[0] <= up_at]
    assert len(during) >= 300
    assert load.failures() == []
    after = {p["name"]: (p["pid"], p["restarts"]) for p in mesh.pods()}
    assert after == before  # re-adopted, no healthy replica restarted
    assert all(p["adopted"] for p in mesh.pods())
    # ...and config pushing resumed: a change is ACKed and served.
    mesh.apply_api(virtual_service(100, 0), "back-to-v1.yaml")
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert {client.get(mesh.url).json()["version"] for _ in range(20)} == {"v1"}


def test_up_with_two_proxy_workers_serves_through_both_and_keeps_the_split(tmp_path: Path) -> None:
    """`graylane up --proxy-workers 2`: the local mesh's data plane as two processes sharing every listener."""
    with fresh_mesh(tmp_path, "--proxy-workers", "2") as m:
        m.apply_api(BASE + "---" + deployment("web-v1", "v1", 1) + "---" + deployment("web-v2", "v2", 1)
                    + "---" + virtual_service(50, 50), "app.yaml")
        m.rollout("web-v1")
        m.rollout("web-v2")
        versions = versions_seen(m.url, threads=4, each=100, new_connections=True)
        # Each worker splits its own requests exactly: the whole is off by at most one request per worker.
        assert sum(versions.values()) == 400 and abs(versions["v1"] - 200) <= 2, versions
        workers = httpx.get(f"http://127.0.0.1:{m.admin_port}/workers", timeout=10).json()["workers"]
        assert len(workers) == 2 and all(w["up"] and w["requests"] > 0 for w in workers), workers
        assert "the running data plane has" not in m.cli("up", "--proxy-workers", "2").stderr  # unchanged: no note
        note = m.cli("up", "--proxy-workers", "1").stderr
        assert "the running data plane has 2 worker(s); 1 from its next start" in note, note
