"""`graylane canary judge` as a user types it: a child process, its exit code and the lines it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = {
    "name": "checkout canary",
    "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
    "metrics": [
        {"name": "error-rate", "query": {"type": "local"}, "groups": ["errors"],
         "analysisConfigurations": {"canary": {"direction": "increase", "critical": True, "nanStrategy": "replace"}}},
        {"name": "latency-p99", "query": {"type": "local"}, "groups": ["latency"],
         "analysisConfigurations": {"canary": {"direction": "increase"}}},
    ],
    "classifier": {"groupWeights": {"errors": 50, "latency": 50}},
}
BASELINE_LATENCY = [100 + i for i in range(20)]  # 100..119
BASELINE_ERRORS = [0.010, 0.012, 0.011, 0.009, 0.010]


def graylane(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def write_csv(path: Path, series: dict[str, list[float]]) -> str:
    rows = ["metric,timestamp,value"] + [f"{name},{i},{v}" for name, values in series.items()
                                         for i, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "checkout.json"
    config.write_text(json.dumps(CONFIG))
    control = write_csv(tmp_path / "baseline.csv", {"latency-p99": BASELINE_LATENCY, "error-rate": BASELINE_ERRORS})
    return {"config": str(config), "control": control, "dir": str(tmp_path)}


def test_a_slower_canary_is_high_and_the_report_says_why(files: dict[str, str]) -> None:
    # the canary's latency is the baseline's + 30 on every value; its error rates are the baseline's, reordered
    canary = write_csv(Path(files["dir"]) / "canary.csv", {"latency-p99": [v + 30 for v in BASELINE_LATENCY],
                                                           "error-rate": [0.011, 0.010, 0.012, 0.010, 0.009]})
    run = graylane("canary", "judge", "--config", files["config"], "--control", files["control"],
                   "--experiment", canary)
    assert run.returncode == 1, run.stderr  # Marginal is not a pass
    lines = run.stdout.splitlines()
    assert lines[0] == "NetflixACAJudge-v1.0: checkout canary"
    assert lines[2].split() == ["METRIC", "CLASSIFICATION", "BASELINE", "MEAN", "(N)", "CANARY", "MEAN", "(N)",
                                "RATIO", "98%", "INTERVAL", "ESTIMATE"]
    # 20 vs 20 values shifted by 30: the 98% interval of the shift runs from the 114th to the 287th of the 400
    # pairwise differences, 25 and 35; the Hodges-Lehmann estimate is their median, 30; 139.5/109.5 = 1.274
    assert lines[4].split() == ["latency-p99", "High", "109.5", "(20)", "139.5", "(20)", "1.274", "[25,", "35]", "30"]
    assert lines[3].split() == ["error-rate", "Pass", "0.0104", "(5)", "0.0104", "(5)", "1", "-", "-"]
    assert "error-rate: Pass: the canary and baseline values are identical." in lines
    assert ("latency-p99: High: the canary is higher: the 98% interval of the shift [25, 35] lies above +7.5 "
            "and the mean ratio 1.274 reaches allowedIncrease 1.") in lines
    assert "groups: errors 100 (weight 50), latency 0 (weight 50)" in lines
    assert lines[-1] == "score: 50 -> Marginal (pass >= 75, marginal >= 50)"
    assert run.stderr == ""


def test_a_critical_failure_scores_zero_in_json(files: dict[str, str]) -> None:
    # JSON series; a missing interval is null. Canary error rates 0.050..0.059 and one null, against 0.009..0.012:
    # all ten reported values lie above every baseline value, so the 98% interval clears its bound.
    canary = Path(files["dir"]) / "canary.json"
    canary.write_text(json.dumps({"latency-p99": BASELINE_LATENCY,
                                  "error-rate": [round(0.05 + 0.001 * i, 3) for i in range(10)] + [None]}))
    run = graylane("canary", "judge", "--config", files["config"], "--control", files["control"],
                   "--experiment", str(canary), "-o", "json")
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["score"] == {"score": 0.0, "classification": "Fail",
                               "classificationReason": "Canary Failed: The metric error-rate was classified as High "
                                                       "(Critical)",
                               "thresholds": {"pass": 75.0, "marginal": 50.0}, "confidenceLevel": 0.98,
                               "tolerance": 0.25}
    errors, latency = report["results"]
    assert (errors["classification"], errors["critical"], errors["direction"]) == ("High", True, "increase")
    # nanStrategy replace: the null became 0, so the canary keeps 6 values
    assert errors["experimentMetadata"]["cleaning"] == {"received": 11, "nans": 1, "outliersRemoved": 0}
    assert errors["experimentMetadata"]["stats"]["count"] == 11 and errors["experimentMetadata"]["stats"]["min"] == 0
    assert errors["statistic"]["confidenceLevel"] == 0.98
    assert errors["statistic"]["lower"] > errors["statistic"]["upperBound"] > 0
    assert errors["explanation"].endswith("reaches criticalIncrease 1, so the canary fails")
    assert (latency["classification"], latency["classificationReason"]) == (
        "Pass", "The Canary and Baseline data are identical")
    assert [(g["name"], g["score"]) for g in report["groupScores"]] == [("errors", 0.0), ("latency", 100.0)]


def test_thresholds_from_the_command_line(files: dict[str, str]) -> None:
    canary = write_csv(Path(files["dir"]) / "canary.csv", {"latency-p99": [v + 30 for v in BASELINE_LATENCY],
                                                           "error-rate": BASELINE_ERRORS})
    run = graylane("canary", "judge", "--config", files["config"], "--control", files["control"],
                   "--experiment", canary, "--pass", "50", "--marginal", "25")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "score: 50 -> Pass (pass >= 50, marginal >= 25)"


def test_a_config_error_is_one_line_naming_the_field(files: dict[str, str]) -> None:
    broken = json.loads(json.dumps(CONFIG))
    broken["metrics"][1]["analysisConfigurations"]["canary"]["direction"] = "up"
    path = Path(files["dir"]) / "broken.json"
    path.write_text(json.dumps(broken))
    run = graylane("canary", "judge", "--config", str(path), "--control", files["control"],
                   "--experiment", files["control"])
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        f'error: {path}: metrics[1] (latency-p99).analysisConfigurations.canary.direction: "up" is not one of '
        "increase, decrease, either"]


def test_a_bad_value_names_the_file_and_line_and_unknown_metrics_are_warned(files: dict[str, str]) -> None:
    bad = Path(files["dir"]) / "bad.csv"
    bad.write_text("metric,value\nlatency-p99,120\nlatency-p99,12O\n")
    run = graylane("canary", "judge", "--config", files["config"], "--control", files["control"],
                   "--experiment", str(bad))
    assert (run.returncode, run.stderr.splitlines()) == (1, [f"error: {bad}:3: '12O' is not a number"])

    odd = write_csv(Path(files["dir"]) / "odd.csv", {"latency-p99": BASELINE_LATENCY, "latency-p95": [1.0]})
    run = graylane("canary", "judge", "--config", files["config"], "--control", files["control"],
                   "--experiment", odd)
    assert run.stderr.splitlines() == [
        f"warning: {odd}: metric 'latency-p95' is not in the canary config; ignored",
        f"warning: {odd}: no values for metric 'error-rate'; judged as no data"]
    # error-rate has no canary values but nanStrategy replace: Kayenta counts it as Pass
    assert "error-rate: Pass: the canary has no values; with nanStrategy replace Kayenta counts that as Pass." \
        in run.stdout.splitlines()
    assert run.returncode == 0
