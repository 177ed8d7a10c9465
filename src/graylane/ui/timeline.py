"""One timeline per release: the revisions an execution wrote, its judgments, the route weights each
VirtualService/HTTPRoute revision set, and each version's 5xx rate over the execution's window, on one time
axis. Pure functions over API JSON; graylane.server.ui_timeline fetches, fragments/timeline.html draws.

Positions are percentages of the axis (0-100), so the page draws it as HTML and SVG at any width.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from graylane.ui.release import http_route_weights, released_services, route_weights, subset_versions, version_traffic
from graylane.ui.views import parse_time

LANES = ("Judgments", "Revisions", "Weights", "Error rate")
ROUTE_KINDS = ("VirtualService", "HTTPRoute")
MAX_BUCKETS = 12


@dataclass(frozen=True, slots=True)
class Mark:
    """One point on the axis: what happened, where it leads."""

    time_ms: float
    x: float  # % of the axis
    lane: str
    text: str  # the whole sentence (accessible name, table row)
    href: str
    short: str = ""  # drawn beside the mark
    y: float | None = None  # % of the lane's height from the bottom (weights, error rate)
    css: str = ""


@dataclass(frozen=True, slots=True)
class Line:
    """A series drawn across a chart lane (a version's weight or error rate)."""

    label: str
    css: str
    points: list[tuple[float, float]]  # (x %, y %)

    @property
    def svg_points(self) -> str:
        return " ".join(f"{x:.2f},{100 - y:.2f}" for x, y in self.points)


@dataclass(frozen=True, slots=True)
class Timeline:
    start_ms: float
    end_ms: float
    marks: list[Mark]
    weight_lines: list[Line] = field(default_factory=list)
    error_lines: list[Line] = field(default_factory=list)
    error_max: float = 1.0  # the error-rate lane's top, in %
    ticks: list[tuple[float, float]] = field(default_factory=list)  # (x %, epoch ms)
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why

    def lane(self, name: str) -> list[Mark]:
        return [m for m in self.marks if m.lane == name]

    @property
    def rows(self) -> list[Mark]:
        """The table alternative: every mark in time order (error-rate points only where the rate changed)."""
        out = []
        last: dict[str, float] = {}
        for m in sorted(self.marks, key=lambda m: (m.time_ms, LANES.index(m.lane))):
            if m.lane == "Error rate":
                key, rate = m.css, float(m.short.rstrip("%") or 0)
                if key in last and abs(last[key] - rate) < 0.1:
                    continue
                last[key] = rate
            out.append(m)
        return out


def _ms(value: Any) -> float | None:
    when = parse_time(value)
    return when.timestamp() * 1000 if when else None


def window_of(execution: dict[str, Any], now_ms: float | None = None) -> tuple[float, float]:
    """The execution's start and its end (now while it runs), in epoch ms."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    start = _ms(execution.get("startTime")) or _ms(execution.get("buildTime")) or now_ms
    end = _ms(execution.get("endTime")) or now_ms
    return start, max(end, start + 1000)


def buckets(start_ms: float, end_ms: float, count: int = MAX_BUCKETS) -> list[tuple[float, float]]:
    """The window cut into at most `count` equal buckets of at least 5 s: where error rates are sampled."""
    width = max((end_ms - start_ms) / count, 5000.0)
    out = []
    t = start_ms
    while t < end_ms - 1:
        out.append((t, min(t + width, end_ms)))
        t += width
    return out


def roles(execution: dict[str, Any]) -> dict[str, str]:
    """version -> "canary" / "baseline", from the trigger's parameters (canary_version, base_version, ...)."""
    out: dict[str, str] = {}
    for key, value in ((execution.get("trigger") or {}).get("parameters") or {}).items():
        name = str(key).lower()
        if "canary" in name:
            out[str(value)] = "canary"
        elif any(word in name for word in ("base", "stable", "primary")):
            out[str(value)] = "baseline"
    return out


def resource_href(kind: str, namespace: str, name: str, revision: int | None = None) -> str:
    path = f"/resources/{quote(kind, safe='')}/{quote(namespace, safe='')}/{quote(name, safe='')}"
    return path + (f"?diff={revision}" if revision is not None else "")


def traces_href(service: str, version: str) -> str:
    return "/traces?" + urlencode({"service": service, "version": version})


def _judgments(execution: dict[str, Any]) -> list[tuple[float, str, str]]:
    """(time, sentence, stage anchor) for each judged manual judgment."""
    out = []
    for s in execution.get("stages") or []:
        ctx = s.get("context") or {}
        if s.get("type") != "manualJudgment" or not ctx.get("judgmentStatus"):
            continue
        when = _ms((s.get("lastModified") or {}).get("lastModifiedTime")) or _ms(s.get("endTime"))
        if when is None:
            continue
        what = str(ctx["judgmentStatus"]) + (f" “{ctx['judgmentInput']}”" if ctx.get("judgmentInput") else "")
        params = ", ".join(f"{k}={v}" for k, v in (ctx.get("customParams") or {}).items())
        text = f"{ctx.get('lastModifiedBy') or 'someone'} judged {s.get('name')}: {what}" + (
            f" ({params})" if params else "")
        out.append((when, text, str(s.get("id"))))
    return out


def _stage_names(execution: dict[str, Any]) -> dict[str, str]:
    return {str(s.get("id")): str(s.get("name") or s.get("type")) for s in execution.get("stages") or []}


def _weights(revision: dict[str, Any], services: list[str], destination_rules: list[dict[str, Any]],
             kube_services: list[dict[str, Any]]) -> list[tuple[str, dict[str, float]]]:
    """(service, version -> %) for each released service the revision's body routes."""
    body = revision.get("body")
    if revision.get("deleted") or not isinstance(body, dict):
        return []
    out = []
    for service in services:
        if revision.get("kind") == "VirtualService":
            weights, _ = route_weights(service, [body], subset_versions(service, destination_rules))
        else:
            weights, _ = http_route_weights(service, [body], kube_services)
        if weights:
            out.append((service, weights))
    return out


def _pick_trace(traces: list[dict[str, Any]], start_ms: float, end_ms: float, errors: bool) -> str | None:
    inside = [t for t in traces if start_ms * 1000 <= float(t.get("startUs") or 0) < end_ms * 1000]
    if errors:
        inside = [t for t in inside if t.get("errors")] or inside
    return str(inside[0]["traceId"]) if inside else None


def build_timeline(execution: dict[str, Any], revisions: list[dict[str, Any]],
                   samples: list[tuple[float, float, dict[str, Any]]],
                   traces: dict[tuple[str, str], list[dict[str, Any]]],
                   destination_rules: list[dict[str, Any]] | None = None,
                   kube_services: list[dict[str, Any]] | None = None, now_ms: float | None = None) -> Timeline:
    """`revisions`: history entries (with `body`) this execution wrote; `samples`: (bucket start, end, graph of
    that bucket); `traces`: (service, version) -> recent trace summaries of that version."""
    start, end = window_of(execution, now_ms)
    before = [r for r in revisions if r.get("before")]  # the routes as the execution found them
    revisions = [r for r in revisions if not r.get("before")]
    times = [start, end] + [w for w in (_ms(r.get("time")) for r in revisions) if w]
    start, end = min(times), max(times)
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return round(100 * (t - start) / span, 2)

    exe_href = f"/executions/{quote(str(execution.get('id', '')), safe='')}"
    marks: list[Mark] = [Mark(t, x(t), "Judgments", text, f"{exe_href}#stage-{quote(sid, safe='')}", css="judgment")
                         for t, text, sid in _judgments(execution)]
    names = _stage_names(execution)
    services = released_services(execution)
    role = roles(execution)
    weight_points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in before:
        kind, ns, name, rev = str(r.get("kind")), str(r.get("namespace") or "default"), str(r.get("name")), r.get(
            "revision")
        href = resource_href(kind, ns, name, int(rev) if isinstance(rev, int) else None)
        for service, weights in _weights(r, services, destination_rules or [], kube_services or []):
            split = " · ".join(f"{v} {w:g}%" for v, w in sorted(weights.items()))
            canary = next((v for v in weights if role.get(v) == "canary"), None)
            marks.append(Mark(start, 0.0, "Weights", f"{service} weights before this execution: {split} "
                              f"({kind} {name} revision {rev})", href, y=weights[canary] if canary else
                              max(weights.values()), css="weight before"))
            for version, w in weights.items():
                weight_points.setdefault((service, version), []).append((0.0, w))
    for r in sorted(revisions, key=lambda r: (_ms(r.get("time")) or 0, r.get("revision", 0))):
        t = _ms(r.get("time"))
        if t is None:
            continue
        kind, ns, name, rev = str(r.get("kind")), str(r.get("namespace") or "default"), str(r.get("name")), r.get(
            "revision")
        stage = names.get(str(r.get("actor", "")).partition("/")[2], "")
        href = resource_href(kind, ns, name, int(rev) if isinstance(rev, int) else None)
        verb = "deleted" if r.get("deleted") else str(r.get("action") or "changed")
        marks.append(Mark(t, x(t), "Revisions", f"{kind} {ns}/{name} revision {rev} {verb}"
                          + (f" by stage {stage}" if stage else ""), href, css="revision"))
        if kind not in ROUTE_KINDS:
            continue
        for service, weights in _weights(r, services, destination_rules or [], kube_services or []):
            split = " · ".join(f"{v} {w:g}%" for v, w in sorted(weights.items()))
            canary = next((v for v in weights if role.get(v) == "canary"), None)
            marks.append(Mark(t, x(t), "Weights", f"{service} weights {split} ({kind} {name} revision {rev})", href,
                              short=f"{canary} {weights[canary]:g}%" if canary else split,
                              y=weights[canary] if canary else max(weights.values()), css="weight"))
            for version, w in weights.items():
                weight_points.setdefault((service, version), []).append((x(t), w))
    weight_lines = []
    for (service, version), points in sorted(weight_points.items()):
        stepped: list[tuple[float, float]] = []
        for i, (px, py) in enumerate(points):  # a step line: a weight holds until the next revision
            if i:
                stepped.append((px, stepped[-1][1]))
            stepped.append((px, py))
        stepped.append((100.0, stepped[-1][1]))
        weight_lines.append(Line(f"{service} {version}", role.get(version, "other"), stepped))

    rates: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for b_start, b_end, graph in samples:
        for service in services:
            seen = version_traffic(service, graph)
            for version, rate in seen.error_rate.items():
                rates.setdefault((service, version), []).append((b_start, b_end, rate, seen.share.get(version, 0.0)))
    top = max([1.0] + [r for series in rates.values() for _, _, r, _ in series])
    error_lines = []
    for (service, version), series in sorted(rates.items()):
        who = role.get(version, "")
        label = f"{service} {version}" + (f" ({who})" if who else "")
        line: list[tuple[float, float]] = []
        for b_start, b_end, rate, _share in series:
            trace = _pick_trace(traces.get((service, version), []), b_start, b_end, rate > 0)
            href = f"/traces/{quote(trace, safe='')}" if trace else traces_href(service, version)
            mid = (b_start + b_end) / 2
            y = round(100 * rate / top, 2)
            line.append((x(mid), y))
            marks.append(Mark(mid, x(mid), "Error rate", f"{label}: 5xx {rate:g}% of requests"
                              + (" · a sample trace" if trace else " · its traces"), href,
                              short=f"{rate:g}%", y=y, css=f"{service}-{version} {who or 'other'}"))
        error_lines.append(Line(label, who or "other", line))
    notes = []
    if services and not samples:
        notes.append("No telemetry for this window (the local mesh keeps the last 15 minutes).")
    ticks = [(round(100 * i / 3, 2), start + span * i / 3) for i in range(4)]
    return Timeline(start, end, marks, weight_lines, error_lines, round(top, 2), ticks, notes)
