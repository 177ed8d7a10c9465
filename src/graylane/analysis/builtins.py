"""Flagger-style built-in checks, usable with no template: request-success-rate and request-duration.

Flagger's two built-in Istio metrics (flagger docs: `request-success-rate` with `thresholdRange.min` in
percent, `request-duration` with `thresholdRange.max` in ms at the 99th percentile) over the canary subset,
as Argo metrics the AnalysisRun runner measures like any other. The canary subset is a label filter on the
destination side, e.g. `{"destination_workload_namespace": "bookinfo", "destination_workload": "reviews-v2"}`
or `{"destination_service_name": "reviews", "destination_version": "v2"}`.

By default they read the local mesh (the `local` provider); with `prometheus_address` the same query goes to
that Prometheus as PromQL. No traffic is not a pass: the result is empty, the condition cannot be evaluated,
and the measurement is an Error that says "no data" (Flagger's "no values found ... is not receiving traffic").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.analysis.argo import Metric, ResolvedRun
from graylane.analysis.local import DURATION, REQUESTS, LocalQuery
from graylane.resources.durations import format_window


def _metric(name: str, query: LocalQuery, condition: str, *, interval: float, count: int | None,
            failure_limit: int, prometheus_address: str | None) -> Metric:
    local_spec: dict[str, Any] = {"metric": query.metric, "aggregation": query.aggregation,
                                  "filter": dict(query.filter), "window": format_window(query.window),
                                  "quantile": query.quantile}
    if prometheus_address:
        provider, spec = "prometheus", {"address": prometheus_address, "query": query.render({})}
    else:
        provider, spec = "local", local_spec
    return Metric(name=name, provider=provider, spec=spec, interval=interval, count=count,
                  success_condition=condition, failure_limit=failure_limit)


def request_success_rate(canary: Mapping[str, str], min_percent: float = 99.0, *, window: float = 60.0,
                         interval: float = 60.0, count: int | None = 5, failure_limit: int = 0,
                         prometheus_address: str | None = None) -> Metric:
    """Non-5xx responses of the canary subset, in percent, at least `min_percent` (Flagger default 99)."""
    query = LocalQuery(metric=REQUESTS, aggregation="success-rate", filter=dict(canary), window=window)
    return _metric("request-success-rate", query, f"result[0] * 100 >= {min_percent:g}", interval=interval,
                   count=count, failure_limit=failure_limit, prometheus_address=prometheus_address)


def request_duration(canary: Mapping[str, str], max_ms: float = 500.0, *, quantile: float = 0.99,
                     window: float = 60.0, interval: float = 60.0, count: int | None = 5, failure_limit: int = 0,
                     prometheus_address: str | None = None) -> Metric:
    """The canary subset's p99 (by default) request duration in ms, at most `max_ms` (Flagger default 500)."""
    query = LocalQuery(metric=DURATION, aggregation="quantile", filter=dict(canary), window=window,
                       quantile=quantile)
    return _metric("request-duration", query, f"result[0] <= {max_ms:g}", interval=interval, count=count,
                   failure_limit=failure_limit, prometheus_address=prometheus_address)


def flagger_checks(canary: Mapping[str, str], *, min_success_percent: float = 99.0, max_p99_ms: float = 500.0,
                   window: float = 60.0, interval: float = 60.0, count: int | None = 5, failure_limit: int = 0,
                   prometheus_address: str | None = None) -> ResolvedRun:
    """Both checks as one run (what Flagger runs when a Canary lists its two built-in metrics)."""
    common: dict[str, Any] = {"window": window, "interval": interval, "count": count,
                              "failure_limit": failure_limit, "prometheus_address": prometheus_address}
    return ResolvedRun((request_success_rate(canary, min_success_percent, **common),
                        request_duration(canary, max_p99_ms, **common)), {})
