"""Hand-worked cases for the judge: each expected value is derived in its comment from the definitions
(R's wilcox.test normal approximation, Kayenta's WeightedSumScorer and NetflixACAJudge), not read
back from the code under test.
"""

from __future__ import annotations

import math
import random

import pytest

from graylane.analysis.judge import (
    Classification,
    MannWhitneyClassifier,
    MetricSeries,
    ScoredMetric,
    ScoreThresholds,
    Verdict,
    judge,
    parse_canary_config,
    score,
    wilcoxon_diff,
)
from graylane.analysis.judge.scorer import classify_score, round_half_up
from graylane.analysis.judge.transforms import iqr_outliers, remove_outliers

P, H, L = Classification.PASS, Classification.HIGH, Classification.LOW
ND, NDF, ERR = Classification.NODATA, Classification.NODATA_FAIL_METRIC, Classification.ERROR


def config(*metrics: dict[str, object], weights: dict[str, float] | None = None) -> object:
    body: dict[str, object] = {"name": "hand", "metrics": list(metrics)}
    if weights is not None:
        body["classifier"] = {"groupWeights": weights}
    return parse_canary_config(body, "hand.json")


def metric(name: str, group: str = "g", **canary: object) -> dict[str, object]:
    return {"name": name, "query": {}, "groups": [group], "analysisConfigurations": {"canary": canary}}


# --- the statistic -----------------------------------------------------------------------------
def test_wilcoxon_diff_without_ties() -> None:
    # x=[1,2], y=[3,4], mu=0: x ranks 1,2 -> W=3; W - nx(nx+1)/2 - nx*ny/2 = 3-3-2 = -2; continuity +0.5 -> -1.5;
    # sigma^2 = nx*ny/12 * (nx+ny+1) = 4/12*5
    assert wilcoxon_diff(0.0, 0.0, [1.0, 2.0], [3.0, 4.0]) == -1.5 / math.sqrt(4 / 12 * 5)


def test_wilcoxon_diff_with_a_tie_and_a_quantile() -> None:
    # x=[1,2], y=[2,3]: ranks 1, 2.5 | 2.5, 4 -> W=3.5, dz=-1.5, corrected -1.0; one tie of 2: t^3-t = 6,
    # sigma^2 = 4/12 * (5 - 6/(4*3)) = 1.5; minus the quantile 0.5
    assert wilcoxon_diff(0.0, 0.5, [1.0, 2.0], [2.0, 3.0]) == pytest.approx(-1.0 / math.sqrt(1.5) - 0.5, abs=1e-15)


def test_the_judge_uses_confidence_098_not_the_classifiers_095() -> None:
    # Eight consecutive integers shifted by 5: at 95% the interval's lower end is 2 (> 0.25*5 = 1.25): High;
    # at the judge's 98% it is 1 (< 1.25): Pass.
    control = [10.0, 11, 12, 13, 14, 15, 16, 17]
    experiment = [v + 5 for v in control]
    at_095 = MannWhitneyClassifier(tolerance=0.25, confidence_level=0.95).classify(control, experiment)
    assert at_095.classification is H
    assert at_095.test is not None and at_095.test.interval.lower == pytest.approx(2.0, abs=1e-3)
    report = judge(config(metric("m")), {"m": MetricSeries(tuple(control), tuple(experiment))})
    result = report.results[0]
    assert result.classification is P
    assert result.test is not None
    assert result.test.interval.confidence_level == 0.98
    assert result.test.interval.lower == pytest.approx(1.0, abs=1e-3)
    assert result.test.interval.upper == pytest.approx(9.0, abs=1e-3)
    assert result.test.interval.estimate == 5.0
    assert result.test.upper_bound == 1.25
    assert result.explanation.startswith("no significant shift: the 98% interval of the shift [1, 9]")


def test_a_test_that_cannot_run_is_an_error_and_scores_nothing() -> None:
    # One baseline value 0 and one canary value 5: the noise for a constant 0 has stdev 0, so at mu = min(x) - max(y)
    # both values tie and the rank variance is zero: Kayenta reports Error ("Metric Classification Failed").
    report = judge(config(metric("one"), metric("two")),
                   {"one": MetricSeries((0.0,), (5.0,)), "two": MetricSeries((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))})
    one, two = report.results
    assert (one.classification, one.reason, one.critical) == (ERR, "Metric Classification Failed", False)
    assert one.explanation == "the test could not run: cannot compute confidence interval when all observations " \
                              "are tied"
    assert two.classification is P
    assert report.group_scores[0].label_counts == {"Error": 1, "Pass": 1}
    assert report.score.score == 100.0  # Error is not counted: 1 Pass of 1 countable


# --- cleaning ----------------------------------------------------------------------------------
def test_outlier_fences_widen_to_the_1st_and_99th_percentiles() -> None:
    # [1..19, 100, 100]: Q1 = 6, Q3 = 16 (R-7 positions 6 and 16), fences with factor 3: -24 and 46, so Tukey drops
    # both 100s; the 99th percentile (position 20.8, between 100 and 100) is 100, and reduced sensitivity keeps them.
    values = [float(v) for v in range(1, 20)] + [100.0, 100.0]
    assert iqr_outliers(values, 3.0) == [False] * 19 + [True, True]
    assert remove_outliers(values, 3.0, reduce_sensitivity=True) == values
    # mirrored below: [-100, -100, 1..19] has Q1 = 4, Q3 = 14, Tukey's lower fence -26, 1st percentile -100: kept
    low = [-100.0, -100.0] + [float(v) for v in range(1, 20)]
    assert iqr_outliers(low, 3.0) == [True, True] + [False] * 19
    assert remove_outliers(low, 3.0, reduce_sensitivity=True) == low
    # [1..20, 1000]: 99th percentile = 20 + 0.8 * 980 = 804 < 1000, so 1000 goes even with reduced sensitivity.
    spiked = [float(v) for v in range(1, 21)] + [1000.0]
    assert remove_outliers(spiked, 3.0, reduce_sensitivity=True) == spiked[:-1]


def test_outliers_are_removed_only_when_the_metric_asks() -> None:
    values = tuple(float(v) for v in range(1, 21)) + (1000.0,)
    series = {"kept": MetricSeries(values, values), "dropped": MetricSeries(values, values)}
    report = judge(config(metric("kept"), metric("dropped", outliers={"strategy": "remove"})), series)
    kept, dropped = report.results
    assert (kept.experiment.count, kept.experiment.max, kept.experiment_cleaning.outliers_removed) == (21, 1000.0, 0)
    assert (dropped.experiment.count, dropped.experiment.max, dropped.experiment_cleaning.outliers_removed) == (
        20, 20.0, 1)


def test_nan_strategy_remove_gives_nodata_and_replace_gives_zeros() -> None:
    # A canary that reported no error counts (NaN) against a baseline of zeros: removed, nothing is left (Nodata);
    # replaced by 0, the two sides are identical (Pass).
    series = MetricSeries((0.0,) * 5, (math.nan,) * 5)
    removed = judge(config(metric("errors")), {"errors": series}).results[0]
    replaced = judge(config(metric("errors", nanStrategy="replace")), {"errors": series}).results[0]
    assert (removed.classification, removed.reason) == (ND, "Missing data for errors")
    assert removed.experiment_cleaning.nans == 5 and removed.experiment.count == 0
    assert (replaced.classification, replaced.reason) == (P, "The Canary and Baseline data are identical")


# --- classification rules ----------------------------------------------------------------------
HIGHER = MetricSeries(tuple(float(v) for v in range(100, 120)), tuple(float(v) for v in range(130, 150)))


def test_direction_decides_which_change_fails() -> None:
    # The canary is 30 higher on every value: "either" and "increase" say High, "decrease" lets it pass.
    cases = {"either": H, "increase": H, "decrease": P}
    for direction, label in cases.items():
        result = judge(config(metric("m", direction=direction)), {"m": HIGHER}).results[0]
        assert result.classification is label, direction
    passed = judge(config(metric("m", direction="decrease")), {"m": HIGHER}).results[0]
    assert "but only a decrease fails this metric" in passed.explanation


def test_allowed_increase_is_a_mean_ratio_gate() -> None:
    # mean ratio = 139.5 / 109.5 = 1.274: High with allowedIncrease 1.25, Pass with 1.3
    assert judge(config(metric("m", effectSize={"allowedIncrease": 1.25})), {"m": HIGHER}).results[0] \
        .classification is H
    result = judge(config(metric("m", effectSize={"allowedIncrease": 1.3})), {"m": HIGHER}).results[0]
    assert result.classification is P
    assert result.deviation == pytest.approx(139.5 / 109.5, rel=1e-15)
    assert "but the mean ratio 1.274 is below allowedIncrease 1.3" in result.explanation


def test_a_critical_metric_fails_the_canary_only_past_critical_increase() -> None:
    below = judge(config(metric("m", critical=True, effectSize={"criticalIncrease": 1.5}), metric("ok")),
                  {"m": HIGHER, "ok": HIGHER})
    assert (below.results[0].classification, below.results[0].critical) == (H, False)
    assert below.score.score == 0.0 and below.score.reason is None  # both High in one group: 0 of 2 pass
    past = judge(config(metric("m", critical=True, effectSize={"criticalIncrease": 1.2}), metric("p", "other")),
                 {"m": HIGHER, "p": MetricSeries((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))})
    assert (past.results[0].classification, past.results[0].critical) == (H, True)
    assert past.score.score == 0.0 and past.score.verdict is Verdict.FAIL
    assert past.score.reason == "Canary Failed: The metric m was classified as High (Critical)"


def test_must_have_data_counts_missing_data_as_a_failure_in_its_group() -> None:
    report = judge(config(metric("required", mustHaveData=True), metric("present")),
                   {"present": MetricSeries((1.0, 2.0), (1.0, 2.0))})
    assert [r.classification for r in report.results] == [NDF, P]
    assert report.score.score == 50.0  # 1 Pass of (Pass + NodataFailMetric)


def test_muted_metrics_are_reported_but_not_scored() -> None:
    report = judge(config(metric("loud", muted=True), metric("quiet")),
                   {"loud": HIGHER, "quiet": MetricSeries((1.0, 2.0), (1.0, 2.0))})
    assert report.results[0].classification is H and report.results[0].muted
    assert report.score.score == 100.0


# --- scoring -----------------------------------------------------------------------------------
def _m(label: Classification, group: str, critical: bool = False) -> ScoredMetric:
    return ScoredMetric(f"{group}-{label}", label, (group,), critical, "why")


def test_unweighted_groups_share_what_the_weights_leave() -> None:
    # a has 40; b and c share 60 (30 each). a = 100, b = 0, c = 1 of 2 = 50 -> 40 + 0 + 15 = 55
    results = [_m(P, "a"), _m(H, "b"), _m(P, "c"), _m(L, "c")]
    assert score(results, {"a": 40.0}).summary_score == 55.0


def test_a_group_with_nothing_countable_counts_as_100() -> None:
    # groups x (1 Pass of 2) and y (only Nodata): 50 * 0.5 + 100 * 0.5 = 75; Nodata is 1 of 3 metrics (< 50%)
    results = [_m(P, "x"), _m(H, "x"), _m(ND, "y")]
    scored = score(results, {})
    assert [(g.name, g.score, g.no_data) for g in scored.group_scores] == [("x", 50.0, False), ("y", 0.0, True)]
    assert scored.summary_score == 75.0


def test_half_the_metrics_without_data_fail_the_canary() -> None:
    two_of_four = score([_m(P, "a"), _m(P, "a"), _m(ND, "b"), _m(ND, "b")], {})
    assert (two_of_four.summary_score, two_of_four.reason) == (
        0.0, "Canary Failed: 50% or more metrics returned NODATA")
    one_of_three = score([_m(P, "a"), _m(P, "a"), _m(ND, "b")], {})
    assert (one_of_three.summary_score, one_of_three.reason) == (100.0, None)


def test_the_summary_rounds_half_up_to_two_decimals() -> None:
    # group a weighs 1 and scores 1 of 8 = 12.5; b weighs 99 and scores 0: 12.5 * 0.01 = 0.125 -> 0.13
    # (half-up, as commons-math Precision.round; Python's round() would give 0.12)
    results = [_m(P, "a")] + [_m(H, "a")] * 7 + [_m(H, "b")]
    assert score(results, {"a": 1.0, "b": 99.0}).summary_score == 0.13
    assert round_half_up(66.66666666666667) == 66.67 and round_half_up(2.675) == 2.68


@pytest.mark.parametrize(("value", "verdict"), [(100.0, Verdict.PASS), (75.0, Verdict.PASS),
                                                 (74.99, Verdict.MARGINAL), (50.0, Verdict.MARGINAL),
                                                 (49.99, Verdict.FAIL), (0.0, Verdict.FAIL)])
def test_thresholds_are_inclusive(value: float, verdict: Verdict) -> None:
    from graylane.analysis.judge.scorer import ScoreResult

    assert classify_score(ScoreResult((), value, 1, None), ScoreThresholds(75.0, 50.0)).verdict is verdict


def test_thresholds_come_from_the_call_then_the_config_then_75_50() -> None:
    body = {"metrics": [metric("a"), metric("b")], "classifier": {"scoreThresholds": {"pass": 40, "marginal": 20}}}
    with_config = parse_canary_config(body, "t.json")
    series = {"a": HIGHER, "b": MetricSeries((1.0, 2.0), (1.0, 2.0))}  # 1 of 2 pass: 50
    assert judge(with_config, series).score.verdict is Verdict.PASS
    assert judge(with_config, series, ScoreThresholds(90, 60)).score.verdict is Verdict.FAIL
    assert judge(config(metric("a"), metric("b")), series).score.verdict is Verdict.MARGINAL


def test_the_noise_for_constant_sides_is_seeded() -> None:
    series = {"m": MetricSeries((1.0,) * 5, (10.0,) * 5)}
    first = judge(config(metric("m")), series, rng=random.Random(3)).results[0]
    again = judge(config(metric("m")), series, rng=random.Random(3)).results[0]
    assert first.classification is H and first.test is not None and first.test.noise_added
    assert first.test == again.test
