"""The article's reviews-canary pipeline without its deployments: its two judgments and what they enable.

Made from the Bookinfo demo's own JSON, so the console is tested against the instructions, judgment
inputs and stageEnabled expressions a release engineer really sees; needs no data plane.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[2] / "src/graylane/demos/bookinfo/coding-cd-template/reviews-canary.json"
RATIO, RELEASE, FULL, END, DELETE = "设置灰度比例", "是否全量发布", "全量发布", "结束发布", "删除基准版本"
APPLY_RATIO = "灰度比例生效"


def judgments_only(name: str = "reviews-judgments", *, apply_ratio: bool = False) -> dict[str, Any]:
    """The judgments and what they enable; with `apply_ratio`, also the stage that applies the ratio to the
    VirtualService (its route check off: no workloads run here)."""
    pipeline = json.loads(DEMO.read_text(encoding="utf-8"))
    keep = {RATIO, RELEASE, FULL, END, DELETE} | ({APPLY_RATIO} if apply_ratio else set())
    stages = [s for s in pipeline["stages"] if s["name"] in keep]
    refs = {s["refId"] for s in stages}
    for s in stages:
        s["requisiteStageRefIds"] = [r for r in s.get("requisiteStageRefIds") or [] if r in refs]
        if s["name"] == RELEASE:
            before = APPLY_RATIO if apply_ratio else RATIO
            s["requisiteStageRefIds"] = [next(x["refId"] for x in stages if x["name"] == before)]
        if s["name"] == APPLY_RATIO:
            s["skipRouteCheck"] = True
    pipeline.update(name=name, stages=stages, triggers=[], limitConcurrent=False)  # tests run several at once
    pipeline.pop("id", None)
    return dict(pipeline)


def reviews_routing(v1: int) -> str:
    """The reviews DestinationRule (subsets v1, v2) and a VirtualService sending `v1`% to v1 and the rest to v2."""
    return f"""apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
      weight: {v1}
    - destination: {{host: reviews, subset: v2}}
      weight: {100 - v1}
"""
