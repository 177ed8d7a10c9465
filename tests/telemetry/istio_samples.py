"""Istio-labelled exposition text for tests, shaped as Istio's sidecars report it (istio.md §3.2)."""

from __future__ import annotations

BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def labels(reporter: str, src: tuple[str, str, str], dst: tuple[str, str, str] | None, service: str,
           code: int, flags: str = "-", ns: str = "default") -> dict[str, str]:
    s_workload, s_app, s_version = src
    d_workload, d_app, d_version = dst or ("unknown", "unknown", "unknown")
    s_ns = "istio-system" if s_workload == "istio-ingressgateway" else ns
    return {
        "reporter": reporter, "source_workload": s_workload, "source_workload_namespace": s_ns,
        "source_app": s_app, "source_version": s_version, "destination_workload": d_workload,
        "destination_workload_namespace": ns if dst else "unknown", "destination_app": d_app,
        "destination_version": d_version, "destination_service": f"{service}.{ns}.svc.cluster.local",
        "destination_service_name": service, "destination_service_namespace": ns,
        "request_protocol": "http", "response_code": str(code), "response_flags": flags,
    }


def _fmt(lab: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(lab.items()))


def exposition(rows: list[tuple[dict[str, str], int, float]]) -> str:
    """rows: (labels, request count, latency ms of each request) -> Prometheus text for both metrics."""
    lines = ["# TYPE istio_requests_total counter"]
    for lab, count, _ in rows:
        lines.append(f"istio_requests_total{{{_fmt(lab)}}} {count}")
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for lab, count, ms in rows:
        for le in BUCKETS:
            lines.append(f'istio_request_duration_milliseconds_bucket{{{_fmt(lab)},le="{le}"}} '
                         f"{count if ms <= le else 0}")
        lines.append(f'istio_request_duration_milliseconds_bucket{{{_fmt(lab)},le="+Inf"}} {count}')
        lines.append(f"istio_request_duration_milliseconds_sum{{{_fmt(lab)}}} {count * ms}")
        lines.append(f"istio_request_duration_milliseconds_count{{{_fmt(lab)}}} {count}")
    return "\n".join(lines) + "\n"


GW = ("istio-ingressgateway", "istio-ingressgateway", "unknown")
PP = ("productpage-v1", "productpage", "v1")
DET = ("details-v1", "details", "v1")
R1 = ("reviews-v1", "reviews", "v1")
R2 = ("reviews-v2", "reviews", "v2")
RAT = ("ratings-v1", "ratings", "v1")


def canary_traffic(pages: int, both_reporters: bool = True) -> list[tuple[dict[str, str], int, float]]:
    """`pages` productpage loads at a 50% reviews canary: half to v1, half to v2 (which calls ratings)."""
    half = pages // 2
    rows = []
    for reporter in ("source", "destination") if both_reporters else ("source",):
        rows += [
            (labels(reporter, GW, PP, "productpage", 200), pages, 30.0),
            (labels(reporter, PP, DET, "details", 200), pages, 3.0),
            (labels(reporter, PP, R1, "reviews", 200), half, 4.0),
            (labels(reporter, PP, R2, "reviews", 200), pages - half, 12.0),
            (labels(reporter, R2, RAT, "ratings", 200), pages - half, 2.0),
        ]
    return rows
