"""Canary configs in Kayenta's JSON shape, parsed once into frozen dataclasses.

The shape is kayenta-core's `CanaryConfig` (docs/canary-config.md in spinnaker/kayenta): metrics
with a provider query, groups and `analysisConfigurations.canary`, a `judge` and a `classifier`
with `groupWeights` (and optionally `scoreThresholds`). Kayenta reads the analysis options loosely
and falls back to defaults on unknown values; Graylane refuses them instead, naming the field,
so a typo ("mustHavedata", "direction": "up") cannot silently change a verdict.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

from graylane.errors import ValidationError

JUDGE_NAME = "NetflixACAJudge-v1.0"
_E = TypeVar("_E", bound=enum.StrEnum)

JsonScalar = str | int | float | bool | None
JsonValue = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]


class MetricDirection(enum.StrEnum):
    """Which change fails the metric (`canary.direction`)."""

    INCREASE = "increase"
    DECREASE = "decrease"
    EITHER = "either"


class NanStrategy(enum.StrEnum):
    """What happens to NaN values (`canary.nanStrategy`); Kayenta's default is remove."""

    REMOVE = "remove"
    REPLACE = "replace"


class OutlierStrategy(enum.StrEnum):
    """Whether IQR outliers are dropped before the test (`canary.outliers.strategy`)."""

    REMOVE = "remove"
    KEEP = "keep"


class EffectSizeMeasure(enum.StrEnum):
    """How the size of a change is measured (`canary.effectSize.measure`)."""

    MEAN_RATIO = "meanRatio"
    CLES = "cles"

    @property
    def neutral(self) -> float:
        """The value meaning "no effect", also every threshold's default: 1.0 for a ratio, 0.5 for CLES."""
        return 0.5 if self is EffectSizeMeasure.CLES else 1.0


@dataclass(frozen=True, slots=True)
class EffectSize:
    """Effect-size gates: a metric is High only if the effect is at least `allowed_increase`
    (Low: at most `allowed_decrease`); a critical metric fails the canary only past the critical ones."""

    measure: EffectSizeMeasure = EffectSizeMeasure.MEAN_RATIO
    allowed_increase: float = 1.0
    allowed_decrease: float = 1.0
    critical_increase: float = 1.0
    critical_decrease: float = 1.0


@dataclass(frozen=True, slots=True)
class Outliers:
    strategy: OutlierStrategy = OutlierStrategy.KEEP
    factor: float = 3.0


@dataclass(frozen=True, slots=True)
class CanaryAnalysis:
    """`analysisConfigurations.canary` of one metric, with Kayenta's defaults."""

    direction: MetricDirection = MetricDirection.EITHER
    nan_strategy: NanStrategy = NanStrategy.REMOVE
    critical: bool = False
    must_have_data: bool = False
    muted: bool = False
    effect_size: EffectSize = EffectSize()
    outliers: Outliers = Outliers()


@dataclass(frozen=True, slots=True)
class MetricConfig:
    name: str
    query: Mapping[str, JsonValue]
    groups: tuple[str, ...]
    canary: CanaryAnalysis = CanaryAnalysis()
    scope_name: str = "default"


@dataclass(frozen=True, slots=True)
class ScoreThresholds:
    """A score at or above `pass_score` is Pass, at or above `marginal` Marginal, else Fail."""

    pass_score: float = 75.0
    marginal: float = 50.0


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    name: str
    metrics: tuple[MetricConfig, ...]
    group_weights: Mapping[str, float] = field(default_factory=dict)
    score_thresholds: ScoreThresholds | None = None  # Kayenta takes them from the stage; a config may carry them
    judge_name: str = JUDGE_NAME
    description: str = ""
    source: str = "<config>"
    templates: Mapping[str, str] = field(default_factory=dict)  # customFilterTemplate name -> filter template

    def metric(self, name: str) -> MetricConfig | None:
        return next((m for m in self.metrics if m.name == name), None)


# Fields Kayenta's model knows; anything else is refused (with its path) rather than ignored.
_CONFIG_FIELDS = {"id", "name", "description", "configVersion", "applications", "judge", "metrics", "templates",
                  "classifier", "createdTimestamp", "updatedTimestamp", "createdTimestampIso", "updatedTimestampIso"}
_METRIC_FIELDS = {"name", "query", "groups", "analysisConfigurations", "scopeName"}
_CANARY_FIELDS = {"direction", "nanStrategy", "critical", "mustHaveData", "muted", "effectSize", "outliers"}
_EFFECT_FIELDS = {"measure", "allowedIncrease", "allowedDecrease", "criticalIncrease", "criticalDecrease"}
_OUTLIER_FIELDS = {"strategy", "outlierFactor"}
_CLASSIFIER_FIELDS = {"groupWeights", "scoreThresholds"}
_JUDGE_FIELDS = {"name", "judgeConfigurations"}


class _Reader:
    """Typed access to one JSON object, every error naming the source and the field path."""

    def __init__(self, source: str, path: str, data: object) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail(f"must be an object, not {_json_type(data)}")
        self.data: dict[str, object] = data

    def fail(self, message: str, key: str | None = None, hint: str | None = None) -> NoReturn:
        where = self.at(key) if key is not None else self.path
        raise ValidationError(f"{where}: {message}" if where else message, where=self.source, hint=hint)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def only(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail("unknown field", key, hint=f"known fields: {', '.join(sorted(allowed))}")

    def child(self, key: str) -> _Reader | None:
        if key not in self.data or self.data[key] is None:
            return None
        return _Reader(self.source, self.at(key), self.data[key])

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                self.fail("is required", key)
            return default
        if not isinstance(value, str):
            self.fail(f"must be a string, not {_json_type(value)}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"must be true or false, not {json.dumps(value)}", key)
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.fail(f"must be a number, not {json.dumps(value)}", key)
        return float(value)

    def choice(self, key: str, kind: type[_E], default: _E) -> _E:
        value = self.data.get(key)
        if value is None:
            return default
        for member in kind:
            if value == member.value:
                return member
        options = ", ".join(m.value for m in kind)
        self.fail(f"{json.dumps(value)} is not one of {options}", key)


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def parse_canary_config(data: object, source: str = "<config>") -> CanaryConfig:
    """Validate a Kayenta canary config (already decoded JSON) into a `CanaryConfig`."""
    top = _Reader(source, "", data)
    top.only(_CONFIG_FIELDS)
    judge = top.child("judge")
    judge_name = JUDGE_NAME
    if judge is not None:
        judge.only(_JUDGE_FIELDS)
        judge_name = judge.string("name", JUDGE_NAME)
        if judge_name != JUDGE_NAME:
            judge.fail(f"judge {judge_name!r} is not available", "name", hint=f"use {JUDGE_NAME!r}")
    raw_metrics = top.data.get("metrics")
    if not isinstance(raw_metrics, list) or not raw_metrics:
        top.fail("must be a non-empty list of metrics", "metrics")
    metrics: list[MetricConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_metrics):
        metric = _parse_metric(_Reader(source, f"metrics[{index}]", raw))
        if metric.name in seen:
            top.fail(f"metric name {metric.name!r} is used twice", f"metrics[{index}].name",
                     hint="metric names identify the series in the data files; make them unique")
        seen.add(metric.name)
        metrics.append(metric)
    weights: dict[str, float] = {}
    thresholds: ScoreThresholds | None = None
    classifier = top.child("classifier")
    if classifier is not None:
        classifier.only(_CLASSIFIER_FIELDS)
        weights = _parse_weights(classifier, metrics)
        raw_thresholds = classifier.child("scoreThresholds")
        if raw_thresholds is not None:
            thresholds = parse_score_thresholds(raw_thresholds)
    templates: dict[str, str] = {}
    raw_templates = top.child("templates")
    if raw_templates is not None:
        if not isinstance(raw_templates.data, dict):
            top.fail(f"must be an object of template name -> filter, not {_json_type(raw_templates.data)}",
                     "templates")
        for key in raw_templates.data:
            templates[str(key)] = raw_templates.string(key)
    return CanaryConfig(name=top.string("name", ""), description=top.string("description", ""),
                        metrics=tuple(metrics), group_weights=weights, score_thresholds=thresholds,
                        judge_name=judge_name, source=source, templates=templates)


def _parse_metric(reader: _Reader) -> MetricConfig:
    reader.only(_METRIC_FIELDS)
    name = reader.string("name")
    if not name:
        reader.fail("must not be empty", "name")
    reader.path = f"{reader.path} ({name})"
    query = reader.data.get("query", {})
    if not isinstance(query, dict):
        reader.fail(f"must be an object, not {_json_type(query)}", "query")
    groups = reader.data.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        reader.fail("must be a list of group names", "groups")
    if not groups:
        reader.fail("must name at least one group", "groups",
                    hint="scores are computed per group; a metric in no group never counts toward the score")
    canary = CanaryAnalysis()
    analysis = reader.child("analysisConfigurations")
    if analysis is not None:
        section = analysis.child("canary")
        if section is not None:
            canary = _parse_canary(section)
    return MetricConfig(name=name, query=query, groups=tuple(dict.fromkeys(groups)), canary=canary,
                        scope_name=reader.string("scopeName", "default"))


def _parse_canary(reader: _Reader) -> CanaryAnalysis:
    reader.only(_CANARY_FIELDS)
    effect = EffectSize()
    raw_effect = reader.child("effectSize")
    if raw_effect is not None:
        raw_effect.only(_EFFECT_FIELDS)
        measure = raw_effect.choice("measure", EffectSizeMeasure, EffectSizeMeasure.MEAN_RATIO)
        neutral = measure.neutral
        effect = EffectSize(measure=measure,
                            allowed_increase=raw_effect.number("allowedIncrease", neutral),
                            allowed_decrease=raw_effect.number("allowedDecrease", neutral),
                            critical_increase=raw_effect.number("criticalIncrease", neutral),
                            critical_decrease=raw_effect.number("criticalDecrease", neutral))
    outliers = Outliers()
    raw_outliers = reader.child("outliers")
    if raw_outliers is not None:
        raw_outliers.only(_OUTLIER_FIELDS)
        factor = raw_outliers.number("outlierFactor", 3.0)
        if factor <= 0:
            raw_outliers.fail("must be greater than zero", "outlierFactor")
        outliers = Outliers(raw_outliers.choice("strategy", OutlierStrategy, OutlierStrategy.KEEP), factor)
    return CanaryAnalysis(direction=reader.choice("direction", MetricDirection, MetricDirection.EITHER),
                          nan_strategy=reader.choice("nanStrategy", NanStrategy, NanStrategy.REMOVE),
                          critical=reader.boolean("critical", False),
                          must_have_data=reader.boolean("mustHaveData", False),
                          muted=reader.boolean("muted", False),
                          effect_size=effect, outliers=outliers)


def _parse_weights(classifier: _Reader, metrics: list[MetricConfig]) -> dict[str, float]:
    raw = classifier.child("groupWeights")
    if raw is None:
        return {}
    groups = {g for m in metrics for g in m.groups}
    weights: dict[str, float] = {}
    for group in raw.data:
        weight = raw.number(group, 0.0)
        if weight < 0:
            raw.fail("must not be negative", group)
        if group not in groups:
            raw.fail("no metric is in this group", group,
                     hint=f"groups of the metrics: {', '.join(sorted(groups)) or '(none)'}")
        weights[group] = weight
    total = sum(weights.values())
    if total > 100 + 1e-9:
        classifier.fail(f"weights add up to {total:g}, more than 100", "groupWeights",
                        hint="Kayenta expects the group weights to total 100")
    return weights


def parse_score_thresholds(reader: _Reader) -> ScoreThresholds:
    reader.only({"pass", "marginal"})
    thresholds = ScoreThresholds(reader.number("pass", 75.0), reader.number("marginal", 50.0))
    check_score_thresholds(thresholds, reader.source, reader.path)
    return thresholds


def check_score_thresholds(thresholds: ScoreThresholds, source: str, path: str = "scoreThresholds") -> None:
    """Both thresholds within 0..100 and marginal no higher than pass."""
    for label, value in (("pass", thresholds.pass_score), ("marginal", thresholds.marginal)):
        if not 0 <= value <= 100:
            raise ValidationError(f"{path}.{label}: {value:g} is outside 0..100", where=source)
    if thresholds.marginal > thresholds.pass_score:
        raise ValidationError(f"{path}: marginal {thresholds.marginal:g} is above pass {thresholds.pass_score:g}",
                              where=source, hint="a score between marginal and pass is Marginal; marginal <= pass")


def load_canary_config(path: str | Path) -> CanaryConfig:
    """Read and validate a canary config JSON file."""
    from graylane.resources import jsonsafe

    return parse_canary_config(jsonsafe.read(path), str(path))
