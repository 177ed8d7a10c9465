"""Conformance of graylane.analysis.judge with Kayenta's own unit tests, case by case.

Inputs are Kayenta's (tests/analysis/kayenta_cases.json, extracted from spinnaker/kayenta at the
commit named in the file, keyed by the Scala file and test name); the expected outputs and the
tolerances below are the ones those Scala tests assert. Each case names its source file.
Hand-worked cases (computed by hand or from the definitions) live in test_judge_cases.py.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from graylane.analysis.judge import (
    Classification,
    EffectSize,
    EffectSizeMeasure,
    MannWhitneyClassifier,
    MetricDirection,
    NanStrategy,
    ScoredMetric,
    score,
    shift_interval,
    wilcoxon_diff,
)
from graylane.analysis.judge.mannwhitney import brent_root, normal_quantile
from graylane.analysis.judge.stats import SeriesStats, cles, mean_ratio, percentile, summary
from graylane.analysis.judge.transforms import (
    add_gaussian_noise,
    iqr_outliers,
    remove_nans,
    remove_outliers,
    replace_nans,
)

_CASES = json.loads((Path(__file__).parent / "kayenta_cases.json").read_text())
CLASSIFIER_SUITE = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala"
MANN_WHITNEY_SUITE = "kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala"
TRANSFORM_SUITE = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/TransformSuite.scala"
DETECTOR_SUITE = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/DetectorSuite.scala"
STATISTIC_SUITE = "kayenta-judge/src/test/scala/com/netflix/kayenta/judge/StatisticSuite.scala"
E = 0.000001  # MannWhitneySuite's tolerance


def arrays(suite: str, test: str) -> dict[str, list[float]]:
    data = _CASES[suite][test]
    return {k: [math.nan if v is None else v for v in values] for k, values in data.items()}


def test_the_fixture_holds_every_ported_case() -> None:
    assert {c.values[0] for c in CLASSIFIER_CASES} <= set(_CASES[CLASSIFIER_SUITE])
    assert set(MW_INTERVAL) <= set(_CASES[MANN_WHITNEY_SUITE])
    assert len(CLASSIFIER_CASES) == 34 and len(SCORER_CASES) == 13


# --- ClassifierSuite.scala: MannWhitneyClassifier.classify -------------------------------------
# (test name, tolerance, confidence, effect (decrease, increase), critical (decrease, increase), measure,
#  direction, nanStrategy, isCriticalMetric, expected label, expected critical or None when not asserted)
def _c(name: str, label: Classification, *, tol: float = 0.10, conf: float = 0.95,
       effect: tuple[float, float] = (1.0, 1.0), crit: tuple[float, float] = (1.0, 1.0),
       measure: EffectSizeMeasure = EffectSizeMeasure.MEAN_RATIO, direction: MetricDirection = MetricDirection.EITHER,
       nan: NanStrategy = NanStrategy.REMOVE, critical: bool = False, expect_critical: bool | None = None,
       ) -> object:
    return pytest.param(name, tol, conf, effect, crit, measure, direction, nan, critical, label, expect_critical,
                        id=name)


P, H, L, ND = Classification.PASS, Classification.HIGH, Classification.LOW, Classification.NODATA
INC, DEC = MetricDirection.INCREASE, MetricDirection.DECREASE
CLES = EffectSizeMeasure.CLES

CLASSIFIER_CASES = [  # every case: ClassifierSuite.scala
    _c("Mann-Whitney Classifier Test: Pass Metric", P),
    _c("Mann-Whitney Classifier Test: High Metric", H),
    _c("Mann-Whitney Classifier Test: Low Metric", L),
    _c("Mann-Whitney Classifier Directional Test: Increase", P, direction=INC),
    _c("Mann-Whitney Classifier Directional Test: Decrease", P, direction=DEC),
    _c("Mann-Whitney Classifier Directional Test: High Metric", H, direction=INC, expect_critical=False),
    _c("Mann-Whitney Classifier Directional Test: Low Metric", L, direction=DEC),
    _c("Mann-Whitney Classifier Test: High Metric (Large Input)", H, expect_critical=False),
    _c("Mann-Whitney Classifier Test - Mean Ratio Effect Size: High", H, effect=(0.8, 1.2)),
    _c("Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low", L, effect=(0.8, 1.2), direction=DEC),
    _c("Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass", P, effect=(0.5, 1.0)),
    _c("Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass (Large Input)", P, effect=(1.0, 5.0)),
    _c("Mann-Whitney Classifier Test - CLES Effect Size: Pass", P, tol=0.20, conf=0.98, effect=(0.5, 0.8),
       measure=CLES),
    _c("Mann-Whitney Classifier Test - CLES Effect Size: High", H, tol=0.20, conf=0.98, effect=(0.2, 0.8),
       measure=CLES),
    _c("Mann-Whitney Classifier Test - CLES Effect Size: Low", L, tol=0.20, conf=0.98, effect=(0.2, 0.8),
       measure=CLES),
    _c("Mann-Whitney Classifier Test - Critical Effect Size: Critical High", H, crit=(1.0, 1.2), critical=True,
       expect_critical=True),
    _c("Mann-Whitney Classifier Test - Critical Effect Size: Critical Low", L, crit=(1.2, 1.0), critical=True,
       expect_critical=True),
    _c("Mann-Whitney Classifier Test - Critical Effect Size: High", H, effect=(1.0, 5.0), crit=(1.0, 13.0),
       critical=True, expect_critical=False),
    _c("Mann-Whitney Classifier Test - Critical Effect Size: Pass", P, effect=(1.0, 13.0), crit=(1.0, 15.0),
       critical=True, expect_critical=False),
    _c("Mann-Whitney Classifier Test - Critical Effect Size: Critical High (Default Thresholds)", H, critical=True,
       expect_critical=True),
    _c("Mann-Whitney Tied Observations", P, direction=DEC),
    _c("Mann-Whitney Identical Populations", P, direction=DEC),
    _c("Mann-Whitney Leading Zero Identical Population", P, direction=DEC),
    _c("Mann-Whitney Missing Experiment Data", ND, direction=DEC),
    _c("Mann-Whitney Missing Experiment Data: Critical Metric", ND, direction=DEC, critical=True,
       expect_critical=True),
    _c("Mann-Whitney Missing Experiment Data with NaN Replacement", P, direction=DEC, nan=NanStrategy.REPLACE),
    # Kayenta asserts only a non-empty reason here (below); the label is what its code returns for it
    _c("Mann-Whitney Missing Data: Reason String", ND, direction=DEC, critical=True, expect_critical=True),
    _c("Mann-Whitney Majority Tied Observations", P),
    _c("Mann-Whitney Tied Ranks", H),
    _c("Mann-Whitney Tied Ranks With Zeros", H),
    _c("Mann-Whitney Zero Mean: High Metric with Effect Size", H, effect=(0.8, 1.2)),
    _c("Mann-Whitney Zero Mean: Low Metric with Effect Size", L, effect=(0.8, 1.2)),
    _c("Mann-Whitney Zero Mean: Critical Metric", H, crit=(0.8, 1.2), nan=NanStrategy.REPLACE, critical=True,
       expect_critical=True),
    _c("Mann-Whitney Zero Mean: Pass Metric", P, effect=(0.8, 1.2)),
]
# Not ported: the three "Mean Inequality Classifier" tests (a classifier NetflixACAJudge never uses).


@pytest.mark.parametrize(("name", "tol", "conf", "effect", "crit", "measure", "direction", "nan", "critical",
                          "label", "expect_critical"), CLASSIFIER_CASES)
def test_classifier_suite(name: str, tol: float, conf: float, effect: tuple[float, float],
                          crit: tuple[float, float], measure: EffectSizeMeasure, direction: MetricDirection,
                          nan: NanStrategy, critical: bool, label: Classification,
                          expect_critical: bool | None) -> None:
    data = arrays(CLASSIFIER_SUITE, name)
    classifier = MannWhitneyClassifier(
        tolerance=tol, confidence_level=conf,
        effect_size=EffectSize(measure=measure, allowed_decrease=effect[0], allowed_increase=effect[1],
                               critical_decrease=crit[0], critical_increase=crit[1]))
    result = classifier.classify(data["controlData"], data["experimentData"], name="metric", direction=direction,
                                 nan_strategy=nan, critical=critical, rng=random.Random(7))
    assert result.classification is label
    if expect_critical is not None:
        assert result.critical is expect_critical


def test_classifier_suite_extra_assertions() -> None:
    """The ClassifierSuite assertions beyond the label (same file)."""
    classifier = MannWhitneyClassifier(tolerance=0.10, confidence_level=0.95,
                                       effect_size=EffectSize(allowed_decrease=0.8, allowed_increase=1.2))
    for name in ("Mann-Whitney Zero Mean: High Metric with Effect Size",
                 "Mann-Whitney Zero Mean: Low Metric with Effect Size"):
        data = arrays(CLASSIFIER_SUITE, name)
        assert math.isnan(classifier.classify(data["controlData"], data["experimentData"]).deviation)
    data = arrays(CLASSIFIER_SUITE, "Mann-Whitney Zero Mean: Pass Metric")
    assert classifier.classify(data["controlData"], data["experimentData"]).deviation == 1.0
    data = arrays(CLASSIFIER_SUITE, "Mann-Whitney Missing Data: Reason String")
    result = MannWhitneyClassifier(0.10, 0.95).classify(data["controlData"], data["experimentData"],
                                                        name="test-critical-metric", critical=True)
    assert result.reason == "Missing data for test-critical-metric"


# --- MannWhitneySuite.scala: the interval, the estimate and their pieces ------------------------
MW_INTERVAL = {  # test name -> (x key, y key, confidence, lower, upper, estimate, estimate tolerance)
    "Mann-Whitney Confidence Interval & Estimate": ("experimentData", "controlData", 0.95, 6.0, 39.0, 22.5, E),
    "Mann-Whitney Confidence Interval & Estimate: Problem Case": (
        "experiment", "control", 0.98, -1.4808028936386108e-5, 1.808255910873413e-5, 1.808255910873413e-5, E),
    "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version": (
        "experiment", "control", 0.95, -0.500002521696696, -3.486287505871302e-5, -0.4999393907180323, 0.0001),
    "Mann-Whitney Confidence Interval & Estimate: Tie out with R Version (Large)": (
        "experiment", "control", 0.98, -0.4999173250549087, -6.912685789769486e-6, -3.45044082729315e-5, 0.0001),
}


@pytest.mark.parametrize("name", list(MW_INTERVAL), ids=list(MW_INTERVAL))
def test_mann_whitney_suite_interval_and_estimate(name: str) -> None:
    x_key, y_key, conf, lower, upper, estimate, estimate_tol = MW_INTERVAL[name]
    data = arrays(MANN_WHITNEY_SUITE, name)  # MannWhitneySuite.scala
    result = shift_interval(data[x_key], data[y_key], conf)
    assert result.lower == pytest.approx(lower, abs=E)
    assert result.upper == pytest.approx(upper, abs=E)
    assert result.estimate == pytest.approx(estimate, abs=estimate_tol)


def test_mann_whitney_suite_wilcoxon_diff_function() -> None:
    data = arrays(MANN_WHITNEY_SUITE, "Wilcoxon Diff Function")  # MannWhitneySuite.scala
    assert wilcoxon_diff(0, 0, data["x"], data["y"]) == pytest.approx(-1.229416, abs=E)
    assert wilcoxon_diff(5, 0, data["x"], data["y"]) == pytest.approx(-35.80606, abs=E)


def test_mann_whitney_suite_z_quantile() -> None:
    assert normal_quantile(0.02 / 2) == pytest.approx(-2.326348, abs=E)  # MannWhitneySuite.scala "Test zQuant"


def test_mann_whitney_suite_intermediate_values() -> None:
    # MannWhitneySuite.scala "Mann-Whitney Intermediate Values / Variables": the root finder run directly
    data = arrays(MANN_WHITNEY_SUITE, "Mann-Whitney Intermediate Values / Variables")
    x, y = data["x"], data["y"]
    mu_min, mu_max = min(x) - max(y), max(x) - min(y)
    zq_lower = -normal_quantile(0.05 / 2)
    zq_upper = normal_quantile(0.05 / 2)
    f_lower1, f_upper1 = wilcoxon_diff(mu_min, zq_lower, x, y), wilcoxon_diff(mu_max, zq_lower, x, y)
    f_lower2, f_upper2 = wilcoxon_diff(mu_min, zq_upper, x, y), wilcoxon_diff(mu_max, zq_upper, x, y)
    ci_lower = brent_root(mu_min, mu_max, f_lower1, f_upper1, lambda m: wilcoxon_diff(m, zq_lower, x, y))
    ci_upper = brent_root(mu_min, mu_max, f_lower2, f_upper2, lambda m: wilcoxon_diff(m, zq_upper, x, y))
    estimate = brent_root(mu_min, mu_max, wilcoxon_diff(mu_min, 0, x, y), wilcoxon_diff(mu_max, 0, x, y),
                          lambda m: wilcoxon_diff(m, 0, x, y))
    expected = [(-3.124999999999986, mu_min), (5.555555555555557, mu_max), (1.9599639845400536, zq_lower),
                (-1.9599639845400536, zq_upper), (17.090968923762254, f_lower1), (-20.997687930433106, f_upper1),
                (21.01089689284236, f_lower2), (-17.077759961353, f_upper2), (3.521755377702165e-5, ci_lower),
                (2.02456461662334e-5, ci_upper), (2.6279243045155653e-5, estimate)]
    for want, got in expected:
        assert got == pytest.approx(want, abs=E)


# --- ScorerSuite.scala: WeightedSumScorer -------------------------------------------------------
def _m(name: str, label: Classification, group: str, critical: bool = False) -> ScoredMetric:
    return ScoredMetric(name, label, (group,), critical, None)


SCORER_CASES = [  # (test name, group weights, metrics, expected summary score); every case: ScorerSuite.scala
    ("Weighted Sum Group Scorer: Single Metric Pass", {}, [_m("p", P, "test-group")], 100.0),
    ("Weighted Sum Group Scorer: Single Metric Fail", {}, [_m("h", H, "test-group")], 0.0),
    ("Weighted Sum Group Scorer: Single group Nodata", {}, [_m("n", ND, "test-group-nodata")], 0.0),
    ("Weighted Sum Group Scorer: Two Groups, one Pass, one Nodata", {},
     [_m("p1a", P, "test-group-pass"), _m("p1b", P, "test-group-pass"), _m("n", ND, "test-group-nodata")], 100.0),
    ("Weighted Sum Group Scorer: One Group, Two Metrics", {}, [_m("p", P, "g"), _m("h", H, "g")], 50.0),
    ("Weighted Sum Group Scorer: One Group, Three Metrics", {},
     [_m("p", P, "g"), _m("h", H, "g"), _m("l", L, "g")], 33.33),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics", {"group-1": 75.0, "group-2": 25.0},
     [_m("p1", P, "group-1"), _m("p2", P, "group-1"), _m("f", H, "group-2")], 75.0),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight)", {"group-1": 50.0, "group-2": 50.0},
     [_m("p", P, "group-1"), _m("f1", H, "group-1"), _m("f2", H, "group-2")], 25.0),
    ("Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight), one NoData",
     {"group-1": 50.0, "group-2": 50.0}, [_m("p", P, "group-1"), _m("n", ND, "group-1"), _m("f", H, "group-2")],
     50.0),
    ("Weighted Sum Group Scorer: Two Metrics, one good (normal), one fail (critical)", {},
     [_m("p", P, "test-group"), _m("h", H, "test-group", critical=True)], 0.0),
    ("Weighted Sum Group Scorer: Two Metrics, one low (normal), one good (critical)", {},
     [_m("l", L, "test-group"), _m("p2", P, "test-group", critical=True)], 50.0),
    ("Weighted Sum Group Scorer: Two Metrics, one good (normal), one nodata (critical)", {},
     [_m("p", P, "test-group"), _m("n", ND, "test-group", critical=True)], 0.0),
    ("Weighted Sum Group Scorer: Two Groups (Unequal Weight), Four Metrics", {"group1": 15.0, "group2": 85.0},
     [_m("h", H, "group1"), _m("l", L, "group1"), _m("p", P, "group1"), _m("f", H, "group2")], 5.0),
]


@pytest.mark.parametrize(("name", "weights", "metrics", "expected"), SCORER_CASES, ids=[c[0] for c in SCORER_CASES])
def test_scorer_suite(name: str, weights: dict[str, float], metrics: list[ScoredMetric], expected: float) -> None:
    assert score(metrics, weights).summary_score == expected


def test_scorer_suite_group_scores() -> None:
    # ScorerSuite.scala "Single group Nodata" and "Two Groups, one Pass, one Nodata": the group scores themselves
    single = score([_m("n", ND, "test-group-nodata")], {})
    assert [(g.name, g.score, g.no_data) for g in single.group_scores] == [("test-group-nodata", 0.0, True)]
    two = score([_m("a", P, "pass"), _m("b", P, "pass"), _m("n", ND, "nodata")], {})
    assert sorted(g.score for g in two.group_scores) == [0.0, 100.0]


# --- TransformSuite.scala, DetectorSuite.scala: NaN and outlier handling ------------------------
def test_transform_suite_nans() -> None:
    single = arrays(TRANSFORM_SUITE, "Remove Single NaN")
    assert remove_nans(single["testData"]) == single["truth"]
    assert remove_nans(arrays(TRANSFORM_SUITE, "Remove Multiple NaN")["testData"]) == []
    replace = arrays(TRANSFORM_SUITE, "Replace NANs")
    assert replace_nans(replace["testData"], 0.0) == replace["truth"]


def test_transform_suite_iqr_outlier_removal() -> None:
    data = arrays(TRANSFORM_SUITE, "IQR Outlier Removal")
    assert remove_outliers(data["testData"], 1.5, reduce_sensitivity=False) == data["truth"]


def test_gaussian_noise_has_the_requested_mean_and_spread() -> None:
    # TransformSuite.scala "Add Gaussian Noise" checks 5 draws of java.util.Random(12345) within 0.2; those
    # draws are Java's stream, not a property of the transform, so the same check runs on 10,000 draws here.
    noisy = add_gaussian_noise([0.0] * 10_000, stdev=1.0, rng=random.Random(12345), mean=1.0)
    avg = sum(noisy) / len(noisy)
    std = math.sqrt(sum((v - avg) ** 2 for v in noisy) / (len(noisy) - 1))
    assert len(noisy) == 10_000 and avg == pytest.approx(1.0, abs=0.05) and std == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", ["IQR Detection", "IQR Detect Two Sided"])
def test_detector_suite_iqr(name: str) -> None:
    data = arrays(DETECTOR_SUITE, name)  # DetectorSuite.scala
    assert iqr_outliers(data["testData"], 1.5) == [bool(v) for v in data["truth"]]


def test_detector_suite_iqr_empty_and_nist() -> None:
    assert iqr_outliers([], 1.5) == []  # DetectorSuite.scala "IQR Empty Data"
    nist = arrays(DETECTOR_SUITE, "IQR NIST Test")["testData"]  # DetectorSuite.scala "IQR NIST Test"
    assert iqr_outliers(nist, 1.5) == [False] * (len(nist) - 1) + [True]


# --- StatisticSuite.scala: percentiles and effect sizes -----------------------------------------
def test_statistic_suite_percentiles() -> None:
    basic = arrays(STATISTIC_SUITE, "Summary Statistics: Basic Percentile")["testData"]
    assert percentile(basic, 5) == pytest.approx(0.175, abs=1e-4)
    assert percentile(basic, 50) == 1.75 and percentile(basic, 100) == 3.5
    assert percentile(arrays(STATISTIC_SUITE, "Summary Statistics: Basic Percentile Estimate (Linear Interpolation)")
                      ["testData"], 50) == 4.5
    assert percentile(arrays(STATISTIC_SUITE, "Summary Statistics: Percentile (NIST Data)")["testData"],
                      90) == pytest.approx(95.19568, abs=1e-12)
    assert percentile([1.0], 100) == 1.0
    interp = arrays(STATISTIC_SUITE, "Summary Statistics: Percentile Estimate (Linear Interpolation)")["testData"]
    assert percentile(interp, 25) == 0.0
    assert percentile(interp, 75) == pytest.approx(0.0416, abs=1e-4)


@pytest.mark.parametrize(("name", "expected"), [
    ("Effect Size: Mean Ratio (No Effect)", 1.0), ("Effect Size: Mean Ratio (High)", 10.0),
    ("Effect Size: Mean Ratio (Low)", 0.1), ("Effect Size: Mean Ratio (Zero Mean)", math.nan)])
def test_statistic_suite_mean_ratio(name: str, expected: float) -> None:
    data = arrays(STATISTIC_SUITE, name)  # StatisticSuite.scala
    got = mean_ratio(data["controlData"], data["experimentData"])
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize(("name", "expected", "tol"), [
    ("CLES Effect Size: Identical", 0.5, 0.0), ("CLES Effect Size: Different (No Overlap)", 0.0, 0.0),
    ("CLES Effect Size: High Metric", 0.771, 0.001), ("CLES Effect Size: Low Metric", 0.12, 0.0)])
def test_statistic_suite_cles(name: str, expected: float, tol: float) -> None:
    data = arrays(STATISTIC_SUITE, name)  # StatisticSuite.scala
    assert cles(data["controlData"], data["experimentData"]) == pytest.approx(expected, abs=tol)


def test_statistic_suite_summary_statistics() -> None:
    # StatisticSuite.scala "Summary Statistics: Scalar", "...: List", "...: No Data" (inputs inline there too)
    assert summary([4.0]) == SeriesStats(4.0, 4.0, 4.0, 0.0, 1)
    listed = summary([1.0, 1.0, 1.0, 10.0, 10.0, 10.0])
    assert (listed.min, listed.max, listed.mean, listed.count) == (1.0, 10.0, 5.5, 6)
    assert listed.std == pytest.approx(4.9295, abs=1e-4)
    assert summary([]) == SeriesStats(0.0, 0.0, 0.0, 0.0, 0)
