"""`graylane canary report`: an execution's analysis stages as text a person reads, from the stages' JSON.

For a `kayentaCanary` stage: each interval (window, score, verdict, why), the judge's table for it (classification,
baseline and canary means, ratio, interval, estimate), and per metric and side the query sent and what came back.
For an `analysis` stage: the run's phase and message, then each metric's phase and every measurement (value,
condition, reason, resolved query). A rollback, when one ran, is the last line. Works on the execution JSON only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

ANALYSIS_TYPES = ("kayentaCanary", "analysis")


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "n/a"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return str(value)


def _clock(t: Any) -> str:
    if not isinstance(t, int | float):
        return "?"
    return datetime.fromtimestamp(float(t), UTC).strftime("%H:%M:%S")


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _judge_rows(report: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, ...]] = [("METRIC", "CLASSIFICATION", "BASELINE MEAN (N)", "CANARY MEAN (N)", "RATIO",
                                    "98% INTERVAL", "ESTIMATE")]
    for r in report.get("results") or []:
        label = str(r.get("classification"))
        if r.get("critical"):
            label += " (critical)"
        if r.get("muted"):
            label += " (muted)"
        control = (r.get("controlMetadata") or {}).get("stats") or {}
        experiment = (r.get("experimentMetadata") or {}).get("stats") or {}
        stat = r.get("statistic") or {}
        interval = f"[{_num(stat.get('lower'))}, {_num(stat.get('upper'))}]" if stat else "-"
        rows.append((str(r.get("name")), label, f"{_num(control.get('mean'))} ({control.get('count', 0)})",
                     f"{_num(experiment.get('mean'))} ({experiment.get('count', 0)})",
                     _num((r.get("resultMetadata") or {}).get("ratio")), interval,
                     _num(stat.get("estimate")) if stat else "-"))
    return _table(rows, "    ")


def kayenta_lines(stage: dict[str, Any]) -> list[str]:
    outputs = stage.get("outputs") or {}
    ctx = stage.get("context") or {}
    intervals = outputs.get("canaryIntervals") or []
    cfg = ctx.get("canaryConfig") or {}
    scope = (cfg.get("scopes") or [{}])[0] if isinstance(cfg, dict) else {}
    lines = [f"canary config {outputs.get('canaryConfigName') or cfg.get('canaryConfigName') or '?'}: baseline "
             f"{scope.get('controlScope', '?')} vs canary {scope.get('experimentScope', '?')}, scores "
             f"{', '.join(_num(s) for s in outputs.get('canaryScores') or []) or 'none yet'}"]
    if not intervals:
        lines.append("  no interval judged yet")
    for rec in intervals:
        lines.append("")
        lines.append(f"  interval {rec.get('index')} ({_clock(rec.get('start'))}-{_clock(rec.get('end'))} UTC, "
                     f"account {rec.get('account')}): {rec.get('message')}")
        report = rec.get("report") or {}
        lines += _judge_rows(report)
        for r in report.get("results") or []:
            lines.append(f"    {r.get('name')}: {r.get('classification')}: {r.get('explanation')}")
        for m in rec.get("measurements") or []:
            values = m.get("values") or []
            shown = ", ".join(_num(v) for v in values[:6]) + (f", ... ({len(values)} values)" if len(values) > 6
                                                                  else "")
            lines.append(f"    {m.get('metric')} {'baseline' if m.get('side') == 'control' else 'canary'}: "
                         f"{m.get('query')} -> {m.get('outcome')} [{shown}]")
    if outputs.get("canaryScoreMessage"):
        lines += ["", f"  {outputs['canaryScoreMessage']}"]
    return lines


def analysis_lines(stage: dict[str, Any]) -> list[str]:
    run = (stage.get("outputs") or {}).get("analysisRun") or {}
    lines = [f"AnalysisRun {run.get('phase', 'Pending')}" + (f": {run['message']}" if run.get("message") else "")]
    for metric in run.get("metricResults") or []:
        dry = " (dry run)" if metric.get("dryRun") else ""
        lines.append("")
        lines.append(f"  {metric.get('name')}{dry}: {metric.get('phase')} ({metric.get('successful', 0)} successful, "
                     f"{metric.get('failed', 0)} failed, {metric.get('inconclusive', 0)} inconclusive, "
                     f"{metric.get('error', 0)} error)" + (f": {metric['message']}" if metric.get("message") else ""))
        for i, m in enumerate(metric.get("measurements") or [], 1):
            lines.append(f"    #{i} {_clock(m.get('startedAt'))} {m.get('phase')}: {m.get('reason')}")
            lines.append(f"       query: {m.get('query')}")
    return lines


def stage_lines(stage: dict[str, Any]) -> list[str]:
    """The report of one analysis stage."""
    head = f"{stage.get('name')} ({stage.get('type')}): {stage.get('status')}"
    if stage.get("status") in ("NOT_STARTED", "SKIPPED"):
        return [head]
    body = kayenta_lines(stage) if stage.get("type") == "kayentaCanary" else analysis_lines(stage)
    lines = [head, *[f"  {line}" if line else "" for line in body]]
    error = ((stage.get("context") or {}).get("exception") or {}).get("details", {}).get("error")
    if error:
        lines += ["", f"  failed: {error}"]
    rollback = (stage.get("outputs") or {}).get("rollbackSummary")
    if rollback and not error:
        lines += ["", f"  rolled back: {rollback}"]
    return lines


def report_json(stage: dict[str, Any]) -> dict[str, Any]:
    """The whole analysis record of a stage (what `-o json` prints)."""
    outputs = stage.get("outputs") or {}
    keys = ("canaryScores", "canaryScoreMessage", "canaryIntervals", "lastReport", "canaryConfigName",
            "analysisRun", "analysisPhase", "analysisMessage", "rolledBack", "rollbackSummary")
    return {"id": stage.get("id"), "name": stage.get("name"), "type": stage.get("type"),
            "status": stage.get("status"),
            "error": ((stage.get("context") or {}).get("exception") or {}).get("details", {}).get("error"),
            **{k: outputs[k] for k in keys if k in outputs}}
