"""Prometheus' HTTP query API over the local mesh's series, so anything that speaks Prometheus reads it.

Base URL `http://127.0.0.1:7380/prometheus` (as a Prometheus started with `--web.route-prefix=/prometheus`):
Grafana's Prometheus data source, Argo Rollouts' prometheus provider, Kayenta's Prometheus account or curl
point at it and get answers computed by graylane.mesh.telemetry.promql_engine from the last 15 minutes of
scrapes.

GET|POST /prometheus/api/v1/query          query, time (unix seconds or RFC 3339; default now)
GET|POST /prometheus/api/v1/query_range    query, start, end, step (seconds or a duration such as 15s)
GET|POST /prometheus/api/v1/series         match[] (repeatable), time
GET|POST /prometheus/api/v1/labels
GET      /prometheus/api/v1/label/{name}/values
GET      /prometheus/api/v1/metadata             Istio's help and type of each recorded family
GET      /prometheus/api/v1/status/buildinfo     the Prometheus API level answered (2.42, what the engine is
                                                 checked against), for clients that look before they ask

Answers and errors are Prometheus' envelopes (`{"status": "success", "data": ...}`;
`{"status": "error", "errorType": "bad_data", "error": ...}` with 400, 422 for execution errors, 503 on
timeout); Prometheus documents them, so they are not in /openapi.json. Queries are reads: a viewer may POST
them (auth.required_role); loopback reads need no token.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from graylane.errors import GraylaneError
from graylane.mesh.telemetry.promql_engine import Engine
from graylane.mesh.telemetry.promql_values import PromQLError
from graylane.resources.durations import query_seconds

prefix = "/prometheus/api/v1"
router = APIRouter(tags=["prometheus"])
_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "unavailable": 503}
PROMETHEUS_API_LEVEL = "2.42.0"  # the Prometheus the engine's answers are compared with (tests/telemetry)
MAX_MATCHERS = 64  # match[] selectors in one /series request
CONCURRENT_QUERIES = 2  # evaluations at once (each holds the GIL; the rest wait their turn), as --query.max-concurrency


async def _evaluate(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """Run an evaluation in a worker thread, at most CONCURRENT_QUERIES at a time per control plane."""
    limiter = getattr(request.app.state, "promql_limiter", None)
    if limiter is None:
        limiter = request.app.state.promql_limiter = anyio.CapacityLimiter(CONCURRENT_QUERIES)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)


def engine_of(request: Request) -> Engine:
    telemetry = request.app.state.cp.components.get("telemetry")
    if telemetry is None:
        raise PromQLError("telemetry is not running in this control plane (start it with `graylane up`)",
                          "unavailable")
    return Engine(telemetry.recorder)


async def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    if request.method == "POST":
        form = await request.form()
        for key, item in form.multi_items():
            if isinstance(item, str):
                out.setdefault(key, []).append(item)
    return out


def _one(params: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = params.get(name)
    if not values:
        if default is None:
            raise PromQLError(f"invalid parameter \"{name}\": missing")
        return default
    return values[-1]


# Prometheus' API minTime/maxTime: the unix seconds of Go's time range in int64 milliseconds
MAX_TIME_S = 9_223_309_901_257_974


def parse_time(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise PromQLError(f"invalid parameter \"{name}\": cannot parse {text!r} to a valid timestamp") from None
    if not math.isfinite(value):
        raise PromQLError(f"invalid parameter \"{name}\": cannot parse {text!r} to a valid timestamp")
    if abs(value) > MAX_TIME_S:
        raise PromQLError(f"invalid parameter \"{name}\": {text!r} is out of range (at most {MAX_TIME_S} seconds "
                          "from 1970, as Prometheus)")
    return value


def parse_step(text: str) -> float:
    try:
        value = float(text)
        if not math.isfinite(value):
            raise PromQLError(f"invalid parameter \"step\": cannot parse {text!r} to a valid duration")
        return value
    except ValueError:
        try:
            return float(query_seconds(text, "step"))
        except GraylaneError:
            raise PromQLError(f"invalid parameter \"step\": cannot parse {text!r} to a valid duration") from None


async def _fresh(request: Request) -> None:
    telemetry = request.app.state.cp.components.get("telemetry")
    if telemetry is not None:
        await telemetry.refresh()


def _envelope(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[JSONResponse]]:
    """Prometheus' envelope around a handler's data, and its error shape for a PromQLError."""
    @functools.wraps(handler)
    async def route(request: Request) -> JSONResponse:
        try:
            return JSONResponse({"status": "success", "data": await handler(request)})
        except PromQLError as exc:
            return JSONResponse({"status": "error", "errorType": exc.kind, "error": exc.message},
                                status_code=_STATUS.get(exc.kind, 400))
    return route


@router.api_route("/query", methods=["GET", "POST"], include_in_schema=False)
@_envelope
async def query(request: Request) -> Any:
    params = await _params(request)
    text = _one(params, "query")
    if "time" in params:
        at = parse_time(_one(params, "time"), "time")
    else:
        await _fresh(request)
        at = time.time()
    return await _evaluate(request, engine_of(request).query, text, at)


@router.api_route("/query_range", methods=["GET", "POST"], include_in_schema=False)
@_envelope
async def query_range(request: Request) -> Any:
    params = await _params(request)
    text = _one(params, "query")
    start, end = parse_time(_one(params, "start"), "start"), parse_time(_one(params, "end"), "end")
    step = parse_step(_one(params, "step"))
    if end >= time.time() - 1:
        await _fresh(request)
    return await _evaluate(request, engine_of(request).query_range, text, start, end, step)


@router.api_route("/series", methods=["GET", "POST"], include_in_schema=False)
@_envelope
async def series(request: Request) -> Any:
    params = await _params(request)
    selectors = params.get("match[]") or []
    if not selectors:
        raise PromQLError("no match[] parameter provided")
    if len(selectors) > MAX_MATCHERS:
        raise PromQLError(f"invalid parameter \"match[]\": {len(selectors)} selectors; at most {MAX_MATCHERS} are "
                          "answered in one request")
    at = parse_time(_one(params, "end", _one(params, "time", str(time.time()))), "end")
    return await _evaluate(request, engine_of(request).series, selectors, at)


@router.api_route("/labels", methods=["GET", "POST"], include_in_schema=False)
@_envelope
async def labels(request: Request) -> Any:
    return engine_of(request).label_names()


@router.get("/label/{name}/values", include_in_schema=False)
@_envelope
async def label_values(request: Request) -> Any:
    return engine_of(request).label_values(str(request.path_params["name"]))


@router.get("/metadata", include_in_schema=False)
@_envelope
async def metadata(request: Request) -> Any:
    return engine_of(request).metadata()


@router.get("/status/buildinfo", include_in_schema=False)
@_envelope
async def buildinfo(request: Request) -> Any:
    from graylane import __version__

    return {"version": PROMETHEUS_API_LEVEL, "revision": f"graylane-{__version__}", "branch": "",
            "buildUser": "graylane", "buildDate": "", "goVersion": ""}

