"""Istio standard metrics on the hot path: plain dict counters, rendered to Prometheus text on scrape."""

from __future__ import annotations

import bisect
from bisect import bisect_left

# Istio's label set (istio_stats.cc all_tags_), in order.
LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
    "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
    "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
    "response_flags", "connection_security_policy", "response_code", "grpc_response_status",
)
# Envoy's default histogram buckets (source/common/stats/histogram_impl.cc), used by Istio unless overridden.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
           3600000)
HISTOGRAMS = ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes")


class Histogram:
    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


class Stats:
    """istio_requests_total plus three histograms, keyed by the label tuple."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, ...], int] = {}
        self.histograms: dict[str, dict[tuple[str, ...], Histogram]] = {name: {} for name in HISTOGRAMS}
        self.series: dict[tuple[str, ...], tuple[Histogram, Histogram, Histogram]] = {}
        self.counters: dict[str, int] = {}  # proxy-internal counters (graylane_proxy_*)

    def record(self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int) -> None:
        hs = self.series.get(labels)
        if hs is None:
            hs = self.series[labels] = (Histogram(), Histogram(), Histogram())
            for name, h in zip(HISTOGRAMS, hs, strict=True):
                self.histograms[name][labels] = h
        self.requests[labels] = self.requests.get(labels, 0) + 1
        # Inlined Histogram.observe: this runs twice per request.
        for h, value in ((hs[0], duration_ms), (hs[1], request_bytes), (hs[2], response_bytes)):
            h.counts[bisect_left(BUCKETS, value)] += 1
            h.sum += value
            h.count += 1

    def bump(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def render(self) -> str:
        out: list[str] = ["# TYPE istio_requests_total counter"]
        for labels, n in self.requests.items():
            out.append(f"istio_requests_total{{{_fmt(labels)}}} {n}")
        for name in HISTOGRAMS:
            out.append(f"# TYPE {name} histogram")
            for labels, h in self.histograms[name].items():
                base = _fmt(labels)
                acc = 0
                for le, c in zip(BUCKETS, h.counts, strict=False):
                    acc += c
                    out.append(f'{name}_bucket{{{base},le="{le:g}"}} {acc}')
                out.append(f'{name}_bucket{{{base},le="+Inf"}} {h.count}')
                out.append(f"{name}_sum{{{base}}} {h.sum:g}")
                out.append(f"{name}_count{{{base}}} {h.count}")
        for name, n in sorted(self.counters.items()):
            out.append(f"# TYPE {name} counter")
            out.append(f"{name} {n}")
        return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(labels: tuple[str, ...]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in zip(LABELS, labels, strict=True))
