"""Observability API: the topology graph, traces, and the Prometheus `/metrics` endpoint.

GET /api/v1/graph?namespace=&window=1m&type=versionedApp|app|workload|service&idle=true&injectServiceNodes=false
    &queryTime=UNIX_SECONDS (the window's end, as Kiali's; default now)
GET /api/v1/traces?service=&minDuration=100ms&limit=20&lookback=1h&tag=KEY=VALUE (repeatable)
GET /api/v1/traces/{traceId}
GET /metrics            (root path: the data plane's Istio series + Graylane's own)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from graylane.errors import GraylaneError, NotFound, ValidationError
from graylane.mesh.telemetry.topology import GRAPH_TYPES, GraphOptions
from graylane.mesh.telemetry.traces import TraceStore
from graylane.resources.durations import query_seconds as parse_duration

router = APIRouter(tags=["observability"])
root_router = APIRouter(tags=["observability"])


def _telemetry(request: Request) -> Any:
    telemetry = request.app.state.cp.components.get("telemetry")
    if telemetry is None:
        raise GraylaneError("telemetry is not running in this control plane", hint="start it with `graylane up`")
    return telemetry


@router.get("/graph")
async def graph(request: Request, namespace: str | None = None, window: str = "1m",
                type: str = Query("versionedApp", alias="type"), idle: bool = True,
                injectServiceNodes: bool = False, queryTime: float | None = None,
                account: str = "local") -> dict[str, Any]:
    """The topology of the local mesh, or of a Kubernetes account from its Prometheus (same graph builder)."""
    if type not in GRAPH_TYPES:
        raise ValidationError(f"type: unknown graph type {type!r}", hint=f"use one of {', '.join(GRAPH_TYPES)}")
    opts = GraphOptions(namespace=namespace or None, graph_type=type,  # type: ignore[arg-type]
                        window=parse_duration(window, "window"), include_idle=idle,
                        inject_service_nodes=injectServiceNodes, query_time=queryTime)
    if account and account != "local":
        from graylane.mesh.telemetry.topology import build_graph
        from graylane.targets.accounts import prometheus_client

        series = await prometheus_client(account).graph_series(namespace or None, window=window, at=queryTime)
        result = build_graph(series.requests, series.duration_buckets, series.covered, opts, (), now=queryTime)
        return {**result, "account": account}
    telemetry = _telemetry(request)
    if queryTime is None:
        await telemetry.refresh()
    return await run_in_threadpool(telemetry.graph, opts)


def _trace_store(request: Request) -> TraceStore:
    telemetry = request.app.state.cp.components.get("telemetry")
    if telemetry is not None and telemetry.traces is not None:
        return telemetry.traces
    return TraceStore(request.app.state.cp.store.engine)


@router.get("/traces")
def traces(request: Request, service: str | None = None, minDuration: str | None = None, limit: int = 20,
           lookback: str | None = None, tag: list[str] = Query(default_factory=list)) -> dict[str, Any]:
    min_us = int(parse_duration(minDuration, "minDuration") * 1_000_000) if minDuration else 0
    look = parse_duration(lookback, "lookback") if lookback else None
    tags = {}
    for item in tag:
        key, sep, value = item.partition("=")  # as Jaeger's search form: keys may hold ':', never '='
        if not sep or not key:
            raise ValidationError(f"tag: {item!r} is not KEY=VALUE", hint="e.g. tag=http.status_code=503 or "
                                  "tag=guid:x-request-id=<id>")
        tags[key] = value
    data = _trace_store(request).traces(service=service, min_duration_us=min_us, limit=max(1, min(limit, 500)),
                                        lookback_s=look, tags=tags or None)
    return {"traces": data}


@router.get("/traces/{trace_id}")
def trace(request: Request, trace_id: str) -> dict[str, Any]:
    spans = _trace_store(request).trace(trace_id)
    if not spans:
        raise NotFound(f"no trace {trace_id!r}", hint="list traces with `graylane traces`")
    return {"traceId": spans[0]["traceId"], "spans": spans}


@root_router.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
async def metrics(request: Request) -> PlainTextResponse:
    telemetry = request.app.state.cp.components.get("telemetry")
    text = await telemetry.metrics_text_live() if telemetry is not None else ""
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
