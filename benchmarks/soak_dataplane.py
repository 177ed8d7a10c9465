"""Soak the data plane: wrk for N minutes while snapshots flip the canary weights every 100 ms.

Usage: .venv/bin/python benchmarks/soak_dataplane.py [--minutes 10] [--flip-ms 100] [--concurrency 2]
Prints wrk's totals, non-2xx count, socket errors and the ACK/NACK count; done when both error counts are 0.
With `--concurrency N` (N > 1) the proxy runs N workers on every CPU (sharing CPU 1 with wrk and the upstream
nginx); each ACK is every worker's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "dataplane"))

from harness import ALL_CPUS, Nginx, Proxy, canary_snapshot, free_port, wait_port, wrk  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--flip-ms", type=int, default=100)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=1, help="proxy worker processes (1: one process on CPU 0)")
    args = ap.parse_args()
    up1, up2, sidecar = free_port(), free_port(), free_port()
    upstream = Nginx([up1, up2], cpu="1")
    proxy = Proxy(cpu="0" if args.concurrency == 1 else ALL_CPUS, concurrency=args.concurrency)
    stop = threading.Event()
    acks, nacks, took = 0, 0, []

    def flipper() -> None:
        nonlocal acks, nacks
        version = 2
        next_at = time.monotonic()
        while not stop.is_set():
            weight = (version * 37) % 101  # 0..100, both extremes included over time
            status, _, t = proxy.put(canary_snapshot([up1, up2], sidecar, version, weight_v1=weight))
            acks += status == 200
            nacks += status != 200
            took.append(t * 1000)
            version += 1
            # Start-to-start cadence: a push that took longer than the period is followed at once.
            next_at += args.flip_ms / 1000
            stop.wait(max(0.0, next_at - time.monotonic()))

    try:
        status, body, _ = proxy.put(canary_snapshot([up1, up2], sidecar, 1))
        assert status == 200, body
        wait_port(sidecar)
        thread = threading.Thread(target=flipper, daemon=True)
        thread.start()
        t0 = time.time()
        res = wrk(f"http://127.0.0.1:{sidecar}/reviews/0", int(args.minutes * 60), connections=args.connections,
                  headers={"Host": "reviews:9080"})
        stop.set()
        thread.join(5)
        rss = proxy.worker_rss_mb()
        restarts = _worker_restarts(proxy)
    finally:
        proxy.stop()
        upstream.stop()
    layout = ("1 process on CPU 0" if args.concurrency == 1 else
              f"{args.concurrency} workers on CPUs {ALL_CPUS}, {restarts} worker restarts")
    print(f"soak: {args.minutes:g} min of wrk -t1 -c{args.connections} through the Graylane proxy ({layout}) while "
          f"snapshots flipped the 2-way split every {args.flip_ms} ms ({time.time() - t0:.0f} s wall)")
    print(res["raw"].strip())
    print(f"requests {res['requests']}, req/s {res['rps']:.0f}, non-2xx {res['non2xx']}, "
          f"socket errors {res['socket_errors']}")
    print(f"snapshots: {acks} ACK, {nacks} NACK (one every {60_000 * args.minutes / max(1, acks + nacks):.0f} ms"
          f" on average); push->ACK p50 {statistics.median(took):.1f} ms, "
          f"max {max(took):.1f} ms; proxy RSS at the end {rss:.1f} MB" + (" (largest worker)" if args.concurrency > 1
                                                                           else ""))
    ok = res["non2xx"] == 0 and res["socket_errors"] == 0 and nacks == 0 and not restarts
    print("RESULT:", "PASS" if ok else "FAIL")


def _worker_restarts(proxy: Proxy) -> int:
    if proxy.concurrency == 1:
        return 0
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin}/workers", timeout=10) as r:
        return sum(int(w["restarts"]) for w in json.loads(r.read())["workers"])


if __name__ == "__main__":
    main()
