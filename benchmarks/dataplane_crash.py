"""Benchmark: what a data-plane crash under steady load costs (failed requests, time to recovery).

Starts a private local mesh (`graylane up` in a temporary state folder, a gateway on a free port)
with a small echo app (tests/runtime/echo_app.py, 2 replicas) behind a Gateway and a VirtualService,
then sends a steady open-loop load through the gateway (`--rate` requests/s spread over `--conns`
keep-alive connections, each request on its own schedule with a 1 s timeout, so a dead data plane
does not slow the schedule down). While the load runs it SIGKILLs the data plane `--kills` times
(nobody runs `graylane up`: the supervisor restarts it) and prints, per kill: failed requests and when
they were sent, the time from the kill to the new data plane's admin port answering, to the first
answer to a request sent after the kill ("served again"), to recovery (the answer to the first request
after which none fails) and the slowest successful request. Asserts nothing.

    .venv/bin/python benchmarks/dataplane_crash.py [--rate 200] [--conns 8] [--kills 3] [--spacing 22]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

APP = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "echo_app.py"

APP_YAML = f"""
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo, version: v1}}}}
    spec:
      containers:
      - name: echo
        image: local
        command: [python, {APP}, v1]
        ports: [{{containerPort: 9080}}]
        readinessProbe: {{httpGet: {{path: /, port: 9080}}, periodSeconds: 1}}
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: echo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: ["*"]
  gateways: [echo-gateway]
  http:
  - route:
    - destination: {{host: echo}}
"""


TIMEOUT_S = 1.0  # per request, connect included


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Outcome:
    sent: float  # loop time
    done: float
    error: str  # "" when 200


@dataclass
class Run:
    results: list[Outcome] = field(default_factory=list)
    kills: list[tuple[float, float | None]] = field(default_factory=list)  # (kill time, admin answering time)


async def _one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> tuple[int, bool]:
    writer.write(f"GET / HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection", "").lower() == "close"


async def _worker(run: Run, port: int, offset: float, interval: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    due = loop.time() + offset
    while not stop.is_set():
        await asyncio.sleep(max(0.0, due - loop.time()))
        sent = loop.time()
        # Behind schedule (a busy machine): skip the missed slots instead of bursting to catch up, which would
        # pile requests into the outage when failing requests return at once.
        due = max(due, sent - interval) + interval
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT_S)
            status, close = await asyncio.wait_for(_one_request(*conn, f"127.0.0.1:{port}"), TIMEOUT_S)
            error = "" if status == 200 else f"HTTP {status}"
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            error, close = type(exc).__name__, True
        if close and conn is not None:
            conn[1].close()
            conn = None
        run.results.append(Outcome(sent, loop.time(), error))
    if conn is not None:
        conn[1].close()


def _dataplane_pid(state: Path) -> int:
    return int(json.loads((state / "dataplane.json").read_text())["pid"])


async def _kill_and_watch(run: Run, state: Path, admin_port: int) -> None:
    loop = asyncio.get_running_loop()
    old = _dataplane_pid(state)
    os.kill(old, signal.SIGKILL)
    killed = loop.time()
    answered: float | None = None
    async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
        while loop.time() - killed < 30:
            try:
                await client.get(f"http://127.0.0.1:{admin_port}/ready")
                answered = loop.time()
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.01)
    run.kills.append((killed, answered))


async def drive(state: Path, port: int, admin_port: int, rate: float, conns: int, kills: int,
                settle_s: float, spacing_s: float) -> Run:
    run = Run()
    stop = asyncio.Event()
    interval = conns / rate
    workers = [asyncio.create_task(_worker(run, port, i * interval / conns, interval, stop)) for i in range(conns)]
    await asyncio.sleep(settle_s)
    for i in range(kills):
        await _kill_and_watch(run, state, admin_port)
        await asyncio.sleep(settle_s if i == kills - 1 else max(settle_s, spacing_s))
    stop.set()
    await asyncio.gather(*workers)
    return run


def report(run: Run, rate: float, conns: int) -> None:
    results = sorted(run.results, key=lambda o: o.sent)
    achieved = len(results) / max(1e-9, results[-1].sent - results[0].sent) if results else 0.0
    print(f"load: {rate:g} requests/s asked ({achieved:.0f}/s sent) over {conns} keep-alive connections through "
          f"the gateway, {TIMEOUT_S:g} s timeout each; {len(results)} requests in all, "
          f"{sum(1 for o in results if o.error)} failed")
    print(f"{'kill':>4} {'failed':>7} {'failures sent':>16} {'admin answers':>14} {'served again':>13} "
          f"{'recovered':>10} {'slowest':>8}  errors")
    # A kill's window starts one request timeout before it: requests in flight when it died count for it.
    bounds = [k - TIMEOUT_S for k, _ in run.kills] + [float("inf")]
    failed_all, recovered_all = [], []
    for i, (killed, answered) in enumerate(run.kills):
        window = [o for o in results if bounds[i] <= o.sent < bounds[i + 1]]
        failed = [o for o in window if o.error]
        # Served again: the first request sent after the kill that succeeded, when its answer came.
        served = min((o.done for o in window if o.sent >= killed and not o.error), default=None)
        # Recovered: from then on nothing fails (the first success sent after the last failure, answered).
        last_fail = max((o.sent for o in failed), default=killed)
        recovered = min((o.done for o in window if o.sent >= max(last_fail, killed) and not o.error), default=None)
        slowest = max((o.done - o.sent for o in window if not o.error), default=0.0)
        span = f"{failed[0].sent - killed:+.3f}..{failed[-1].sent - killed:+.3f}s" if failed else "-"
        cells = [f"{t - killed:.3f}s" if t is not None else "never" for t in (answered, served, recovered)]
        kinds = ", ".join(f"{n} {k}" for k, n in Counter(o.error for o in failed).most_common())
        print(f"{i + 1:>4} {len(failed):>7} {span:>16} {cells[0]:>14} {cells[1]:>13} {cells[2]:>10} "
              f"{slowest:>7.3f}s  {kinds or '-'}")
        failed_all.append(len(failed))
        if recovered is not None:
            recovered_all.append(recovered - killed)
    if failed_all:
        recovery = f", time to recovery {statistics.median(recovered_all):.3f}s" if recovered_all else ""
        print(f"median: {statistics.median(failed_all):g} failed requests "
              f"({statistics.median(failed_all) / achieved:.3f} s of load){recovery}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections (default 8)")
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs of the data plane (default 3)")
    ap.add_argument("--settle", type=float, default=4.0,
                    help="seconds of load before the first kill and after the last")
    ap.add_argument("--spacing", type=float, default=22.0,
                    help="seconds between kills (default 22: past the supervisor's 20 s reset, so each kill is a "
                         "first crash, restarted at once; less measures the backoff)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="graylane-dpcrash-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        server_port, admin_port, gateway_port = free_port(), free_port(), free_port()
        env = {**os.environ, "GRAYLANE_STATE": str(state), "GRAYLANE_SERVER": f"127.0.0.1:{server_port}",
               "NO_COLOR": "1"}
        env.pop("GRAYLANE_DATABASE_URL", None)

        def cli(*a: str) -> None:
            subprocess.run([sys.executable, "-m", "graylane.cli.main", *a], env=env, check=True, timeout=180,
                           capture_output=True, text=True)

        try:
            cli("up", "--port", str(server_port), "--admin-port", str(admin_port),
                "--gateway-port", f"80={gateway_port}")
            app = Path(tmp) / "app.yaml"
            app.write_text(APP_YAML)
            cli("apply", "-f", str(app), "--wait")
            deadline = time.monotonic() + 30
            while httpx.get(f"http://127.0.0.1:{gateway_port}/", trust_env=False, timeout=2).status_code != 200:
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway never answered 200")
                time.sleep(0.1)
            print(f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
                  f"{os.getloadavg()[0]:.1f}; {args.kills} SIGKILLs of the data plane, restarted by the supervisor")
            try:
                import uvloop

                runner = uvloop.run
            except ImportError:
                runner = asyncio.run
            run = runner(drive(state, gateway_port, admin_port, args.rate, args.conns, args.kills, args.settle,
                               args.spacing))
            report(run, args.rate, args.conns)
            status = subprocess.run([sys.executable, "-m", "graylane.cli.main", "status"], env=env,
                                    capture_output=True, text=True, timeout=60).stdout
            print("\n".join(ln for ln in status.splitlines() if ln.startswith(("data plane", "COMPONENT"))))
            log = (state / "logs" / "supervisor.log").read_text()
            print("\n".join(ln for ln in log.splitlines() if "data-plane: pid" in ln))
        finally:
            subprocess.run([sys.executable, "-m", "graylane.cli.main", "down"], env=env, capture_output=True,
                           timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
