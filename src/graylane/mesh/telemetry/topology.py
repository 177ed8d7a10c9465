"""The mesh topology graph (Kiali-like) from Istio request series over a window.

Input is what Prometheus would hold: `istio_requests_total` increases and
`istio_request_duration_milliseconds_bucket` increases per label set, over `covered` seconds.
The same function serves the local mesh (our recorder) and a Kubernetes account (its Prometheus).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graylane.mesh.telemetry.health import NA, error_rates, health_of, worst
from graylane.mesh.telemetry.quantile import histogram_quantile
from graylane.mesh.telemetry.series import Labels

GraphType = Literal["versionedApp", "app", "workload", "service"]
GRAPH_TYPES: tuple[str, ...] = ("versionedApp", "app", "workload", "service")
GATEWAY_WORKLOADS = frozenset({"istio-ingressgateway", "istio-egressgateway"})


@dataclass(frozen=True)
class Workload:
    """A deployed workload, so idle ones (no traffic in the window) still show as nodes."""

    namespace: str
    name: str
    app: str
    version: str


@dataclass
class GraphOptions:
    namespace: str | None = None  # None: every namespace
    graph_type: GraphType = "versionedApp"
    window: float = 60.0
    include_idle: bool = True
    inject_service_nodes: bool = False  # Kiali's option: source -> service -> workload
    query_time: float | None = None  # the window's end (unix seconds); None: the newest scrape


@dataclass
class _Edge:
    source: str
    target: str
    service: str
    by_code: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    flags: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))


def _unknown(value: str | None) -> bool:
    return not value or value == "unknown"


def _node_for(kind: str, lab: Mapping[str, str], opts: GraphOptions) -> dict[str, Any] | None:
    """The node a side (`source` / `destination`) of a series belongs to, or None when unknowable."""
    workload = lab.get(f"{kind}_workload", "unknown")
    ns = lab.get(f"{kind}_workload_namespace", "unknown")
    app = lab.get(f"{kind}_app") or lab.get(f"{kind}_canonical_service") or "unknown"
    version = lab.get(f"{kind}_version") or lab.get(f"{kind}_canonical_revision") or "unknown"
    if _unknown(workload):
        return None
    if workload in GATEWAY_WORKLOADS:
        return {"id": f"{ns}/{workload}", "nodeType": "gateway", "namespace": ns, "workload": workload,
                "app": workload, "version": "", "label": workload}
    if opts.graph_type == "workload":
        return {"id": f"{ns}/{workload}", "nodeType": "workload", "namespace": ns, "workload": workload,
                "app": app, "version": version, "label": workload}
    if opts.graph_type in ("app", "service"):
        return {"id": f"{ns}/{app}", "nodeType": "app", "namespace": ns, "workload": "", "app": app,
                "version": "", "label": app}
    label = app if _unknown(version) else f"{app}-{version}"
    return {"id": f"{ns}/{label}", "nodeType": "app", "namespace": ns, "workload": workload, "app": app,
            "version": version, "label": label}


def _service_node(lab: Mapping[str, str]) -> dict[str, Any]:
    name = lab.get("destination_service_name") or lab.get("destination_service") or "unknown"
    ns = lab.get("destination_service_namespace", "unknown")
    return {"id": f"{ns}/svc/{name}", "nodeType": "service", "namespace": ns, "workload": "", "app": "",
            "version": "", "service": name, "label": name}


def _pick_reporter(requests: Mapping[Labels, float]) -> str:
    reporters = {dict(lab).get("reporter") for lab in requests}
    return "source" if "source" in reporters else "destination"


def build_graph(requests: Mapping[Labels, float], duration_buckets: Mapping[Labels, float], covered: float,
                opts: GraphOptions, deployed: Iterable[Workload] = (), now: float | None = None) -> dict[str, Any]:
    """Nodes and edges with rates (req/s), code mix, error %, p50/p95/p99 (ms) and traffic distribution.

    Traffic distribution is Kiali's: an edge's share of its source's requests to the same service.
    Requests that reached no workload (503 NC/UH, 404 NR) end at the destination service's node.
    """
    span = covered if covered > 0 else opts.window
    reporter = _pick_reporter(requests)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], _Edge] = {}

    def want(lab: Mapping[str, str]) -> bool:
        if opts.namespace is None:
            return True
        return opts.namespace in (lab.get("source_workload_namespace"), lab.get("destination_service_namespace"),
                                  lab.get("destination_workload_namespace"))

    def edge_for(lab: Mapping[str, str]) -> list[_Edge]:
        src = _node_for("source", lab, opts) or {"id": "unknown", "nodeType": "unknown", "namespace": "",
                                                  "workload": "", "app": "unknown", "version": "",
                                                  "label": "unknown"}
        dst = _node_for("destination", lab, opts)
        service = lab.get("destination_service_name", "unknown")
        nodes.setdefault(src["id"], src)
        chain: list[tuple[dict[str, Any], dict[str, Any]]] = []
        if opts.graph_type == "service" or dst is None:
            svc = _service_node(lab)
            chain.append((src, svc))
        elif opts.inject_service_nodes:
            svc = _service_node(lab)
            chain += [(src, svc), (svc, dst)]
        else:
            chain.append((src, dst))
        out = []
        for a, b in chain:
            nodes.setdefault(a["id"], a)
            nodes.setdefault(b["id"], b)
            key = (a["id"], b["id"], service)
            out.append(edges.setdefault(key, _Edge(a["id"], b["id"], service)))
        return out

    for labels, value in requests.items():
        lab = dict(labels)
        if lab.get("reporter") != reporter or not want(lab):
            continue
        for e in edge_for(lab):
            e.by_code[lab.get("response_code", "0")] += value
            flags = lab.get("response_flags", "-")
            if flags and flags != "-":
                e.flags[flags] += value
    for labels, value in duration_buckets.items():
        lab = dict(labels)
        if lab.get("reporter") != reporter or not want(lab) or "le" not in lab:
            continue
        le = math.inf if lab["le"] in ("+Inf", "Inf") else float(lab["le"])
        for e in edge_for(lab):
            e.buckets[le] += value

    # Traffic distribution: share of (source, service) requests per target.
    per_source_service: dict[tuple[str, str], float] = defaultdict(float)
    for e in edges.values():
        per_source_service[(e.source, e.service)] += sum(e.by_code.values())

    edge_out = []
    inbound: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    outbound: dict[str, float] = defaultdict(float)
    for e in edges.values():
        total = sum(e.by_code.values())
        if total <= 0:
            continue
        rates = error_rates(e.by_code)
        buckets = list(e.buckets.items())
        pct = 100.0 * total / per_source_service[(e.source, e.service)]
        edge_out.append({
            "id": f"{e.source}->{e.target}:{e.service}",
            "source": e.source, "target": e.target, "service": e.service,
            "rps": round(total / span, 4),
            "requests": round(total, 3),
            "responses": {code: round(v / span, 4) for code, v in sorted(e.by_code.items())},
            "flags": {f: round(v / span, 4) for f, v in sorted(e.flags.items())},
            "errorRate5xx": round(rates["5xx"], 3), "errorRate4xx": round(rates["4xx"], 3),
            "distribution": round(pct, 2),
            "p50": _q(0.5, buckets), "p95": _q(0.95, buckets), "p99": _q(0.99, buckets),
            "health": health_of(e.by_code),
        })
        for code, v in e.by_code.items():
            inbound[e.target][code] += v
        outbound[e.source] += total

    for w in deployed:
        if opts.namespace is not None and w.namespace != opts.namespace:
            continue
        node = _node_for("destination", {"destination_workload": w.name, "destination_workload_namespace": w.namespace,
                                         "destination_app": w.app, "destination_version": w.version}, opts)
        if node is not None and node["id"] not in nodes:
            nodes[node["id"]] = node | {"idle": True}

    node_out = []
    for node_id, node in sorted(nodes.items()):
        rps_in = sum(inbound[node_id].values()) / span
        idle = rps_in <= 0 and outbound[node_id] <= 0
        if idle and not opts.include_idle:
            continue
        health = health_of(inbound[node_id]) if rps_in > 0 else NA
        node_out.append(node | {"idle": idle, "rpsIn": round(rps_in, 4),
                                "rpsOut": round(outbound[node_id] / span, 4), "health": health})
    worst_health = NA
    for n in node_out:
        worst_health = worst(worst_health, n["health"])
    return {
        "graphType": opts.graph_type, "namespace": opts.namespace, "window": opts.window,
        "duration": round(span, 3), "reporter": reporter, "timestamp": int(now or time.time()),
        "health": worst_health,
        "nodes": node_out, "edges": sorted(edge_out, key=lambda e: (e["source"], e["service"], e["target"])),
    }


def _q(q: float, buckets: list[tuple[float, float]]) -> float | None:
    value = histogram_quantile(q, buckets)
    return None if value is None else round(value, 3)
