"""`deleteManifest`: delete `manifestName` ("<kind> <name>") in `location`, or each of `manifests`."""

from __future__ import annotations

from typing import Any

from graylane.pipelines import manifests
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult
from graylane.resources.document import ResourceKey


def selected_keys(stage: StageView) -> list[ResourceKey]:
    ctx = stage.context
    where = f"stage {stage.name!r}"
    names = ctx.get("manifestNames") or ([ctx["manifestName"]] if ctx.get("manifestName") else [])
    if not names:
        from graylane.errors import ValidationError

        raise ValidationError("no manifest selected", where=where, hint="set manifestName: '<kind> <name>'")
    location = ctx.get("location") or ctx.get("namespaceOverride")
    return [manifests.key_for(n, location, where) for n in names]


class DeleteManifestTask(Task):
    name = "deleteManifest"

    async def run(self, stage: StageView) -> TaskResult:
        keys = selected_keys(stage)
        options = stage.context.get("options") or {}
        target = await stage.services.target(stage.context.get("account"))
        deleted = await target.delete(keys, actor=stage.actor, cascade=options.get("cascading", True) is not False,
                                      grace_period_seconds=options.get("gracePeriodSeconds"))
        return TaskResult.succeeded({"deletedManifests": [str(k) for k in deleted]},
                                    {"outputs.manifestNamesByNamespace": manifests.names_by_namespace(list(deleted))})


class DeleteManifestStage(StageDefinition):
    type = "deleteManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [DeleteManifestTask()]


DEFINITION = DeleteManifestStage()
