"""Canary configs in Kayenta's JSON shape: defaults as Kayenta's judge reads them, and errors naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from graylane.analysis.judge import (
    CanaryAnalysis,
    EffectSizeMeasure,
    MetricDirection,
    NanStrategy,
    OutlierStrategy,
    ScoreThresholds,
    load_canary_config,
    parse_canary_config,
)
from graylane.errors import ValidationError

KAYENTA_CONFIG = {  # the shape of kayenta docs/canary-config.md, with every analysis option set
    "name": "reviews golden signals",
    "description": "Canary config for reviews",
    "configVersion": "1",
    "applications": ["ad-hoc"],
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "error-rate", "query": {"type": "prometheus", "customInlineTemplate": "PromQL:sum(rate(x[1m]))"},
         "groups": ["errors"], "scopeName": "default",
         "analysisConfigurations": {"canary": {
             "direction": "increase", "nanStrategy": "replace", "critical": True, "mustHaveData": False,
             "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 5.0},
             "outliers": {"strategy": "remove", "outlierFactor": 2.5}}}},
        {"name": "latency", "query": {"type": "prometheus"}, "groups": ["latency"],
         "analysisConfigurations": {"canary": {"effectSize": {"measure": "cles", "allowedIncrease": 0.8}}}},
        {"name": "cpu", "query": {}, "groups": ["system"]},
    ],
    "templates": {},
    "classifier": {"groupWeights": {"errors": 60, "latency": 30}, "scoreThresholds": {"pass": 95, "marginal": 75}},
}


def test_a_kayenta_config_parses_with_kayentas_defaults() -> None:
    config = parse_canary_config(KAYENTA_CONFIG, "reviews.json")
    errors, latency, cpu = config.metrics
    assert errors.canary.direction is MetricDirection.INCREASE
    assert errors.canary.nan_strategy is NanStrategy.REPLACE
    assert errors.canary.critical and not errors.canary.must_have_data
    assert (errors.canary.effect_size.allowed_increase, errors.canary.effect_size.allowed_decrease) == (1.1, 1.0)
    assert (errors.canary.effect_size.critical_increase, errors.canary.effect_size.critical_decrease) == (5.0, 1.0)
    assert (errors.canary.outliers.strategy, errors.canary.outliers.factor) == (OutlierStrategy.REMOVE, 2.5)
    assert errors.query["type"] == "prometheus"
    # cles thresholds default to 0.5, not 1.0 (NetflixACAJudge: defaultEffect)
    assert latency.canary.effect_size.measure is EffectSizeMeasure.CLES
    assert (latency.canary.effect_size.allowed_increase, latency.canary.effect_size.allowed_decrease,
            latency.canary.effect_size.critical_increase) == (0.8, 0.5, 0.5)
    # nothing set: either, remove, not critical, outliers kept with factor 3, mean ratio 1.0
    assert cpu.canary == CanaryAnalysis()
    assert cpu.canary.outliers.factor == 3.0 and cpu.canary.direction is MetricDirection.EITHER
    assert config.group_weights == {"errors": 60.0, "latency": 30.0}
    assert config.score_thresholds == ScoreThresholds(95.0, 75.0)
    assert config.name == "reviews golden signals"


def _broken(path: list[str | int], value: object) -> dict[str, object]:
    body = copy.deepcopy(KAYENTA_CONFIG)
    target: object = body
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    if value is _DELETE:
        del target[path[-1]]  # type: ignore[index, arg-type]
    else:
        target[path[-1]] = value  # type: ignore[index]
    return body


_DELETE = object()
CANARY = ["metrics", 0, "analysisConfigurations", "canary"]


@pytest.mark.parametrize(("path", "value", "message"), [
    pytest.param([*CANARY, "direction"], "up",
                 'metrics[0] (error-rate).analysisConfigurations.canary.direction: "up" is not one of increase, '
                 "decrease, either", id="direction"),
    pytest.param([*CANARY, "mustHavedata"], True,
                 "metrics[0] (error-rate).analysisConfigurations.canary.mustHavedata: unknown field",
                 id="typo-in-a-flag"),
    pytest.param([*CANARY, "critical"], "yes",
                 'metrics[0] (error-rate).analysisConfigurations.canary.critical: must be true or false, not "yes"',
                 id="critical-not-boolean"),
    pytest.param([*CANARY, "nanStrategy"], "zero",
                 'canary.nanStrategy: "zero" is not one of remove, replace', id="nan-strategy"),
    pytest.param([*CANARY, "effectSize", "allowedIncrease"], "10%",
                 'canary.effectSize.allowedIncrease: must be a number, not "10%"', id="effect-size-text"),
    pytest.param([*CANARY, "outliers", "outlierFactor"], 0, "canary.outliers.outlierFactor: must be greater than "
                 "zero", id="outlier-factor"),
    pytest.param(["judge", "name"], "dredd-v1.0", "judge.name: judge 'dredd-v1.0' is not available", id="judge"),
    pytest.param(["metrics"], [], "metrics: must be a non-empty list of metrics", id="no-metrics"),
    pytest.param(["metrics", 1, "name"], "error-rate", "metrics[1].name: metric name 'error-rate' is used twice",
                 id="duplicate-metric"),
    pytest.param(["metrics", 2, "name"], _DELETE, "metrics[2].name: is required", id="metric-without-name"),
    pytest.param(["classifier", "groupWeights", "errors"], 80,
                 "classifier.groupWeights: weights add up to 110, more than 100", id="weights-over-100"),
    pytest.param(["classifier", "groupWeights", "eror"], 10,
                 "classifier.groupWeights.eror: no metric is in this group", id="weight-of-unknown-group"),
    pytest.param(["classifier", "scoreThresholds"], {"pass": 50, "marginal": 75},
                 "classifier.scoreThresholds: marginal 75 is above pass 50", id="thresholds-reversed"),
    pytest.param(["extensions"], {}, "extensions: unknown field", id="unknown-top-level-field"),
    pytest.param(["metrics", 2, "groups"], [], "metrics[2] (cpu).groups: must name at least one group",
                 id="metric-in-no-group"),
])
def test_errors_name_the_file_and_the_field(path: list[str | int], value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_canary_config(_broken(path, value), "reviews.json")
    assert caught.value.where == "reviews.json"
    assert message in caught.value.message


def test_an_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_canary_config(_broken([*CANARY, "mustHavedata"], True), "reviews.json")
    assert caught.value.hint is not None and "mustHaveData" in caught.value.hint


def test_a_file_that_is_not_json_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{\n  "metrics": [\n    {"name": "x",}\n  ]\n}\n')
    with pytest.raises(ValidationError) as caught:
        load_canary_config(path)
    assert caught.value.where == f"{path}:3:18"  # the "}" after the trailing comma
    assert caught.value.message.startswith("not valid JSON")


def test_a_config_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    path.write_text(json.dumps(KAYENTA_CONFIG))
    assert load_canary_config(path) == parse_canary_config(KAYENTA_CONFIG, str(path))
