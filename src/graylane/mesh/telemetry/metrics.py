"""The control plane's own Prometheus series, exposed next to the data plane's Istio series."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

MetricSource = Callable[[], Iterable[Metric]]


def route_weights(virtual_services: Iterable[dict[str, Any]]) -> GaugeMetricFamily:
    """`graylane_route_weight{namespace, virtual_service, host, subset}`: the share (percent) each
    destination gets from the VirtualService's catch-all HTTP rule (the last rule without a match),
    or from its last rule when every rule has a match. Weights are normalised as Istio does."""
    family = GaugeMetricFamily("graylane_route_weight",
                               "Percent of a VirtualService's default HTTP route sent to each destination",
                               labels=["namespace", "virtual_service", "host", "subset"])
    for vs in virtual_services:
        md, spec = vs.get("metadata") or {}, vs.get("spec") or {}
        rules = [r for r in spec.get("http") or [] if isinstance(r, dict)]
        if not rules:
            continue
        default = next((r for r in reversed(rules) if not r.get("match")), rules[-1])
        routes = [d for d in default.get("route") or [] if isinstance(d, dict)]
        weights = [int(d.get("weight") or 0) for d in routes]
        if len(routes) == 1:
            weights = [100]
        total = sum(w for w in weights if w > 0)
        for dest, weight in zip(routes, weights, strict=True):
            target = dest.get("destination") or {}
            share = 100.0 * weight / total if total > 0 and weight > 0 else 0.0
            family.add_metric([md.get("namespace", "default"), md.get("name", ""), str(target.get("host", "")),
                               str(target.get("subset", ""))], share)
    return family


class _Collector:
    def __init__(self, sources: list[MetricSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in list(self._sources):
            try:
                yield from source()
            except Exception:  # a broken source must not take /metrics down
                continue


class ControlPlaneMetrics:
    """Areas register sources (callables yielding metric families); `render()` gives exposition text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._sources: list[MetricSource] = []
        self.registry.register(_Collector(self._sources))  # type: ignore[arg-type]

    def add_source(self, source: MetricSource) -> None:
        self._sources.append(source)

    def render(self) -> str:
        return generate_latest(self.registry).decode()
