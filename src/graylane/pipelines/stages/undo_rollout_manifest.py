"""`undoRolloutManifest`: re-apply the body a manifest had `numRevisionsBack` changes ago, as the account's
target remembers it (`Target.history`: store revisions locally, ReplicaSet revisions on Kubernetes)."""

from __future__ import annotations

from typing import Any

from graylane.errors import GraylaneError, ValidationError
from graylane.pipelines import manifests
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult
from graylane.resources.document import Document, Source
from graylane.targets.base import ManifestRevision

_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def _spec_of(body: dict[str, Any]) -> Any:
    return {k: v for k, v in body.items() if k not in ("metadata", "status")}


class UndoRolloutTask(Task):
    name = "undoRolloutManifest"

    async def run(self, stage: StageView) -> TaskResult:
        ctx = stage.context
        where = f"stage {stage.name!r}"
        key = manifests.key_for(ctx.get("manifestName", ""), ctx.get("location"), where)
        try:
            back = int(ctx.get("numRevisionsBack", 1))
        except (TypeError, ValueError):
            raise ValidationError("numRevisionsBack must be an integer", where=where) from None
        target = await stage.services.target(ctx.get("account"))
        history = await target.history(key)  # the account's own history: store revisions, ReplicaSets
        # Revisions that changed the spec, newest first (metadata-only edits are not rollouts).
        distinct: list[ManifestRevision] = []
        for rev in reversed(history):
            if not distinct or _spec_of(rev.body) != _spec_of(distinct[-1].body):
                distinct.append(rev)
        if len(distinct) <= back:
            raise GraylaneError(f"{key} has {len(distinct)} revision(s); cannot go back {back}", where=where)
        chosen = distinct[back]
        body = {k: v for k, v in chosen.body.items() if k != "status"}
        body["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
        await target.apply([Document(body=body, source=Source(f"<{key} revision {chosen.revision}>"))],
                           actor=stage.actor)
        return TaskResult.succeeded({"undoRollout": {"manifest": str(key), "toRevision": chosen.revision}})


class UndoRolloutManifestStage(StageDefinition):
    type = "undoRolloutManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [UndoRolloutTask()]


DEFINITION = UndoRolloutManifestStage()
