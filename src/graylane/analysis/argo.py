"""Argo Rollouts' `AnalysisTemplate` / `ClusterAnalysisTemplate` (argoproj.io/v1alpha1), read unchanged.

`load_template(doc)` checks a template the way Argo's validation does (and names the field when it does not);
`resolve(templates, args)` merges templates and args into the metrics one AnalysisRun measures
(`{{args.name}}` substituted everywhere in a metric, as Argo's `ResolveArgs`; an arg without a value is an
error, `valueFrom.secretKeyRef` goes through a SecretResolver hook, `valueFrom.fieldRef` through the values
the caller knows); `build_query(metric, now)` turns a metric's provider block into a provider query.

Providers: `prometheus` (address, query, timeout, headers, rangeQuery {start, end, step} with expr
`now()`/`duration()`), `web` (url, method, headers, body, jsonBody, jsonPath, timeoutSeconds), and
Graylane's local mesh under Argo's plugin key: `provider: {plugin: {graylane.io/local: {...LocalQuery}}}`
(a plugin block keeps the template valid for Argo's CRD). Other providers are refused by name.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graylane.analysis.conditions import ConditionError, evaluate, parse_condition
from graylane.analysis.local import LocalQuery
from graylane.analysis.measurement import MAX_SUBSTITUTED_CHARS
from graylane.analysis.prometheus_provider import PrometheusQuery
from graylane.analysis.web import WebQuery, parse_jsonpath
from graylane.errors import ValidationError
from graylane.resources.durations import query_seconds as parse_duration

API_VERSION = "argoproj.io/v1alpha1"
KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate")
LOCAL_PLUGIN = "graylane.io/local"
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4  # Argo's DefaultConsecutiveErrorLimit
ARGO_ONLY_PROVIDERS = ("kayenta", "datadog", "wavefront", "newRelic", "job", "cloudWatch", "graphite",
                       "influxdb", "skywalking")
SecretResolver = Callable[[str, str], str]  # (secret name, key) -> value
_TAG = re.compile(r"\{\{(.*?)\}\}")


@dataclass(frozen=True)
class Metric:
    """One metric of a template, Argo's field names in snake case; durations in seconds."""

    name: str
    provider: str  # prometheus | web | local
    spec: Mapping[str, Any]  # the provider block (args substituted once resolved)
    interval: float | None = None
    initial_delay: float = 0.0
    count: int | None = None  # as written (0 and None: see effective_count)
    success_condition: str = ""
    failure_condition: str = ""
    failure_limit: int = 0  # -1: never fails on failures
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    consecutive_success_limit: int = 0
    dry_run: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as written, args unresolved

    @property
    def effective_count(self) -> int | None:
        """Argo's EffectiveCount: no count and no interval -> 1; no count with an interval -> unbounded."""
        if not self.count:
            return 1 if self.interval is None else None
        return self.count


@dataclass(frozen=True)
class Arg:
    name: str
    value: str | None = None
    value_from: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Template:
    kind: str
    name: str
    namespace: str | None
    args: tuple[Arg, ...]
    metrics: tuple[Metric, ...]
    dry_run: tuple[str, ...] = ()  # metric-name regexes
    raw: Mapping[str, Any] = field(default_factory=dict)


def _where(name: str, path: str) -> str:
    return f"{name}: {path}"


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value if isinstance(value, int | float) else str(value), where)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {value!r} is not a duration (e.g. 30s, 5m, 1h)") from exc


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(f"{where}: {value!r} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValidationError(f"{where}: {value!r} is not an integer") from None


def load_template(doc: Mapping[str, Any]) -> Template:
    """Read an AnalysisTemplate or ClusterAnalysisTemplate; ValidationError names the field at fault."""
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") not in KINDS:
        raise ValidationError(f"expected apiVersion {API_VERSION} and kind AnalysisTemplate or "
                              f"ClusterAnalysisTemplate, got {doc.get('apiVersion')!r} {doc.get('kind')!r}")
    md = doc.get("metadata") or {}
    name = str(md.get("name") or "")
    if not name:
        raise ValidationError(f"{doc['kind']}: metadata.name is required")
    spec = doc.get("spec") or {}
    args = tuple(_arg(a, _where(name, f"spec.args[{i}]")) for i, a in enumerate(spec.get("args") or []))
    seen_args: set[str] = set()
    for a in args:
        if a.name in seen_args:
            raise ValidationError(_where(name, f"spec.args: {a.name!r} is declared twice"))
        seen_args.add(a.name)
    raw_metrics = spec.get("metrics") or []
    if not raw_metrics:
        raise ValidationError(_where(name, "spec.metrics: at least one metric is required"))
    dry_run = tuple(str((d or {}).get("metricName", "")) for d in spec.get("dryRun") or [])
    metrics = [_metric(m, _where(name, f"spec.metrics[{i}]")) for i, m in enumerate(raw_metrics)]
    names = [m.name for m in metrics]
    for n in names:
        if names.count(n) > 1:
            raise ValidationError(_where(name, f"spec.metrics: metric name {n!r} is used twice"))
    for i, pattern in enumerate(dry_run):
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ValidationError(_where(name, f"spec.dryRun[{i}].metricName: {exc}")) from None
        if not any(rx.match(n) for n in names):
            raise ValidationError(_where(name, f"spec.dryRun[{i}]: Rule didn't match any metric name(s)"))
    return Template(doc["kind"], name, md.get("namespace"), args, tuple(metrics), dry_run, raw=doc)


def _arg(raw: Any, where: str) -> Arg:
    if not isinstance(raw, Mapping) or not raw.get("name"):
        raise ValidationError(f"{where}: an arg needs a name")
    value = raw.get("value")
    return Arg(str(raw["name"]), None if value is None else str(value), raw.get("valueFrom"))


# Stand-ins while a template is checked for fields written as `{{args.x}}` (Argo resolves them per run).
_PLACEHOLDERS = {"interval": "1m", "initialDelay": "0s", "count": 1, "failureLimit": 0, "inconclusiveLimit": 0,
                 "consecutiveErrorLimit": DEFAULT_CONSECUTIVE_ERROR_LIMIT, "consecutiveSuccessLimit": 0}


def _metric(written: Any, where: str) -> Metric:
    if not isinstance(written, Mapping) or not written.get("name"):
        raise ValidationError(f"{where}: a metric needs a name")
    raw = {k: (_PLACEHOLDERS[k] if k in _PLACEHOLDERS and isinstance(v, str) and _TAG.search(v) else v)
           for k, v in written.items()}
    where = f"{where} ({raw['name']})"
    provider = raw.get("provider") or {}
    kinds = [k for k in provider if k != "plugin"] + [f"plugin {p}" for p in (provider.get("plugin") or {})]
    if len(kinds) != 1:
        raise ValidationError(f"{where}.provider: exactly one provider is needed, found "
                              f"{', '.join(kinds) or 'none'}")
    kind = kinds[0]
    if kind in ARGO_ONLY_PROVIDERS:
        raise ValidationError(f"{where}.provider.{kind}: Graylane runs prometheus, web and plugin "
                              f"{LOCAL_PLUGIN} metrics; {kind} is not supported")
    if kind.startswith("plugin "):
        if kind != f"plugin {LOCAL_PLUGIN}":
            raise ValidationError(f"{where}.provider.plugin: unknown plugin {kind[7:]!r} "
                                  f"(Graylane knows {LOCAL_PLUGIN})")
        kind, spec = "local", provider["plugin"][LOCAL_PLUGIN] or {}
    elif kind in ("prometheus", "web"):
        spec = provider[kind] or {}
    else:
        raise ValidationError(f"{where}.provider: unknown provider {kind!r}")
    known = {"name", "interval", "initialDelay", "count", "successCondition", "failureCondition", "failureLimit",
             "inconclusiveLimit", "consecutiveErrorLimit", "consecutiveSuccessLimit", "provider"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValidationError(f"{where}: unknown field(s) {', '.join(unknown)}")
    interval = _duration(raw["interval"], f"{where}.interval") if raw.get("interval") else None
    count = _int(raw["count"], f"{where}.count") if raw.get("count") is not None else None
    if count is not None and count > 1 and interval is None:
        raise ValidationError(f"{where}: count > 1 needs an interval")
    metric = Metric(
        name=str(raw["name"]), provider=kind, spec=spec, interval=interval,
        initial_delay=_duration(raw["initialDelay"], f"{where}.initialDelay") if raw.get("initialDelay") else 0.0,
        count=count, success_condition=str(raw.get("successCondition") or ""),
        failure_condition=str(raw.get("failureCondition") or ""),
        failure_limit=_int(raw.get("failureLimit", 0), f"{where}.failureLimit"),
        inconclusive_limit=_int(raw.get("inconclusiveLimit", 0), f"{where}.inconclusiveLimit"),
        consecutive_error_limit=_int(raw.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT),
                                     f"{where}.consecutiveErrorLimit"),
        consecutive_success_limit=_int(raw.get("consecutiveSuccessLimit", 0), f"{where}.consecutiveSuccessLimit"),
        raw=written)
    if metric.consecutive_success_limit > 0 and metric.failure_limit < 0 and metric.effective_count is None:
        raise ValidationError(f"{where}: with failureLimit -1 and consecutiveSuccessLimit, set a count")
    for cond_field, text in (("successCondition", metric.success_condition),
                             ("failureCondition", metric.failure_condition)):
        if text and not _TAG.search(text):
            try:
                parse_condition(text)
            except ConditionError as exc:
                raise ValidationError(f"{where}.{cond_field}: {exc}") from None
    _check_provider(metric, where)
    return metric


def _check_provider(metric: Metric, where: str) -> None:
    spec = metric.spec
    path = f"{where}.provider.{'plugin.' + LOCAL_PLUGIN if metric.provider == 'local' else metric.provider}"
    if metric.provider == "prometheus":
        allowed = {"address", "query", "timeout", "headers", "rangeQuery", "insecure"}
        if not spec.get("query"):
            raise ValidationError(f"{path}.query is required")
    elif metric.provider == "web":
        allowed = {"url", "method", "headers", "body", "jsonBody", "jsonPath", "timeoutSeconds", "insecure"}
        if not spec.get("url"):
            raise ValidationError(f"{path}.url is required")
        try:
            parse_jsonpath(str(spec.get("jsonPath") or ""))
        except ValueError as exc:
            raise ValidationError(f"{path}.jsonPath: {exc}") from None
    else:
        allowed = {"metric", "aggregation", "filter", "window", "quantile", "by"}
        if not _TAG.search(repr(spec)):
            try:
                LocalQuery.from_spec(spec)
            except (ValueError, ValidationError) as exc:
                raise ValidationError(f"{path}: {exc}") from None
    unknown = sorted(set(spec) - allowed)
    if unknown:
        hint = " (authentication is not supported yet: pass credentials in headers)" \
            if "authentication" in unknown else ""
        raise ValidationError(f"{path}: unknown field(s) {', '.join(unknown)}{hint}")
    if spec.get("insecure"):
        raise ValidationError(f"{path}.insecure: skipping TLS verification is not supported")


def env_secrets(name: str, key: str) -> str:
    """The default SecretResolver: `GRAYLANE_SECRET_<NAME>_<KEY>` (upper case, `-` and `.` as `_`)."""
    var = "GRAYLANE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{name}_{key}").upper()
    if var not in os.environ:
        raise ValidationError(f"secret {name!r} key {key!r} is not available", hint=f"set {var}")
    return os.environ[var]


@dataclass(frozen=True)
class ResolvedRun:
    """What one AnalysisRun measures: metrics with args substituted, and the args (for the record)."""

    metrics: tuple[Metric, ...]
    args: Mapping[str, str]
    secrets: tuple[str, ...] = ()  # values to redact from messages


def resolve(templates: Sequence[Template], args: Mapping[str, str] | None = None, *,
            secrets: SecretResolver = env_secrets, fields: Mapping[str, str] | None = None,
            dry_run: Sequence[str] = ()) -> ResolvedRun:
    """Merge templates (duplicate metric names are an error, as in Argo) and resolve their args."""
    given = dict(args or {})
    values: dict[str, str] = {}
    secret_values: list[str] = []
    declared: dict[str, Arg] = {}
    for t in templates:
        for a in t.args:
            declared.setdefault(a.name, a)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValidationError(f"arg(s) {', '.join(unknown)} are not declared by the template(s)")
    for name, a in declared.items():
        if name in given:
            values[name] = str(given[name])
        elif a.value is not None:
            values[name] = a.value
        elif a.value_from:
            ref = a.value_from
            if "secretKeyRef" in ref:
                sk = ref["secretKeyRef"] or {}
                values[name] = secrets(str(sk.get("name", "")), str(sk.get("key", "")))
                secret_values.append(values[name])
            elif "fieldRef" in ref:
                path = str((ref["fieldRef"] or {}).get("fieldPath", ""))
                if fields is None or path not in fields:
                    raise ValidationError(f"args.{name}: fieldRef {path!r} has no value here; pass the arg instead")
                values[name] = fields[path]
            else:
                raise ValidationError(f"args.{name}: valueFrom {', '.join(ref)} is not supported; pass the arg")
        else:
            raise ValidationError(f"args.{name} was not resolved: argument {name!r} was not supplied")
    metrics: list[Metric] = []
    patterns = [re.compile(p) for t in templates for p in t.dry_run] + [re.compile(p) for p in dry_run]
    for t in templates:
        for m in t.metrics:
            if any(x.name == m.name for x in metrics):
                raise ValidationError(f"two metrics have the same name {m.name!r} (template {t.name})")
            dry = any(p.match(m.name) for p in patterns)
            if m.raw:  # as written: substitute, then read and check it again with the values
                resolved = _metric(_substitute(m.raw, values, m.name), f"{t.name}: metric {m.name}")
                metrics.append(Metric(**{**resolved.__dict__, "dry_run": dry}))
            else:
                metrics.append(_substitute_metric(m, values, dry))
    return ResolvedRun(tuple(metrics), values, tuple(s for s in secret_values if s))


def _substitute(value: Any, values: Mapping[str, str], name: str, room: list[int] | None = None) -> Any:
    """`{{args.x}}` replaced in every string of a metric (a copy); any other `{{...}}` is an error, as in Argo.

    What the substitutions add is bounded by MAX_SUBSTITUTED_CHARS over the whole metric (`room` carries it).
    """
    room = [MAX_SUBSTITUTED_CHARS] if room is None else room
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            tag = match.group(1).strip()
            if tag.startswith("args.") and tag[5:] in values:
                room[0] -= len(values[tag[5:]])
                if room[0] < 0:
                    raise ValidationError(f"metric {name}: its text grows past {MAX_SUBSTITUTED_CHARS:,} "
                                          f"characters once the args are substituted")
                return values[tag[5:]]
            raise ValidationError(f"metric {name}: failed to resolve {{{{{match.group(1)}}}}}")
        return _TAG.sub(one, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, values, name, room) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, name, room) for v in value]
    return copy.deepcopy(value)


def _substitute_metric(m: Metric, values: Mapping[str, str], dry_run: bool) -> Metric:
    """A metric built in code (no `raw`): substitute in its provider block and conditions."""
    out = Metric(**{**m.__dict__, "spec": _substitute(m.spec, values, m.name),
                    "success_condition": _substitute(m.success_condition, values, m.name),
                    "failure_condition": _substitute(m.failure_condition, values, m.name), "dry_run": dry_run})
    for text in (out.success_condition, out.failure_condition):
        if text:
            try:
                parse_condition(text)
            except ConditionError as exc:
                raise ValidationError(f"metric {m.name}: condition {text!r}: {exc}") from None
    return out


def _headers(raw: Any) -> dict[str, str]:
    return {str(h.get("key")): str(h.get("value", "")) for h in raw or [] if isinstance(h, Mapping)}


def build_query(metric: Metric, now: float) -> PrometheusQuery | WebQuery | LocalQuery:
    """The provider query for one measurement taken at `now` (rangeQuery start/end are evaluated then)."""
    spec = metric.spec
    if metric.provider == "prometheus":
        start = end = step = None
        rq = spec.get("rangeQuery")
        if rq:
            clock = lambda: now  # noqa: E731
            try:
                start = float(evaluate(str(rq.get("start", "now()")), None, now=clock))
                end = float(evaluate(str(rq.get("end", "now()")), None, now=clock))
            except (ConditionError, TypeError, ValueError) as exc:
                raise ValidationError(f"metric {metric.name}: rangeQuery start/end: {exc}") from None
            step = _duration(rq.get("step", "1m"), f"metric {metric.name}: rangeQuery.step")
        return PrometheusQuery(query=str(spec["query"]), address=spec.get("address") or None,
                               start=start, end=end, step=step,
                               timeout=float(spec.get("timeout") or 30), headers=_headers(spec.get("headers")))
    if metric.provider == "web":
        return WebQuery(url=str(spec["url"]), method=str(spec.get("method") or "GET"),
                        headers=_headers(spec.get("headers")),
                        body=None if spec.get("body") is None else str(spec["body"]),
                        json_body=spec.get("jsonBody"), json_path=str(spec.get("jsonPath") or ""),
                        timeout=float(spec.get("timeoutSeconds") or 10))
    return LocalQuery.from_spec(spec)
