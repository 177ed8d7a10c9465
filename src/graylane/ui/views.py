"""View models of the console: API data shaped for templates (times, waiting judgments, analyzer findings,
diffs, graph tables). Pure functions over JSON; graylane.server.ui fetches, these shape, templates show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from graylane.resources.messages import CATALOG

WAITING_STATUSES = ("RUNNING", "PAUSED", "SUSPENDED", "NOT_STARTED")


def parse_time(value: Any) -> datetime | None:
    """Epoch milliseconds (int, float or digits) or ISO 8601 text -> an aware datetime; None otherwise.

    >>> parse_time(1796517280680).isoformat()
    '2026-12-06T00:34:40.680000+00:00'
    """
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        ms = float(value)
        if ms <= 0:
            return None
        return datetime.fromtimestamp(ms / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def time_tag(value: Any) -> Markup:
    """`<time>` with the instant in UTC as text (readable without JavaScript) and in `datetime`;
    console.js rewrites the text in the reader's time zone, after every live update too."""
    when = parse_time(value)
    if when is None:
        return Markup("") if value in (None, "", 0) else Markup(escape(str(value)))
    iso = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time class="ts" datetime="{iso}">{text}</time>')


def clock_tag(value: Any) -> Markup:
    """A time of day for an axis tick: `<time class="ts-clock">` (UTC; console.js shows the reader's zone)."""
    when = parse_time(value)
    if when is None:
        return Markup("")
    iso = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup(f'<time class="ts-clock" datetime="{iso}">{when.strftime("%H:%M:%S")}</time>')


def may_judge(stage: dict[str, Any], role: str) -> bool:
    """Whether a user of this role may judge the stage (requiredJudgmentRoles; admins always may)."""
    roles = (stage.get("context") or {}).get("requiredJudgmentRoles") or []
    return not roles or role in roles or role == "admin"


def waiting_judgments(executions: list[dict[str, Any]], role: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(execution, stage) for each manual judgment running that this role may judge, in list order."""
    out = []
    for exe in executions:
        for stage in exe.get("stages", []):
            if stage.get("type") == "manualJudgment" and stage.get("status") == "RUNNING" and may_judge(stage, role):
                out.append((exe, stage))
    return out


@dataclass(frozen=True, slots=True)
class FindingView:
    code: str
    resource: str
    message: str
    level: str  # the catalog's severity (istioctl's messages.yaml): Error, Warning or Info


_WARNING = re.compile(r"^\[(?P<code>[A-Z]+\d+)\]\s*(?:\((?P<origin>[^)]*)\)\s*)?(?P<message>.*)$", re.S)
SEVERITY = {m.code: str(m.severity) for m in CATALOG}


def findings(warnings: list[str]) -> list[FindingView]:
    """The apply API's `warnings` ("[IST0101] (VirtualService default/reviews console:8) Referenced ...")
    as rows; text without a code is kept whole as a warning."""
    out = []
    for text in warnings:
        match = _WARNING.match(text.strip())
        if match is None:
            out.append(FindingView("", "", text, "Warning"))
            continue
        code = match["code"]
        out.append(FindingView(code, match["origin"] or "", match["message"].strip(),
                               SEVERITY.get(code, "Warning")))
    return out


def diff_lines(diff: str | None) -> list[tuple[str, str]]:
    """A unified diff as (css class, line): `add`, `del`, `hunk`, `file` or `` (context)."""
    out = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = ""
        out.append((kind, line))
    return out


def stage_rows(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stage graph as table rows (the graph's text alternative): name, status, what it waits for."""
    nodes = [e["data"] for e in elements if e.get("group") == "nodes"]
    label = {n["id"]: n.get("label") or n["id"] for n in nodes}
    after: dict[str, list[str]] = {}
    for e in elements:
        if e.get("group") == "edges":
            after.setdefault(e["data"]["target"], []).append(label.get(e["data"]["source"], e["data"]["source"]))
    return [{"id": n["id"], "label": label[n["id"]], "status": n.get("status") or "",
             "duration": n.get("duration") or "", "after": after.get(n["id"], [])} for n in nodes]


_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False})
_PARAMETER = re.compile(r"\$\{\s*parameters\.([A-Za-z_][\w-]*)\s*\}")


def markdown(text: Any) -> Markup:
    """Stage instructions as HTML: CommonMark with raw HTML off, so `<script>` stays text."""
    return Markup(_MARKDOWN.render(str(text or "")))


def _with_parameters(text: str, parameters: dict[str, Any]) -> str:
    """`${parameters.x}` filled from the trigger, for describing a stage that has not run yet; any other
    expression stays as written (the executor evaluates it when the stage runs)."""
    return _PARAMETER.sub(lambda m: str(parameters[m[1]]) if m[1] in parameters else m[0], text)


def _manifest_effect(manifest: dict[str, Any]) -> str:
    kind, name = manifest.get("kind", "?"), (manifest.get("metadata") or {}).get("name", "?")
    if kind == "VirtualService":
        shares = []
        for rule in (manifest.get("spec") or {}).get("http") or []:
            for route in rule.get("route") or []:
                dest = route.get("destination") or {}
                target = " ".join(str(p) for p in (dest.get("host"), dest.get("subset")) if p)
                shares.append(f"{route.get('weight', 100)}% to {target}")
        if shares:
            return f"route {name}: {', '.join(shares)}"
    return f"apply {kind} {name}"


def stage_effects(stage: dict[str, Any], parameters: dict[str, Any]) -> tuple[list[str], bool]:
    """What a stage will do, in words, and whether it cannot be undone (a deletion)."""
    ctx = {**stage, **(stage.get("context") or {})}
    kind = stage.get("type")
    if kind == "deleteManifest":
        target = str(ctx.get("manifestName") or ", ".join(map(str, ctx.get("manifestNames") or [])) or "manifests")
        return [f"delete {_with_parameters(target, parameters)}"], True
    if kind == "deployManifest":
        manifests = ctx.get("manifests") or []
        return [_with_parameters(_manifest_effect(m), parameters) for m in manifests if isinstance(m, dict)] or \
            ["deploy manifests"], False
    if kind in ("wait", "manualJudgment", "evaluateVariables", "checkPreconditions"):
        return [], False
    return [f"run {stage.get('name') or kind}"], False


def option_consequences(execution: dict[str, Any], judgment: dict[str, Any]) -> dict[str, tuple[list[str], bool]]:
    """For each judgment input: what the stages it enables will do, and whether any is irreversible.

    A stage belongs to an option when it runs after the judgment and its `stageEnabled` expression names
    the judgment and compares with that option, as Spinnaker's canary templates write it:
    `#judgment('是否全量发布') == '全量发布'`.
    """
    stages = execution.get("stages") or []
    by_ref = {str(s.get("refId")): s for s in stages if not s.get("parentStageId")}
    after: set[str] = set()
    frontier = [str(judgment.get("refId"))]
    while frontier:  # every stage downstream of the judgment
        ref = frontier.pop()
        for s in by_ref.values():
            if ref in map(str, s.get("requisiteStageRefIds") or []) and str(s.get("refId")) not in after:
                after.add(str(s.get("refId")))
                frontier.append(str(s.get("refId")))
    parameters = (execution.get("trigger") or {}).get("parameters") or {}
    options = [str(o.get("value") if isinstance(o, dict) else o)
               for o in (judgment.get("context") or {}).get("judgmentInputs") or []]
    out: dict[str, tuple[list[str], bool]] = {}
    for option in options:
        effects: list[str] = []
        irreversible = False
        for ref in sorted(after, key=lambda r: stages.index(by_ref[r])):
            stage = by_ref[ref]
            enabled = (stage.get("context") or {}).get("stageEnabled") or stage.get("stageEnabled") or {}
            expression = str(enabled.get("expression") or "") if isinstance(enabled, dict) else ""
            if str(judgment.get("name")) in expression and (f"'{option}'" in expression or f'"{option}"' in expression):
                words, final = stage_effects(stage, parameters)
                effects += words
                irreversible = irreversible or final
        out[option] = (effects, irreversible)
    return out


def actor_href(actor: str) -> str | None:
    """Where a history actor leads: `pipeline:EXECUTION/STAGE` -> that execution's stage; people -> None.

    >>> actor_href("pipeline:01J9ABC/7f3e")
    '/executions/01J9ABC#stage-7f3e'
    """
    if not actor.startswith("pipeline:"):
        return None
    execution, _, stage = actor[len("pipeline:"):].partition("/")
    if not execution:
        return None
    return f"/executions/{quote(execution, safe='')}" + (f"#stage-{quote(stage, safe='')}" if stage else "")


def editable_yaml_body(body: dict[str, Any]) -> dict[str, Any]:
    """A revision's body ready to edit and apply again: server-set metadata (uid, resourceVersion, ...) dropped,
    so applying it is not refused as stale."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if k not in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")}
    return {**{k: v for k, v in body.items() if k != "status"}, "metadata": meta}


def approval_of(execution: dict[str, Any], stage_id: str) -> str | None:
    """Who approved the change a pipeline stage made: the nearest manual judgment upstream of it, as
    "alice (是否全量发布: 全量发布)"; None when no judgment leads to the stage."""
    stages = [s for s in execution.get("stages") or [] if not s.get("parentStageId")]
    by_ref = {str(s.get("refId")): s for s in stages}
    stage = next((s for s in stages if s.get("id") == stage_id), None)
    frontier = [stage] if stage else []
    seen: set[str] = set()
    while frontier:  # breadth first: the closest judgment wins
        nxt = []
        for s in frontier:
            for ref in map(str, s.get("requisiteStageRefIds") or []):
                parent = by_ref.get(ref)
                if parent is None or ref in seen:
                    continue
                seen.add(ref)
                ctx = parent.get("context") or {}
                if parent.get("type") == "manualJudgment" and ctx.get("lastModifiedBy"):
                    choice = f": {ctx['judgmentInput']}" if ctx.get("judgmentInput") else ""
                    return f"{ctx['lastModifiedBy']} ({parent.get('name')}{choice})"
                nxt.append(parent)
        frontier = nxt
    return None
