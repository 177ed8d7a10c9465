"""The `prometheus` metric provider: PromQL against any Prometheus, instant or range.

Without an address or an account, on the local mesh, the query is answered in-process by the local mesh's
PromQL engine (graylane.mesh.telemetry.promql_engine) over the control plane's recorded scrapes: the same
PromQL an Argo AnalysisTemplate or a Kayenta config sends to a cluster's Prometheus runs on a laptop.

The query is a template: `${scope}`, `${location}` and other scope variables (Kayenta's
`customInlineTemplate`, written `PromQL:...` there: the prefix is accepted) and `{{args.x}}` (Argo) are
substituted before it is sent; the measurement keeps the resolved query. The address is explicit or a
Kubernetes account's `--prometheus` URL (resolved by the `account_url` the pipelines pass in:
`graylane.targets.accounts.prometheus_url`; analysis does not read accounts itself).

Results keep Argo's shapes: a scalar is a float, an instant vector a list of floats (one per series, so
`result[0]`), a range query (a matrix) every sample of every series in one list. Unlike
`PrometheusClient.query`, NaN samples are kept: a NaN success rate (no requests) is an answer (outcome `nan`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from graylane import addresses
from graylane.analysis.measurement import Measurement, Scope, TemplateTooLarge, classify, error, substitute
from graylane.errors import GraylaneError
from graylane.mesh.telemetry.promql_engine import Engine
from graylane.mesh.telemetry.promql_values import PromQLError
from graylane.promql import PrometheusClient
from graylane.resources.durations import format_window

LOCAL_ACCOUNT = "local"


@dataclass(frozen=True)
class PrometheusQuery:
    """A PromQL template and where to send it.

    `lookback` (seconds) turns it into a range query over `[now - lookback, now]`; explicit `start`/`end`
    (unix seconds) or the scope's start/end do too. `step` defaults to 60 s (Kayenta's default).
    """

    query: str
    address: str | None = None
    account: str | None = None
    lookback: float | None = None
    start: float | None = None
    end: float | None = None
    step: float | None = None
    timeout: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)


class PrometheusProvider:
    """Measures PromQL. `allowed_networks` (when not None) applies graylane.addresses' rules to explicit
    addresses a template names; an account's own Prometheus URL is trusted (an operator configured it)."""

    name = "prometheus"

    def __init__(self, *, default_address: str | None = None,
                 allowed_networks: Sequence[str] | None = None,
                 account_url: Callable[[str], str] | None = None,
                 local: Callable[[], Engine | None] | None = None) -> None:
        self.default_address = default_address
        self.allowed_networks = allowed_networks
        self.account_url = account_url  # an account name -> its Prometheus URL (GraylaneError when it has none)
        self.local = local  # the local mesh's PromQL engine, where this control plane records the local mesh

    def _engine(self, q: PrometheusQuery) -> Engine | None:
        """The local mesh answers a query that names no address and no account other than the local one."""
        if q.address or (q.account and q.account != LOCAL_ACCOUNT) or self.default_address or self.local is None:
            return None
        return self.local()

    def _address(self, q: PrometheusQuery) -> str:
        if q.address:
            if self.allowed_networks is not None:
                host = urlsplit(q.address).hostname or ""
                addresses.check_host(host, self.allowed_networks)
            return PrometheusClient(q.address).url
        if q.account:
            if self.account_url is None:
                raise GraylaneError(f"account {q.account!r}: no account directory here to find its Prometheus",
                                    hint="give the metric an explicit address")
            return PrometheusClient(self.account_url(q.account)).url
        if self.default_address:
            return PrometheusClient(self.default_address).url
        raise GraylaneError("no Prometheus address: give the metric an address or an account")

    async def measure(self, query: PrometheusQuery, scope: Scope, now: float) -> Measurement:
        raw = query.query.strip()
        if raw.startswith("PromQL:"):
            raw = raw[len("PromQL:"):].strip()
        try:
            promql = substitute(raw, scope.values())
        except KeyError as exc:
            return error(self.name, raw, f"the query names variable(s) without a value: {exc.args[0]}", at=now)
        except TemplateTooLarge as exc:
            return error(self.name, raw[:200], str(exc), at=now)
        start, end = query.start, query.end
        if query.lookback is not None:
            start, end = now - query.lookback, now
        elif start is None and scope.start is not None:
            start, end = scope.start, scope.end
        if start is not None:
            end = now if end is None else end
            step = query.step or scope.step or 60.0
            params: dict[str, Any] = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                      "step": f"{step:g}"}
            path, what = "/api/v1/query_range", f"the range query ({format_window(end - start)} ending at {end:.0f})"
        else:
            params = {"query": promql, "time": f"{now:.3f}"}
            path, what = "/api/v1/query", "the query"
        engine = self._engine(query)
        if engine is not None:
            return await self._local(engine, promql, params, now, what)
        try:
            url = self._address(query)
        except GraylaneError as exc:
            return error(self.name, promql, exc.message, at=now)
        try:
            async with httpx.AsyncClient(timeout=query.timeout, trust_env=False) as http:
                resp = await http.post(url + path, data=params, headers=dict(query.headers))
        except httpx.TimeoutException:
            return error(self.name, promql, f"Prometheus at {url} did not answer within {query.timeout:g}s", at=now)
        except httpx.HTTPError as exc:
            return error(self.name, promql, f"cannot reach Prometheus at {url}: {type(exc).__name__}: {exc}", at=now)
        try:
            body = resp.json()
        except ValueError:
            return error(self.name, promql, f"Prometheus at {url} answered HTTP {resp.status_code} with a non-JSON "
                                            "body (is the address a Prometheus server?)", at=now)
        if resp.status_code >= 400 or not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", "") if isinstance(body, dict) else ""
            kind = body.get("errorType", "") if isinstance(body, dict) else ""
            return error(self.name, promql, f"Prometheus rejected the query (HTTP {resp.status_code}"
                                            f"{', ' + kind if kind else ''}): {detail}".rstrip(": "), at=now)
        return _result(self.name, promql, body.get("data") or {}, now, what)


    async def _local(self, engine: Engine, promql: str, params: Mapping[str, str], now: float,
                     what: str) -> Measurement:
        try:
            if "start" in params:
                data = await asyncio.to_thread(engine.query_range, promql, float(params["start"]),
                                               float(params["end"]), float(params["step"]))
            else:
                data = await asyncio.to_thread(engine.query, promql, now)
        except PromQLError as exc:
            return error(self.name, promql, f"the local mesh's PromQL engine rejected the query ({exc.kind}): "
                                            f"{exc.message}", at=now)
        return _result(self.name, promql, data, now, what + " (local mesh)")


def _result(provider: str, promql: str, data: Mapping[str, Any], now: float, what: str) -> Measurement:
    try:
        return _shaped(provider, promql, data, now, what)
    except (TypeError, KeyError, IndexError, AttributeError, ValueError):
        return error(provider, promql, f"the answer to {what} is not a Prometheus result (resultType "
                                       f"{str(data.get('resultType'))[:40]!r} with a malformed result)", at=now)


def _shaped(provider: str, promql: str, data: Mapping[str, Any], now: float, what: str) -> Measurement:
    kind = data.get("resultType")
    result: Any = data.get("result")
    if kind == "scalar":
        value = _float(result[1])
        return classify(provider, promql, [value], value=value, at=now, what=what)
    if kind == "vector":
        values = [_float(item["value"][1]) for item in result or []]
        labels = tuple(dict(item.get("metric") or {}) for item in result or [])
        return classify(provider, promql, values, at=now, labels=labels, what=what)
    if kind == "matrix":
        values = [_float(v[1]) for item in result or [] for v in item.get("values") or []]
        labels = tuple(dict(item.get("metric") or {}) for item in result or [] for _ in item.get("values") or [])
        return classify(provider, promql, values, at=now, labels=labels, what=what)
    return error(provider, promql, f"Prometheus returned a {kind} result; expected a scalar, vector or matrix",
                 at=now)


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
