"""deployManifest's route check: refuse a release whose routes would point at nothing, before anything is applied.

Runs graylane.resources.validate's analyzers on the documents about to be applied together with what the target
holds (input wins for the same key), and keeps the findings a release must not ship: IST0101 on a route
destination (host, or host+subset in a DestinationRule) of an input VirtualService, and IST0173 on a subset such
a route sends traffic to (the subset selects no running pods; a live Deployment with no ready replica counts as
none, so a route to a version that is not ready is refused too). Istio accepts both and answers 503 NR/UH.
For an input HTTPRoute: IST0101 on a backendRef Service (or its port) that carries weight (Istio's 500).
Knows documents and the Target protocol; knows nothing of the executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graylane.errors import GraylaneError
from graylane.resources.document import Document, Source
from graylane.resources.finding import Finding, Severity
from graylane.resources.validate import analyze

OPTION = "skipRouteCheck"
NOT_READY = "route-check.graylane.io/not-ready"  # marks a live Deployment counted as no pods for the check
ISTIO = "networking.istio.io"
# What the analyzers need to judge route destinations: hosts, subsets, workloads.
LIVE_KINDS = (("", "Service"), (ISTIO, "ServiceEntry"), (ISTIO, "DestinationRule"), (ISTIO, "VirtualService"),
              ("apps", "Deployment"), ("", "Pod"))
_ROUTE_MESSAGES = ("Referenced host not found", "Referenced host+subset in destinationrule not found",
                   "Referenced mirror host not found", "Referenced mirror+subset in destinationrule not found")


def _short(host: Any) -> str:
    return str(host or "").split(".")[0]


def _routed_subsets(docs: Sequence[Document]) -> set[tuple[str, str, str]]:
    """(namespace, short host, subset) of every weighted route destination of the input VirtualServices."""
    out: set[tuple[str, str, str]] = set()
    for doc in docs:
        if doc.kind != "VirtualService":
            continue
        for section in ("http", "tcp", "tls"):
            for rule in doc.spec.get(section) or []:
                for route in (rule.get("route") or []) if isinstance(rule, dict) else []:
                    dest = route.get("destination") if isinstance(route, dict) else None
                    if not isinstance(dest, dict) or not dest.get("subset"):
                        continue
                    weight = route.get("weight")
                    if weight in (0, "0"):
                        continue  # a destination given no traffic does not need pods
                    out.add((doc.namespace or "default", _short(dest.get("host")), str(dest["subset"])))
    return out


async def live_resources(target: Any) -> list[dict[str, Any]]:
    """The target's resources the analyzers judge routes by; a Deployment with no ready replica counts as none.

    Readiness comes from the body's `status` (Kubernetes) or the target's `live_status` (the local runtime); a
    Deployment whose readiness is unknown counts by its `spec.replicas`, as the analyzer does.
    """
    out: list[dict[str, Any]] = []
    for group, kind in LIVE_KINDS:
        try:
            items = await target.list(kind, None, group)
        except GraylaneError:
            continue  # a kind the target does not serve (e.g. no Istio CRDs): nothing of it exists
        for body in items:
            if kind == "Deployment":
                body = await _with_readiness(target, body)
            out.append(body)
    return out


async def _with_readiness(target: Any, body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status")
    if not isinstance(status, dict) and hasattr(target, "live_status"):
        doc = Document(body, Source("<live>", 1, 0))
        status = await target.live_status(doc.key)
    if not isinstance(status, dict) or "readyReplicas" not in status and "replicas" not in status:
        return body
    if int(status.get("readyReplicas") or 0) > 0:
        return body
    counted = {**body, "spec": {**(body.get("spec") or {}), "replicas": 0}}
    counted.setdefault("metadata", {})
    notes = dict(counted["metadata"].get("annotations") or {})
    want = (body.get("spec") or {}).get("replicas", 1)
    notes[NOT_READY] = f"0 of {want} replicas ready"
    counted["metadata"] = {**counted["metadata"], "annotations": notes}
    return counted


def blocking_findings(docs: Sequence[Document], live: list[dict[str, Any]]) -> list[Finding]:
    """Findings that make the release route into nothing (empty when the routes are sound)."""
    routed = _routed_subsets(docs)
    if not any(doc.kind in ("VirtualService", "HTTPRoute") for doc in docs):
        return []
    keys = {doc.key for doc in docs}
    # live DestinationRules the routes rely on are judged too, so their empty subsets are reported
    relied = [Document(body, Source("<live>", 1, i)) for i, body in enumerate(live)
              if body.get("kind") == "DestinationRule"
              and (doc := Document(body, Source("<live>", 1, i))).key not in keys
              and any(_short(doc.spec.get("host")) == host and doc.namespace == ns for ns, host, _ in routed)]
    findings = analyze([*docs, *relied], context=live)
    out: list[Finding] = []
    for f in findings:
        if f.severity is not Severity.ERROR or f.doc is None:
            continue
        if f.code == "IST0101" and f.doc.key in keys and _blocks_route(f):
            out.append(f)
        elif f.code == "IST0173" and f.doc.kind == "DestinationRule" and len(f.path) == 3:
            subsets = f.doc.spec.get("subsets") or []
            index = f.path[2]
            subset = subsets[index].get("name") if isinstance(index, int) and index < len(subsets) else None
            if (f.doc.namespace or "default", _short(f.doc.spec.get("host")), str(subset)) in routed:
                out.append(f)
    return out


def _blocks_route(f: Finding) -> bool:
    """An IST0101 on a route destination of an input VirtualService, or on a weighted HTTPRoute backendRef."""
    assert f.doc is not None
    if f.doc.kind == "VirtualService":
        return f.message.startswith(_ROUTE_MESSAGES)
    return f.doc.kind == "HTTPRoute" and "backendRef Service" in f.message and _weighted_backend(f.doc, f.path)


def _weighted_backend(doc: Document, path: Sequence[Any]) -> bool:
    """Whether the finding's path is a rule's backendRef that gets traffic (weight absent or above 0)."""
    if len(path) < 5 or path[:1] != ("spec",) or path[1] != "rules" or path[3] != "backendRefs":
        return False
    try:
        ref = doc.spec["rules"][path[2]]["backendRefs"][path[4]]
    except (KeyError, IndexError, TypeError):
        return False
    return not isinstance(ref, dict) or ref.get("weight") not in (0, "0")


def not_ready(live: list[dict[str, Any]]) -> list[str]:
    """`Deployment default/reviews-v3: 0 of 1 replicas ready` for each live Deployment counted as no pods."""
    out = []
    for body in live:
        note = ((body.get("metadata") or {}).get("annotations") or {}).get(NOT_READY)
        if body.get("kind") == "Deployment" and note:
            md = body.get("metadata") or {}
            out.append(f"Deployment {md.get('namespace') or 'default'}/{md.get('name')}: {note}")
    return out


def describe(findings: Sequence[Finding]) -> str:
    lines = []
    for f in findings:
        origin = " ".join(p for p in (f.resource, f.where) if p)
        lines.append(f"[{f.code}] ({origin}) {f.message}" if origin else f"[{f.code}] {f.message}")
    return "; ".join(dict.fromkeys(lines))
