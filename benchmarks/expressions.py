"""Parse + evaluate time of the article's VirtualService template, with and without the compiled-expression cache.

Run: .venv/bin/python benchmarks/expressions.py [--rounds N]
Reference: issue #4 aims at under 200 us per template with the cache (Spinnaker's SpEL has no
published figure to set beside it).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import graylane.demos.bookinfo
from graylane.expressions import EvaluationContext, evaluate_expression, evaluate_templated
from graylane.expressions.parser import parse, parse_uncached
from graylane.expressions.template import split_template
from graylane.resources import yamlsafe

# The article's VirtualService template, verbatim, as Bookinfo ships it (tests/bookinfo checks it against the
# walkthrough).
_SHIPPED = Path(graylane.demos.bookinfo.__file__).parent / "coding-cd-template"
TEMPLATE = (_SHIPPED / "canary-ratio-virtual-service.yaml.tmpl").read_text(encoding="utf-8")

WEIGHT = '100 - #toInt(#stage("设置灰度比例")["context"]["customParams"]["canary_ratio"])'


def execution() -> dict[str, Any]:
    manifest = yamlsafe.load(TEMPLATE, str(_SHIPPED / "canary-ratio-virtual-service.yaml.tmpl"))
    stages = [
        {"id": "s1", "refId": "1", "type": "deployManifest", "name": "deploy canary", "status": "SUCCEEDED",
         "context": {}, "outputs": {}, "requisiteStageRefIds": []},
        {"id": "s3", "refId": "3", "type": "manualJudgment", "name": "设置灰度比例", "status": "SUCCEEDED",
         "context": {"judgmentStatus": "continue", "customParams": {"canary_ratio": "50"}}, "outputs": {},
         "requisiteStageRefIds": ["1"]},
        {"id": "s4", "refId": "4", "type": "deployManifest", "name": "灰度比例生效", "status": "RUNNING",
         "context": {"manifests": [manifest]}, "outputs": {}, "requisiteStageRefIds": ["3"]},
        {"id": "s5", "refId": "5", "type": "manualJudgment", "name": "是否全量发布", "status": "NOT_STARTED",
         "context": {}, "outputs": {}, "requisiteStageRefIds": ["4"]},
    ]
    return {"id": "01HBENCH", "application": "bookinfo", "name": "reviews-canary", "stages": stages,
            "trigger": {"type": "manual", "parameters": {"base_version": "v1", "canary_version": "v2"}}}


def measure(fn: Callable[[], Any], rounds: int, inner: int) -> tuple[float, float]:
    """Median and best microseconds per call over `rounds` batches of `inner` calls."""
    fn()  # warm up (and fill caches where they are used)
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        per_call.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(per_call), min(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=200)
    args = parser.parse_args()

    snapshot = execution()
    manifest = copy.deepcopy(snapshot["stages"][2]["context"]["manifests"][0])
    check = evaluate_templated(manifest, EvaluationContext(snapshot, stage_id="s4")).value
    weights = [r["weight"] for r in check["spec"]["http"][0]["route"]]
    assert weights == [50, 50], weights

    def template(use_cache: bool) -> Callable[[], Any]:
        # a fresh context per call, as each stage start builds one
        return lambda: evaluate_templated(manifest, EvaluationContext(snapshot, stage_id="s4"), use_cache=use_cache)

    rows = [
        ("article template (4 expressions), cached", template(True)),
        ("article template (4 expressions), no cache", template(False)),
        ("one weight expression, cached", lambda: evaluate_expression(WEIGHT, EvaluationContext(snapshot, "s4"))),
        ("one weight expression, no cache",
         lambda: evaluate_expression(WEIGHT, EvaluationContext(snapshot, "s4"), use_cache=False)),
        ("parse only (weight), cached", lambda: parse(WEIGHT)),
        ("parse only (weight), no cache", lambda: parse_uncached(WEIGHT)),
        ("split ${...} template text, no cache",
         lambda: split_template.__wrapped__("${100 - #toInt(#stage(\"x\")[\"context\"][\"a\"])}")),
    ]
    print("Graylane expressions benchmark: the article's VirtualService template (seed-walkthrough.md)")
    print(f"machine: {platform.machine()} {platform.processor() or ''} | python {platform.python_version()} | "
          f"lark {version('lark')} | {platform.system()} {platform.release()}")
    print(f"parameters: rounds={args.rounds} x inner={args.inner} calls; result weights {weights}")
    print(f"{'case':48} {'median us':>10} {'best us':>10}   reference")
    for name, fn in rows:
        median, best = measure(fn, args.rounds, args.inner)
        reference = "aim < 200 us (issue #4)" if name.endswith("template (4 expressions), cached") else ""
        print(f"{name:48} {median:10.1f} {best:10.1f}   {reference}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
