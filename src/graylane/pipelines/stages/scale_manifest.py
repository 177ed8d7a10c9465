"""`scaleManifest`: set `replicas` on a Deployment (a merge patch of spec.replicas), then wait until ready."""

from __future__ import annotations

from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import manifests
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult


class ScaleManifestTask(Task):
    name = "scaleManifest"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        where = f"stage {stage.name!r}"
        key = manifests.key_for(ctx.get("manifestName", ""), ctx.get("location"), where)
        try:
            replicas = int(ctx.get("replicas"))
        except (TypeError, ValueError):
            raise ValidationError(f"replicas {ctx.get('replicas')!r} must be an integer", where=where) from None
        if replicas < 0:
            raise ValidationError("replicas must be >= 0", where=where)
        target = await stage.services.target(ctx.get("account"))
        await target.patch(key, {"spec": {"replicas": replicas}}, "merge", actor=stage.actor)
        await target.wait_ready([key], timeout=600.0)
        return TaskResult.succeeded({"scaledManifest": str(key)})


class ScaleManifestStage(StageDefinition):
    type = "scaleManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [ScaleManifestTask()]


DEFINITION = ScaleManifestStage()
