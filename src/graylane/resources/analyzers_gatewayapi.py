"""Cross-resource checks of Gateway API routes, as istiod reports them in status (and istioctl's
ReferencedResourceNotFound, IST0101): backendRefs to Services that do not exist or lack the port, parentRefs to
Gateways or Services that do not exist (a Gateway's generated `<name>-istio` Service exists with its Gateway),
cross-namespace backendRefs without a ReferenceGrant, Gateways of a class no controller here handles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graylane.resources.analyzers_index import GATEWAY_API, Index, to_fqdn
from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import REFERENCED_RESOURCE_NOT_FOUND, SCHEMA_WARNING

ANALYZER = "gatewayapi.RouteAnalyzer"
CONTROLLER = "istio.io/gateway-controller"
GENERATED_SUFFIX = "-istio"


def _ports(service: Document) -> list[Any]:
    return [p.get("port") for p in service.spec.get("ports") or [] if isinstance(p, dict)]


def _granted(grants: list[Document], route_kind: str, route_ns: str, target_ns: str, name: str) -> bool:
    for g in grants:
        if g.namespace != target_ns:
            continue
        froms = [f for f in g.spec.get("from") or [] if isinstance(f, dict)]
        tos = [t for t in g.spec.get("to") or [] if isinstance(t, dict)]
        if any(f.get("group") == GATEWAY_API and f.get("kind") == route_kind and f.get("namespace") == route_ns
               for f in froms) and any((t.get("group") or "") == "" and t.get("kind") == "Service"
                                       and t.get("name") in (None, "", name) for t in tos):
            return True
    return False


def _generated_service(name: str, ns: str, index: Index) -> bool:
    """`<gateway>-istio`: the Service istiod's gateway deployment controller creates in front of each Gateway of
    class `istio` (istio.io's egress task routes to `cnn-egress-gateway-istio`); it exists once the Gateway does."""
    gateway = index.k8s_gateways.get(f"{ns}/{name.removesuffix(GENERATED_SUFFIX)}")
    return (name.endswith(GENERATED_SUFFIX) and gateway is not None
            and gateway.spec.get("gatewayClassName") == "istio")


def _backend(route: Document, path: tuple[Any, ...], ref: dict[str, Any], index: Index, grants: list[Document],
             gateway_parent: bool) -> list[Finding]:
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
        return []
    name, ns = str(ref.get("name", "")), str(ref.get("namespace") or route.namespace)
    service = index.services.get(to_fqdn(name, ns))
    if service is None and _generated_service(name, ns, index):
        return []
    if service is None:
        return [REFERENCED_RESOURCE_NOT_FOUND.at(route, (*path, "name"), "backendRef Service", f"{ns}/{name}",
                                                 analyzer=ANALYZER)]
    out = []
    if ref.get("port") is not None and ref["port"] not in _ports(service):
        out.append(REFERENCED_RESOURCE_NOT_FOUND.at(route, (*path, "port"), "backendRef Service port",
                                                    f"{ns}/{name}:{ref['port']}", analyzer=ANALYZER))
    if ns != route.namespace and gateway_parent and not _granted(grants, route.kind, route.namespace, ns, name):
        msg = (f"backendRef {ns}/{name} is in another namespace and no ReferenceGrant in {ns} allows {route.kind}s "
               f"from {route.namespace}: its share of the traffic "
               f"{'is refused' if route.kind in ('TCPRoute', 'TLSRoute') else 'gets 500'} "
               "(ResolvedRefs=False, RefNotPermitted)")
        out.append(SCHEMA_WARNING.at(route, path, msg, detail=msg, analyzer=ANALYZER))
    return out


def check_http_route(route: Document, index: Index, grants: list[Document]) -> list[Finding]:
    findings: list[Finding] = []
    gateway_parent = False
    for i, p in enumerate(route.spec.get("parentRefs") or []):
        if not isinstance(p, dict):
            continue
        ns, name, kind = str(p.get("namespace") or route.namespace), str(p.get("name", "")), p.get("kind") or "Gateway"
        if kind == "Service":
            if to_fqdn(name, ns) not in index.services:
                findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(route, ("spec", "parentRefs", i, "name"),
                                                                 "parent Service", f"{ns}/{name}", analyzer=ANALYZER))
        elif kind == "Gateway":
            gateway_parent = True
            if f"{ns}/{name}" not in index.k8s_gateways:
                findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(route, ("spec", "parentRefs", i, "name"),
                                                                 "parent Gateway", f"{ns}/{name}", analyzer=ANALYZER))
    for ri, rule in enumerate(route.spec.get("rules") or []):
        if not isinstance(rule, dict):
            continue
        for bi, b in enumerate(rule.get("backendRefs") or []):
            if isinstance(b, dict):
                findings += _backend(route, ("spec", "rules", ri, "backendRefs", bi), b, index, grants, gateway_parent)
        for fi, f in enumerate(rule.get("filters") or []):
            mirror = f.get("requestMirror") if isinstance(f, dict) else None
            if isinstance(mirror, dict) and isinstance(mirror.get("backendRef"), dict):
                findings += _backend(route, ("spec", "rules", ri, "filters", fi, "requestMirror", "backendRef"),
                                     mirror["backendRef"], index, grants, gateway_parent)
    return findings


def check_gateway_class(gateway: Document, classes: dict[str, Document]) -> list[Finding]:
    name = gateway.spec.get("gatewayClassName")
    gc = classes.get(str(name))
    if name == "istio" and gc is None:
        return []
    if gc is None:
        return [REFERENCED_RESOURCE_NOT_FOUND.at(gateway, ("spec", "gatewayClassName"), "GatewayClass", str(name),
                                                 analyzer=ANALYZER)]
    if gc.spec.get("controllerName") != CONTROLLER:
        msg = (f"GatewayClass {name} is handled by {gc.spec.get('controllerName')}, not {CONTROLLER}: the local "
               "mesh ignores this Gateway")
        return [SCHEMA_WARNING.at(gateway, ("spec", "gatewayClassName"), msg, detail=msg, analyzer=ANALYZER)]
    return []


def analyze_gateway_api(inputs: Iterable[Document], everything: list[Document], index: Index) -> list[Finding]:
    """Findings on the Gateway API documents among `inputs`; `everything` (inputs + store) answers lookups."""
    grants = [d for d in everything if d.group == GATEWAY_API and d.kind == "ReferenceGrant"]
    classes = {d.name: d for d in everything if d.group == GATEWAY_API and d.kind == "GatewayClass"}
    findings: list[Finding] = []
    for doc in inputs:
        if doc.group != GATEWAY_API:
            continue
        if doc.kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"):
            findings += check_http_route(doc, index, grants)
        elif doc.kind == "Gateway":
            findings += check_gateway_class(doc, classes)
    return findings
