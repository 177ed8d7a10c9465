"""The analysis of `kayentaCanary` and `analysis` stages as the execution page shows it.

From the stage JSON only (`outputs.canaryIntervals`, `outputs.analysisRun`): the score of each interval against
the pass and marginal thresholds, per metric a small server-rendered SVG of baseline vs canary over the
intervals (with the same numbers as a table), each metric's classification and one-sentence reason; for an
`analysis` stage each measurement's value, condition and phase.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup, escape

ANALYSIS_TYPES = ("kayentaCanary", "analysis")
DEFAULT_PASS, DEFAULT_MARGINAL = 75.0, 50.0
# Colours with at least 4.5:1 contrast on white (WCAG AA for text, and for the chart's lines).
BASELINE_COLOUR, CANARY_COLOUR = "#1f4e8c", "#a4380f"
WIDTH, HEIGHT, PAD = 240, 80, 6


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return None if math.isnan(f) or math.isinf(f) else f


def number(value: Any) -> str:
    """A value as the page prints it: four significant digits, or n/a."""
    f = _float(value)
    return "n/a" if f is None else f"{f:.4g}"


def thresholds(stage: dict[str, Any]) -> tuple[float, float]:
    """(pass, marginal) of the stage's canaryConfig, Kayenta's 75/50 when it names none."""
    cfg = (stage.get("context") or {}).get("canaryConfig") or {}
    raw = cfg.get("scoreThresholds") if isinstance(cfg, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    p, m = _float(raw.get("pass")), _float(raw.get("marginal"))
    return (DEFAULT_PASS if p is None else p), (DEFAULT_MARGINAL if m is None else m)


def _points(values: list[float | None], low: float, high: float) -> str:
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    pts = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = PAD + i * step if len(values) > 1 else WIDTH / 2
        y = HEIGHT - PAD - (v - low) / span * (HEIGHT - 2 * PAD)
        pts.append(f"{x:.1f},{y:.1f}")
    return " ".join(pts)


def chart(metric: str, baseline: list[float | None], canary: list[float | None]) -> Markup:
    """An inline SVG of baseline and canary over the intervals; the table beside it carries the numbers."""
    known = [v for v in baseline + canary if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    if low == high:
        low, high = low - 1, high + 1
    parts = [f'<svg class="metric-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(metric)}: baseline and canary per interval (numbers in the table)">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff" stroke="#767676"/>']
    for values, colour, dash in ((baseline, BASELINE_COLOUR, ""), (canary, CANARY_COLOUR, ' stroke-dasharray="5 3"')):
        pts = _points(values, low, high)
        if pts:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{pts}"/>')
            for xy in pts.split():
                x, y = xy.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _mean(result: dict[str, Any], side: str) -> float | None:
    return _float(((result.get(f"{side}Metadata") or {}).get("stats") or {}).get("mean"))


def kayenta_view(stage: dict[str, Any]) -> dict[str, Any]:
    outputs = stage.get("outputs") or {}
    intervals = [i for i in outputs.get("canaryIntervals") or [] if isinstance(i, dict)]
    pass_score, marginal = thresholds(stage)
    rows = []
    for rec in intervals:
        score = _float(rec.get("score"))
        band = ("n/a" if score is None else "pass" if score >= pass_score
                else "marginal" if score >= marginal else "fail")
        rows.append({"index": rec.get("index"), "score": number(score), "band": band,
                     "classification": rec.get("classification"), "message": rec.get("message") or ""})
    names: list[str] = []
    for rec in intervals:
        for r in (rec.get("report") or {}).get("results") or []:
            if r.get("name") not in names:
                names.append(str(r.get("name")))
    metrics = []
    for name in names:
        per: list[dict[str, Any]] = []
        baseline: list[float | None] = []
        canary: list[float | None] = []
        for rec in intervals:
            found = next((r for r in (rec.get("report") or {}).get("results") or [] if str(r.get("name")) == name),
                         None) or {}
            baseline.append(_mean(found, "control"))
            canary.append(_mean(found, "experiment"))
            per.append({"index": rec.get("index"), "baseline": number(baseline[-1]), "canary": number(canary[-1]),
                        "classification": found.get("classification") or "n/a",
                        "reason": found.get("explanation") or (rec.get("explanations") or {}).get(name) or ""})
        last = per[-1]
        metrics.append({
            "name": name, "classification": last["classification"], "reason": last["reason"],
            "chart": chart(name, baseline, canary), "rows": per,
        })
    return {"kind": "kayentaCanary", "pass": number(pass_score), "marginal": number(marginal), "intervals": rows,
            "metrics": metrics, "message": outputs.get("canaryScoreMessage") or "",
            "baseline_colour": BASELINE_COLOUR, "canary_colour": CANARY_COLOUR}


def argo_view(stage: dict[str, Any]) -> dict[str, Any]:
    run = (stage.get("outputs") or {}).get("analysisRun") or {}
    metrics = []
    for metric in run.get("metricResults") or []:
        measurements = [{"n": i, "value": number(m.get("value")) if _float(m.get("value")) is not None
                         else str(m.get("value") if m.get("value") is not None else "n/a"),
                         "condition": m.get("condition") or "", "phase": m.get("phase") or "",
                         "reason": m.get("reason") or ""}
                        for i, m in enumerate(metric.get("measurements") or [], 1)]
        metrics.append({"name": metric.get("name"), "phase": metric.get("phase"), "dry_run": metric.get("dryRun"),
                        "message": metric.get("message") or "", "measurements": measurements})
    return {"kind": "analysis", "phase": run.get("phase") or "Pending", "message": run.get("message") or "",
            "metrics": metrics}


def analysis_view(stage: dict[str, Any]) -> dict[str, Any] | None:
    """What the stage panel shows of the analysis, or None for other stage types."""
    if stage.get("type") == "kayentaCanary":
        return kayenta_view(stage)
    if stage.get("type") == "analysis":
        return argo_view(stage)
    return None
