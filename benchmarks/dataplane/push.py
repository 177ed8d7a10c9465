"""Snapshot push -> ACK per mesh size for the data-plane benchmark: one canary step, as the control plane pushes it.

Each size runs in a fresh proxy process (its RSS is that mesh's): a first whole document, then 50 canary steps
sent as deltas against the ACKed version (`mesh/snapshot_delta.py`, what `MeshControl` sends), then 10 steps as
whole documents for comparison. Asserts nothing; timed from the PUT to its ACK (the JSON encode is not).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from harness import Proxy, big_mesh_snapshot, canary_step

from graylane.mesh.snapshot_delta import make_delta

STEPS = 50
LISTENERS = 100  # sidecar listeners in every size (binding 5,000 ports says nothing about pushes)


@dataclass
class PushResult:
    services: int
    listeners: int
    first_ms: float
    p50_ms: float
    p99_ms: float
    full_p50_ms: float
    diff_ms: float
    rss_mb: float


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def push_size(n: int) -> PushResult:
    proxy = Proxy(cpu="0")
    try:
        doc = big_mesh_snapshot(n, 100, listeners=LISTENERS)
        status, body, first = proxy.put(doc)
        assert status == 200, body
        acks, diffs = [], []
        for i in range(STEPS):
            new = canary_step(doc, (i * 7) % n, i % 2 * 5 + 1, 101 + i)
            t = time.perf_counter()
            delta = make_delta(doc, new)
            diffs.append((time.perf_counter() - t) * 1000)
            status, body, took = proxy.put(delta)
            assert status == 200, body
            acks.append(took * 1000)
            doc = new
        full = []
        for i in range(10):
            doc = canary_step(doc, (i * 11) % n, i % 2 * 5 + 1, 200 + i)
            status, body, took = proxy.put(doc)
            assert status == 200, body
            full.append(took * 1000)
        return PushResult(n, min(n, LISTENERS), first * 1000, statistics.median(acks), pct(acks, 99),
                          statistics.median(full), statistics.median(diffs), proxy.rss_mb())
    finally:
        proxy.stop()


def push_sizes(sizes: list[int]) -> list[PushResult]:
    return [push_size(n) for n in sizes]
