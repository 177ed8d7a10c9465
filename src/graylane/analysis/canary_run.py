"""What the `kayentaCanary` stage runs: its Spinnaker-shaped settings, the providers its account decides, and one
interval judged into a JSON record the stage keeps.

Settings (orca's KayentaCanaryContext, `canaryConfig` of the stage):

- `canaryConfigId` / `canaryConfigName`: a stored `CanaryConfig` (graylane.analysis.resources); Graylane also
  takes the Kayenta config inline as `canaryConfig.config`.
- `scopes[]` (the first is used): `controlScope` / `experimentScope` (a version or subset name, e.g. `v1`, or a
  label selector such as `version=v1` or `destination_workload=reviews-v2,destination_version=v2`),
  `controlLocation` / `experimentLocation` (namespace), `step` (seconds between points, default: a tenth of the
  interval, at most 60), `extendedScopeParams` (more template variables), and for `retrospective`
  `startTimeIso` / `endTimeIso`.
- `scoreThresholds {pass, marginal}` (75/50), `lifetimeDuration` (ISO-8601, `PT1H`, `PT1M30S`, `PT0.5M`;
  or deprecated `lifetimeHours`), `beginCanaryAnalysisAfterMins`, `canaryAnalysisIntervalMins` (default: the
  lifetime, one interval), `lookbackMins` (0: each interval judges everything since the analysis began).
  Minutes may be fractional (`0.25` = 15 s), and each `...Mins` field has a `...Seconds` twin
  (`canaryAnalysisIntervalSeconds: 20`) for short demo and test intervals; a seconds field wins.
- `metricsAccountName` (else the stage's `account`, else `local`) decides the providers: `local` reads the
  local mesh's telemetry, and answers PromQL that names no address with the local mesh's PromQL engine;
  another account's Prometheus (`graylane account add --prometheus URL`) answers both `prometheus` queries
  and `local` ones, which are sent as the PromQL they stand for.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graylane.analysis.argo_run import Providers
from graylane.analysis.judge import ScoreThresholds, check_score_thresholds, parse_canary_config, report_json
from graylane.analysis.kayenta import CanaryInterval, run_interval
from graylane.analysis.local import LocalProvider, LocalQuery
from graylane.analysis.measurement import Measurement, Scope
from graylane.analysis.prometheus_provider import PrometheusProvider, PrometheusQuery
from graylane.errors import GraylaneError, ValidationError
from graylane.mesh.telemetry.promql_engine import Engine

LOCAL_ACCOUNT = "local"
_ISO = re.compile(r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
                  r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
# Pod labels a selector may use, as the Istio metric labels they appear under.
_LABEL_ALIASES = {"version": "destination_version", "app": "destination_app", "workload": "destination_workload",
                  "namespace": "destination_workload_namespace", "service": "destination_service_name"}


def iso_duration(text: Any, where: str) -> float:
    """Seconds in an ISO-8601 duration (`PT1H`, `PT0H5M`, `PT20S`, `P1D`)."""
    match = _ISO.match(str(text or "").strip().upper())
    if not match or not any(match.groupdict().values()):
        raise ValidationError(f"{where}: {text!r} is not an ISO-8601 duration (e.g. PT1H, PT5M, PT30S)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def _number(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: {value!r} is not a number") from None
    if out < 0 or math.isnan(out):
        raise ValidationError(f"{where}: {value!r} must be 0 or more")
    return out


def _seconds(cfg: Mapping[str, Any], mins_key: str, where: str) -> float | None:
    secs_key = mins_key.removesuffix("Mins") + "Seconds"
    secs = _number(cfg.get(secs_key), f"{where}.{secs_key}")
    if secs is not None:
        return secs
    mins = _number(cfg.get(mins_key), f"{where}.{mins_key}")
    return None if mins is None else mins * 60


def _iso_time(text: Any, where: str) -> float:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not an ISO-8601 time") from None


@dataclass(frozen=True)
class CanaryPlan:
    """A kayentaCanary stage's settings, checked; times in seconds."""

    config: dict[str, Any]
    config_name: str
    analysis_type: str
    control: Scope
    experiment: Scope
    thresholds: ScoreThresholds
    lifetime: float
    interval: float
    warmup: float
    lookback: float
    step: float
    account: str
    intervals: int
    start_time: float | None = None  # retrospective
    end_time: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


async def load_plan(context: Mapping[str, Any], configs: Any) -> CanaryPlan:
    """`plan` with the canary config read from `configs` (the local account's Target: the stored CanaryConfigs)."""
    from graylane.analysis.resources import find_canary_config

    cfg = context.get("canaryConfig")
    stored = None
    if isinstance(cfg, dict) and not isinstance(cfg.get("config"), dict):
        ref = str(cfg.get("canaryConfigId") or cfg.get("canaryConfigName") or "")
        if ref:
            stored = await find_canary_config(configs, ref, str(context.get("namespace") or "default"))
    return plan(context, stored)


def plan(context: Mapping[str, Any], stored: dict[str, Any] | None = None) -> CanaryPlan:
    """Read and check the stage's `canaryConfig` (ValidationError names the field); `stored` is the Kayenta
    config its canaryConfigId / canaryConfigName names."""
    where = "canaryConfig"
    cfg = context.get("canaryConfig")
    if not isinstance(cfg, dict):
        raise ValidationError("a kayentaCanary stage needs canaryConfig (an object)")
    analysis_type = str(context.get("analysisType") or cfg.get("analysisType") or "realTime")
    if analysis_type == "realTimeAutomatic":
        analysis_type = "realTime"
    if analysis_type not in ("realTime", "retrospective"):
        raise ValidationError(f"analysisType {analysis_type!r} is not realTime or retrospective")
    if isinstance(cfg.get("config"), dict):
        raw_config, ref = dict(cfg["config"]), str(cfg["config"].get("name") or "inline")
    else:
        ref = str(cfg.get("canaryConfigId") or cfg.get("canaryConfigName") or "")
        if not ref or stored is None:
            raise ValidationError(f"{where}: canaryConfigId or canaryConfigName is required (a stored CanaryConfig)")
        raw_config = stored
    parsed = parse_canary_config(raw_config, f"canary config {ref}")
    scopes = cfg.get("scopes") or []
    if not isinstance(scopes, list) or not scopes or not isinstance(scopes[0], dict):
        raise ValidationError(f"{where}.scopes: at least one scope (controlScope, experimentScope) is required")
    scope = scopes[0]
    for key in ("controlScope", "experimentScope"):
        if not str(scope.get(key) or "").strip():
            raise ValidationError(f"{where}.scopes[0].{key} is required (a version such as v1, or version=v1)")
    extra = {str(k): str(v) for k, v in (scope.get("extendedScopeParams") or {}).items()}
    control = Scope(str(scope["controlScope"]), str(scope.get("controlLocation") or "default"), extra)
    experiment = Scope(str(scope["experimentScope"]), str(scope.get("experimentLocation") or "default"), extra)
    raw_thresholds = cfg.get("scoreThresholds") or {}
    defaults = parsed.score_thresholds or ScoreThresholds()
    pass_score = _number(raw_thresholds.get("pass"), f"{where}.scoreThresholds.pass")
    marginal = _number(raw_thresholds.get("marginal"), f"{where}.scoreThresholds.marginal")
    thresholds = ScoreThresholds(defaults.pass_score if pass_score is None else pass_score,
                                 defaults.marginal if marginal is None else marginal)
    check_score_thresholds(thresholds, "stage", f"{where}.scoreThresholds")
    start = end = None
    if analysis_type == "retrospective":
        start = _iso_time(scope.get("startTimeIso") or cfg.get("startTimeIso"), f"{where}.scopes[0].startTimeIso")
        end = _iso_time(scope.get("endTimeIso") or cfg.get("endTimeIso"), f"{where}.scopes[0].endTimeIso")
        if end <= start:
            raise ValidationError(f"{where}.scopes[0]: endTimeIso must be after startTimeIso")
        lifetime = end - start
    elif cfg.get("lifetimeDuration"):
        lifetime = iso_duration(cfg["lifetimeDuration"], f"{where}.lifetimeDuration")
    elif cfg.get("lifetimeHours") not in (None, ""):
        lifetime = (_number(cfg["lifetimeHours"], f"{where}.lifetimeHours") or 0) * 3600
    else:
        raise ValidationError(f"{where}: lifetimeDuration (ISO-8601, e.g. PT1H) is required for a realTime analysis")
    if lifetime <= 0:
        raise ValidationError(f"{where}.lifetimeDuration must be longer than zero")
    interval = _seconds(cfg, "canaryAnalysisIntervalMins", where) or lifetime
    if interval > lifetime:
        interval = lifetime
    count = max(1, int(lifetime // interval + 1e-9))
    warmup = _seconds(cfg, "beginCanaryAnalysisAfterMins", where) or 0.0
    lookback = _seconds(cfg, "lookbackMins", where) or 0.0
    step = _number(scope.get("step"), f"{where}.scopes[0].step") or min(60.0, max(1.0, interval / 10))
    account = str(cfg.get("metricsAccountName") or context.get("account") or LOCAL_ACCOUNT)
    return CanaryPlan(raw_config, parsed.name or ref, analysis_type, control, experiment, thresholds, lifetime,
                      interval, warmup if analysis_type == "realTime" else 0.0, lookback, step, account, count,
                      start, end)


def interval_window(p: CanaryPlan, index: int, analysis_start: float) -> tuple[float, float]:
    """[start, end] (unix seconds) judged by interval `index` (1-based)."""
    if p.analysis_type == "retrospective" and p.start_time is not None:
        base = p.start_time
    else:
        base = analysis_start + p.warmup
    end = base + index * p.interval
    start = max(base, end - p.lookback) if p.lookback else base
    return start, end


# ---- providers ------------------------------------------------------------------------------------------------

def _selector(scope: str) -> dict[str, str] | None:
    """`version=v1,app=reviews` -> Istio label filter; None when the scope is a plain name."""
    if "=" not in scope:
        return None
    out: dict[str, str] = {}
    for part in scope.split(","):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not key:
            raise ValidationError(f"scope {scope!r}: a selector is label=value[,label=value]")
        out[_LABEL_ALIASES.get(key, key)] = value
    return out


def scoped_local_query(query: LocalQuery, scope: Scope) -> LocalQuery:
    """A label-selector scope becomes filter entries (replacing a filter that names `${scope}`)."""
    selector = _selector(scope.scope)
    if selector is None:
        return query
    kept = {k: v for k, v in query.filter.items() if "${scope}" not in v}
    return LocalQuery(query.metric, query.aggregation, {**kept, **selector}, query.window, query.quantile, query.by)


class ScopedLocal:
    """The local provider, understanding label-selector scopes."""

    name = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def measure(self, query: LocalQuery, scope: Scope, now: float) -> Measurement:
        return await self.inner.measure(scoped_local_query(query, scope), scope, now)  # type: ignore[no-any-return]


class LocalAsPrometheus:
    """`local` queries on a Kubernetes account: the PromQL each stands for, sent to the account's Prometheus."""

    name = "local"

    def __init__(self, account: str, prometheus: PrometheusProvider) -> None:
        self.account = account
        self.prometheus = prometheus

    async def measure(self, query: LocalQuery, scope: Scope, now: float) -> Measurement:
        q = scoped_local_query(query, scope)
        try:
            promql = q.render(scope.values())
        except KeyError as exc:
            from graylane.analysis.measurement import error

            return error("prometheus", q.metric, f"the filter names variable(s) without a value: {exc.args[0]}",
                         at=now)
        return await self.prometheus.measure(PrometheusQuery(promql, account=self.account), scope, now)


def local_engine(control_plane: Any) -> Engine | None:
    """PromQL over the control plane's recorded scrapes of the local mesh (None before telemetry runs)."""
    recorder = getattr(control_plane.components.get("telemetry"), "recorder", None)
    return Engine(recorder) if recorder is not None else None


def providers_for(account: str, control_plane: Any, account_url: Callable[[str], str] | None = None) -> Providers:
    """The providers an account decides (see the module docstring); `account_url` finds an account's Prometheus
    (the pipelines pass graylane.targets.accounts.prometheus_url: analysis reads no account registry)."""
    if account == LOCAL_ACCOUNT:
        local = LocalProvider.for_control_plane(control_plane) if control_plane is not None else None
        engine = (lambda: local_engine(control_plane)) if control_plane is not None else None
        return Providers(local=ScopedLocal(local) if local is not None else None,
                         prometheus=PrometheusProvider(account_url=account_url, local=engine))
    if account_url is None:
        raise GraylaneError(f"account {account!r}: no account directory to find its Prometheus")
    url = account_url(account)
    prometheus = PrometheusProvider(default_address=url, account_url=account_url)
    return Providers(local=LocalAsPrometheus(account, prometheus), prometheus=prometheus)


# ---- one interval ---------------------------------------------------------------------------------------------

def _sentence(interval: CanaryInterval, thresholds: ScoreThresholds) -> str:
    report = interval.report
    bad = [r for r in report.results if r.classification.value not in ("Pass", "Nodata")]
    parts = [f"{r.name} {r.classification.value}{' (critical)' if r.critical else ''}: {r.explanation}"
             for r in bad]
    head = (f"score {report.score.score:g} -> {report.score.verdict.value} (pass >= {thresholds.pass_score:g}, "
            f"marginal >= {thresholds.marginal:g})")
    if report.score.reason:
        head += f": {report.score.reason}"
    return head + (f"; {'; '.join(parts)}" if parts else "; every metric Pass")


async def judge_interval(p: CanaryPlan, providers: Providers, index: int, start: float, end: float) -> dict[str, Any]:
    """Run interval `index` over [start, end]; the record a stage keeps (score, report, every measurement)."""
    config = parse_canary_config(p.config, f"canary config {p.config_name}")
    began = time.time()
    interval = await run_interval(config, p.control, p.experiment, providers, start=start, end=end, step=p.step,
                                  thresholds=p.thresholds)
    report = interval.report
    return {
        "index": index, "start": start, "end": end, "judgedAt": began,
        "score": report.score.score, "classification": report.score.verdict.value,
        "message": _sentence(interval, p.thresholds),
        "controlScope": p.control.scope, "experimentScope": p.experiment.scope, "account": p.account,
        "report": report_json(report),
        "measurements": [m.to_json() for m in interval.measurements],
        "explanations": {r.name: interval.explain(r.name) for r in report.results},
    }
