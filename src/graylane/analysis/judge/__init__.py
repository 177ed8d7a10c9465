"""Kayenta's NetflixACAJudge-v1.0 in Python: canary configs, cleaning, the Mann-Whitney classifier, scoring.

`judge(config, series)` classifies each metric of a `CanaryConfig` (Kayenta's JSON, parsed by
`load_canary_config`) and scores the canary; `report_json` gives the report in Kayenta's field names.
Knows no metric provider, stage or store.
"""

from graylane.analysis.judge.classifier import Classification, MannWhitneyClassifier, MetricClassification, ShiftTest
from graylane.analysis.judge.config import (
    JUDGE_NAME,
    CanaryAnalysis,
    CanaryConfig,
    EffectSize,
    EffectSizeMeasure,
    MetricConfig,
    MetricDirection,
    NanStrategy,
    Outliers,
    OutlierStrategy,
    ScoreThresholds,
    check_score_thresholds,
    load_canary_config,
    parse_canary_config,
)
from graylane.analysis.judge.mannwhitney import ShiftInterval, shift_interval, wilcoxon_diff
from graylane.analysis.judge.netflix_aca import (
    JUDGE_CONFIDENCE_LEVEL,
    JUDGE_TOLERANCE,
    Cleaning,
    JudgeReport,
    MetricResult,
    MetricSeries,
    judge,
)
from graylane.analysis.judge.report import report_json
from graylane.analysis.judge.scorer import (
    GroupScore,
    ScoreClassification,
    ScoredMetric,
    ScoreResult,
    Verdict,
    effective_weights,
    score,
)
from graylane.analysis.judge.series import load_series

__all__ = [
    "JUDGE_CONFIDENCE_LEVEL", "JUDGE_NAME", "JUDGE_TOLERANCE", "CanaryAnalysis", "CanaryConfig", "Classification",
    "Cleaning", "EffectSize", "EffectSizeMeasure", "GroupScore", "JudgeReport", "MannWhitneyClassifier",
    "MetricClassification", "MetricConfig", "MetricDirection", "MetricResult", "MetricSeries", "NanStrategy",
    "OutlierStrategy", "Outliers", "ScoreClassification", "ScoreResult", "ScoreThresholds", "ScoredMetric",
    "ShiftInterval", "ShiftTest", "Verdict", "check_score_thresholds", "effective_weights", "judge",
    "load_canary_config", "load_series", "parse_canary_config", "report_json", "score", "shift_interval",
    "wilcoxon_diff",
]
