"""Stage types: one module per type, each exposing `DEFINITION` (a StageDefinition); loaded lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graylane.pipelines.tasks import StageDefinition

MODULES: dict[str, str] = {
    "deployManifest": "deploy_manifest",
    "deleteManifest": "delete_manifest",
    "patchManifest": "patch_manifest",
    "scaleManifest": "scale_manifest",
    "undoRolloutManifest": "undo_rollout_manifest",
    "manualJudgment": "manual_judgment",
    "wait": "wait",
    "checkPreconditions": "check_preconditions",
    "evaluateVariables": "evaluate_variables",
    "webhook": "webhook",
    "pipeline": "pipeline",
    "runJobManifest": "run_job_manifest",
    "findArtifactFromExecution": "find_artifact_from_execution",
    "findArtifactsFromResource": "find_artifacts_from_resource",
    "kayentaCanary": "kayenta_canary",
    "analysis": "analysis",
    "trafficShift": "traffic_shift",
    "canaryRollout": "canary_rollout",
    "blueGreen": "blue_green",
}
STAGE_TYPE_NAMES = frozenset(MODULES)

_cache: dict[str, StageDefinition] = {}


def definition(stage_type: str) -> StageDefinition:
    if stage_type not in _cache:
        mod = importlib.import_module(f"graylane.pipelines.stages.{MODULES[stage_type]}")
        _cache[stage_type] = mod.DEFINITION
    return _cache[stage_type]
