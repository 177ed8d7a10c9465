"""Benchmark: `graylane apply --wait` propagation time (store commit -> data plane ACK) over N applies.

Starts a private local mesh (`graylane up` in a temporary state folder), applies a Service, a
Gateway, a DestinationRule and two small Deployments, then applies N VirtualService weight changes
one after another, each followed by the same `GET /api/v1/mesh/ack` that `graylane apply --wait`
makes. Prints one table: the propagation the control plane reports (commit seen -> ACK) and the
client's whole apply+wait round trip. Asserts nothing.

    .venv/bin/python benchmarks/apply_wait.py [--applies 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from graylane.settings import read_cli_token

APP = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "echo_app.py"  # a versioned echo server

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
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
""" + "".join(f"""---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{v}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web, version: {v}}}}}
  template:
    metadata: {{labels: {{app: web, version: {v}}}}}
    spec:
      containers:
      - {{name: web, image: local, command: [python, "{APP}", {v}], ports: [{{containerPort: 9080}}]}}
""" for v in ("v1", "v2"))


def vs(weight: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: ["*"]
  gateways: [web-gateway]
  http:
  - route:
    - {{destination: {{host: web, subset: v1}}, weight: {100 - weight}}}
    - {{destination: {{host: web, subset: v2}}, weight: {weight}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graylane-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        port, admin, gw = free_port(), free_port(), free_port()
        env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{port}"}
        env.pop("GRAYLANE_DATABASE_URL", None)
        cli = [sys.executable, "-m", "graylane.cli.main"]
        subprocess.run([*cli, "up", "--admin-port", str(admin), "--gateway-port", f"80={gw}"], env=env,
                       check=True, capture_output=True)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60,
                           headers={"Authorization": f"Bearer {read_cli_token(state)}"})  # the CLI's token
        try:
            def apply(text: str) -> tuple[float, float]:
                t0 = time.perf_counter()
                rev = api.post("/api/v1/apply", json={"files": [{"name": "bench.yaml", "text": text}]}).json()
                ack = api.get("/api/v1/mesh/ack", params={"revision": rev["revision"], "timeout": 30})
                ack.raise_for_status()
                return float(ack.json()["seconds"]), time.perf_counter() - t0

            apply(BASE + "---" + vs(0))
            for name in ("web-v1", "web-v2"):
                deadline = time.monotonic() + 60
                while not api.get(f"/api/v1/namespaces/default/deployments/{name}/status").json()["status"]["complete"]:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name} did not roll out")
                    time.sleep(0.1)
            propagation, round_trip = [], []
            for i in range(args.applies):
                p, r = apply(vs(1 + i % 99))
                propagation.append(p * 1000)
                round_trip.append(r * 1000)
            pods = len(api.get("/api/v1/pods").json()["items"])
        finally:
            api.close()
            subprocess.run([*cli, "down"], env=env, capture_output=True)
    print(f"apply --wait propagation over {args.applies} applies  ({time.strftime('%Y-%m-%d')}, "
          f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}, "
          f"load avg {os.getloadavg()[0]:.1f}, {pods} replicas, SQLite store)")
    print(f"{'measure':<44}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for label, values in (("commit seen -> data plane ACK (server)", propagation),
                          ("POST apply + GET mesh/ack round trip (client)", round_trip)):
        print(f"{label:<44}{statistics.median(values):>10.1f}{pct(values, 90):>10.1f}"
              f"{pct(values, 99):>10.1f}{max(values):>10.1f}")
    print("reference: the data plane issue targets snapshot ACK p99 <= 20 ms (push -> ACK, 100 services)")


if __name__ == "__main__":
    main()
