"""`patchManifest`: patch one manifest with `patchBody` (strategic, merge or json patch)."""

from __future__ import annotations

from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import manifests
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult

STRATEGIES = ("strategic", "merge", "json")


class PatchManifestTask(Task):
    name = "patchManifest"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        where = f"stage {stage.name!r}"
        key = manifests.key_for(ctx.get("manifestName", ""), ctx.get("location"), where)
        strategy = str((ctx.get("options") or {}).get("mergeStrategy") or "strategic")
        if strategy not in STRATEGIES:
            raise ValidationError(f"options.mergeStrategy {strategy!r} must be one of {', '.join(STRATEGIES)}",
                                  where=where)
        body = ctx.get("patchBody")
        if strategy != "json" and isinstance(body, list):
            if len(body) != 1:
                raise ValidationError("patchBody must hold exactly one patch object", where=where)
            body = body[0]
        if body is None:
            raise ValidationError("patchBody is required", where=where)
        target = await stage.services.target(ctx.get("account"))
        result = await target.patch(key, body, strategy, actor=stage.actor)
        return TaskResult.succeeded({"patchedManifest": str(key)},
                                    {"manifests": [result],
                                     "outputs.manifestNamesByNamespace": manifests.names_by_namespace([key])})


class PatchManifestStage(StageDefinition):
    type = "patchManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [PatchManifestTask()]


DEFINITION = PatchManifestStage()
