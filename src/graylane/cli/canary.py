"""`graylane canary judge | report | config import`: Kayenta's NetflixACAJudge offline, an execution's analysis
report, and canary configs into the store.

`judge` runs the judge offline on two recorded series.
Reads a canary config (Kayenta's JSON) and the control (baseline) and experiment (canary) values
from CSV or JSON files, and prints the report: per metric the classification, the interval and
estimate, the reason; the group scores; the score and the verdict. `-o json` prints it whole.
"""

from __future__ import annotations

import json
import math
import random
import sys

import typer

from graylane.analysis.judge import (
    JudgeReport,
    MetricResult,
    MetricSeries,
    NanStrategy,
    ScoreThresholds,
    Verdict,
    check_score_thresholds,
    effective_weights,
    judge,
    load_canary_config,
    load_series,
    report_json,
)
from graylane.cli import exit_codes
from graylane.errors import GraylaneError

EXIT_PASS = exit_codes.OK  # the verdict is Pass
EXIT_NOT_PASS = exit_codes.REFUSED  # Marginal or Fail (or refused input)

JUDGE_HELP = (
    "Judge a canary offline: Kayenta's NetflixACAJudge-v1.0 on recorded baseline and canary values.\n\n"
    "--config is a Kayenta canary config (JSON: metrics, groups, analysisConfigurations.canary, "
    "classifier.groupWeights). --control and --experiment are CSV files with a header row "
    "(metric,value or metric,timestamp,value) or JSON objects {metric: [values...]}; empty cells, null "
    "and NaN are missing values. Thresholds come from --pass/--marginal, else the config's "
    "classifier.scoreThresholds, else 75/50.\n\n"
    f"Exit codes: {EXIT_PASS} the verdict is Pass; {EXIT_NOT_PASS} Marginal or Fail, or bad input."
)


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.4g}"


def _cleaning_note(result: MetricResult) -> str:
    notes = []
    for side, cleaning in (("baseline", result.control_cleaning), ("canary", result.experiment_cleaning)):
        if cleaning.nans:
            done = "replaced by 0" if cleaning.nan_strategy is NanStrategy.REPLACE else "removed"
            notes.append(f"{cleaning.nans} NaN {done} in the {side}")
        if cleaning.outliers_removed:
            notes.append(f"{cleaning.outliers_removed} outlier(s) removed from the {side}")
    return f" ({'; '.join(notes)})" if notes else ""


def _label(result: MetricResult) -> str:
    label = result.classification.value
    if result.critical:
        label += " (critical)"
    if result.muted:
        label += " (muted)"
    return label


def _interval(result: MetricResult) -> tuple[str, str]:
    if result.test is None:
        return "-", "-"
    iv = result.test.interval
    return f"[{_fmt(iv.lower)}, {_fmt(iv.upper)}]", _fmt(iv.estimate)


def render_text(report: JudgeReport) -> list[str]:
    """The report as lines a person reads: a table, one reason per metric, groups, the verdict."""
    header = ("METRIC", "CLASSIFICATION", "BASELINE MEAN (N)", "CANARY MEAN (N)", "RATIO",
              f"{report.confidence_level * 100:g}% INTERVAL", "ESTIMATE")
    rows = [header]
    for r in report.results:
        interval, estimate = _interval(r)
        rows.append((r.name, _label(r), f"{_fmt(r.control.mean)} ({r.control.count})",
                     f"{_fmt(r.experiment.mean)} ({r.experiment.count})", _fmt(r.deviation), interval, estimate))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"{report.judge_name}: {report.config_name or 'canary config'}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append("")
    lines += [f"{r.name}: {r.classification.value}: {r.explanation}.{_cleaning_note(r)}" for r in report.results]
    if report.group_scores:
        weights = effective_weights(report.group_scores, report.group_weights)
        groups = ", ".join(f"{g.name} {_fmt(g.score)}{' (nothing to score)' if g.no_data else ''}"
                           f" (weight {_fmt(weights[g.name])})" for g in report.group_scores)
        lines += ["", f"groups: {groups}"]
    thresholds = f"pass >= {_fmt(report.thresholds.pass_score)}, marginal >= {_fmt(report.thresholds.marginal)}"
    verdict = f"score: {report.score.score:g} -> {report.score.verdict.value} ({thresholds})"
    if report.score.reason:
        verdict += f": {report.score.reason}"
    lines.append(verdict)
    return lines


def _series(config_metrics: list[str], control_path: str, experiment_path: str) -> dict[str, MetricSeries]:
    control = load_series(control_path)
    experiment = load_series(experiment_path)
    for path, data in ((control_path, control), (experiment_path, experiment)):
        for name in data:
            if name not in config_metrics:
                _warn(f"{path}: metric {name!r} is not in the canary config; ignored")
        for name in config_metrics:
            if name not in data:
                _warn(f"{path}: no values for metric {name!r}; judged as no data")
    return {name: MetricSeries(tuple(control.get(name, ())), tuple(experiment.get(name, ())))
            for name in config_metrics}


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def judge_cmd(
    config: str = typer.Option(..., "--config", "-c", help="Kayenta canary config (JSON)."),
    control: str = typer.Option(..., "--control", help="Baseline values: CSV or JSON."),
    experiment: str = typer.Option(..., "--experiment", help="Canary values: CSV or JSON."),
    output: str = typer.Option("text", "-o", "--output", help="text or json."),
    pass_score: float | None = typer.Option(None, "--pass", help="Pass threshold (default: config, else 75)."),
    marginal: float | None = typer.Option(None, "--marginal", help="Marginal threshold (default: config, else 50)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise that breaks ties when both sides are constant."),
) -> None:
    if output not in ("text", "json"):
        raise GraylaneError(f"unknown output format {output!r}", hint="use -o text or -o json")
    canary_config = load_canary_config(config)
    defaults = canary_config.score_thresholds or ScoreThresholds()
    thresholds = ScoreThresholds(defaults.pass_score if pass_score is None else pass_score,
                                 defaults.marginal if marginal is None else marginal)
    check_score_thresholds(thresholds, "command line", "--pass/--marginal")
    series = _series([m.name for m in canary_config.metrics], control, experiment)
    report = judge(canary_config, series, thresholds, rng=random.Random(seed))
    if output == "json":
        print(json.dumps(report_json(report), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print("\n".join(render_text(report)))
    raise typer.Exit(EXIT_PASS if report.score.verdict is Verdict.PASS else EXIT_NOT_PASS)


def report_cmd(
    execution: str = typer.Argument(..., help="Execution id (or a unique prefix)."),
    stage: str | None = typer.Option(None, "--stage", "-s", help="Only this stage (name, refId or id)."),
    output: str = typer.Option("text", "-o", "--output", help="text or json."),
) -> None:
    """Why each analysis stage of an execution passed or failed: scores, the judge's report, every measurement."""
    from graylane.analysis.report_text import ANALYSIS_TYPES, report_json, stage_lines
    from graylane.cli.client import ApiClient
    from graylane.cli.execution_ids import resolve_execution_id

    if output not in ("text", "json"):
        raise GraylaneError(f"unknown output format {output!r}", hint="use -o text or -o json")
    client = ApiClient()
    exe = client.get(f"/api/v1/executions/{resolve_execution_id(client, execution)}")
    stages = [s for s in exe.get("stages") or [] if s.get("type") in ANALYSIS_TYPES]
    if stage is not None:
        stages = [s for s in stages if stage in (s.get("name"), s.get("refId"), s.get("id"))]
    if not stages:
        which = f" named {stage!r}" if stage is not None else ""
        raise GraylaneError(f"execution {exe.get('id')} has no kayentaCanary or analysis stage{which}",
                            hint="`graylane execution show EXEC` lists its stages")
    if output == "json":
        print(json.dumps([report_json(s) for s in stages], indent=2, ensure_ascii=False))
        return
    print(f"{exe.get('application')}/{exe.get('name')} {exe.get('id')}: {exe.get('status')}")
    for s in stages:
        print("\n" + "\n".join(stage_lines(s)))


def config_import_cmd(
    file: str = typer.Argument(..., help="A Kayenta canary config (JSON)."),
    name: str | None = typer.Option(None, "--name", help="Resource name (default: the config's name)."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
) -> None:
    """Store a Kayenta canary config as a CanaryConfig resource (graylane.io/v1alpha1), checked first."""

    from graylane.analysis.resources import wrap_canary_config
    from graylane.cli.client import ApiClient
    from graylane.resources import jsonsafe
    from graylane.settings import current_user

    parsed = load_canary_config(file)  # refused here, naming the field, before anything is sent
    raw = jsonsafe.read(file)
    body = wrap_canary_config(raw, name, namespace)
    resp = ApiClient().post("/api/v1/apply", headers={"X-Graylane-User": current_user()},
                            json={"files": [{"name": file, "text": json.dumps(body)}]})
    for warning in resp.get("warnings", []):
        print(f"Warning: {warning}", file=sys.stderr)
    for r in resp["results"]:
        print(f"canaryconfig.graylane.io/{body['metadata']['name']} {r['action']} ({len(parsed.metrics)} metrics)")


def register(app: typer.Typer) -> None:
    """Add `graylane canary ...` to the root app."""
    canary_app = typer.Typer(help="Automated canary analysis: Kayenta's judge, reports, canary configs.",
                             no_args_is_help=True)
    canary_app.command("judge", help=JUDGE_HELP)(judge_cmd)
    canary_app.command("report")(report_cmd)
    config_app = typer.Typer(help="Canary configs (Kayenta's JSON) stored as CanaryConfig resources.",
                             no_args_is_help=True)
    config_app.command("import")(config_import_cmd)
    canary_app.add_typer(config_app, name="config")
    app.add_typer(canary_app, name="canary")
