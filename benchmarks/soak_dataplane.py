"""Soak the data plane: wrk for N minutes while snapshots flip the canary weights every 100 ms.

Usage: .venv/bin/python benchmarks/soak_dataplane.py [--minutes 10] [--flip-ms 100]
Prints wrk's totals, non-2xx count, socket errors and the ACK/NACK count; done when both error counts are 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "dataplane"))

from harness import Nginx, Proxy, canary_snapshot, free_port, wait_port, wrk  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--flip-ms", type=int, default=100)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    up1, up2, sidecar = free_port(), free_port(), free_port()
    upstream = Nginx([up1, up2], cpu="1")
    proxy = Proxy(cpu="0")
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
        rss = proxy.rss_mb()
    finally:
        proxy.stop()
        upstream.stop()
    print(f"soak: {args.minutes:g} min of wrk -t1 -c{args.connections} through the Graylane proxy while snapshots "
          f"flipped the 2-way split every {args.flip_ms} ms ({time.time() - t0:.0f} s wall)")
    print(res["raw"].strip())
    print(f"requests {res['requests']}, req/s {res['rps']:.0f}, non-2xx {res['non2xx']}, "
          f"socket errors {res['socket_errors']}")
    print(f"snapshots: {acks} ACK, {nacks} NACK (one every {60_000 * args.minutes / max(1, acks + nacks):.0f} ms"
          f" on average); push->ACK p50 {statistics.median(took):.1f} ms, "
          f"max {max(took):.1f} ms; proxy RSS at the end {rss:.1f} MB")
    print("RESULT:", "PASS" if res["non2xx"] == 0 and res["socket_errors"] == 0 and nacks == 0 else "FAIL")


if __name__ == "__main__":
    main()
