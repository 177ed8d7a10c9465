"""The execution page's release header: which services the execution releases, each version's configured
weight (the live VirtualService) beside its observed share of the last minute (the topology graph), the
current step, and the judgment waiting for the reader. Pure functions over API JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graylane.pipelines.httproute_edit import managed_rule_index
from graylane.ui.views import may_judge


@dataclass(frozen=True, slots=True)
class VersionShare:
    version: str
    configured: float | None  # % of the route's weight; None when no VirtualService names it
    observed: float | None  # % of the last minute's requests to the service; None without traffic
    error_rate: float | None = None  # 5xx % of those requests
    p95_ms: float | None = None  # the highest p95 among the edges into this version (its slowest caller)


@dataclass(frozen=True, slots=True)
class ServiceRelease:
    service: str
    versions: list[VersionShare]
    requests: int  # requests to the service in the window
    route: str | None  # "VirtualService namespace/name" or "HTTPRoute namespace/name" routing it


@dataclass(frozen=True, slots=True)
class ReleaseView:
    services: list[ServiceRelease]
    current: list[str]  # names of the running stages
    waiting: dict[str, Any] | None  # the first running judgment the reader may judge
    status: str
    actions: list[str] = field(default_factory=list)  # pause / resume / cancel where they apply
    # (service, version) -> recent trace summaries of requests that version handled (the evidence's samples)
    traces: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def _short(host: Any) -> str:
    return str(host).split(".")[0]


def release_account(execution: dict[str, Any]) -> str:
    """The account the execution releases to: the first deploy or traffic stage's `account` ("local" when none
    names one). A Kubernetes account's observed traffic comes from its Prometheus, as `graylane graph --account`."""
    for stage in execution.get("stages") or []:
        if stage.get("type") in RELEASE_STAGE_TYPES:
            account = (stage.get("context") or {}).get("account")
            if isinstance(account, str) and account and "${" not in account:
                return account
    return "local"


RELEASE_STAGE_TYPES = ("deployManifest", "trafficShift", "canaryRollout", "blueGreen", "patchManifest",
                       "kayentaCanary", "analysis")


def released_services(execution: dict[str, Any]) -> list[str]:
    """Hosts of the VirtualServices and DestinationRules the execution's deploy stages apply, in order."""
    out: list[str] = []
    for stage in execution.get("stages") or []:
        if stage.get("type") != "deployManifest":
            continue
        ctx = stage.get("context") or {}
        manifests = (stage.get("outputs") or {}).get("manifests") or ctx.get("manifests") or []
        for m in manifests:
            spec = m.get("spec") if isinstance(m, dict) else None
            if not isinstance(spec, dict):
                continue
            kind = m.get("kind")
            if kind == "VirtualService":
                hosts = spec.get("hosts")
            elif kind == "DestinationRule":
                hosts = [spec.get("host")]
            elif kind == "HTTPRoute":  # Gateway API for the mesh (GAMMA): the parent Service is released
                hosts = [r.get("name") for r in spec.get("parentRefs") or [] if r.get("kind") == "Service"]
            else:
                hosts = []
            for host in hosts or []:
                if host and "${" not in str(host) and _short(host) not in out:
                    out.append(_short(host))
    return out


def deployed_objects(execution: dict[str, Any]) -> list[str]:
    """What the execution's finished deploy stages applied ("Deployment reviews-v2"): what a cancel leaves."""
    out: list[str] = []
    for stage in execution.get("stages") or []:
        if stage.get("type") != "deployManifest" or stage.get("status") not in ("SUCCEEDED", "RUNNING"):
            continue
        for m in (stage.get("outputs") or {}).get("manifests") or []:
            if isinstance(m, dict):
                text = f"{m.get('kind', '?')} {(m.get('metadata') or {}).get('name', '?')}"
                if text not in out:
                    out.append(text)
    return out


def cancel_questions(execution: dict[str, Any]) -> dict[str, str]:
    """What Cancel ("cancel") and "cancel and return traffic to the baseline" ("return", for an execution that
    routes a service) ask first: what stays deployed, as the execution stands now. The page renders them and
    takes them again from each live update, so a page opened before a deploy does not forget it."""
    deployed = deployed_objects(execution)
    stays = f": {', '.join(deployed)}" if deployed else ""
    out = {"cancel": f"Cancel this execution? What it deployed stays deployed{stays}."}
    services = released_services(execution)
    if services:
        out["return"] = (f"Cancel this execution and put {', '.join(services)} traffic back as it was before it "
                         f"started? Its other changes stay deployed{stays}.")
    return out


def route_weights(service: str, virtual_services: list[dict[str, Any]],
                subset_version: dict[str, str]) -> tuple[dict[str, float], str | None]:
    """version -> % of the first HTTP rule's weight, from the VirtualService whose hosts name the service."""
    for vs in virtual_services:
        spec = vs.get("spec") or {}
        if service not in {_short(h) for h in spec.get("hosts") or []}:
            continue
        meta = vs.get("metadata") or {}
        name = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        rules = [r for r in spec.get("http") or [] if not r.get("match")] or spec.get("http") or []
        routes = rules[0].get("route") or [] if rules else []
        weights: dict[str, float] = {}
        for route in routes:
            subset = str((route.get("destination") or {}).get("subset") or "")
            try:
                weight = float(route.get("weight", 100 if len(routes) == 1 else 0))
            except (TypeError, ValueError):
                continue
            version = subset_version.get(subset, subset) or "all"
            weights[version] = weights.get(version, 0.0) + weight
        total = sum(weights.values()) or 1.0
        return {v: round(100 * w / total, 1) for v, w in weights.items()}, f"VirtualService {name}"
    return {}, None


def http_route_weights(service: str, routes: list[dict[str, Any]],
                        services: list[dict[str, Any]]) -> tuple[dict[str, float], str | None]:
    """version -> % of the managed rule's backendRefs weight (the rule a release moves: the default route, not a
    header route placed above it; httproute_edit.managed_rule_index), from the HTTPRoute whose parent is the
    Service; a backend Service's version is its selector's `version` label (else its name)."""
    selector_version = {(s.get("metadata") or {}).get("name"): ((s.get("spec") or {}).get("selector") or {})
                        .get("version") for s in services}
    for route in routes:
        spec = route.get("spec") or {}
        if service not in {r.get("name") for r in spec.get("parentRefs") or [] if r.get("kind") == "Service"}:
            continue
        meta = route.get("metadata") or {}
        rules = spec.get("rules") or []
        managed = managed_rule_index(route)
        weights: dict[str, float] = {}
        for ref in (rules[managed].get("backendRefs") or []) if managed is not None else []:
            try:
                weight = float(ref.get("weight", 1))
            except (TypeError, ValueError):
                continue
            version = str(selector_version.get(ref.get("name")) or ref.get("name"))
            weights[version] = weights.get(version, 0.0) + weight
        total = sum(weights.values()) or 1.0
        return ({v: round(100 * w / total, 1) for v, w in weights.items()},
                f"HTTPRoute {meta.get('namespace', 'default')}/{meta.get('name')}")
    return {}, None


def subset_versions(service: str, destination_rules: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for dr in destination_rules:
        spec = dr.get("spec") or {}
        if _short(spec.get("host")) != service:
            continue
        for subset in spec.get("subsets") or []:
            version = (subset.get("labels") or {}).get("version")
            if subset.get("name") and version:
                out[str(subset["name"])] = str(version)
    return out


@dataclass(frozen=True, slots=True)
class Observed:
    share: dict[str, float]
    error_rate: dict[str, float]
    p95_ms: dict[str, float]
    requests: int


def version_traffic(service: str, graph: dict[str, Any]) -> Observed:
    """Per version: % of the window's requests to the service (every caller), 5xx %, and p95 (ms)."""
    version = {n["id"]: n.get("version") or n.get("label") or n["id"] for n in graph.get("nodes") or []}
    counts: dict[str, float] = {}
    errors: dict[str, float] = {}
    p95: dict[str, float] = {}
    for edge in graph.get("edges") or []:
        if edge.get("service") != service:
            continue
        v = version.get(edge.get("target"), "?")
        n = float(edge.get("requests") or 0)
        counts[v] = counts.get(v, 0.0) + n
        errors[v] = errors.get(v, 0.0) + n * float(edge.get("errorRate5xx") or 0) / 100
        if edge.get("p95") is not None and n:
            p95[v] = max(p95.get(v, 0.0), float(edge["p95"]))
    total = sum(counts.values())
    if not total:
        return Observed({}, {}, {}, 0)
    return Observed({v: round(100 * c / total, 1) for v, c in counts.items()},
                    {v: round(100 * errors[v] / c, 2) for v, c in counts.items() if c},
                    {v: round(ms, 1) for v, ms in p95.items()}, int(total))


def release_view(execution: dict[str, Any], virtual_services: list[dict[str, Any]],
                 destination_rules: list[dict[str, Any]], graph: dict[str, Any], role: str,
                 http_routes: list[dict[str, Any]] | None = None,
                 kube_services: list[dict[str, Any]] | None = None) -> ReleaseView:
    services = []
    for service in released_services(execution):
        configured, vs_name = route_weights(service, virtual_services, subset_versions(service, destination_rules))
        if not configured:
            configured, vs_name = http_route_weights(service, http_routes or [], kube_services or [])
        seen = version_traffic(service, graph)
        versions = [VersionShare(v, configured.get(v), seen.share.get(v), seen.error_rate.get(v), seen.p95_ms.get(v))
                    for v in sorted(set(configured) | set(seen.share))]
        services.append(ServiceRelease(service, versions, seen.requests, vs_name))
    top = [s for s in execution.get("stages") or [] if not s.get("parentStageId")]
    current = [str(s.get("name")) for s in top if s.get("status") in ("RUNNING", "PAUSED", "SUSPENDED")]
    waiting = next((s for s in top if s.get("type") == "manualJudgment" and s.get("status") == "RUNNING"
                    and may_judge(s, role)), None)
    status = str(execution.get("status") or "")
    actions = {"RUNNING": ["pause", "cancel"], "PAUSED": ["resume", "cancel"],
               "NOT_STARTED": ["cancel"], "BUFFERED": ["cancel"], "SUSPENDED": ["cancel"]}.get(status, [])
    return ReleaseView(services, current, waiting, status, actions)
