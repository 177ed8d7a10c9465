"""`findArtifactFromExecution`: bind expected artifacts to what the latest matching execution of a pipeline saw.

As orca's FindArtifactFromExecutionTask: `pipeline` (a config id; a name is accepted too, with `application`),
`executionOptions` {successful, terminal, running} choose which executions count (newest first), `expectedArtifacts`
(or the legacy single `expectedArtifact`) are matched against that execution's artifacts (trigger artifacts, bound
expected artifacts, artifacts its stages output), falling back to each one's default artifact. Outputs
`resolvedExpectedArtifacts` and `artifacts`, so a later deployManifest finds them by `manifestArtifactId`.
"""

from __future__ import annotations

from typing import Any

from graylane.errors import NotFound, ValidationError
from graylane.pipelines.status import ExecutionStatus as S
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult

_OPTIONS = {"successful": S.SUCCEEDED, "succeeded": S.SUCCEEDED, "terminal": S.TERMINAL, "running": S.RUNNING}


def execution_artifacts(execution: dict[str, Any], skip_ref: str | None = None) -> list[dict[str, Any]]:
    """Every artifact an execution saw, newest stage first (orca ArtifactUtils.getAllArtifacts)."""
    out: list[dict[str, Any]] = []
    for stage in reversed(execution.get("stages") or []):
        if skip_ref is not None and str(stage.get("refId")) == skip_ref:
            continue
        outputs = stage.get("outputs") or {}
        for key in ("artifacts", "outputs.createdArtifacts", "outputs.boundArtifacts"):
            out += [a for a in outputs.get(key) or [] if isinstance(a, dict)]
        out += [ea["boundArtifact"] for ea in outputs.get("resolvedExpectedArtifacts") or []
                if isinstance(ea, dict) and isinstance(ea.get("boundArtifact"), dict)]
    trigger = execution.get("trigger") or {}
    out += [a for a in trigger.get("artifacts") or [] if isinstance(a, dict)]
    out += [ea["boundArtifact"] for ea in trigger.get("resolvedExpectedArtifacts") or []
            if isinstance(ea, dict) and isinstance(ea.get("boundArtifact"), dict)]
    return out


class FindArtifactFromExecutionTask(Task):
    name = "findArtifactFromExecution"
    inline = True

    async def run(self, stage: StageView) -> TaskResult:
        executions = stage.services.child_pipelines()
        ctx = stage.context
        expected = list(ctx.get("expectedArtifacts") or ([ctx["expectedArtifact"]] if ctx.get("expectedArtifact")
                                                           else []))
        if not expected:
            raise ValidationError(f"stage {stage.name}: set expectedArtifacts (what to find)")
        ref = str(ctx.get("pipeline") or "")
        try:
            config_id = executions.config_id(ref, ctx.get("application"))
        except NotFound:
            config_id = ref  # a deleted pipeline keeps its executions under its id
        options = ctx.get("executionOptions") or {"successful": True}
        statuses = [status for key, status in _OPTIONS.items() if options.get(key)]
        heads = executions.recent(config_id, statuses or [S.SUCCEEDED], 5)
        own = stage.execution.get("pipelineConfigId") == config_id
        heads = [h for h in heads if h.get("id") != stage.execution_id]
        prior: list[dict[str, Any]] = []
        if heads:
            found = executions.get(str(heads[0]["id"])).to_json()
            prior = execution_artifacts(found, skip_ref=stage.ref_id if own else None)
        from graylane.pipelines.artifacts import bind_expected

        try:
            resolved = bind_expected(expected, prior)
        except ValidationError as exc:
            which = f"execution {heads[0]['id']}" if heads else "no execution of it"
            raise ValidationError(f"stage {stage.name}: pipeline {ref!r} ({which}, statuses "
                                  f"{', '.join(str(s) for s in statuses) or 'SUCCEEDED'}): {exc}") from None
        outputs = {"resolvedExpectedArtifacts": resolved, "artifacts": [r["boundArtifact"] for r in resolved]}
        return TaskResult.succeeded(outputs, outputs)


class FindArtifactFromExecutionStage(StageDefinition):
    type = "findArtifactFromExecution"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [FindArtifactFromExecutionTask()]


DEFINITION = FindArtifactFromExecutionStage()
