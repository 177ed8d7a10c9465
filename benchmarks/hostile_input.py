"""How fast and how small hostile input is refused: the issue-#19 bombs, each timed to its refusal with the peak RSS
it cost, in a child process of its own (so one case's memory does not hide the next one's).

Run: .venv/bin/python benchmarks/hostile_input.py [--rounds N]
Reference: issue #19 asks that the YAML and expression bombs answer within a second with the RSS bounded (before
the fixes: 10 GB and no answer for the 549-byte YAML bomb; 22 s and 853 MB for #readYaml of it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOL = "[" + ",".join(['"lol"'] * 9) + "]"
BOMB = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n  a: &a " + LOL + "\n" + "".join(
    f"  {c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
EXPR_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
DEEP_JSON = "[" * 100_000 + "]" * 100_000

# Each case runs in a fresh interpreter: (what it is, (imports and set-up, untimed; the timed call that raises)).
CASES: dict[str, tuple[str, str]] = {
    f"YAML alias bomb ({len(BOMB)} bytes), manifest loader": (
        "from graylane.resources.load import load_text", "load_text(BOMB, 'bomb.yaml')"),
    "#readYaml(<bomb>) in an expression": (
        "from graylane.expressions import EvaluationContext, evaluate_expression\n"
        "ctx = EvaluationContext({'id': 'x', 'stages': [], 'trigger': {}}, stage_id=None)",
        "evaluate_expression('#readYaml(\\'' + EXPR_BOMB + '\\')', ctx)"),
    "100,000-deep JSON body, API reader": (
        "from graylane.server.limits import ServerLimits, parse_json",
        "parse_json(DEEP_JSON.encode(), ServerLimits(), '<request>')"),
}

CHILD = """
import json, resource, sys, time
BOMB, EXPR_BOMB, DEEP_JSON = {consts}
{setup}
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
refusal = 'accepted'
t0 = time.perf_counter()
try:
    {action}
except Exception as exc:
    refusal = str(exc)
elapsed = time.perf_counter() - t0
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss
print(json.dumps({{"ms": elapsed * 1000, "grew_kb": grew, "refusal": refusal[:110]}}))
"""


def run(setup: str, action: str) -> dict[str, object]:
    consts = repr((BOMB, EXPR_BOMB, DEEP_JSON))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(CHILD.format(consts=consts, setup=setup, action=action))
        path = fh.name
    try:
        done = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    finally:
        os.unlink(path)
    if done.returncode != 0:
        return {"ms": float("nan"), "grew_kb": 0, "refusal": f"child failed: {done.stderr.strip()[-200:]}"}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("Graylane hostile-input benchmark: time to refusal and peak RSS growth, one child process per run")
    print(f"machine: {platform.machine()} | python {platform.python_version()} | {platform.system()} "
          f"{platform.release()} | parent RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    print(f"{'case':52} {'median ms':>10} {'max ms':>8} {'peak +MB':>9}   refusal")
    for name, (setup, action) in CASES.items():
        results = [run(setup, action) for _ in range(args.rounds)]
        times = [float(str(r["ms"])) for r in results]
        grew = max(int(str(r["grew_kb"])) for r in results) / 1024
        print(f"{name:52} {statistics.median(times):10.1f} {max(times):8.1f} {grew:9.1f}   {results[-1]['refusal']}")
    print("aim (issue #19): every refusal well under 1,000 ms, RSS bounded")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.1f} s)")
