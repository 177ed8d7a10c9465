"""`manualJudgment`: wait for a person's continue/stop, with options and CODING's typed custom parameters.

The PATCH body is validated here (`validate_judgment`) before anything is written: a refused value leaves
the stage waiting. Custom parameter values land at `context.customParams.<name>` as strings.

A judgment (a PATCH with judgmentStatus) is recorded once per stage attempt: at `context.judgmentRecord`
(`{user, time, idempotencyKey, request}`) and in the store's `pipeline_judgments`, whose primary key refuses a
second. A re-send of it (the same request by the same user, or the same Idempotency-Key) is answered as the
first was, with `duplicate: true`, and writes nothing; any other judgment of a judged stage is refused (409).
A restart keeps the earlier attempts' records (`Stage.earlier_answers`): a re-send with the same Idempotency-Key
that arrives after it is answered as that earlier attempt's (`duplicate: true`), never taken as the new one's.
"""

from __future__ import annotations

import datetime
from typing import Any

from graylane.errors import Conflict, ValidationError
from graylane.errors import Forbidden as _Forbidden
from graylane.pipelines import params
from graylane.pipelines.tasks import ANSWER_RECORD, StageDefinition, StageView, Task, TaskResult

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


def judgment_request(body: dict[str, Any]) -> dict[str, Any]:
    """A judgment PATCH's fields as compared with the recorded one (a re-send is the same request)."""
    out: dict[str, Any] = {}
    if body.get("judgmentStatus") is not None:
        out["judgmentStatus"] = str(body["judgmentStatus"]).lower()
    if body.get("judgmentInput") is not None:
        out["judgmentInput"] = str(body["judgmentInput"])
    custom = body.get("customParams")
    if isinstance(custom, dict) and custom:
        out["customParams"] = {str(k): None if v is None else str(v) for k, v in sorted(custom.items())}
    return out


def _said(request: Any) -> str:
    request = request if isinstance(request, dict) else {}
    choice = f" {request['judgmentInput']!r}" if request.get("judgmentInput") is not None else ""
    return f"{request.get('judgmentStatus') or 'an answer'}{choice}"


def _when(ms: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(int(ms) / 1000, datetime.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return "an unknown time"


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

    def answered(self, name: str, context: dict[str, Any], body: dict[str, Any], *, user: str,
                 key: str | None) -> dict[str, Any] | None:
        record = context.get(ANSWER_RECORD)
        if not isinstance(record, dict):
            return None
        by, when, said = record.get("user"), _when(record.get("time")), _said(record.get("request"))
        same = judgment_request(body) == record.get("request") and user == by
        if key is not None and key == record.get("idempotencyKey"):
            if same:
                return record
            raise Conflict(f"stage {name!r}: Idempotency-Key {key!r} was sent with another judgment ({said} by "
                           f"{by} at {when})", hint="send a new Idempotency-Key with a new judgment")
        if same:
            return record
        raise Conflict(f"stage {name!r} was judged already: {said} by {by} at {when}",
                       hint="a manual judgment is recorded once; restart the stage to judge it again")

    def answer_record(self, context: dict[str, Any], updates: dict[str, Any], body: dict[str, Any], *,
                      user: str, key: str | None, now: int) -> dict[str, Any] | None:
        if not updates.get("judgmentStatus"):
            return None  # custom parameters or a choice sent ahead of the decision: not the judgment yet
        return {"user": user, "time": now, "idempotencyKey": key, "request": judgment_request(body)}

    def unevaluated_keys(self, config: dict[str, Any]) -> set[str]:
        # runtime answers must never be re-read from config; instructions stay as written (Markdown)
        return {"judgmentStatus", "judgmentInput", "customParams", ANSWER_RECORD} & set(config)


DEFINITION = ManualJudgmentStage()
