"""Optional export of data-plane spans over OTLP/HTTP (`GRAYLANE_OTLP_ENDPOINT`) with the OpenTelemetry SDK,
so Jaeger or Tempo show the same traces as Graylane does."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags


def exporter_from_env() -> SpanExporter | None:
    endpoint = os.environ.get("GRAYLANE_OTLP_ENDPOINT")
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint, timeout=5)


def to_readable(span: dict[str, Any]) -> ReadableSpan:
    """One normalised Graylane span as an OpenTelemetry ReadableSpan."""
    trace_id, span_id = int(span["traceId"], 16), int(span["spanId"], 16)
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent = None
    if span.get("parentSpanId"):
        parent = SpanContext(trace_id, int(span["parentSpanId"], 16), is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
    code = str(span["tags"].get("http.status_code", ""))
    status = Status(StatusCode.ERROR) if code[:1] == "5" else Status(StatusCode.UNSET)
    start_ns = int(span["startUs"]) * 1000
    attributes = {k: (v if isinstance(v, str | int | float | bool) else str(v)) for k, v in span["tags"].items()}
    return ReadableSpan(
        name=span["name"], context=ctx, parent=parent,
        resource=Resource.create({"service.name": span["service"]}),
        attributes=attributes, kind=SpanKind.CLIENT if span["kind"] == "client" else SpanKind.SERVER,
        start_time=start_ns, end_time=start_ns + int(span["durationUs"]) * 1000, status=status,
    )


def export(exporter: SpanExporter, spans: Iterable[dict[str, Any]]) -> bool:
    readable = [to_readable(s) for s in spans]
    return not readable or exporter.export(readable) == SpanExportResult.SUCCESS
