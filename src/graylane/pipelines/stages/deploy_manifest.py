"""`deployManifest`: validate every document, apply them make-before-break, wait until ready and ACKed.

Once per stage on resume: the apply task's result (what was applied) is committed before the wait starts. The
apply itself commits before that result, so a replica that dies (or loses its lease) between the two leaves the
task to run again on the next owner: on the local account it first asks the store's history what this stage
wrote (`LocalTarget.applied_by`, by the stage's actor) and applies only the documents it has not, so each is
applied once even when its expressions give another value on the second evaluation. A restarted stage (a new
attempt, same actor) cannot tell its writes from the earlier attempt's and applies everything; other accounts
re-apply, which is `unchanged` for identical documents.
"""

from __future__ import annotations

import logging
from typing import Any

from graylane.errors import GraylaneError
from graylane.pipelines import evaluation, manifests, route_check
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult
from graylane.resources.document import Document, ResourceKey
from graylane.resources.order import apply_order
from graylane.resources.validate import check_apply

log = logging.getLogger(__name__)
DEFAULT_READY_TIMEOUT_S = 600.0


def _order(docs: list[Document]) -> list[Document]:
    return apply_order(docs)


async def _manifest_docs(stage: StageView) -> list[Document]:
    ctx = stage.context
    where = f"stage {stage.name!r}"
    if str(ctx.get("source") or "text") == "artifact":
        from graylane.pipelines.artifacts import bound_artifact

        artifact = bound_artifact(stage.execution, ctx.get("manifestArtifactId"), ctx.get("manifestArtifact"))
        if artifact is None:
            raise GraylaneError("No manifest artifact was specified.", where=where,
                                hint=f"manifestArtifactId {ctx.get('manifestArtifactId')!r} is not bound in this "
                                     "execution")
        text = await stage.services.fetch_artifact(artifact)
        docs = manifests.documents_from(text, f"{where} artifact {artifact.get('reference') or artifact.get('name')}")
        if not ctx.get("skipExpressionEvaluation"):
            bodies = [d.body for d in docs]
            res = await evaluation.off_loop(stage.services.evaluator().templated, bodies, stage.execution,
                                            stage.stage_id, stage.user)
            if res.failed and ctx.get("failOnFailedExpressions"):
                raise GraylaneError("Failure evaluating manifest expressions: " + "; ".join(
                    str(e.get("description")) for es in res.summary.values() for e in es if isinstance(e, dict)),
                    where=where)
            docs = [Document(body=b, source=d.source) for b, d in zip(res.value, docs, strict=True)]
        return docs
    raw = ctx.get("manifests")
    if raw is None:
        raw = ctx.get("manifest")  # CODING's docs show a singular `manifest`
    return manifests.documents_from(raw, where)


async def _applied_before(target: Any, stage: StageView, docs: list[Document], ns: str | None) -> list[Any]:
    """What an earlier run of this task wrote, per document (None: nothing): the task runs again after a
    takeover when its apply committed and its result did not. Only the first attempt of the stage can tell (a
    restarted stage writes with the same actor) and only a target that keeps the actor of its writes."""
    finder = getattr(target, "applied_by", None)
    if finder is None or stage.attempt:
        return [None] * len(docs)
    return list(await finder(docs, actor=stage.actor, namespace_override=ns))


class DeployManifestTask(Task):
    name = "deployManifest"

    async def run(self, stage: StageView) -> TaskResult:
        docs = _order(await _manifest_docs(stage))
        ns = stage.context.get("namespaceOverride") or None
        target = await stage.services.target(stage.context.get("account"), ns)
        if not stage.context.get(route_check.OPTION):
            checked = [d.with_namespace(ns) for d in docs] if ns else docs
            check_apply(checked)  # what a cluster refuses is reported first, as the apply would
            live = await route_check.live_resources(target)
            blocking = route_check.blocking_findings(checked, live)
            if blocking:
                waiting = route_check.not_ready(live) if any(f.code == "IST0173" for f in blocking) else []
                ready = f" ({'; '.join(waiting)})" if waiting else ""
                return TaskResult.terminal(
                    f"stage {stage.name}: nothing was applied: the routes would send traffic to nothing: "
                    f"{route_check.describe(blocking)}{ready} (set {route_check.OPTION}: true on the stage to apply "
                    "anyway)", {"routeCheck": [f.message for f in blocking]})
        before = await _applied_before(target, stage, docs, ns)
        todo = [d for d, b in zip(docs, before, strict=True) if b is None]
        if len(todo) < len(docs):
            log.info("execution %s stage %s: %d of %d documents were applied by an earlier run of this task; "
                     "not applied again", stage.execution_id, stage.name, len(docs) - len(todo), len(docs))
        fresh = iter(await target.apply(todo, actor=stage.actor, namespace_override=ns) if todo else [])
        applied = [b if b is not None else next(fresh) for b in before]
        keys = [a.key for a in applied]
        outputs = {
            "manifests": [a.body or d.body for a, d in zip(applied, docs, strict=False)],
            "outputs.manifestNamesByNamespace": manifests.names_by_namespace(keys),
            "outputs.boundArtifacts": [], "outputs.createdArtifacts": [],
        }
        record = [{"key": list(a.key), "action": str(getattr(a.action, "value", a.action)),
                   "resourceVersion": a.resource_version} for a in applied]
        return TaskResult.succeeded({"deploy.applied": record}, outputs)


class WaitForManifestToStabilizeTask(Task):
    name = "waitForManifestToStabilize"

    async def run(self, stage: StageView) -> TaskResult:
        record = stage.context.get("deploy.applied") or []
        keys = [ResourceKey(*r["key"]) for r in record]
        target = await stage.services.target(stage.context.get("account"), stage.context.get("namespaceOverride"))
        timeout = DEFAULT_READY_TIMEOUT_S
        if stage.context.get("stageTimeoutMs"):
            timeout = max(1.0, int(stage.context["stageTimeoutMs"]) / 1000 -
                          (stage.now_ms - stage.start_time - stage.paused_ms) / 1000)
        await target.wait_ready(keys, timeout=timeout)
        return TaskResult.succeeded()


class DeployManifestStage(StageDefinition):
    type = "deployManifest"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [DeployManifestTask(), WaitForManifestToStabilizeTask()]

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        return {"manifests", "manifest"} if config.get("skipExpressionEvaluation") else set()


DEFINITION = DeployManifestStage()
