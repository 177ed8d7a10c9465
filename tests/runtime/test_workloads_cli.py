"""Workloads through `graylane up` and the CLI as a user types it: readiness without a probe, folders of
`image: local` Deployments, `apply --wait` failing at once with the replica's reason, and `graylane route`
against the live mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .conftest import ECHO_APP

pytestmark = pytest.mark.timeout(300)

# Istio's samples/curl/curl.yaml as published (a `sleep` pod with no ports and no probe).
CURL_YAML = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: curl
---
apiVersion: v1
kind: Service
metadata:
  name: curl
  labels:
    app: curl
    service: curl
spec:
  ports:
  - port: 80
    name: http
  selector:
    app: curl
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: curl
spec:
  replicas: 1
  selector:
    matchLabels:
      app: curl
  template:
    metadata:
      labels:
        app: curl
    spec:
      terminationGracePeriodSeconds: 0
      serviceAccountName: curl
      containers:
      - name: curl
        image: curlimages/curl
        command: ["/bin/sleep", "infinity"]
        imagePullPolicy: IfNotPresent
        volumeMounts:
        - mountPath: /etc/curl/tls
          name: secret-volume
      volumes:
      - name: secret-volume
        secret:
          secretName: curl-secret
          optional: true
---
"""


def web(name: str, version: str, working_dir: str) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 9080, name: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}-{version}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}, version: {version}}}}}
  template:
    metadata: {{labels: {{app: {name}, version: {version}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: local
        command: [python, "{ECHO_APP}", {version}]
        workingDir: {working_dir}
        ports: [{{containerPort: 9080}}]
"""


@dataclass
class Mesh:
    env: dict[str, str]
    elsewhere: Path  # the CLI runs from here: neither the manifests' folder nor the control plane's

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout, cwd=self.elsewhere)

    def pods(self) -> list[dict[str, object]]:
        got = self("get", "pods", "-A", "-o", "json")
        assert got.returncode == 0, got.stderr
        return list(json.loads(got.stdout)["items"])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    from tests.conftest import free_port

    root = tmp_path_factory.mktemp("mesh")
    (root / "cwd").mkdir()
    env = {**os.environ, "GRAYLANE_STATE": str(root / "state"), "GRAYLANE_SERVER": f"127.0.0.1:{free_port()}",
           "GRAYLANE_USER": "alice", "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("GRAYLANE_DATABASE_URL", None)
    env.pop("GRAYLANE_TOKEN", None)
    m = Mesh(env, root / "cwd")
    started = m("up", "--admin-port", str(free_port()), "--gateway-port", f"80={free_port()}")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield m
    finally:
        m("down")


def test_a_pod_without_ports_or_probe_is_ready_once_it_runs(mesh: Mesh, tmp_path: Path) -> None:
    path = tmp_path / "samples" / "curl" / "curl.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(CURL_YAML)
    applied = mesh("apply", "-f", str(path), "--wait", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert 'deployment "curl" successfully rolled out' in applied.stdout
    assert "is served by the mesh" in applied.stdout
    pod = next(p for p in mesh.pods() if p["deployment"] == "curl")
    assert (pod["ready"], pod["status"]) == ("1/1", "Running")
    assert Path(f"/proc/{pod['pid']}/cmdline").read_bytes().split(b"\0")[:2] == [b"/bin/sleep", b"infinity"]


def test_relative_working_dir_is_the_manifests_folder(mesh: Mesh, tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "v1").mkdir(parents=True)
    (app / "web.yaml").write_text(web("web", "v1", "v1"))
    applied = mesh("apply", "-f", str(app / "web.yaml"), "--wait", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    pod = next(p for p in mesh.pods() if p["deployment"] == "web-v1")
    answer = httpx.get(f"http://127.0.0.1:{pod['port']}/", trust_env=False, timeout=10).json()
    assert answer["cwd"] == str((app / "v1").resolve())
    same = mesh("diff", "-f", str(app / "web.yaml"))  # the folder it records is no change
    assert (same.returncode, same.stdout) == (0, ""), same.stdout + same.stderr


def test_apply_wait_stops_at_the_replica_failure(mesh: Mesh, tmp_path: Path) -> None:
    app = tmp_path / "broken"
    app.mkdir()
    (app / "web.yaml").write_text(web("broken", "v1", "v9"))
    applied = mesh("apply", "-f", str(app / "web.yaml"), "--wait", "--timeout", "120")
    assert applied.returncode == 1, applied.stdout + applied.stderr
    lines = [ln for ln in applied.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: deployment default/broken-v1: CreateContainerError: workingDir {app / 'v9'} does not "
                     "exist (fix the Deployment and apply again; graylane pods -n default)"], applied.stderr
    status = mesh("rollout", "status", "deploy/broken-v1", "--timeout", "120")  # the same reason, at once
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"error: deployment default/broken-v1: CreateContainerError: workingDir {app / 'v9'} does not " \
           "exist" in status.stderr


def test_route_explains_against_the_live_mesh(mesh: Mesh, tmp_path: Path) -> None:
    app = tmp_path / "reviews"
    app.mkdir()
    (app / "v1.yaml").write_text(web("reviews", "v1", "."))
    (app / "v2.yaml").write_text(web("reviews", "v2", ".").split("---\n", 1)[1])
    (app / "routes.yaml").write_text("""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v2}}]
""")
    applied = mesh("apply", "-f", str(app), "--wait", "--timeout", "60")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    routed = mesh("route", "--from", "curl", "http://reviews:9080/", "-o", "json")  # no -f: the live mesh
    assert routed.returncode == 0, routed.stderr
    out = json.loads(routed.stdout)
    pod = next(p for p in mesh.pods() if p["deployment"] == "reviews-v2")
    assert out["input"] == f"live mesh at http://{mesh.env['GRAYLANE_SERVER']}"
    assert out["virtualService"] == "default/reviews" and out["rule"]["index"] == 1
    assert out["destination"]["subset"] == "v2" and out["destination"]["endpoints"] == [pod["name"]]
    assert out["from"]["workload"] == "curl"
    jason = mesh("route", "--from", "curl", "http://reviews:9080/", "-H", "end-user: jason")
    assert jason.returncode == 0, jason.stderr
    assert f"explained against the live mesh at http://{mesh.env['GRAYLANE_SERVER']}" in jason.stdout
    assert ("subset v3 of reviews.default.svc.cluster.local: no ready replica matches it; requests routed there "
            "get 503 UH") in jason.stdout


def test_apply_wait_running_out_of_time_is_the_wrong_state(mesh: Mesh, tmp_path: Path) -> None:
    # It declares a port it never opens: not Ready, and nothing fails either.
    path = tmp_path / "mute.yaml"
    path.write_text(web("mute", "v1", ".").split("---\n", 1)[1]
                    .replace(f'command: [python, "{ECHO_APP}", v1]', 'command: ["/bin/sleep", "infinity"]'))
    applied = mesh("apply", "-f", str(path), "--wait", "--timeout", "2")
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert 'error: deployment "mute-v1" not rolled out after 2s: Waiting for deployment "mute-v1" rollout to ' \
           "finish: 0 of 1 updated replicas are available..." in applied.stderr
    deleted = mesh("delete", "-f", str(path))
    assert deleted.returncode == 0, deleted.stderr
