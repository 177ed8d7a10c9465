"""Before a judgment is sent: what the deploy stages right after it would apply with the values typed.

The execution JSON is copied with the judgment as if judged (its customParams filled in), and the next
deploy stages' manifests are evaluated against it with the same expression engine the executor uses
(graylane.expressions); nothing is stored or applied. A VirtualService's routes become the split
`graylane route --count 100` would show: each destination's share of 100 requests.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from graylane.expressions import EvaluationContext, evaluate_templated


@dataclass(frozen=True, slots=True)
class Split:
    virtual_service: str
    shares: list[tuple[str, int]]  # (destination, requests of 100)


@dataclass(frozen=True, slots=True)
class StagePreview:
    stage: str
    manifests: list[dict[str, Any]]
    failed: list[str]  # expressions that could not be evaluated, with why
    splits: list[Split]


def as_judged(execution: dict[str, Any], judgment_id: str, custom: dict[str, str]) -> dict[str, Any]:
    exe = copy.deepcopy(execution)
    for stage in exe.get("stages") or []:
        if stage.get("id") == judgment_id:
            ctx = stage.setdefault("context", {})
            ctx["customParams"] = {**(ctx.get("customParams") or {}), **custom}
            ctx["judgmentStatus"] = "continue"
            stage["status"] = "SUCCEEDED"
    return exe


def next_deploys(execution: dict[str, Any], judgment: dict[str, Any]) -> list[dict[str, Any]]:
    """Deploy stages that run right after the judgment whatever its input (no stageEnabled of their own)."""
    ref = str(judgment.get("refId"))
    return [s for s in execution.get("stages") or []
            if s.get("type") == "deployManifest" and ref in map(str, s.get("requisiteStageRefIds") or [])
            and not (s.get("context") or {}).get("stageEnabled")]


def split_of(manifest: dict[str, Any]) -> Split | None:
    """Shares of 100 requests for the first HTTP route of a VirtualService (weights as Istio reads them)."""
    if manifest.get("kind") != "VirtualService":
        return None
    http = (manifest.get("spec") or {}).get("http") or []
    routes = http[0].get("route") or [] if http else []
    weights = []
    for route in routes:
        dest = route.get("destination") or {}
        try:
            weight = float(route.get("weight", 100 if len(routes) == 1 else 0))
        except (TypeError, ValueError):
            return None
        weights.append((" ".join(str(p) for p in (dest.get("host"), dest.get("subset")) if p), weight))
    total = sum(w for _, w in weights)
    if not total:
        return None
    name = (manifest.get("metadata") or {}).get("name", "?")
    return Split(str(name), [(target, round(100 * w / total)) for target, w in weights])


def preview(execution: dict[str, Any], judgment: dict[str, Any], custom: dict[str, str],
            user: str | None = None) -> list[StagePreview]:
    exe = as_judged(execution, str(judgment.get("id")), custom)
    out = []
    for stage in next_deploys(exe, judgment):
        manifests = (stage.get("context") or {}).get("manifests") or []
        templated = evaluate_templated(manifests, EvaluationContext(execution=exe, stage_id=str(stage.get("id")),
                                                                    user=user))
        value = [m for m in templated.value or [] if isinstance(m, dict)]
        failed = [f"{expr}: {entry.get('description', '')}" for expr, entries in templated.summary.items()
                  for entry in entries]
        splits = [s for s in (split_of(m) for m in value) if s is not None]
        out.append(StagePreview(str(stage.get("name")), value, failed, splits))
    return out


def spec_diff(live: dict[str, Any] | None, manifest: dict[str, Any]) -> str:
    """The change to `spec` (what the VirtualService diff shows), as a unified diff."""
    def text(body: dict[str, Any] | None) -> list[str]:
        if body is None:
            return []
        return str(yaml.safe_dump(body.get("spec"), sort_keys=False, allow_unicode=True)).splitlines()

    name = f"{manifest.get('kind')} {(manifest.get('metadata') or {}).get('name')}"
    return "\n".join(difflib.unified_diff(text(live), text(manifest), f"live/{name}", f"after/{name}", lineterm=""))
