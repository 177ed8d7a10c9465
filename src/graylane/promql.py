"""PromQL over a Prometheus holding Istio's standard request metrics, read as TrafficSamples.

The local mesh records the same series itself; for a Kubernetes account they come from the Prometheus that
scrapes its Istio sidecars (`graylane account add ... --prometheus URL`), so the topology graph, the Target's
traffic query and canary analysis read the same labels either way (istio.md §3.2). A base module: targets
(a Kubernetes account's traffic) and analysis (the prometheus provider) both read it, neither imports the other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from graylane.errors import GraylaneError, ValidationError

# The labels a graph edge needs (who called whom, which version, with what outcome).
EDGE_LABELS: tuple[str, ...] = (
    "reporter", "source_workload", "source_workload_namespace", "source_app", "source_version",
    "source_canonical_service", "destination_service", "destination_service_name",
    "destination_service_namespace", "destination_workload", "destination_workload_namespace",
    "destination_app", "destination_version", "destination_canonical_service", "request_protocol",
    "response_code", "response_flags",
)
_WINDOW = re.compile(r"^\d+(ms|s|m|h|d)$")
_LABEL_VALUE = re.compile(r'^[^"\\\n]*$')

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TrafficSample:
    """One Istio-style request counter over a window, as Prometheus would hold it (labels per §3.2 of istio.md)."""

    labels: dict[str, str]
    requests: float
    errors: float = 0.0


def window_seconds(window: str) -> float:
    """A PromQL range such as 30s, 1m, 5m, 1h in seconds; ValidationError naming the window otherwise."""
    if not isinstance(window, str) or not _WINDOW.match(window):
        raise ValidationError(f"window {window!r} must look like 30s, 1m, 5m, 1h")
    num, unit = re.match(r"^(\d+)(ms|s|m|h|d)$", window).groups()  # type: ignore[union-attr]
    return int(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def selector(namespace: str | None = None, reporter: str | None = "destination", **extra: str) -> str:
    """`{reporter="destination",destination_service_namespace="NS",...}` with values checked (no PromQL injection)."""
    matchers: dict[str, str] = {}
    if reporter:
        matchers["reporter"] = reporter
    if namespace:
        matchers["destination_service_namespace"] = namespace
    matchers.update(extra)
    for name, value in matchers.items():
        if not _LABEL_VALUE.match(value):
            raise ValidationError(f"label value for {name} may not contain quotes, backslashes or newlines")
    return "{" + ",".join(f'{k}="{v}"' for k, v in matchers.items()) + "}"


def requests_query(namespace: str | None = None, window: str = "1m", reporter: str | None = "destination",
                   *, fn: str = "increase") -> str:
    """Requests per edge and response code over `window` (`fn` = increase for counts, rate for req/s)."""
    by = ", ".join(EDGE_LABELS)
    return f"sum by ({by}) ({fn}(istio_requests_total{selector(namespace, reporter)}[{window}]))"


def duration_query(namespace: str | None = None, window: str = "1m", reporter: str | None = "destination") -> str:
    by = ", ".join(("le", *(label for label in EDGE_LABELS if label not in ("response_code", "response_flags"))))
    return (f"sum by ({by}) (increase(istio_request_duration_milliseconds_bucket"
            f"{selector(namespace, reporter)}[{window}]))")


def is_error(labels: Mapping[str, str]) -> bool:
    """Istio/Kiali count 5xx (and gRPC non-OK) as errors."""
    code = labels.get("response_code", "")
    grpc = labels.get("grpc_response_status", "")
    return code.startswith("5") or (grpc not in ("", "0") and labels.get("request_protocol") == "grpc")


@dataclass
class GraphSeries:
    """What `graylane.mesh.telemetry.topology.build_graph` takes: increases per label set over `covered` s."""

    requests: dict[Labels, float] = field(default_factory=dict)
    duration_buckets: dict[Labels, float] = field(default_factory=dict)
    covered: float = 60.0


class PrometheusClient:
    """A small async client for Prometheus' HTTP API (`/api/v1/query`)."""

    def __init__(self, url: str, *, timeout: float = 10.0, account: str | None = None) -> None:
        if not re.match(r"^https?://", url):
            raise ValidationError(f"Prometheus URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.account = account
        self._timeout = timeout

    def _where(self) -> str:
        return f"Prometheus of account {self.account!r}" if self.account else f"Prometheus {self.url}"

    async def query(self, promql: str, *, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query; returns (labels, value) per series of the resulting vector (NaN dropped)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as http:
                resp = await http.post(f"{self.url}/api/v1/query", data=params)
        except httpx.TransportError as exc:
            raise GraylaneError(f"cannot reach {self._where()} at {self.url}: {type(exc).__name__}",
                                hint="check the account's --prometheus URL and that Prometheus is running") from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise GraylaneError(f"{self._where()} answered {resp.status_code} with a non-JSON body",
                                hint="is the --prometheus URL a Prometheus server?") from exc
        if resp.status_code >= 400 or body.get("status") != "success":
            raise GraylaneError(f"{self._where()} rejected the query: {body.get('errorType', resp.status_code)}: "
                                f"{body.get('error', '')}".rstrip(": "), where=promql)
        data = body.get("data") or {}
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        if data.get("resultType") != "vector":
            raise GraylaneError(f"{self._where()} returned a {data.get('resultType')}, expected an instant vector",
                                where=promql)
        out: list[tuple[dict[str, str], float]] = []
        for item in data.get("result") or []:
            value = float(item["value"][1])
            if math.isnan(value):
                continue
            out.append((dict(item.get("metric") or {}), value))
        return out

    async def istio_traffic(self, namespace: str | None = None, *, window: str = "1m",
                            reporter: str | None = "destination", at: float | None = None) -> list[TrafficSample]:
        """Requests (and 5xx errors) per edge and response code over `window`, as TrafficSamples."""
        if not _WINDOW.match(window):
            raise ValidationError(f"window {window!r} must look like 30s, 1m, 5m, 1h")
        rows = await self.query(requests_query(namespace, window, reporter), at=at)
        samples = []
        for labels, value in rows:
            labels = {k: v for k, v in labels.items() if v != ""}
            samples.append(TrafficSample(labels=labels, requests=value, errors=value if is_error(labels) else 0.0))
        samples.sort(key=lambda s: sorted(s.labels.items()))
        return samples

    async def graph_series(self, namespace: str | None = None, *, window: str = "1m",
                           reporter: str | None = "destination", at: float | None = None) -> GraphSeries:
        """Inputs for the topology graph (requests and latency buckets), like the local mesh's recorder."""
        if not _WINDOW.match(window):
            raise ValidationError(f"window {window!r} must look like 30s, 1m, 5m, 1h")
        out = GraphSeries(covered=window_seconds(window))
        for labels, value in await self.query(requests_query(namespace, window, reporter), at=at):
            out.requests[_labels(labels)] = value
        for labels, value in await self.query(duration_query(namespace, window, reporter), at=at):
            out.duration_buckets[_labels(labels)] = value
        return out

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as http:
                resp = await http.get(f"{self.url}/-/ready")
        except httpx.TransportError:
            return False
        return resp.status_code == 200


def _labels(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def totals(samples: Iterable[TrafficSample], by: str) -> dict[str, tuple[float, float]]:
    """(requests, errors) summed per value of one label, e.g. by='destination_version' for a canary split."""
    out: dict[str, tuple[float, float]] = {}
    for s in samples:
        key = s.labels.get(by, "unknown")
        req, err = out.get(key, (0.0, 0.0))
        out[key] = (req + s.requests, err + s.errors)
    return out
