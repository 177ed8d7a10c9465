"""The `#name(...)` helper functions pipelines call, in one registry, each documented.

Names and behaviour follow kork's and orca's ExpressionFunctionProviders (spinnaker.md §3.4);
messages name the call and the argument, and list what exists.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from graylane.errors import ValidationError
from graylane.expressions import urls
from graylane.expressions.context import EvaluationContext, ExpressionOptions, StageRef, deployed_server_groups
from graylane.expressions.errors import FunctionError, LimitExceeded
from graylane.expressions.methods import INT_MAX, INT_MIN
from graylane.expressions.plain import to_plain
from graylane.expressions.semantics import Meter, NotEvaluable, is_number, preview, to_string, type_name
from graylane.expressions.statics import parse_java_double
from graylane.resources import yamlsafe


class Evaluator(Protocol):
    """What a helper may use of the evaluator running it (graylane.expressions.evaluate.Evaluator)."""

    ctx: EvaluationContext
    options: ExpressionOptions
    meter: Meter

    def spend_size(self, size: int, pos: int | None) -> None: ...

def quote(value: Any) -> str:
    """An argument as it would be written in the expression: "text", 5, null."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    text = preview(value, 80)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(slots=True)
class Call:
    """One helper invocation: the evaluator (context, options), the name used and the position."""

    evaluator: Evaluator
    name: str
    args: tuple[Any, ...]
    position: int

    @property
    def signature(self) -> str:
        return f"#{self.name}({', '.join(quote(a) for a in self.args)})"

    def fail(self, message: str, hint: str | None = None) -> FunctionError:
        return FunctionError(f"{self.signature}: {message}", position=self.position, hint=hint)

    @property
    def stages(self) -> list[Mapping[str, Any]]:
        return self.evaluator.ctx.stages

    @property
    def execution_label(self) -> str:
        ident = self.evaluator.ctx.execution.get("id")
        return f"this execution ({ident})" if ident else "this execution"

    def stage_names(self, stages: list[Mapping[str, Any]] | None = None) -> str:
        names = [quote(s.get("name")) for s in (self.stages if stages is None else stages)]
        return ", ".join(names) if names else "none"


@dataclass(frozen=True, slots=True)
class Helper:
    fn: Callable[..., Any]
    min_args: int
    max_args: int
    doc: str

    def call(self, evaluator: Evaluator, name: str, args: list[Any], position: int) -> Any:
        call = Call(evaluator, name, tuple(args), position)
        if not self.min_args <= len(args) <= self.max_args:
            want = str(self.min_args) if self.min_args == self.max_args else f"{self.min_args} to {self.max_args}"
            raise call.fail(f"takes {want} argument{'s' if self.max_args != 1 else ''}, got {len(args)}")
        return self.fn(call, *args)


REGISTRY: dict[str, Helper] = {}


def helper(*names: str, args: int | tuple[int, int]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    low, high = (args, args) if isinstance(args, int) else args

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            REGISTRY[name] = Helper(fn, low, high, (fn.__doc__ or "").strip())
        return fn

    return register


def _need_str(call: Call, value: Any, what: str = "the argument") -> str:
    if not isinstance(value, str):
        raise call.fail(f"{what} must be a String, not {type_name(value)}")
    return value


# -- stages ---------------------------------------------------------------------------------------

def _stage_by_name_or_id(call: Call, key: Any) -> Mapping[str, Any] | None:
    for stage in call.stages:
        if stage.get("name") == key or (stage.get("id") is not None and str(stage.get("id")) == key):
            return stage
    return None


@helper("stage", args=1)
def stage(call: Call, key: Any) -> StageRef:
    """The first stage whose name or id equals the argument: `#stage("Deploy")["context"]`, `["status"]`."""
    found = _stage_by_name_or_id(call, _need_str(call, key, "the stage name or id"))
    if found is None:
        raise call.fail(f"no stage named {quote(key)} in {call.execution_label}; stages are: {call.stage_names()}")
    return StageRef(found)


@helper("stageByRefId", args=1)
def stage_by_ref_id(call: Call, ref_id: Any) -> StageRef:
    """The stage with this refId (`"3"`, or `"3<1"` for a synthetic one)."""
    if ref_id is None:
        raise call.fail("the refId is null")
    for s in call.stages:
        if str(s.get("refId")) == to_string(ref_id):
            return StageRef(s)
    refs = ", ".join(quote(str(s.get("refId"))) for s in call.stages) or "none"
    raise call.fail(f"no stage with refId {quote(ref_id)} in {call.execution_label}; refIds are: {refs}")


@helper("stageExists", args=1)
def stage_exists(call: Call, key: Any) -> bool:
    """True when a stage with this name or id exists."""
    return _stage_by_name_or_id(call, key) is not None if isinstance(key, str) else False


@helper("currentStage", args=0)
def current_stage(call: Call) -> StageRef:
    """The stage being evaluated."""
    current = call.evaluator.ctx.current_stage
    if current is None:
        raise call.fail("there is no current stage (the expression is evaluated outside a stage)")
    return StageRef(current)


@helper("currentUser", args=0)
def current_user(call: Call) -> str:
    """The user running the evaluation, or "anonymous"."""
    return call.evaluator.ctx.user or "anonymous"


@helper("judgment", "judgement", args=1)
def judgment(call: Call, name: Any) -> Any:
    """The option chosen in the named manualJudgment stage (`context.judgmentInput`).

    Fails when the stage is missing, skipped, or has no input yet; guard with the stage status.
    """
    name = _need_str(call, name, "the stage name")
    judgments = [s for s in call.stages if s.get("type") == "manualJudgment"]
    named = [s for s in call.stages if s.get("name") == name]
    for s in named:
        context = s.get("context")
        if s.get("type") == "manualJudgment" and isinstance(context, Mapping) and \
                context.get("judgmentInput") is not None:
            return context["judgmentInput"]
    guard = f'guard it with #stage({quote(name)})["status"].toString() == "SUCCEEDED"'
    if not named:
        raise call.fail(f"no manualJudgment stage named {quote(name)} in {call.execution_label}; "
                        f"manual judgments are: {call.stage_names(judgments)}")
    kinds = [s for s in named if s.get("type") == "manualJudgment"]
    if not kinds:
        raise call.fail(f"stage {quote(name)} is a {named[0].get('type')} stage, not a manualJudgment")
    status = kinds[0].get("status", "NOT_STARTED")
    if status == "SKIPPED":
        raise call.fail(f"the manual judgment {quote(name)} was skipped, so it has no input", hint=guard)
    raise call.fail(f"the manual judgment {quote(name)} has no judgmentInput (status {status}); "
                    "no option was chosen", hint=guard)


@helper("manifestLabelValue", args=3)
def manifest_label_value(call: Call, stage_name: Any, kind: Any, label: Any) -> Any:
    """A pod-template label of the `kind` (Deployment or ReplicaSet) manifest a SUCCEEDED deployManifest deployed."""
    stage_name = _need_str(call, stage_name, "the stage name")
    if kind not in ("Deployment", "ReplicaSet"):  # orca's ManifestLabelValueExpressionFunctionProvider
        raise call.fail(f"only Deployments and ReplicaSets are valid kinds for this function, not {quote(kind)}")
    if label is None:
        raise call.fail("a label key is required")
    label = _need_str(call, label, "the label key")
    deploys = [s for s in call.stages if s.get("type") == "deployManifest"]
    named = [s for s in deploys if s.get("name") == stage_name]
    found = next((s for s in named if s.get("status") == "SUCCEEDED"), None)
    if found is None and named:
        raise call.fail(f"the deployManifest stage {quote(stage_name)} has not SUCCEEDED (status "
                        f"{named[0].get('status', 'NOT_STARTED')}); only a succeeded deploy counts")
    if found is None:
        raise call.fail(f"no deployManifest stage named {quote(stage_name)} in {call.execution_label}; "
                        f"deploy stages are: {call.stage_names(deploys)}")
    context = found.get("context") if isinstance(found.get("context"), Mapping) else {}
    outputs = found.get("outputs") if isinstance(found.get("outputs"), Mapping) else {}
    manifests = context.get("outputs.manifests") or outputs.get("outputs.manifests") or context.get("manifests")
    manifests = manifests if isinstance(manifests, list) else []
    manifest = next((m for m in manifests if isinstance(m, Mapping) and m.get("kind") == kind), None)
    if manifest is None:
        kinds = ", ".join(quote(m.get("kind")) for m in manifests if isinstance(m, Mapping)) or "none"
        raise call.fail(f"stage {quote(stage_name)} deployed no {quote(kind)} manifest; kinds: {kinds}")
    labels: Any = manifest
    for key in ("spec", "template", "metadata", "labels"):
        labels = labels.get(key) if isinstance(labels, Mapping) else None
    if not isinstance(labels, Mapping) or label not in labels:
        raise call.fail(f"the {kind} manifest has no pod-template label {quote(label)}")
    return labels[label]


@helper("deployedServerGroups", args=(0, 64))
def deployed_server_groups_helper(call: Call, *ids: Any) -> list[dict[str, Any]]:
    """The server groups SUCCEEDED deploy stages created (all of them, or those of the stage names or ids given)."""
    return deployed_server_groups(call.stages, tuple(to_string(i) for i in ids if i is not None))


@helper("cfServiceKey", args=1)
def cf_service_key(call: Call, key: Any) -> Mapping[str, Any]:
    """The `serviceKey` a SUCCEEDED Cloud Foundry createServiceKey stage (name or id) created; {} when none."""
    for s in call.stages:
        if s.get("type") != "createServiceKey" or s.get("status") != "SUCCEEDED":
            continue
        if s.get("name") != key and (s.get("id") is None or str(s.get("id")) != key):
            continue
        raw = s.get("context")
        context: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        tasks = context.get("kato.tasks")
        if tasks is None:
            return {}
        results = tasks[0].get("resultObjects") if isinstance(tasks, list) and tasks and \
            isinstance(tasks[0], Mapping) else None
        if not isinstance(results, list) or not results or not isinstance(results[0], Mapping):
            raise call.fail(f"the createServiceKey stage {quote(key)} has no result objects in its kato.tasks")
        service_key = results[0].get("serviceKey")
        return service_key if isinstance(service_key, Mapping) else {}
    return {}


# -- trigger artifacts and pipelines --------------------------------------------------------------

def _bound_artifacts(call: Call) -> list[Mapping[str, Any]]:
    """The `boundArtifact` of each of the trigger's resolvedExpectedArtifacts (orca searches nothing else)."""
    found: list[Mapping[str, Any]] = []
    for expected in call.evaluator.ctx.trigger.get("resolvedExpectedArtifacts") or []:
        if isinstance(expected, Mapping) and isinstance(expected.get("boundArtifact"), Mapping):
            found.append(expected["boundArtifact"])
    return found


@helper("resolvedArtifacts", args=0)
def resolved_artifacts(call: Call) -> list[Mapping[str, Any]]:
    """Every artifact the execution's stages output (`outputs.artifacts` of each stage, in stage order)."""
    found: list[Mapping[str, Any]] = []
    for s in call.stages:
        outputs = s.get("outputs")
        artifacts = outputs.get("artifacts") if isinstance(outputs, Mapping) else None
        if isinstance(artifacts, list):
            found += [a for a in artifacts if isinstance(a, Mapping)]
    return found


def _no_bound_artifact(call: Call, what: str, artifacts: list[Mapping[str, Any]]) -> FunctionError:
    listed = ", ".join(f"{quote(a.get('name'))} ({a.get('type')})" for a in artifacts) or "none"
    loose = call.evaluator.ctx.trigger.get("artifacts")
    hint = ("the trigger's own `artifacts` are not searched (as in Spinnaker): declare an expected artifact that "
            "matches it") if isinstance(loose, list) and loose else None
    return call.fail(f"no resolved artifact {what} in the trigger of {call.execution_label} (only the bound "
                     f"artifacts of trigger.resolvedExpectedArtifacts count); bound artifacts: {listed}", hint=hint)


@helper("triggerResolvedArtifact", args=1)
def trigger_resolved_artifact(call: Call, name: Any) -> Mapping[str, Any]:
    """The trigger's bound expected artifact with this name (`["reference"]`, `["version"]`)."""
    artifacts = _bound_artifacts(call)
    for artifact in artifacts:
        if artifact.get("name") == name:
            return artifact
    raise _no_bound_artifact(call, f"named {quote(name)}", artifacts)


@helper("triggerResolvedArtifactByType", args=1)
def trigger_resolved_artifact_by_type(call: Call, kind: Any) -> Mapping[str, Any]:
    """The trigger's first bound expected artifact of this type (e.g. "docker/image")."""
    artifacts = _bound_artifacts(call)
    for artifact in artifacts:
        if artifact.get("type") == kind:
            return artifact
    raise _no_bound_artifact(call, f"of type {quote(kind)}", artifacts)


def _pipeline_id(call: Call, name: Any, application: Any) -> str | None:
    name = _need_str(call, name, "the pipeline name")
    lookup = call.evaluator.options.pipeline_lookup
    if lookup is not None:
        return lookup(name, application)
    execution = call.evaluator.ctx.execution
    same_app = application is None or application == execution.get("application")
    if same_app and execution.get("name") == name and execution.get("pipelineConfigId"):
        return str(execution["pipelineConfigId"])
    return None


@helper("pipelineId", args=1)
def pipeline_id(call: Call, name: Any) -> str:
    """The config id of the pipeline with this name in the execution's application."""
    found = _pipeline_id(call, name, call.evaluator.ctx.execution.get("application"))
    if found is None:
        raise call.fail(f"no pipeline named {quote(name)} in application "
                        f"{quote(call.evaluator.ctx.execution.get('application'))}")
    return found


@helper("pipelineIdOrNull", args=1)
def pipeline_id_or_null(call: Call, name: Any) -> str | None:
    """Like #pipelineId, but null when there is no such pipeline."""
    return _pipeline_id(call, name, call.evaluator.ctx.execution.get("application"))


@helper("pipelineIdInApplication", args=2)
def pipeline_id_in_application(call: Call, name: Any, application: Any) -> str:
    """The config id of the pipeline with this name in another application."""
    found = _pipeline_id(call, name, _need_str(call, application, "the application"))
    if found is None:
        raise call.fail(f"no pipeline named {quote(name)} in application {quote(application)}")
    return found


# -- conversions ----------------------------------------------------------------------------------

_JAVA_INT = re.compile(r"[+-]?[0-9]+")


@helper("toInt", args=1)
def to_int(call: Call, value: Any) -> int:
    """Integer.valueOf: "50" -> 50; "abc", "5.0", " 5" and values past 32 bits fail."""
    if is_number(value):
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise call.fail("not an integer")
            value = int(value)
        if not INT_MIN <= value <= INT_MAX:
            raise call.fail("out of range for an int (32 bits)")
        return value
    if value is None:
        raise call.fail("not an integer (the value is null; is the key spelled right?)")
    if not isinstance(value, str):
        raise call.fail(f"not an integer ({type_name(value)})")
    if not _JAVA_INT.fullmatch(value):
        hint = "remove the spaces around it" if _JAVA_INT.fullmatch(value.strip()) else None
        raise call.fail("not an integer", hint=hint)
    number = int(value)
    if not INT_MIN <= number <= INT_MAX:
        raise call.fail("out of range for an int (32 bits)")
    return number


@helper("toFloat", args=1)
def to_float(call: Call, value: Any) -> float:
    """Float.valueOf: "1.5" -> 1.5."""
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        parsed = parse_java_double(value)
        if parsed is not None:
            return parsed
    raise call.fail("not a number")


@helper("toBoolean", args=1)
def to_boolean(call: Call, value: Any) -> bool:
    """Boolean.valueOf: "true" (any case) -> true; anything else -> false."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.lower() == "true"


@helper("toJson", args=1)
def to_json(call: Call, value: Any) -> str:
    """Compact JSON of a value; refuses text that still contains `${` unless wrapped in #doNotEval."""
    options = call.evaluator.options
    raw = value.value if isinstance(value, NotEvaluable) else value
    plain = to_plain(raw, max_size=options.max_result_size, position=call.position)
    text = json.dumps(plain, ensure_ascii=False, separators=(",", ":"), default=to_string, allow_nan=True)
    if not isinstance(value, NotEvaluable) and "${" in text:
        raise call.fail("the result for toJson cannot contain an expression (wrap the value in #doNotEval)")
    return text


def _bounded_text(call: Call, value: Any) -> str:
    text = _need_str(call, value)
    if len(text) > call.evaluator.options.max_string_length:
        raise LimitExceeded(f"#{call.name}: the text is longer than {call.evaluator.options.max_string_length} "
                            "characters", position=call.position)
    return text


@helper("readJson", args=1)
def read_json(call: Call, text: Any) -> Any:
    """Parse a JSON string into maps and lists."""
    text = _bounded_text(call, text)
    call.evaluator.spend_size(len(text), call.position)  # a parsed value holds at most one node per character
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise call.fail(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise call.fail("the JSON nests too deeply") from None


def _yaml_documents(call: Call, text: Any) -> list[Any]:
    """Every document, through the same alias budget as manifests; the size counts against the expression's."""
    text = _bounded_text(call, text)
    builder = yamlsafe.Builder("<text>", timestamps_as_text=False, merge_keys=True,
                               tick=call.evaluator.meter.check_time)
    try:
        documents = [None if node is None else builder.build(node) for node in yamlsafe.compose_all(text, "<text>")]
    except ValidationError as exc:
        line = exc.where.rpartition(":")[2] if exc.where and ":" in exc.where else ""
        raise call.fail(f"not valid YAML: {exc.message.removeprefix('invalid YAML: ')}"
                        + (f" at line {line}" if line else "")) from None
    call.evaluator.spend_size(len(text) + builder.repeats, call.position)
    return documents


@helper("readYaml", args=1)
def read_yaml(call: Call, text: Any) -> Any:
    """Parse one YAML document."""
    documents = _yaml_documents(call, text)
    if len(documents) > 1:
        raise call.fail(f"not valid YAML: expected a single document, found {len(documents)} (use #readAllYaml)")
    return documents[0] if documents else None


@helper("readAllYaml", args=1)
def read_all_yaml(call: Call, text: Any) -> list[Any]:
    """Parse every document of a multi-document YAML string into a list."""
    return _yaml_documents(call, text)


@helper("toBase64", args=1)
def to_base64(call: Call, text: Any) -> str:
    """Base64 of the UTF-8 bytes of a string."""
    return base64.b64encode(_bounded_text(call, text).encode("utf-8")).decode("ascii")


@helper("fromBase64", args=1)
def from_base64(call: Call, text: Any) -> str:
    """Decode base64 into a UTF-8 string."""
    try:
        return base64.b64decode(_bounded_text(call, text), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise call.fail("not valid base64 of UTF-8 text") from None


@helper("alphanumerical", args=1)
def alphanumerical(call: Call, text: Any) -> str:
    """Only the ASCII letters and digits of a string: "my-app_v2" -> "myappv2"."""
    return re.sub(r"[^A-Za-z0-9]", "", _need_str(call, text))


@helper("doNotEval", args=1)
def do_not_eval(call: Call, value: Any) -> NotEvaluable:
    """Mark a value to be returned as is (its `${...}` text is not evaluated)."""
    return NotEvaluable(value)


# -- URLs (off by default) ------------------------------------------------------------------------

@helper("fromUrl", args=1)
def from_url(call: Call, url: Any) -> str:
    """The body of an http(s) URL on a public address (disabled unless the operator enables it)."""
    try:
        return urls.fetch_text(url, call.evaluator.options, call.name)
    except FunctionError as exc:
        exc.position = call.position
        raise


@helper("jsonFromUrl", args=1)
def json_from_url(call: Call, url: Any) -> Any:
    """#fromUrl, parsed as JSON."""
    return read_json(call, from_url(call, url))


@helper("yamlFromUrl", args=1)
def yaml_from_url(call: Call, url: Any) -> Any:
    """#fromUrl, parsed as YAML."""
    return read_yaml(call, from_url(call, url))


_PROPERTY_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape_property(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_PROPERTY_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """java.util.Properties.load: `#`/`!` comments, `key=value`, `key: value` or `key value`, `\\` line
    continuations, `\\t \\n \\uXXXX` escapes; a later key wins."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    out: dict[str, str] = {}
    for line in logical:
        i = 0
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] in "=: \t\f":
                break
            i += 1
        key, rest = line[:i], line[i:]
        rest = rest.lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        out[_unescape_property(key)] = _unescape_property(rest)
    return out


@helper("propertiesFromUrl", args=1)
def properties_from_url(call: Call, url: Any) -> dict[str, str]:
    """#fromUrl, parsed as Java properties (`key=value` lines) into a map."""
    return parse_properties(from_url(call, url))
