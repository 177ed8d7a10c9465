"""The evaluation context: Spinnaker's root object for one stage of one execution, and the limits.

Builds what orca's ContextParameterProcessor.buildExecutionContext + StageContext give SpEL:
`execution`, `trigger`, `parameters`, `scmInfo`, then the current stage's context keys, then
ancestor stages' outputs (nearest first). Reads the execution JSON; never changes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graylane.expressions.semantics import to_string

PipelineLookup = Callable[[str, str | None], str | None]
"""(pipeline name, application or None) -> pipeline config id, or None when there is none."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class ExpressionOptions:
    """Switches and limits for evaluation. The defaults are what a stage gets."""

    allow_url_functions: bool = False          # #fromUrl / #jsonFromUrl / #yamlFromUrl
    url_timeout_s: float = 5.0
    url_max_bytes: int = 1_000_000
    url_allowed_networks: tuple[str, ...] = ()  # CIDRs an operator explicitly trusts (e.g. a config server)
    max_steps: int = 100_000                   # evaluation steps per expression
    max_string_length: int = 1_000_000         # characters in any string built while evaluating
    max_result_size: int = 1_000_000           # rough JSON size of one expression's result
    max_total_size: int = 10_000_000           # characters/items all strings, lists and maps built may add up to
    max_time_s: float = 2.0                    # wall time for one expression (one templating pass in all)
    allow_unknown_keys: bool = True            # unknown map keys read as null (orca does this at stage time)
    clock: Callable[[], dt.datetime] = _utc_now
    pipeline_lookup: PipelineLookup | None = None


DEFAULT_OPTIONS = ExpressionOptions()


# orca's `execution` and its stages are Java objects (PipelineExecutionImpl, StageExecutionImpl), not maps: SpEL reads
# their getters, and a name with no getter fails ("requested getter stagess not found on type class
# ...PipelineExecutionImpl", as a recorded Spinnaker evaluation shows, tests/expressions/test_real_world.py) where
# a map's unknown key reads as null. A getter whose value the JSON leaves out reads as null. Their `context`,
# `outputs` and the root `trigger` are maps. (orca-api PipelineExecution / StageExecution and the Impl classes.)
EXECUTION_PROPERTIES = frozenset({
    "type", "id", "application", "name", "buildTime", "canceled", "canceledBy", "cancellationReason",
    "limitConcurrent", "maxConcurrentExecutions", "keepWaitingPipelines", "context", "stages", "startTime", "endTime",
    "startTimeExpiry", "status", "authentication", "paused", "origin", "trigger", "description", "pipelineConfigId",
    "source", "notifications", "spelEvaluator", "templateVariables", "partition", "size", "totalSize",
    "initialConfig", "systemNotifications"})
STAGE_PROPERTIES = frozenset({
    "id", "refId", "type", "name", "execution", "startTime", "endTime", "startTimeExpiry", "status", "context",
    "outputs", "tasks", "syntheticStageOwner", "parentStageId", "requisiteStageRefIds", "scheduledTime",
    "lastModified", "additionalMetricTags", "allowSiblingStagesToContinueOnFailure", "continuePipelineOnFailure",
    "parent", "topLevelStage", "parentWithTimeout", "timeout", "backoffPeriod", "join", "manualJudgmentType",
    "size", "allowedAccounts", "hasSucceeded", "hasFailed"})


class StageRef(Mapping[str, Any]):
    """A stage as `#stage(...)` and `execution.stages` give it: its JSON fields plus `hasSucceeded` / `hasFailed`;
    a name that is no StageExecution property fails (EXECUTION_PROPERTIES above)."""

    java_type = "StageExecution"
    pojo_properties = STAGE_PROPERTIES
    __slots__ = ("stage",)

    def __init__(self, stage: Mapping[str, Any]) -> None:
        self.stage = stage

    def __getitem__(self, key: str) -> Any:
        if key in self.stage:
            return self.stage[key]
        if key == "hasSucceeded":
            return self.stage.get("status") == "SUCCEEDED"
        if key == "hasFailed":
            return self.stage.get("status") == "TERMINAL"
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.stage)

    def __len__(self) -> int:
        return len(self.stage)

    def __contains__(self, key: object) -> bool:
        return key in self.stage or key in ("hasSucceeded", "hasFailed")


class ExecutionRef(Mapping[str, Any]):
    """`execution`: the execution JSON as orca's PipelineExecution object, its stages as StageRef."""

    java_type = "PipelineExecution"
    pojo_properties = EXECUTION_PROPERTIES
    __slots__ = ("execution", "_stages")

    def __init__(self, execution: Mapping[str, Any]) -> None:
        self.execution = execution
        self._stages: list[Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if key == "stages" and isinstance(self.execution.get("stages"), list):
            if self._stages is None:
                self._stages = [StageRef(s) if isinstance(s, Mapping) else s for s in self.execution["stages"]]
            return self._stages
        return self.execution[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.execution)

    def __len__(self) -> int:
        return len(self.execution)

    def __contains__(self, key: object) -> bool:
        return key in self.execution


def _stringify_parameters(params: Any) -> dict[str, Any]:
    """Trigger parameters reach SpEL as strings (they come from forms and query strings)."""
    if not isinstance(params, Mapping):
        return {}
    return {str(k): (to_string(v) if isinstance(v, bool | int | float) else v) for k, v in params.items()}


def _scm_info(trigger: Mapping[str, Any]) -> Any:
    """`scmInfo` as orca precomputes it: the first SCM entry of the trigger's build info, or git trigger fields."""
    build_info = trigger.get("buildInfo")
    if isinstance(build_info, Mapping):
        scm = build_info.get("scm")
        if isinstance(scm, list) and scm:
            return scm[0]
    if str(trigger.get("type", "")).lower() == "git" and trigger.get("hash"):
        return {"sha1": trigger.get("hash"), "branch": trigger.get("branch"),
                "name": trigger.get("slug") or trigger.get("project")}
    return None


class RootContext(Mapping[str, Any]):
    """`#root`: precomputed values, then the stage's context, then ancestor outputs (nearest first)."""

    java_type = "StageContext"
    __slots__ = ("precomputed", "stage_context", "_ancestors", "_find_ancestors", "fallback")

    def __init__(self, precomputed: dict[str, Any], stage_context: Mapping[str, Any],
                 ancestors: Callable[[], list[Mapping[str, Any]]], fallback: Mapping[str, Any]) -> None:
        self.precomputed = precomputed
        self.stage_context = stage_context
        self._ancestors: list[Mapping[str, Any]] | None = None
        self._find_ancestors = ancestors
        self.fallback = fallback

    @property
    def ancestors(self) -> list[Mapping[str, Any]]:
        """The current stage and its ancestors, nearest first (computed on the first miss)."""
        if self._ancestors is None:
            self._ancestors = self._find_ancestors()
        return self._ancestors

    def __getitem__(self, key: str) -> Any:
        if key in self.precomputed:
            return self.precomputed[key]
        if key == "deployedServerGroups":  # orca rewrites this bare name to #deployedServerGroups()
            execution = self.precomputed.get("execution")
            stages = _as_stages(execution) if isinstance(execution, Mapping) else []
            return deployed_server_groups(stages)
        if key in self.stage_context:
            return self.stage_context[key]
        for stage in self.ancestors:
            outputs = stage.get("outputs")
            if isinstance(outputs, Mapping) and key in outputs:
                return outputs[key]
        if key in self.fallback:
            return self.fallback[key]
        raise KeyError(key)

    def _keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for source in (self.precomputed, self.stage_context, self.fallback):
            seen.update(dict.fromkeys(source))
        for stage in self.ancestors:
            outputs = stage.get("outputs")
            if isinstance(outputs, Mapping):
                seen.update(dict.fromkeys(outputs))
        return list(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


def _as_stages(execution: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    stages = execution.get("stages")
    return [s for s in stages if isinstance(s, Mapping)] if isinstance(stages, list) else []


def ancestors_of(stages: list[Mapping[str, Any]], stage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The stage itself, then upstream (requisiteStageRefIds) and parent stages, breadth first."""
    by_ref: dict[str, list[Mapping[str, Any]]] = {}
    by_id: dict[str, Mapping[str, Any]] = {}
    for s in stages:
        by_ref.setdefault(str(s.get("refId")), []).append(s)
        if s.get("id") is not None:
            by_id[str(s.get("id"))] = s
    order: list[Mapping[str, Any]] = []
    seen: set[int] = set()
    queue = [stage]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        parent_id = current.get("parentStageId")
        for ref in current.get("requisiteStageRefIds") or []:
            # a synthetic stage's requisites are siblings under the same parent
            candidates = by_ref.get(str(ref), [])
            same_parent = [c for c in candidates if c.get("parentStageId") == parent_id]
            queue.extend(same_parent or candidates)
        if parent_id is not None and str(parent_id) in by_id:
            queue.append(by_id[str(parent_id)])
    return order


DEPLOY_STAGE_TYPES = ("deploy", "createServerGroup", "cloneServerGroup", "rollingPush")


def deployed_server_groups(stages: list[Mapping[str, Any]], ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """`#deployedServerGroups(ids...)` (and the bare `deployedServerGroups`), as orca's provider computes it.

    One entry per SUCCEEDED deploy-type stage (`deploy`, `createServerGroup`, `cloneServerGroup`,
    `rollingPush`) whose context has `deploy.server.groups`, limited to the stages named or with the ids given:
    `account`, `capacity`, `parentStage`, `region` (the context's, else the first availability-zone region), the
    fields of the `deploymentDetails` entry for that region (read like the stage's context, so a bake upstream
    supplies them through its outputs), `serverGroup` (the first one in that region) and `deployments` (from the
    `kato.tasks` result objects).
    """
    out: list[dict[str, Any]] = []
    for stage in stages:
        context = stage.get("context")
        if stage.get("type") not in DEPLOY_STAGE_TYPES or stage.get("status") != "SUCCEEDED" \
                or not isinstance(context, Mapping) or "deploy.server.groups" not in context:
            continue
        if ids and stage.get("name") not in ids and str(stage.get("id")) not in ids:
            continue
        region = context.get("region") if isinstance(context.get("region"), str) else None
        zones = context.get("availabilityZones")
        if region is None and isinstance(zones, Mapping) and zones:
            region = next(iter(zones))
        if region is None:
            continue
        details: dict[str, Any] = {"account": context.get("account"), "capacity": context.get("capacity"),
                                   "parentStage": context.get("parentStage"), "region": region}
        existing: Any = context.get("deploymentDetails")
        if existing is None:  # a StageContext: the nearest ancestor's output
            for ancestor in ancestors_of(stages, stage)[1:]:
                outputs = ancestor.get("outputs")
                if isinstance(outputs, Mapping) and "deploymentDetails" in outputs:
                    existing = outputs["deploymentDetails"]
                    break
        for entry in existing if isinstance(existing, list) else []:
            if isinstance(entry, Mapping) and entry.get("region") == region:
                details.update(entry)
        groups = context.get("deploy.server.groups")
        in_region = groups.get(region) if isinstance(groups, Mapping) else None
        if isinstance(in_region, list) and in_region:
            details["serverGroup"] = in_region[0]
        deployments: list[Any] = []
        tasks = context.get("kato.tasks")
        for task in tasks if isinstance(tasks, list) else []:
            results = task.get("resultObjects") if isinstance(task, Mapping) else None
            for result in results if isinstance(results, list) else []:
                found = result.get("deployments") if isinstance(result, Mapping) else None
                deployments += found if isinstance(found, list) else []
        details["deployments"] = deployments
        out.append(details)
    return out


@dataclass
class EvaluationContext:
    """One evaluation: the execution JSON (Spinnaker's shape), the current stage and the user."""

    execution: dict[str, Any]
    stage_id: str | None = None
    user: str | None = None
    options: ExpressionOptions = field(default_factory=lambda: DEFAULT_OPTIONS)
    variables: dict[str, Any] = field(default_factory=dict)  # extra `#name` variables (e.g. evaluateVariables)

    def __post_init__(self) -> None:
        self._root: RootContext | None = None
        self._stages: list[Mapping[str, Any]] | None = None

    @property
    def stages(self) -> list[Mapping[str, Any]]:
        if self._stages is None:
            self._stages = _as_stages(self.execution)
        return self._stages

    @property
    def current_stage(self) -> Mapping[str, Any] | None:
        """The stage named by `stage_id` (its `id`, else its `refId`)."""
        if self.stage_id is None:
            return None
        stages = self.stages
        for key in ("id", "refId"):
            for s in stages:
                if str(s.get(key)) == str(self.stage_id):
                    return s
        return None

    @property
    def trigger(self) -> Mapping[str, Any]:
        trigger = self.execution.get("trigger")
        return trigger if isinstance(trigger, Mapping) else {}

    @property
    def root(self) -> RootContext:
        if self._root is None:
            self._root = self._build_root()
        return self._root

    def _build_root(self) -> RootContext:
        trigger = self.trigger
        precomputed: dict[str, Any] = {
            "execution": ExecutionRef(self.execution),
            "trigger": trigger,
            "parameters": _stringify_parameters(trigger.get("parameters")),
        }
        scm = _scm_info(trigger)
        if scm is not None:
            precomputed["scmInfo"] = scm
        if isinstance(self.execution.get("templateVariables"), Mapping):
            precomputed["templateVariables"] = self.execution["templateVariables"]
        stage = self.current_stage
        if stage is None:
            # no stage: like orca's /pipelines/{id}/evaluateExpression, the execution itself is the root
            return RootContext(precomputed, {}, list, self.execution)
        context = stage.get("context")
        stages = self.stages
        return RootContext(precomputed, context if isinstance(context, Mapping) else {},
                           lambda: ancestors_of(stages, stage), {})
