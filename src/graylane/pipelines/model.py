"""Pipeline configs as Spinnaker JSON: normalise (refIds, defaults) and validate with precise errors.

Knows the stage type names and the expression syntax checker; knows nothing of the store or executor.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from graylane.errors import ValidationError
from graylane.pipelines import artifacts, compat, evaluation, release_checks

# Keys Deck puts on a new pipeline; kept so export -> import round-trips unchanged.
PIPELINE_DEFAULTS: dict[str, Any] = {"limitConcurrent": True, "keepWaitingPipelines": False, "spelEvaluator": "v4"}
# Graylane fires manual, webhook, pipeline and cron triggers; the others are Spinnaker's trigger types (Deck's
# trigger registry: Igor's CI and repository pollers, Echo's Pub/Sub, plugins, CDEvents): they import, are kept,
# and never fire here.
FIRED_TRIGGER_TYPES = frozenset({"manual", "webhook", "pipeline", "cron"})
TRIGGER_TYPES = FIRED_TRIGGER_TYPES | frozenset({"git", "docker", "jenkins", "travis", "wercker", "concourse", "pubsub",
                                                 "artifactory", "nexus", "helm", "plugin", "cdevents"})
PARAM_TYPES = frozenset({"string", "int", "float", "bool", "enum"})


@dataclass(frozen=True)
class Finding:
    """One problem in a pipeline config: the JSON path, the message, and the file:line when known."""

    path: tuple[str | int, ...]
    message: str
    where: str = ""

    def __str__(self) -> str:
        return f"{_fmt_path(self.path)}: {self.message}" if self.path else self.message


def _fmt_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _stage_label(stage: Any, index: int) -> str:
    name = stage.get("name") if isinstance(stage, dict) else None
    return f"stages[{index}] ({name!r})" if name else f"stages[{index}]"


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """A copy with Deck's defaults filled, refIds as strings, and legacy linear pipelines given refIds.

    Legacy rule (orca OperationsController.applyStageRefIds): if *every* stage lacks `refId`, stage i gets
    refId str(i) and requisiteStageRefIds [str(i-1)].
    """
    out = copy.deepcopy(body)
    for key, value in PIPELINE_DEFAULTS.items():
        out.setdefault(key, value)
    for key in ("triggers", "parameterConfig", "notifications", "expectedArtifacts", "stages"):
        if out.get(key) is None:
            out[key] = []
    stages = out["stages"]
    if isinstance(stages, list) and stages and all(isinstance(s, dict) and s.get("refId") in (None, "")
                                                   for s in stages):
        for i, stage in enumerate(stages):
            stage["refId"] = str(i)
            stage["requisiteStageRefIds"] = [str(i - 1)] if i else []
    if isinstance(stages, list):
        for stage in stages:
            if not isinstance(stage, dict):
                continue
            if stage.get("refId") is not None and not isinstance(stage["refId"], bool):
                stage["refId"] = str(stage["refId"])
            reqs = stage.get("requisiteStageRefIds")
            if reqs is None:
                stage["requisiteStageRefIds"] = []
            elif isinstance(reqs, list):
                stage["requisiteStageRefIds"] = [str(r) for r in reqs]
    return out


def find_problems(body: Any) -> list[Finding]:
    """Every problem in a (normalised) pipeline config; empty when it can be saved and run."""
    if not isinstance(body, dict):
        return [Finding((), "a pipeline must be a JSON object")]
    problems: list[Finding] = []
    for key in ("application", "name"):
        if not isinstance(body.get(key), str) or not body.get(key):
            problems.append(Finding((key,), f"`{key}` is required and must be a non-empty string"))
    stages = body.get("stages")
    if not isinstance(stages, list):
        problems.append(Finding(("stages",), "`stages` must be a list"))
        stages = []
    for key in ("triggers", "parameterConfig", "notifications", "expectedArtifacts"):
        if not isinstance(body.get(key, []), list):
            problems.append(Finding((key,), f"`{key}` must be a list"))
    for key in ("limitConcurrent", "keepWaitingPipelines", "allowUndeclaredParameters"):
        if not isinstance(body.get(key, False), bool):
            problems.append(Finding((key,), f"`{key}` must be true or false"))
    mce = body.get("maxConcurrentExecutions", 0)
    if mce is not None and (not isinstance(mce, int) or isinstance(mce, bool) or mce < 0):
        problems.append(Finding(("maxConcurrentExecutions",), "must be an integer >= 0"))
    if body.get("spelEvaluator") not in (None, "v2", "v3", "v4"):
        problems.append(Finding(("spelEvaluator",), f"unknown spelEvaluator {body.get('spelEvaluator')!r} "
                                                    "(expected v4, v3 or v2)"))
    template = compat.template_problem(body)
    if template:
        problems.append(Finding(("schema",) if "schema" in body else (), template))
    problems += _check_parameters(body.get("parameterConfig") or [], ("parameterConfig",))
    problems += _check_triggers(_list(body.get("triggers")))  # not a list: reported above, nothing to walk
    problems += _check_expected_artifacts(_list(body.get("expectedArtifacts")))
    problems += _check_stages(stages)
    problems += [Finding(path, message) for path, message in compat.manifest_problems(stages)]
    problems += [Finding(("stages", *path), message) for path, message in release_checks.release_problems(stages)]
    # artifact types Graylane cannot fetch (owned by pipelines/artifacts.py)
    problems += [Finding(path, message) for path, message in artifacts.type_problems(body)]
    return problems


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_parameters(params: Any, path: tuple[str | int, ...], typed: bool = False) -> list[Finding]:
    out: list[Finding] = []
    if not isinstance(params, list):
        return [Finding(path, "must be a list")]
    seen: set[str] = set()
    for i, p in enumerate(params):
        here = (*path, i)
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p.get("name"):
            out.append(Finding(here, "each parameter needs a `name`"))
            continue
        if p["name"] in seen:
            out.append(Finding((*here, "name"), f"duplicate parameter name {p['name']!r}"))
        seen.add(p["name"])
        ptype = p.get("type")
        if typed and ptype is not None and ptype not in PARAM_TYPES:
            out.append(Finding((*here, "type"), f"unknown type {ptype!r} (expected one of "
                                                f"{', '.join(sorted(PARAM_TYPES))})"))
        options = p.get("options")
        if options is not None and not isinstance(options, list):
            out.append(Finding((*here, "options"), "must be a list of {value}"))
    return out


def _check_triggers(triggers: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    for i, trig in enumerate(triggers):
        if not isinstance(trig, dict) or not isinstance(trig.get("type"), str):
            out.append(Finding(("triggers", i), "each trigger needs a `type`"))
            continue
        if trig["type"] not in TRIGGER_TYPES:
            out.append(Finding(("triggers", i, "type"), f"unknown trigger type {trig['type']!r} (Spinnaker's types: "
                                                        f"{', '.join(sorted(TRIGGER_TYPES))}; Graylane fires "
                                                        f"{', '.join(sorted(FIRED_TRIGGER_TYPES))})"))
        if trig["type"] == "webhook" and not trig.get("source"):
            out.append(Finding(("triggers", i, "source"), "a webhook trigger needs a `source`"))
        if trig["type"] == "cron" and not trig.get("cronExpression"):
            out.append(Finding(("triggers", i, "cronExpression"), "a cron trigger needs a `cronExpression`"))
        if trig["type"] == "pipeline" and not trig.get("pipeline"):
            out.append(Finding(("triggers", i, "pipeline"), "a pipeline trigger needs the upstream `pipeline`"))
    return out


def _check_expected_artifacts(expected: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    seen: set[str] = set()
    for i, ea in enumerate(expected):
        if not isinstance(ea, dict) or not ea.get("id"):
            out.append(Finding(("expectedArtifacts", i), "each expected artifact needs an `id`"))
            continue
        if ea["id"] in seen:
            out.append(Finding(("expectedArtifacts", i, "id"), f"duplicate expected artifact id {ea['id']!r}"))
        seen.add(ea["id"])
    return out


def _check_stages(stages: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    refs: dict[str, int] = {}
    unsupported = compat.unsupported_types(stages)
    if unsupported:  # one finding for all of them, listing what Graylane runs
        out.append(Finding(("stages", unsupported[0][0], "type"), unsupported[1]))
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            out.append(Finding(("stages", i), "each stage must be a JSON object"))
            continue
        label = _stage_label(stage, i)
        stype = stage.get("type")
        if not isinstance(stype, str) or not stype:
            out.append(Finding(("stages", i, "type"), f"{label} has no `type`"))
        ref = stage.get("refId")
        if ref in (None, ""):
            out.append(Finding(("stages", i), f"{label} has no `refId` (either every stage has one, or none)"))
        elif ref in refs:
            out.append(Finding(("stages", i, "refId"), f"{label}: duplicate refId {ref!r} "
                                                       f"(also on stages[{refs[ref]}])"))
        else:
            refs[str(ref)] = i
        if stype == "manualJudgment" and not (isinstance(stage.get("name"), str) and stage["name"].strip()):
            out.append(Finding(("stages", i, "name"), f"{label}: a manualJudgment stage needs a `name` "
                                                      "(expressions find it with #judgment('name'))"))
        if stage.get("name") is not None and not isinstance(stage.get("name"), str):
            out.append(Finding(("stages", i, "name"), f"{label}: `name` must be a string"))
        if "customParamConfig" in stage:
            out += _check_parameters(stage["customParamConfig"], ("stages", i, "customParamConfig"), typed=True)
        se = stage.get("stageEnabled")
        if se is not None and (not isinstance(se, dict) or str(se.get("type", "expression")).lower() != "expression"):
            out.append(Finding(("stages", i, "stageEnabled"), f"{label}: stageEnabled must be "
                                                              '{"type": "expression", "expression": "..."}'))
        for key in ("stageTimeoutMs",):
            val = stage.get(key)
            if val is not None and not (isinstance(val, int) and not isinstance(val, bool) and val > 0) and not (
                    isinstance(val, str) and ("${" in val or val.isdigit())):
                out.append(Finding(("stages", i, key), f"{label}: {key} must be a positive integer (milliseconds)"))
        for path, message in evaluation.syntax_errors(stage):
            out.append(Finding(("stages", i, *path), f"{label}: {message}"))
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        reqs = stage.get("requisiteStageRefIds") or []
        if not isinstance(reqs, list):
            out.append(Finding(("stages", i, "requisiteStageRefIds"), "must be a list of refIds"))
            continue
        for j, req in enumerate(reqs):
            if str(req) not in refs:
                out.append(Finding(("stages", i, "requisiteStageRefIds", j),
                                   f"{_stage_label(stage, i)}: requisite refId {req!r} points to no stage "
                                   f"(refIds: {', '.join(sorted(refs)) or 'none'})"))
            elif str(req) == str(stage.get("refId")):
                out.append(Finding(("stages", i, "requisiteStageRefIds", j),
                                   f"{_stage_label(stage, i)} lists itself as a requisite"))
    cycle = _find_cycle(stages, refs)
    if cycle:
        out.append(Finding(("stages",), "the stage graph has a cycle: " + " -> ".join(cycle)))
    return out


def _find_cycle(stages: list[Any], refs: dict[str, int]) -> list[str]:
    graph: dict[str, list[str]] = {}
    for stage in stages:
        if isinstance(stage, dict) and stage.get("refId") not in (None, ""):
            reqs = stage.get("requisiteStageRefIds") or []
            graph[str(stage["refId"])] = [str(r) for r in reqs if str(r) in refs] if isinstance(reqs, list) else []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1 and nxt != node:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def validate(body: Any, *, where: str = "<api>", line_of: Any = None) -> dict[str, Any]:
    """Normalise and validate; raise ValidationError naming the first problem (and how many more)."""
    if not isinstance(body, dict):
        raise ValidationError("a pipeline must be a JSON object", where=where)
    norm = normalise(body)
    problems = find_problems(norm)
    if problems:
        first = problems[0]
        loc = where
        if line_of is not None:
            loc = f"{where}:{line_of(first.path)}"
        more = f"{len(problems) - 1} more problem(s): " + "; ".join(str(p) for p in problems[1:4]) \
            if len(problems) > 1 else None
        raise ValidationError(str(first), where=loc, hint=more)
    return norm


def stage_graph_order(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stages in a topological order (stable on input order), for display."""
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    pending = list(stages)
    while pending:
        progressed = False
        for stage in list(pending):
            if all(r in done for r in stage.get("requisiteStageRefIds") or []):
                out.append(stage)
                done.add(str(stage["refId"]))
                pending.remove(stage)
                progressed = True
        if not progressed:
            out += pending
            break
    return out


def canonical(body: dict[str, Any]) -> str:
    """A stable JSON text for comparing two versions."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def config_diff(old: dict[str, Any], new: dict[str, Any], old_label: str = "a", new_label: str = "b") -> str:
    """A unified diff of two pipeline versions (pretty JSON, sorted keys)."""
    import difflib

    a = json.dumps(old, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)
    b = json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, old_label, new_label))
