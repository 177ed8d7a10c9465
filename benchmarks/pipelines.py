"""Pipeline engine throughput and judgment latency on SQLite.

Phase 1: N concurrent executions of a 10-stage pipeline of quick stages (wait 0s, a chain); reports committed
transitions per second (execution, stage and task status changes, each committed before it is published).
Phase 2: N executions parked on a manual judgment; each is judged with a real HTTP PATCH to an in-process
uvicorn server; reports the time from sending the PATCH to the next stage's RUNNING event (p50/p99).

    .venv/bin/python benchmarks/pipelines.py [--executions 200] [--stages 10]
Reference (issue #6): >= 500 transitions/s, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
import uvicorn

from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chain(n: int) -> list[dict[str, Any]]:
    return [{"refId": str(i), "type": "wait", "name": f"quick {i}", "waitTime": 0,
             "requisiteStageRefIds": [str(i - 1)] if i else []} for i in range(n)]


async def main(executions: int, stages: int) -> None:
    state = Path(tempfile.mkdtemp(prefix="graylane-bench-"))
    os.environ["GRAYLANE_STATE"] = str(state)
    store = Store.open(f"sqlite:///{state / 'graylane.db'}")
    cp = ControlPlane(store=store)
    app = create_app(cp, start_components=False)
    from graylane.pipelines.component import executor_of

    ex = executor_of(cp)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)

    quick = ex.pipelines.get(ex.pipelines.save({"application": "bench", "name": "quick", "limitConcurrent": False,
                                                "stages": chain(stages)}, actor="user:bench").id)
    judged = ex.pipelines.get(ex.pipelines.save({"application": "bench", "name": "judged", "limitConcurrent": False,
                                                 "stages": [{"refId": "j", "type": "manualJudgment", "name": "gate"},
                                                            *[{**s, "requisiteStageRefIds": s["requisiteStageRefIds"]
                                                               or ["j"]} for s in chain(1)]]},
                                                actor="user:bench").id)

    # ---- phase 1: throughput
    transitions = 0
    stage_transitions = 0
    done = asyncio.Event()
    finished: set[str] = set()
    ids: set[str] = set()

    async def count() -> None:
        nonlocal transitions, stage_transitions
        async with ex.bus.subscribe() as q:
            ready.set()
            while True:
                ev = await q.get()
                if ev.data.get("kind") in ("execution", "stage", "task"):
                    transitions += 1
                if ev.data.get("kind") == "stage":
                    stage_transitions += 1
                if ev.data.get("kind") == "execution" and ev.data.get("status") == "SUCCEEDED":
                    finished.add(ev.data["executionId"])
                    if len(finished) >= executions and ids <= finished:
                        done.set()

    ex.bus._queue_size = 1_000_000  # the benchmark's subscriber must not drop events
    ready = asyncio.Event()
    counter = asyncio.create_task(count())
    await ready.wait()
    t0 = time.perf_counter()
    for _ in range(executions):
        exe = await ex.start_execution(quick, {"type": "manual", "parameters": {}}, user="bench")
        ids.add(exe.id)
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - t0
    counter.cancel()
    rows = ex.repo.list(pipeline_config_id=quick["id"], limit=0)
    ok = sum(1 for r in rows if r["status"] == "SUCCEEDED")

    # ---- phase 2: judgment PATCH -> next stage RUNNING
    waiting: dict[str, str] = {}
    for _ in range(executions):
        exe = await ex.start_execution(judged, {"type": "manual", "parameters": {}}, user="bench")
        waiting[exe.id] = exe.stages[1].id
    for eid in waiting:
        await ex.wait_for_stage(eid, "gate", {__import__("graylane.pipelines.status", fromlist=["x"])
                                              .ExecutionStatus.RUNNING}, timeout=60)
    latencies: list[float] = []
    got: dict[str, float] = {}
    next_running: dict[str, asyncio.Event] = {eid: asyncio.Event() for eid in waiting}

    async def watch() -> None:
        async with ex.bus.subscribe() as q:
            watching.set()
            while True:
                ev = await q.get()
                d = ev.data
                if d.get("kind") == "stage" and d.get("status") == "RUNNING" and \
                        waiting.get(d.get("executionId")) == d.get("stageId"):
                    got[d["executionId"]] = time.perf_counter()
                    next_running[d["executionId"]].set()

    watching = asyncio.Event()
    watcher = asyncio.create_task(watch())
    await watching.wait()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30,
                                 headers={"X-Graylane-User": "bench",
                                          "Authorization": f"Bearer {app.state.cli_token}"}) as client:
        for eid in waiting:  # one approver at a time, as people judge
            sent = time.perf_counter()
            r = await client.patch(f"/api/v1/executions/{eid}/stages/gate", json={"judgmentStatus": "continue"})
            r.raise_for_status()
            await asyncio.wait_for(next_running[eid].wait(), timeout=30)
            latencies.append((got[eid] - sent) * 1000)
    watcher.cancel()
    server.should_exit = True
    await serving
    await ex.stop()
    store.close()

    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * len(latencies))) - 1)]
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"SQLAlchemy {sqlalchemy.__version__}, SQLite {__import__('sqlite3').sqlite_version} (WAL)")
    print(f"load: {executions} concurrent executions x {stages} quick stages (wait 0s chain), one executor")
    print(f"{'metric':<44}{'graylane':>12}{'aim (issue #6)':>18}")
    print(f"{'executions succeeded':<44}{ok:>12}{executions:>18}")
    print(f"{'committed transitions':<44}{transitions:>12}")
    print(f"{'wall time (s)':<44}{elapsed:>12.2f}")
    print(f"{'stage transitions per second':<44}{stage_transitions / elapsed:>12.0f}{'>= 500':>18}")
    print(f"{'stage+task+execution transitions per second':<44}{transitions / elapsed:>12.0f}")
    print(f"{'judgment PATCH -> next stage RUNNING p50 (ms)':<44}{statistics.median(latencies):>12.1f}")
    print(f"{'judgment PATCH -> next stage RUNNING p99 (ms)':<44}{p99:>12.1f}{'<= 50':>18}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executions", type=int, default=200)
    ap.add_argument("--stages", type=int, default=10)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    sys.exit(asyncio.run(main(args.executions, args.stages)))
