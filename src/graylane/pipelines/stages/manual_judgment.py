"""`manualJudgment`: wait for a person's continue/stop, with options and CODING's typed custom parameters.

The PATCH body is validated here (`validate_judgment`) before anything is written: a refused value leaves
the stage waiting. Custom parameter values land at `context.customParams.<name>` as strings.
"""

from __future__ import annotations

from typing import Any

from graylane.errors import Forbidden as _Forbidden
from graylane.errors import ValidationError
from graylane.pipelines import params
from graylane.pipelines.tasks import StageDefinition, StageView, Task, TaskResult

DEFAULT_TIMEOUT_MS = 72 * 3600 * 1000


class Forbidden(_Forbidden):
    """The user lacks a role the judgment requires (HTTP 403)."""


def validate_judgment(context: dict[str, Any], body: dict[str, Any], *, user: str,
                      roles: list[str]) -> dict[str, Any]:
    """The context updates for a judgment PATCH, or a ValidationError saying what is wrong."""
    updates: dict[str, Any] = {}
    status = body.get("judgmentStatus")
    if status is not None:
        status = str(status).lower()
        if status not in ("continue", "stop"):
            raise ValidationError(f"judgmentStatus {body['judgmentStatus']!r} must be 'continue' or 'stop'")
        updates["judgmentStatus"] = status
    required_roles = context.get("requiredJudgmentRoles") or context.get("selectedStageRoles") or []
    if required_roles and status is not None and not set(required_roles) & set(roles):
        raise Forbidden(f"{user} may not judge this stage: it requires one of the roles "
                        f"{', '.join(required_roles)}")
    options = [str(o.get("value") if isinstance(o, dict) else o) for o in context.get("judgmentInputs") or []]
    if body.get("judgmentInput") is not None:
        choice = str(body["judgmentInput"])
        if not options:
            raise ValidationError(f"judgmentInput {choice!r}: this judgment declares no judgmentInputs",
                                  hint="answer with judgmentStatus alone (graylane judge ... --continue/--stop)")
        if choice not in options:
            raise ValidationError(f"judgmentInput {choice!r} is not one of the options: {', '.join(options)}")
        updates["judgmentInput"] = choice
    elif options and status is not None and not context.get("judgmentInput"):
        raise ValidationError(f"choose a judgmentInput: one of {', '.join(options)}")
    defs = [d for d in context.get("customParamConfig") or [] if isinstance(d, dict) and d.get("name")]
    supplied = body.get("customParams")
    if supplied is not None and not isinstance(supplied, dict):
        raise ValidationError("customParams must be an object of name -> value")
    if supplied and not defs:
        raise ValidationError(f"customParams: this judgment declares no parameters; refused "
                              f"{', '.join(sorted(supplied))}", hint="declare them in the stage's customParamConfig")
    if defs or supplied:
        merged = {**(context.get("customParams") or {}), **(supplied or {})}
        if status == "continue" or supplied:
            if status == "continue":
                resolved = params.resolve(defs, merged, "customParams", strict_unknown=True)
            else:
                known = {d["name"]: d for d in defs}
                extra = sorted(set(supplied or {}) - set(known))
                if extra:
                    raise ValidationError(f"customParams: unknown parameter(s) {', '.join(extra)}",
                                          hint=f"declared: {', '.join(sorted(known)) or 'none'}")
                resolved = {**merged, **{k: params.check_value(known[k], v, "customParams")
                                         for k, v in (supplied or {}).items()}}
            updates["customParams"] = {k: (None if v is None else str(v)) for k, v in resolved.items()}
    return updates


class WaitForJudgmentTask(Task):
    name = "waitForJudgment"
    inline = True
    timeout_ms = DEFAULT_TIMEOUT_MS
    backoff_s = 15.0

    async def run(self, stage: StageView) -> TaskResult:
        status = str(stage.context.get("judgmentStatus") or "").lower()
        if status == "continue":
            return TaskResult.succeeded()
        if status == "stop":
            who = stage.context.get("lastModifiedBy") or "someone"
            return TaskResult.terminal(f"stage {stage.name}: {who} stopped the pipeline at this judgment")
        return TaskResult.running(retry_after_s=self.backoff_s)


class ManualJudgmentStage(StageDefinition):
    type = "manualJudgment"

    def tasks(self, context: dict[str, Any]) -> list[Task]:
        return [WaitForJudgmentTask()]

    def patch_fields(self) -> frozenset[str]:
        return frozenset({"judgmentStatus", "judgmentInput", "customParams"})

    def validate_patch(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                       roles: list[str]) -> tuple[dict[str, Any], str]:
        # the judge is recorded with the answer (Deck shows "judged by")
        return {**validate_judgment(context, body, user=user, roles=roles), "lastModifiedBy": user}, "judgment"

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        # runtime answers must never be re-read from config; instructions stay as written (Markdown)
        return {"judgmentStatus", "judgmentInput", "customParams"} & set(config)


DEFINITION = ManualJudgmentStage()
