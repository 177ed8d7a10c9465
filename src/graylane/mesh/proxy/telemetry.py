"""Per-request telemetry: Istio's standard metrics from both reporters, client/server spans, the access log.

Called once per request by `forward.py` with the request's facts (`Ctx`, defined here); knows nothing of
sockets. Reads only `TelemetryHost` (table, stats, spans, access log) from the data-plane process.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

from graylane.mesh.proxy.accesslog import format_entry
from graylane.mesh.routing import ClusterEndpoint, Listener, RouteDecision, RouteTable

if TYPE_CHECKING:
    from graylane.mesh.proxy.listener import Request
    from graylane.mesh.proxy.stats import Stats
    from graylane.mesh.proxy.tracing import SpanRing, TraceContext

access_log = logging.getLogger("graylane.access")

# Envoy prints response flags in its enum order (ResponseFlagUtils).
FLAG_ORDER: Final = {f: i for i, f in enumerate(("LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL",
                                                  "UAEX", "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "DT", "UPE",
                                                  "NC"))}
NOT_REACHED: Final = frozenset(("UF", "UT", "UO", "UC", "NC", "UH", "NR"))  # the destination's sidecar never saw it


class TelemetryHost(Protocol):
    """What reporting reads from the data-plane process (`ProxyServer` provides it)."""

    @property
    def table(self) -> RouteTable: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def spans(self) -> SpanRing: ...
    @property
    def access_log(self) -> deque[dict[str, Any]] | None: ...
    @property
    def access_log_format(self) -> str: ...


class Ctx:
    """Per-request facts for telemetry, spans and the access log."""

    __slots__ = ("listener", "start", "decision", "status", "flags", "endpoint", "request_bytes", "response_bytes",
                 "trace", "client_span", "server_span", "service", "upstream_start", "rid", "authority", "path",
                 "method", "attempts", "grpc_status")

    def __init__(self, listener: Listener, start: float, req: Request) -> None:
        self.listener = listener
        self.start = start
        self.decision: RouteDecision | None = None
        self.status = 0
        self.flags: list[str] = []
        self.endpoint: ClusterEndpoint | None = None
        self.request_bytes = 0
        self.response_bytes = 0
        self.trace: TraceContext | None = None
        self.client_span = ""
        self.server_span = ""
        self.service = ""
        self.upstream_start = 0.0
        self.rid = ""
        self.authority = ""
        self.path = ""
        self.method = req.method
        self.attempts = 0
        self.grpc_status = ""  # a gRPC request's grpc-status ("-" until known; "": not gRPC, h2_downstream.py)


class Telemetry:
    """Records each finished request; caches Istio label tuples per distinct combination."""

    def __init__(self, server: TelemetryHost) -> None:
        self.server = server
        # (source, destination) label sets as `Stats` handles, per distinct combination (see `report`).
        self.labels: dict[tuple[Any, ...], tuple[int, int]] = {}

    def labels_for(self, ctx: Ctx, src: Any, ep: ClusterEndpoint | None, dsvc: str, code: str,
                   flags: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Istio's label values (istio_stats.cc order) for both reporters; cached per distinct combination."""
        svc = self.server.table.services.get(ctx.service)
        svc_name = svc.name if svc else (ctx.service or "unknown")
        svc_ns = svc.namespace if svc else "unknown"
        if ep is not None:
            dw, dns, dapp = ep.workload or "unknown", ep.namespace or "unknown", ep.labels.get("app", "unknown")
            dver = ep.labels.get("version", "unknown")
        else:
            dw = dns = dapp = dver = "unknown"
        # Principals are SPIFFE ids only under mTLS, which the local mesh does not do: Istio reports "unknown".
        common_src = (src.workload, src.namespace, "unknown", src.app, src.version, src.app,
                      src.labels.get("version", "latest") or "latest", "Kubernetes")
        common_dst = (dw, dns, "unknown", dapp, dver, dsvc, svc_name, svc_ns, dapp, dver if ep else "latest",
                      "Kubernetes", "grpc" if ctx.grpc_status else "http", flags)
        gs = ctx.grpc_status or "-"
        return (("source", *common_src, *common_dst, "unknown", code, gs),
                ("destination", *common_src, *common_dst, "none", code, gs))

    def report(self, ctx: Ctx) -> None:
        server = self.server
        now = time.perf_counter()
        duration_ms = (now - ctx.start) * 1000
        src = ctx.listener.source
        flags = ",".join(sorted(set(ctx.flags), key=lambda f: FLAG_ORDER.get(f, 99))) if ctx.flags else "-"
        ep = ctx.endpoint
        dsvc = ctx.service or "unknown"
        # Keyed by the status as an int: its str (`code`) is made only for new labels and spans (issue #17).
        key = (id(ctx.listener), dsvc, ep, ctx.status, flags, ctx.grpc_status)  # cleared on every snapshot swap
        stats = server.stats
        labels = self.labels.get(key)
        if labels is None:
            source, destination = self.labels_for(ctx, src, ep, dsvc, str(ctx.status), flags)
            labels = (stats.handle(source), stats.handle(destination))
            if len(self.labels) > 50_000:
                self.labels.clear()
            self.labels[key] = labels
        source_labels, destination_labels = labels
        req_bytes = ctx.request_bytes
        stats.record_at(source_labels, duration_ms, req_bytes, ctx.response_bytes)
        reached = ep is not None and ctx.upstream_start and (not ctx.flags or NOT_REACHED.isdisjoint(ctx.flags))
        if reached or (ep is not None and "RL" in ctx.flags):
            up_ms = (now - (ctx.upstream_start or ctx.start)) * 1000
            stats.record_at(destination_labels, up_ms, req_bytes, ctx.response_bytes)
        trace = ctx.trace
        if trace is not None and trace.sampled:
            code = str(ctx.status)
            dapp = ep.labels.get("app", "unknown") if ep is not None else "unknown"
            dns = (ep.namespace or "unknown") if ep is not None else "unknown"
            start_us = int((time.time() - (now - ctx.start)) * 1_000_000)
            op = f"{dsvc}:{ctx.decision.cluster.port if ctx.decision and ctx.decision.cluster else 80}/*"
            tags = {"http.method": ctx.method, "http.url": f"http://{ctx.authority}{ctx.path}",
                    "http.status_code": code, "response_flags": flags, "guid:x-request-id": ctx.rid,
                    "upstream_cluster": ctx.decision.cluster_name if ctx.decision else "",
                    "istio.canonical_service": src.app, "istio.namespace": src.namespace,
                    "istio.canonical_revision": src.labels.get("version", "latest") or "latest",
                    "node_id": f"{ctx.listener.kind}~{src.pod}.{src.namespace}", "component": "proxy"}
            if ctx.status >= 500 or ctx.status == 0:
                tags["error"] = "true"
            server.spans.add({"traceId": trace.trace_id, "spanId": ctx.client_span, "parentSpanId": trace.parent_id,
                              "name": op, "kind": "client", "service": f"{src.app}.{src.namespace}",
                              "startUs": start_us, "durationUs": int(duration_ms * 1000), "tags": tags})
            if reached and ep is not None:
                up_start = int((time.time() - (now - ctx.upstream_start)) * 1_000_000)
                stags = {**tags, "istio.canonical_service": dapp, "istio.namespace": dns,
                         "istio.canonical_revision": ep.labels.get("version") or "latest",
                         "node_id": f"sidecar~{ep.pod}.{dns}", "peer.address": ep.address}
                server.spans.add({"traceId": trace.trace_id, "spanId": ctx.server_span,
                                  "parentSpanId": ctx.client_span, "name": op, "kind": "server",
                                  "service": f"{dapp}.{dns}", "startUs": up_start,
                                  "durationUs": int((now - ctx.upstream_start) * 1_000_000), "tags": stags})
        if server.access_log is not None:
            entry = {"start": time.time() - (now - ctx.start), "method": ctx.method, "authority": ctx.authority,
                     "path": ctx.path, "status": ctx.status, "flags": flags, "duration_ms": round(duration_ms, 3),
                     "upstream_host": ep.address if ep else "-", "upstream_cluster":
                     ctx.decision.cluster_name if ctx.decision else "-", "request_id": ctx.rid,
                     "listener": ctx.listener.name, "bytes_sent": ctx.response_bytes,
                     "bytes_received": ctx.request_bytes,
                     "upstream_service_time": round((now - ctx.upstream_start) * 1000) if ctx.upstream_start else None,
                     "route_name": (ctx.decision.rule.name or None) if ctx.decision and ctx.decision.rule else None,
                     "grpc_status": ctx.grpc_status or None}
            server.access_log.append(entry)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s", format_entry(entry, server.access_log_format))
