"""Spans from the data plane kept in the store (bounded), grouped into traces, optionally sent over OTLP.

A span, as the data plane records it and the API returns it:
`{traceId, spanId, parentSpanId, name, kind: client|server, service, startUs, durationUs, tags}`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

metadata = sa.MetaData()
spans_table = sa.Table(
    "trace_spans", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(32), nullable=False, index=True),
    sa.Column("span_id", sa.String(16), nullable=False),
    sa.Column("parent_span_id", sa.String(16), nullable=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("service", sa.String(253), nullable=False, index=True),
    sa.Column("start_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("duration_us", sa.BigInteger, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
)


def normalise(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Accept a data-plane span in camelCase or snake_case; None when it lacks ids."""
    def pick(*names: str, default: Any = None) -> Any:
        for n in names:
            if n in raw and raw[n] is not None:
                return raw[n]
        return default

    trace_id, span_id = pick("traceId", "trace_id"), pick("spanId", "span_id")
    if not trace_id or not span_id:
        return None
    start = pick("startUs", "start_us")
    if start is None and pick("start") is not None:
        start = float(pick("start")) * 1_000_000
    duration = pick("durationUs", "duration_us")
    if duration is None and pick("duration") is not None:
        duration = float(pick("duration")) * 1_000_000
    return {
        "traceId": str(trace_id).rjust(32, "0"), "spanId": str(span_id),
        "parentSpanId": pick("parentSpanId", "parent_span_id", "parentId", "parent_id") or None,
        "name": str(pick("name", "operation", default="")),
        "kind": str(pick("kind", default="server")).lower(),
        "service": str(pick("service", "serviceName", "service_name", default="unknown")),
        "startUs": int(start or 0), "durationUs": int(duration or 0),
        "tags": dict(pick("tags", "attributes", default={}) or {}),
    }


class TraceStore:
    """Spans in the store's database, keeping at most `max_spans` (oldest dropped first)."""

    def __init__(self, engine: Engine, max_spans: int = 50_000) -> None:
        self.engine = engine
        self.max_spans = max_spans
        self._since_trim = 0

    def add(self, spans: Iterable[dict[str, Any]]) -> int:
        rows = []
        for raw in spans:
            s = normalise(raw)
            if s is None:
                continue
            rows.append({"trace_id": s["traceId"], "span_id": s["spanId"], "parent_span_id": s["parentSpanId"],
                         "name": s["name"][:512], "kind": s["kind"][:16], "service": s["service"][:253],
                         "start_us": s["startUs"], "duration_us": s["durationUs"], "tags": s["tags"]})
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(spans_table.insert(), rows)
        self._since_trim += len(rows)
        if self._since_trim > 1000:
            self.trim()
        return len(rows)

    def trim(self) -> None:
        self._since_trim = 0
        with self.engine.begin() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(spans_table)).scalar_one()
            excess = count - self.max_spans
            if excess > 0:
                cutoff = conn.execute(sa.select(spans_table.c.id).order_by(spans_table.c.id)
                                      .offset(excess).limit(1)).scalar_one()
                conn.execute(spans_table.delete().where(spans_table.c.id < cutoff))

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(spans_table).where(spans_table.c.trace_id == trace_id.rjust(32, "0"))
                                .order_by(spans_table.c.start_us)).mappings().all()
        return [_span(r) for r in rows]

    def traces(self, service: str | None = None, min_duration_us: int = 0, limit: int = 20,
               lookback_s: float | None = None, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Newest traces first, each summarised: root span, duration, services, span count, errors.
        `tags` keeps traces with a span carrying every given tag value (e.g. `guid:x-request-id`)."""
        q = sa.select(spans_table.c.trace_id, sa.func.min(spans_table.c.start_us).label("first"))
        if service:
            q = q.where(spans_table.c.service.like(f"{service}%"))
        if lookback_s:
            q = q.where(spans_table.c.start_us >= int((time.time() - lookback_s) * 1_000_000))
        if tags:
            wanted = self._with_tags(tags, lookback_s)
            if not wanted:
                return []
            q = q.where(spans_table.c.trace_id.in_(wanted))
        q = q.group_by(spans_table.c.trace_id).order_by(sa.desc("first")).limit(max(limit * 5, limit))
        with self.engine.connect() as conn:
            ids = [r.trace_id for r in conn.execute(q)]
            if not ids:
                return []
            rows = conn.execute(sa.select(spans_table).where(spans_table.c.trace_id.in_(ids))).mappings().all()
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            grouped[r["trace_id"]].append(_span(r))
        out = []
        for tid in ids:
            summary = summarise(tid, grouped[tid])
            if summary["durationUs"] >= min_duration_us:
                out.append(summary)
            if len(out) >= limit:
                break
        return out

    def _with_tags(self, tags: dict[str, str], lookback_s: float | None, scan: int = 50_000) -> list[str]:
        """Trace ids with a span whose tags include all of `tags` (newest `scan` spans; tags are JSON, so the
        match runs here rather than in SQL, the same on SQLite and PostgreSQL)."""
        q = sa.select(spans_table.c.trace_id, spans_table.c.tags).order_by(spans_table.c.id.desc()).limit(scan)
        if lookback_s:
            q = q.where(spans_table.c.start_us >= int((time.time() - lookback_s) * 1_000_000))
        found: list[str] = []
        with self.engine.connect() as conn:
            for trace_id, raw in conn.execute(q):
                span_tags = json.loads(raw) if isinstance(raw, str) else (raw or {})
                if trace_id not in found and all(str(span_tags.get(k)) == v for k, v in tags.items()):
                    found.append(trace_id)
        return found


def _span(row: Any) -> dict[str, Any]:
    tags = row["tags"]
    if isinstance(tags, str):
        tags = json.loads(tags)
    return {"traceId": row["trace_id"], "spanId": row["span_id"], "parentSpanId": row["parent_span_id"],
            "name": row["name"], "kind": row["kind"], "service": row["service"], "startUs": row["start_us"],
            "durationUs": row["duration_us"], "tags": tags}


def summarise(trace_id: str, spans: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ids = {s["spanId"] for s in spans}
    roots = [s for s in spans if not s["parentSpanId"] or s["parentSpanId"] not in ids]
    root = min(roots or spans, key=lambda s: s["startUs"])
    start = min(s["startUs"] for s in spans)
    end = max(s["startUs"] + s["durationUs"] for s in spans)
    errors = sum(1 for s in spans if str(s["tags"].get("http.status_code", "200"))[:1] == "5"
                 or s["tags"].get("error") in (True, "true"))
    return {"traceId": trace_id, "rootService": root["service"], "rootName": root["name"], "startUs": start,
            "durationUs": end - start, "spanCount": len(spans),
            "services": sorted({s["service"] for s in spans}), "errors": errors}


def waterfall(spans: Sequence[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Spans in tree order with their depth (children after their parent, by start time)."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["spanId"] for s in spans}
    for s in sorted(spans, key=lambda s: s["startUs"]):
        parent = s["parentSpanId"] if s["parentSpanId"] in ids else None
        children[parent].append(s)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append((depth, s))
            walk(s["spanId"], depth + 1)

    walk(None, 0)
    return out
