"""Istio standard metrics on the hot path: plain dict counters, rendered to Prometheus text on scrape."""

from __future__ import annotations

from collections import Counter
from typing import Final

# Istio's label set (istio_stats.cc all_tags_), in order.
LABELS: Final = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster", "destination_workload",
    "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
    "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster", "request_protocol",
    "response_flags", "connection_security_policy", "response_code", "grpc_response_status",
)
# Envoy's default histogram buckets (source/common/stats/histogram_impl.cc), used by Istio unless overridden.
BUCKETS: Final = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
                  3600000)
HISTOGRAMS: Final = ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes")
# Istio's TCP metrics carry the same labels without response_code and grpc_response_status (request_protocol "tcp").
TCP_LABELS: Final = tuple(k for k in LABELS if k not in ("response_code", "grpc_response_status"))
TCP_COUNTERS: Final = ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                       "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")


NB: Final = len(BUCKETS) + 1  # buckets per histogram, +Inf last
# The same bounds as floats, for the per-request duration (a float): compared float to float, not float to int
# (CPython's mixed comparison is several times slower). Same positions: float(b) == b for every bound.
_DURATION_BUCKETS: Final = tuple(float(b) for b in BUCKETS)


def _bucket(bounds: tuple[float, ...], value: float) -> int:
    """bisect_left: the first bucket whose bound is >= value (NB - 1, +Inf, past them all). A scan from the
    smallest: durations and small bodies end within the first few; compiled (graylane.mesh.native) it is a C
    loop, where bisect would be a call through the module dict."""
    i = 0
    n = len(bounds)
    while i < n and bounds[i] < value:
        i += 1
    return i


class Series:
    """One label set's istio_requests_total and its three histograms (HISTOGRAMS order in `buckets`, NB each).
    Typed fields: compiled, the fold is native integer and float arithmetic; counts stay ints in the text."""

    __slots__ = ("count", "duration_sum", "request_bytes", "response_bytes", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.duration_sum = 0.0
        self.request_bytes = 0
        self.response_bytes = 0
        self.buckets: list[int] = [0] * (3 * NB)

    def sums(self) -> tuple[float, int, int]:
        return self.duration_sum, self.request_bytes, self.response_bytes


class Stats:
    """istio_requests_total plus three histograms, keyed by the label tuple.

    Batched (issue #17): a request appends its observation to `pending` and `durations`; the series take the
    batch on the next read (`render`) or every `BATCH` observations, in tight loops over typed fields (`Series`).
    A batch names a label set by its handle (a small int, `handle`), not by the 25-string tuple: tuples do not
    cache their hash, and counting the batch hashed each observation's labels again (~2,000 instructions a
    request). A label set's series is made on its first observation, so render shows only observed ones.
    """

    BATCH: Final = 2048  # Final: compiled too, a class constant (`Stats.BATCH`)

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], Series] = {}
        self.counters: dict[str, int] = {}  # proxy-internal counters (graylane_proxy_*)
        self.tcp: dict[str, dict[tuple[str, ...], int]] = {name: {} for name in TCP_COUNTERS}  # proxy/tcp.py
        self.handles: dict[tuple[str, ...], int] = {}  # label set -> handle (its index in the two lists below)
        self.labels: list[tuple[str, ...]] = []  # by handle
        self.cells: list[Series | None] = []  # by handle: the label set's series, None until observed
        self.pending: list[tuple[int, int, int]] = []  # (handle, request bytes, response bytes)
        self.durations: list[tuple[int, float]] = []  # (handle, duration ms), in the same order

    def tcp_add(self, name: str, labels: tuple[str, ...], by: int = 1) -> None:
        """An istio_tcp_* counter (`labels` in TCP_LABELS order)."""
        series = self.tcp[name]
        series[labels] = series.get(labels, 0) + by

    def handle(self, labels: tuple[str, ...]) -> int:
        """The number `record_at` takes for this label set (callers cache it with the labels)."""
        h = self.handles.get(labels)
        if h is None:
            h = self.handles[labels] = len(self.labels)
            self.labels.append(labels)
            self.cells.append(None)
        return h

    def record(self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int) -> None:
        self.record_at(self.handle(labels), duration_ms, request_bytes, response_bytes)

    def record_at(self, handle: int, duration_ms: float, request_bytes: int, response_bytes: int) -> None:
        self.pending.append((handle, request_bytes, response_bytes))
        durations = self.durations
        durations.append((handle, duration_ms))
        if len(durations) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        """Fold the pending observations into the series: counts, byte sums and byte buckets once per distinct
        (labels, request bytes, response bytes), counted in C; then each duration."""
        batch, self.pending = self.pending, []
        durations, self.durations = self.durations, []
        series, cells = self.series, self.cells
        req_at, resp_at = NB, 2 * NB
        for (h, request_bytes, response_bytes), n in Counter(batch).items():
            s = cells[h]
            if s is None:
                s = cells[h] = series[self.labels[h]] = Series()
            s.count += n
            s.request_bytes += request_bytes * n
            s.response_bytes += response_bytes * n
            buckets = s.buckets
            buckets[req_at + _bucket(_DURATION_BUCKETS, float(request_bytes))] += n
            buckets[resp_at + _bucket(_DURATION_BUCKETS, float(response_bytes))] += n
        for h, duration_ms in durations:
            s = cells[h]
            assert s is not None  # made above: every duration has its pending entry
            s.duration_sum += duration_ms
            s.buckets[_bucket(_DURATION_BUCKETS, duration_ms)] += 1

    def bump(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def render(self) -> str:
        self.flush()
        out: list[str] = ["# TYPE istio_requests_total counter"]
        for labels, s in self.series.items():
            out.append(f"istio_requests_total{{{_fmt(labels)}}} {s.count}")
        for i, name in enumerate(HISTOGRAMS):
            out.append(f"# TYPE {name} histogram")
            at = i * NB
            for labels, s in self.series.items():
                base = _fmt(labels)
                acc = 0
                for le, c in zip(BUCKETS, s.buckets[at:at + NB], strict=False):
                    acc += c
                    out.append(f'{name}_bucket{{{base},le="{le:g}"}} {acc}')
                out.append(f'{name}_bucket{{{base},le="+Inf"}} {s.count}')
                out.append(f"{name}_sum{{{base}}} {s.sums()[i]:g}")
                out.append(f"{name}_count{{{base}}} {s.count}")
        for name in TCP_COUNTERS:
            if self.tcp[name]:
                out.append(f"# TYPE {name} counter")
                out.extend(f"{name}{{{_fmt(labels, TCP_LABELS)}}} {n}" for labels, n in self.tcp[name].items())
        for name, n in sorted(self.counters.items()):
            out.append(f"# TYPE {name} counter")
            out.append(f"{name} {n}")
        return "\n".join(out) + "\n"


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(labels: tuple[str, ...], names: tuple[str, ...] = LABELS) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in zip(names, labels, strict=True))
