"""What telemetry costs the data plane: throughput (wrk) through one sidecar route with telemetry settings on and off.

Usage: .venv/bin/python benchmarks/telemetry_overhead.py [--seconds 5] [--rounds 5]

Reuses the data-plane benchmark harness (benchmarks/dataplane/harness.py): upstream nginx, `python -m
graylane.mesh.proxy` pinned to CPU 0, wrk on CPU 1, the reviews 90/10 + header-match route. Settings are switched
with snapshot pushes (`options.trace_sampling`, `options.access_log`) on the same proxy process; a scraper thread
pulls `/stats/prometheus` and `/spans?since=` every second as the control plane's telemetry loop does.

The proxy has no switch that turns Istio metrics off (every request is recorded in `Stats.record`). To still show
what metrics cost, one row runs a second proxy process whose `Stats.record` is replaced by a no-op before it
starts (this script's `--no-stats-proxy` mode); that row is labelled as such and is the "telemetry off" baseline.
Configurations alternate round by round and the median is reported, since this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "dataplane"))

from harness import ROOT, Nginx, Proxy, free_port, wait_port, wrk  # noqa: E402
from run import cpu_seconds  # noqa: E402

from graylane.mesh.config import compile_snapshot  # noqa: E402
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar  # noqa: E402


def snapshot(harness_resources: list[dict], ports: list[int], sidecar_port: int, version: int, sampling: float,
             access_log: str) -> dict:
    eps = [Endpoint("default", f"reviews-{v}-0", {"app": "reviews", "version": v}, "127.0.0.1", p, 9080, True,
                    f"reviews-{v}") for v, p in zip(("v1", "v2"), ports, strict=False)]
    sc = Sidecar("default", "productpage-v1-0", {"app": "productpage", "version": "v1"}, sidecar_port,
                 "productpage-v1")
    return compile_snapshot(harness_resources, eps, [sc], MeshOptions(trace_sampling=sampling, access_log=access_log),
                            version)


class Scraper:
    """GET /stats/prometheus and /spans?since=N every `interval` s, like graylane.mesh.telemetry.component."""

    def __init__(self, admin: int, interval: float = 1.0) -> None:
        self.admin, self.interval = admin, interval
        self.since = 0
        while self._pull():  # skip what earlier configurations left in the ring: count spans made from now on
            pass
        self.scrapes = self.spans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pull(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/spans?since={self.since}", timeout=5) as r:
            body = json.loads(r.read())
        self.since = int(body.get("next", self.since))
        return len(body.get("spans", []))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/stats/prometheus", timeout=5) as r:
                r.read()
            self.spans += self._pull()
            self.scrapes += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class NoStatsProxy(Proxy):
    """The same proxy process with `Stats.record` patched to a no-op (see the module docstring)."""

    def __init__(self, cpu: str = "0") -> None:
        self.admin = free_port()
        self.proc = subprocess.Popen(["taskset", "-c", cpu, sys.executable, __file__, "--no-stats-proxy",
                                      str(self.admin)], env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        wait_port(self.admin)


def run_no_stats_proxy(admin_port: int) -> None:
    from graylane.mesh.proxy import __main__ as entry
    from graylane.mesh.proxy.stats import Stats

    Stats.record = lambda self, *a, **k: None  # type: ignore[method-assign]
    sys.exit(entry.main(["--admin-port", str(admin_port), "--log-level", "warning"]))


CONFIGS = (
    # name, proxy, trace sampling %, access log, scraper
    ("off: no metrics (patched), no traces, no log", "nostats", 0.0, "", False),
    ("metrics only (no switch exists), not scraped", "normal", 0.0, "", False),
    ("metrics only, scraped 1/s", "normal", 0.0, "", True),
    ("Istio default: metrics + 1% traces, scraped", "normal", 1.0, "", True),
    ("metrics + 100% traces, scraped", "normal", 100.0, "", True),
    ("metrics + JSON access log, scraped", "normal", 0.0, "json", True),
    ("demo: metrics + 100% traces + JSON access log", "normal", 100.0, "json", True),
)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--no-stats-proxy":
        run_no_stats_proxy(int(sys.argv[2]))
        return
    from harness import canary_resources

    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()

    up1, up2 = free_port(), free_port()
    side = {"normal": free_port(), "nostats": free_port()}
    upstream = Nginx([up1, up2], cpu="1")
    proxies = {"normal": Proxy(cpu="0"), "nostats": NoStatsProxy(cpu="0")}
    resources = canary_resources()
    results: dict[str, list[float]] = {c[0]: [] for c in CONFIGS}
    cpu_us: dict[str, list[float]] = {c[0]: [] for c in CONFIGS}
    spans_seen: dict[str, int] = {c[0]: 0 for c in CONFIGS}
    version = 1
    try:
        for name, proxy in proxies.items():
            status, body, _ = proxy.put(snapshot(resources, [up1, up2], side[name], version, 0.0, ""))
            assert status == 200, body
            wait_port(side[name])
        for _ in range(args.rounds):
            for cname, pname, sampling, log, scrape in CONFIGS:
                version += 1
                proxy = proxies[pname]
                status, body, _ = proxy.put(snapshot(resources, [up1, up2], side[pname], version, sampling, log))
                assert status == 200, body
                url = f"http://127.0.0.1:{side[pname]}/reviews/0"
                wrk(url, 1, args.connections, headers={"Host": "reviews:9080"})  # warm up
                scraper = Scraper(proxy.admin)
                if scrape:
                    scraper.__enter__()
                c0 = cpu_seconds(proxy.proc.pid)
                try:
                    res = wrk(url, args.seconds, args.connections, headers={"Host": "reviews:9080"})
                finally:
                    if scrape:
                        scraper.__exit__()
                cpu_us[cname].append((cpu_seconds(proxy.proc.pid) - c0) / max(1, res["requests"]) * 1e6)
                assert res["non2xx"] == 0 and res["socket_errors"] == 0, res["raw"]
                results[cname].append(res["rps"])
                spans_seen[cname] += scraper.spans
    finally:
        for proxy in proxies.values():
            proxy.stop()
        upstream.stop()

    print(f"\nGraylane telemetry overhead — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs; Python {platform.python_version()}; proxy on CPU 0, "
          f"wrk + nginx on CPU 1; wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} alternating rounds "
          f"(median); load average {os.getloadavg()[0]:.1f}")
    base = statistics.median(results[CONFIGS[0][0]])
    base_cpu = statistics.median(cpu_us[CONFIGS[0][0]])
    hdr = (f"{'configuration':<48} {'req/s':>7} {'rounds':>30} {'vs off':>7} {'cpu us/rq':>9} {'vs off':>7} "
           f"{'spans':>7}")
    print(hdr)
    print("-" * len(hdr))
    for cname, *_ in CONFIGS:
        med, cpu = statistics.median(results[cname]), statistics.median(cpu_us[cname])
        rounds = " ".join(f"{v:.0f}" for v in results[cname])
        print(f"{cname:<48} {med:>7.0f} {rounds:>30} {100 * (med / base - 1):>+6.1f}% {cpu:>9.0f} "
              f"{100 * (cpu / base_cpu - 1):>+6.1f}% {spans_seen[cname]:>7}")
    for label, idx in (("Istio defaults", 3), ("demo settings (100% traces + access log)", len(CONFIGS) - 1)):
        med, cpu = statistics.median(results[CONFIGS[idx][0]]), statistics.median(cpu_us[CONFIGS[idx][0]])
        print(f"telemetry cost, {label}: {100 * (1 - med / base):.1f}% of throughput, "
              f"{100 * (cpu / base_cpu - 1):+.1f}% proxy CPU per request   (target < 10% of throughput)")
    record_us = stats_record_us()
    print(f"in-process: the two Stats.record calls a request makes (source + destination reporter) take "
          f"{record_us:.1f} us = {100 * record_us / base_cpu:.1f}% of the 'off' row's proxy CPU per request")
    print("note: the proxy cannot turn metrics off; the 'off' row patches Stats.record out in its own process.")


def stats_record_us(n: int = 100_000) -> float:
    """Microbenchmark of the metrics hot path (steadier than throughput on a shared machine)."""
    from graylane.mesh.proxy.stats import LABELS, Stats

    stats = Stats()
    a = tuple(f"source-{i}" for i in range(len(LABELS)))
    b = tuple(f"destination-{i}" for i in range(len(LABELS)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            stats.record(a, 1.7, 0, 310)
            stats.record(b, 1.2, 0, 310)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


if __name__ == "__main__":
    main()
