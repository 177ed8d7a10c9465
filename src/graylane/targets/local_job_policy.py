"""A Job's spec as the local target runs it (`graylane.targets.local_jobs`): read and refused as the API server
refuses it, and its `podFailurePolicy` applied to a failed pod as the Job controller applies it.

`job_spec` reads `backoffLimit`, `activeDeadlineSeconds`, the pod's `restartPolicy`, `completions`, `parallelism`,
`completionMode`, `suspend`, `ttlSecondsAfterFinished`, `podFailurePolicy` and, for an Indexed Job with
`restartPolicy: Never`, `backoffLimitPerIndex` and `maxFailedIndexes` (the rule action `FailIndex` needs the
first; `backoffLimit` then defaults to the largest int32). Rules with `onPodConditions` (the Kubernetes docs' own
example ignores `DisruptionTarget`) are checked as the API server checks them and kept, but match no local pod:
the local runtime runs pods as processes that nothing evicts, preempts or drains, so a failed local pod never
carries such a condition. `match_failure_policy` finds the first rule a failed pod matches (`onExitCodes`,
`containerName`, `In`/`NotIn`) and words the Job's `PodFailurePolicy` message as the controller does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.document import Document

DEFAULT_BACKOFF_LIMIT = 6  # the Job API's default
MAX_COMPLETIONS = 1000  # bounds on what one local job may ask for (the API allows more; local pods are processes)
MAX_PARALLELISM = 100
MAX_RULES = 20  # the API's limits on podFailurePolicy
MAX_EXIT_CODES = 255
ACTIONS = ("FailJob", "Ignore", "Count", "FailIndex")
MAX_INT32 = 2**31 - 1  # backoffLimit's default when backoffLimitPerIndex is set
MAX_FAILED_INDEXES = 100_000  # the API's cap on maxFailedIndexes


@dataclass
class JobSpec:
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    active_deadline_s: int | None = None
    restart_policy: str = "Never"
    completions: int = 1
    parallelism: int = 1
    indexed: bool = False
    suspend: bool = False
    ttl_s: int | None = None
    failure_rules: list[dict[str, Any]] = field(default_factory=list)
    work_queue: bool = False  # `completions` unset, `parallelism` > 1 (JobRecord.work_queue)
    backoff_limit_per_index: int | None = None  # Indexed only: each index's own failure budget
    max_failed_indexes: int | None = None  # with backoff_limit_per_index: more failed indexes fail the Job


def job_spec(doc: Document, namespace: str) -> JobSpec:
    """The Job's spec, each field checked as the API server checks it (the error names the field)."""
    spec = doc.spec or {}
    pod_spec = ((spec.get("template") or {}).get("spec") or {}) if isinstance(spec.get("template"), dict) else {}

    def refuse(path: tuple[str, ...], what: str) -> ValidationError:
        return ValidationError(f"Job {namespace}/{doc.name} is invalid: {'.'.join(path)}: {what}",
                               where=doc.where(path))

    def count(name: str, bound: int | None = None) -> int | None:
        value = spec.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise refuse(("spec", name), f"Invalid value: {json.dumps(value)}: must be greater than or equal to 0")
        if bound is not None and value > bound:
            raise refuse(("spec", name), f"Invalid value: {value}: must be less than or equal to {bound} on the "
                                         "local target")
        return value

    limit, deadline = count("backoffLimit"), count("activeDeadlineSeconds")
    completions, parallelism = count("completions", MAX_COMPLETIONS), count("parallelism", MAX_PARALLELISM)
    ttl = count("ttlSecondsAfterFinished")
    policy = pod_spec.get("restartPolicy") or "Never"
    if policy not in ("Never", "OnFailure"):
        raise refuse(("spec", "template", "spec", "restartPolicy"),
                     f"Unsupported value: {json.dumps(policy)}: supported values: \"OnFailure\", \"Never\"")
    mode = spec.get("completionMode") or "NonIndexed"
    if mode not in ("NonIndexed", "Indexed"):
        raise refuse(("spec", "completionMode"),
                     f"Unsupported value: {json.dumps(mode)}: supported values: \"NonIndexed\", \"Indexed\"")
    if mode == "Indexed" and completions is None:
        raise refuse(("spec", "completions"), "Required value: when completion mode is Indexed")
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise refuse(("spec", "suspend"), f"Invalid value: {json.dumps(suspend)}: must be true or false")
    per_index, max_failed = count("backoffLimitPerIndex"), count("maxFailedIndexes")
    if per_index is not None and mode != "Indexed":
        raise refuse(("spec", "backoffLimitPerIndex"), "Forbidden: requires indexed completion mode")
    if max_failed is not None:
        if per_index is None:
            raise refuse(("spec", "backoffLimitPerIndex"), "Required value: when maxFailedIndexes is specified")
        if max_failed > MAX_FAILED_INDEXES:
            raise refuse(("spec", "maxFailedIndexes"),
                         f"Invalid value: {max_failed}: must be less than or equal to {MAX_FAILED_INDEXES}")
        if completions is not None and max_failed > completions:
            raise refuse(("spec", "maxFailedIndexes"),
                         f"Invalid value: {max_failed}: must be less than or equal to completions")
    if per_index is not None and policy != "Never":
        raise refuse(("spec", "template", "spec", "restartPolicy"),
                     f"Invalid value: {json.dumps(policy)}: only \"Never\" is supported when backoffLimitPerIndex "
                     "is specified")
    rules = _failure_rules(spec.get("podFailurePolicy"), str(policy), refuse, per_index is not None)
    parallel = 1 if parallelism is None else parallelism
    if limit is None:
        limit = DEFAULT_BACKOFF_LIMIT if per_index is None else MAX_INT32
    return JobSpec(limit, deadline, str(policy), 1 if completions is None else completions, parallel,
                   mode == "Indexed", suspend, ttl, rules, work_queue=completions is None and parallel > 1,
                   backoff_limit_per_index=per_index, max_failed_indexes=max_failed)


def _failure_rules(raw: Any, restart_policy: str, refuse: Any, per_index: bool) -> list[dict[str, Any]]:
    if raw is None:
        return []
    base = ("spec", "podFailurePolicy")
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise refuse(base + ("rules",), "Required value: a list of rules")
    if restart_policy != "Never":
        raise refuse(("spec", "template", "spec", "restartPolicy"),
                     f"Invalid value: {json.dumps(restart_policy)}: only \"Never\" is supported when "
                     "podFailurePolicy is specified")
    rules = raw["rules"]
    if len(rules) > MAX_RULES:
        raise refuse(base + ("rules",), f"Too many: {len(rules)}: must have at most {MAX_RULES} items")
    out: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        at = base + (f"rules[{i}]",)
        if not isinstance(rule, dict):
            raise refuse(at, "Invalid value: must be an object")
        action = rule.get("action")
        if action not in ACTIONS:
            raise refuse(at + ("action",), f"Unsupported value: {json.dumps(action)}: supported values: "
                                           + ", ".join(f'"{a}"' for a in ACTIONS))
        if action == "FailIndex" and not per_index:
            raise refuse(at + ("action",), 'Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set')
        conditions, codes = rule.get("onPodConditions"), rule.get("onExitCodes")
        if conditions is not None and codes is not None:
            raise refuse(at, "Invalid value: specify one of onExitCodes and onPodConditions, but not both")
        if conditions is not None:
            out.append({"action": action, "conditions": _pod_conditions(conditions, at, refuse)})
            continue
        if not isinstance(codes, dict):
            raise refuse(at + ("onExitCodes",), "Required value: specify one of onExitCodes and onPodConditions")
        operator = codes.get("operator")
        if operator not in ("In", "NotIn"):
            raise refuse(at + ("onExitCodes", "operator"),
                         f"Unsupported value: {json.dumps(operator)}: supported values: \"In\", \"NotIn\"")
        values = codes.get("values")
        if not isinstance(values, list) or not values or len(values) > MAX_EXIT_CODES \
                or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise refuse(at + ("onExitCodes", "values"),
                         f"Invalid value: {json.dumps(values)[:200]}: 1 to {MAX_EXIT_CODES} integer exit codes")
        if len(set(values)) != len(values):
            raise refuse(at + ("onExitCodes", "values"), f"Duplicate value: {json.dumps(values)[:200]}")
        if operator == "In" and 0 in values:
            raise refuse(at + ("onExitCodes", "values"), "Invalid value: 0: must not be 0 for the In operator")
        name = codes.get("containerName")
        if name is not None and not isinstance(name, str):
            raise refuse(at + ("onExitCodes", "containerName"), f"Invalid value: {json.dumps(name)[:100]}")
        out.append({"action": action, "operator": operator, "values": list(values), "containerName": name})
    return out


def _pod_conditions(raw: Any, at: tuple[str, ...], refuse: Any) -> list[dict[str, str]]:
    """`onPodConditions`: 1 to 20 `{type, status}` patterns (status True, False or Unknown; True when absent)."""
    where = at + ("onPodConditions",)
    if not isinstance(raw, list) or not raw:
        raise refuse(where, "Required value: at least one pod condition pattern")
    if len(raw) > MAX_RULES:
        raise refuse(where, f"Too many: {len(raw)}: must have at most {MAX_RULES} items")
    out = []
    for j, pattern in enumerate(raw):
        here = where[:-1] + (f"onPodConditions[{j}]",)
        if not isinstance(pattern, dict) or not isinstance(pattern.get("type"), str) or not pattern["type"]:
            raise refuse(here + ("type",), "Required value: a pod condition type, e.g. DisruptionTarget")
        status = pattern.get("status", "True")
        if status not in ("True", "False", "Unknown"):
            raise refuse(here + ("status",), f"Unsupported value: {json.dumps(status)[:100]}: supported values: "
                                             "\"True\", \"False\", \"Unknown\"")
        out.append({"type": pattern["type"], "status": status})
    return out


def match_failure_policy(rules: list[dict[str, Any]], pod: str, namespace: str,
                         containers: list[tuple[str, int | None]]) -> tuple[str, str] | None:
    """The first rule the failed pod matches: (action, message), or None (the default: Count). `containers` are
    (name, exit code) of its init and main containers; a code < 0 (killed by that signal) is read as the kubelet
    reports it, 128 + the signal. Containers that exited 0 or did not end are left out, as the controller does."""
    ended = [(name, 128 - code if code < 0 else code) for name, code in containers if code not in (None, 0)]
    for i, rule in enumerate(rules):
        if "conditions" in rule:
            continue  # onPodConditions: a local pod has no such condition (see the module's docstring)
        for name, code in ended:
            if rule["containerName"] not in (None, name):
                continue
            if (code in rule["values"]) == (rule["operator"] == "In"):
                return rule["action"], (f"Container {name} for pod {namespace}/{pod} failed with exit code {code} "
                                        f"matching {rule['action']} rule at index {i}")
    return None
