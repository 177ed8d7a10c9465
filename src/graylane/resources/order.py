"""Apply and delete order: make-before-break.

Istio config reaches proxies eventually, resource by resource. If a VirtualService that routes to a
new subset arrives before the DestinationRule defining it, requests fail with 503 NC until the rest
catches up (istio.io "Avoid 503 errors while reconfiguring service routes"; reference istio.md §4.3).
So apply what is referenced before what references it (namespaces, config and workloads, then
DestinationRules, then routes), and delete in the reverse order (routes stop pointing first).
"""

from __future__ import annotations

from collections.abc import Iterable

from graylane.resources.document import Document

# The one table: the local target and the Kubernetes target (after CRDs and Namespaces) both sort by it.
APPLY_ORDER: tuple[str, ...] = (
    "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Secret",
    "PersistentVolumeClaim", "LocalImage", "Service", "Deployment", "StatefulSet", "DaemonSet", "Job",
    "PodDisruptionBudget", "DestinationRule", "ServiceEntry", "GatewayClass", "Gateway", "ReferenceGrant", "Sidecar",
    "PeerAuthentication", "AuthorizationPolicy", "VirtualService", "HTTPRoute", "GRPCRoute", "TCPRoute",
    "TLSRoute", "EnvoyFilter",
)
_RANK = {kind: i for i, kind in enumerate(APPLY_ORDER)}


def apply_rank(kind: str) -> int:
    """Position of a kind in apply order; kinds not listed go last, in input order."""
    return _RANK.get(kind, len(APPLY_ORDER))


def apply_order(docs: Iterable[Document]) -> list[Document]:
    """Documents sorted for apply; stable, so documents of one kind keep their input order."""
    return sorted(docs, key=lambda d: apply_rank(d.kind))


def delete_order(docs: Iterable[Document]) -> list[Document]:
    """Documents sorted for delete: the reverse of apply order (routes first, namespaces last)."""
    return sorted(docs, key=lambda d: -apply_rank(d.kind))
