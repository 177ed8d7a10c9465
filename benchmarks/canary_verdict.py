"""Benchmark: how fast a failing automated canary is judged and its traffic restored, on the local mesh.

Starts `graylane demo bookinfo` in a temporary state folder (tests/e2e/test_canary_auto.py's setup, imported),
keeps the product page loading, runs `reviews-canary-auto` with fault=errors and short intervals
(interval_seconds=5, intervals=2, warmup_seconds=8), and prints, for the failing interval:

- interval end -> judging began: the interval's window ends until its queries are sent (`judgedAt`),
- judging began -> traffic restored: queries, the judge's verdict and the rollback, until it ended
  (`rollbackState.endedMs`: VirtualService back on v1 100% and the canary Deployment deleted),
- interval end -> traffic restored, and when the console's API first shows reviews at v1 100% (polled every
  50 ms, an upper bound for what a reader of the API sees).

    .venv/bin/python benchmarks/canary_verdict.py [--runs 1]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.e2e

from tests.e2e.test_article import Local  # noqa: E402
from tests.e2e.test_canary_auto import Reader, _routes, _run  # noqa: E402

STAGE = "canary analysis at 10%"


def one_run(local: Local) -> dict[str, float]:
    with Reader(local.productpage) as reader:
        deadline = time.monotonic() + 120
        while sum(reader.count("before").values()) < 10:  # the page answers before the canary starts
            assert time.monotonic() < deadline, "the product page never loaded"
            time.sleep(0.1)
        execution = _run(local, "errors")
        restored_seen: float | None = None
        deadline = time.monotonic() + 300
        while True:
            exe: dict[str, Any] = local.execution(execution)
            analysis = next(s for s in exe["stages"] if s["name"] == STAGE)
            if restored_seen is None and analysis["status"] != "NOT_STARTED" \
                    and (analysis.get("context") or {}).get("rollbackState") and _routes(local) == [("v1", 100)]:
                restored_seen = time.time()
            if exe["status"] not in ("RUNNING", "NOT_STARTED", "BUFFERED"):
                break
            assert time.monotonic() < deadline, f"the execution did not finish: {exe['status']}"
            time.sleep(0.05)
    assert analysis["status"] == "TERMINAL", analysis.get("context", {}).get("exception")
    failing = analysis["outputs"]["canaryIntervals"][-1]
    ended = analysis["context"]["rollbackState"]["endedMs"] / 1000
    return {"interval_end_to_judging_began": failing["judgedAt"] - failing["end"],
            "judging_began_to_restored": ended - failing["judgedAt"],
            "interval_end_to_restored": ended - failing["end"],
            "interval_end_to_seen_by_api": (restored_seen or ended) - failing["end"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graylane-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        local = Local(state)
        try:
            local.cli("demo", "bookinfo", "--port", str(local.server_port), "--admin-port", str(local.admin_port),
                      "--gateway-port", f"80={local.gateway_port}")
            results = []
            for _ in range(args.runs):
                results.append(one_run(local))
        finally:
            local.cli("down", check=False)
            local.api.close()
    print(f"\ncanary verdict on the local mesh ({platform.machine()}, {platform.python_version()}), "
          "reviews-canary-auto fault=errors, interval 5 s, 2 intervals, warmup 8 s")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key.replace('_', ' '):32} " + ", ".join(f"{v:.2f} s" for v in values))


if __name__ == "__main__":
    main()
