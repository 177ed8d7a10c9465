"""The pipelines' series for the control plane's `/metrics`, read from the pipeline tables: executions by
status, stage durations (seconds, a histogram over finished stages), manual judgments waiting for a person,
and the analysis stages' series (graylane.analysis.exposition).

The control-plane assembly (graylane/assembly.py) registers `collect` as a source of the telemetry's
exposition, so the mesh never reads the pipelines' tables.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Engine

from graylane.analysis.exposition import analysis_metrics
from graylane.pipelines.tables import pipeline_executions, pipeline_stages

STAGE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, float("inf"))


def pipeline_metrics(engine: Engine) -> Iterator[Metric]:
    with engine.connect() as conn:
        by_status = conn.execute(sa.select(pipeline_executions.c.application, pipeline_executions.c.name,
                                           pipeline_executions.c.status, sa.func.count())
                                 .group_by(pipeline_executions.c.application, pipeline_executions.c.name,
                                           pipeline_executions.c.status)).all()
        stage_rows = conn.execute(sa.select(pipeline_stages.c.status, pipeline_stages.c.body,
                                            pipeline_stages.c.execution_id)).all()
    executions = GaugeMetricFamily("graylane_executions", "Pipeline executions by status",
                                   labels=["application", "pipeline", "status"])
    for app, name, status, count in by_status:
        executions.add_metric([app, name, status], count)
    yield executions

    waiting = Counter[tuple[str, str]]()
    durations: dict[str, list[float]] = {}
    for status, raw, _execution in stage_rows:
        try:
            stage = json.loads(raw)
        except ValueError:
            continue
        stage_type = str(stage.get("type", ""))
        if stage_type == "manualJudgment" and status == "RUNNING":
            waiting[(stage_type, str(stage.get("name", "")))] += 1
        start, end = stage.get("startTime"), stage.get("endTime")
        if isinstance(start, int | float) and isinstance(end, int | float) and end >= start:
            durations.setdefault(stage_type, []).append((end - start) / 1000.0)
    judgments = GaugeMetricFamily("graylane_judgments_waiting", "Manual judgments waiting for input",
                                  labels=["stage"])
    for (_, name), count in waiting.items():
        judgments.add_metric([name], count)
    yield judgments

    hist = HistogramMetricFamily("graylane_stage_duration_seconds", "Duration of finished stages",
                                 labels=["type"])
    for stage_type, values in sorted(durations.items()):
        buckets = [(("+Inf" if le == float("inf") else str(le)), sum(1 for v in values if v <= le))
                   for le in STAGE_BUCKETS]
        hist.add_metric([stage_type], buckets, sum(values))
    yield hist

    yield from analysis_metrics(stage_rows)  # canary scores (by execution), analysis metrics' last value and phase


def collect(engine: Engine) -> list[Metric]:
    """A metrics source (a callable the exposition calls on every scrape) over these tables."""
    return list(pipeline_metrics(engine))
