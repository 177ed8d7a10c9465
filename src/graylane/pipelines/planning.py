"""What a stage's context is when it starts: its original config evaluated against the execution, and whether
`stageEnabled` lets it run (orca StartStageHandler + OptionalStageSupport). Pure: no store, no events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graylane.errors import GraylaneError
from graylane.pipelines import evaluation
from graylane.pipelines.execution import STRUCTURAL_KEYS, Execution, Stage
from graylane.pipelines.stages import definition

# Runtime keys a stage keeps across a restart (everything else is rebuilt from its config).
CARRIED_KEYS = ("restartDetails",)


@dataclass
class Planned:
    context: dict[str, Any]
    failed_expressions: list[str] = field(default_factory=list)


def evaluate_config(exe: Execution, stage: Stage, user: str, lookup: evaluation.Lookup | None = None) -> Planned:
    """The stage's config with every `${...}` evaluated (except keys its type evaluates itself).

    Raises GraylaneError when the stage cannot be planned at all.
    """
    carried = {k: stage.context[k] for k in CARRIED_KEYS if k in stage.context}
    config_ctx = {k: v for k, v in stage.config.items() if k not in STRUCTURAL_KEYS}
    keep = definition(stage.type).unevaluated_keys(stage.config) & set(config_ctx)
    to_eval = {k: v for k, v in config_ctx.items() if k not in keep}
    exec_json = exe.to_json()
    for sj in exec_json["stages"]:
        if sj["id"] == stage.id:
            sj["context"] = dict(config_ctx)  # orca's root: the stage's own (raw) context keys
    ev = evaluation.evaluate_templated(to_eval, exec_json, stage.id, user, lookup)
    context = {**(ev.value if isinstance(ev.value, dict) else to_eval), **{k: config_ctx[k] for k in keep},
               **carried}
    if ev.summary:
        context["expressionEvaluationSummary"] = ev.summary
    return Planned(context, summary_errors(ev.summary) if ev.failed else [])


def raw_context(stage: Stage) -> dict[str, Any]:
    carried = {k: stage.context[k] for k in CARRIED_KEYS if k in stage.context}
    return {**{k: v for k, v in stage.config.items() if k not in STRUCTURAL_KEYS}, **carried}


def stage_enabled(exe: Execution, stage: Stage, user: str,
                  lookup: evaluation.Lookup | None = None) -> tuple[bool, str]:
    """orca OptionalStageSupport: only `expression`; blank runs; an invalid result skips, with the reason."""
    se = stage.context.get("stageEnabled")
    if not isinstance(se, dict):
        return True, ""
    expr = se.get("expression")
    if expr is None or (isinstance(expr, str) and not expr.strip()):
        return True, ""
    value: Any = expr
    if isinstance(expr, str):
        text = expr.strip()
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            if text.startswith("${") and text.endswith("}"):
                text = text[2:-1]
            try:
                value = evaluation.evaluate_expression(text, exe.to_json(), stage.id, user, lookup)
            except GraylaneError as exc:
                return False, f"Conditional Expression '{expr}' could not be evaluated: {exc}; stage skipped"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if isinstance(value, bool):
        return value, "" if value else f"Conditional Expression '{expr}' evaluated to false; stage skipped"
    return False, f"Conditional Expression '{expr}' gave {value!r}, not true/false; stage skipped"


def summary_errors(summary: dict[str, Any]) -> list[str]:
    """The ERROR descriptions of an expressionEvaluationSummary."""
    out: list[str] = []
    for expr, entries in (summary or {}).items():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("level", "ERROR") == "ERROR":
                out.append(str(entry.get("description") or expr))
    return out
