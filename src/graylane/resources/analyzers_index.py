"""What exists, as istioctl's analyzers see it: hosts scoped by `exportTo`, subsets, gateways, workloads.

Istio's analyzers key every Service and ServiceEntry host by the namespaces it is visible in
(`scope/fqdn`, scope `*` for everywhere): a ServiceEntry's `exportTo` ("." is its own namespace,
"*" or no list is every namespace), a Service's `networking.istio.io/exportTo` annotation (a comma
list with the same words). A reference from namespace N sees a host exported to `*`, or to N, or,
when the referring resource has its own `exportTo`, to one of those namespaces; wildcard
ServiceEntry hosts (`*.eu.example.com`, `*`) answer only in `*` or N (pkg/config/analysis/analyzers/util).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from graylane.resources.document import Document

CLUSTER_DOMAIN = "cluster.local"
ISTIO = "networking.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
ALL = "*"
LOCAL = "."
MESH = "mesh"
# Namespaces istioctl analyze leaves out altogether (pkg/kube/inject IgnoredNamespaces).
IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})

_FQDN = re.compile(r"^(.+)\.(.+)\.svc\.cluster\.local$")


def to_fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a host without a dot is `<host>.<config namespace>.svc.cluster.local`.

    Anything with a dot (`reviews.default`) is taken as written, as istiod does (pilot/pkg/model/config.go).
    """
    if host.startswith("*") or "." in host:
        return host
    try:
        ip_address(host)
        return host
    except ValueError:
        return f"{host}.{namespace}.svc.{CLUSTER_DOMAIN}"


def resource_name_of_host(namespace: str, host: str) -> tuple[str, str]:
    """(namespace, name) a host names: `name.ns.svc.cluster.local` -> (ns, name); otherwise (namespace, host)."""
    m = _FQDN.match(host)
    if m:
        return m.group(2), m.group(1)
    return namespace, host


def hosts_match(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: equal, or a wildcard on either side covers the other."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def strings(value: Any) -> list[str]:
    """The strings of a list field (anything else in it, or a non-list, is ignored)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def export_to(doc: Document) -> list[str]:
    return strings(doc.spec.get("exportTo"))


def service_scopes(service: Document) -> list[str]:
    """Namespaces a Service is visible in, from its `networking.istio.io/exportTo` annotation ("*" by default)."""
    annotations = service.metadata.get("annotations")
    raw = annotations.get(EXPORT_TO_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(raw, str) or not raw:
        return [ALL]
    return [service.namespace if ns.strip() == LOCAL else ns.strip() for ns in raw.split(",")]


def entry_scopes(entry: Document) -> list[str]:
    """Namespaces a ServiceEntry's hosts are visible in, from `exportTo` ("*" when absent)."""
    scopes = export_to(entry)
    if not scopes or ALL in scopes:
        return [ALL]
    return [entry.namespace if ns == LOCAL else ns for ns in scopes]


@dataclass(frozen=True)
class Target:
    """A destination host as the analyzers see it: the resource behind it and the port numbers it exposes."""

    doc: Document
    ports: tuple[int, ...]


def _ports(doc: Document, key: str) -> tuple[int, ...]:
    ports = doc.spec.get("ports")
    return tuple(p[key] for p in ports if isinstance(p, dict) and isinstance(p.get(key), int)) \
        if isinstance(ports, list) else ()


def is_mesh_bound(vs: Document) -> bool:
    gateways = strings(vs.spec.get("gateways"))
    return not vs.spec.get("gateways") or MESH in gateways


@dataclass
class Index:
    """What exists, from input and context together (input wins for the same key)."""

    hosts: dict[tuple[str, str], Target] = field(default_factory=dict)  # (scope, fqdn) -> target
    subsets: set[tuple[str, str, str]] = field(default_factory=set)    # (namespace, name of host, subset)
    services: dict[str, Document] = field(default_factory=dict)         # fqdn -> Service
    gateways: dict[str, Document] = field(default_factory=dict)         # "ns/name" -> Istio Gateway
    k8s_gateways: dict[str, Document] = field(default_factory=dict)     # "ns/name" -> Gateway API Gateway
    workloads: list[Document] = field(default_factory=list)             # Deployments and Pods
    node_labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    virtual_services: list[Document] = field(default_factory=list)

    @classmethod
    def build(cls, docs: list[Document]) -> Index:
        index = cls()
        services: list[Document] = []
        for doc in docs:
            group, kind, ns = doc.group, doc.kind, doc.namespace
            if group == "" and kind == "Service":
                services.append(doc)
            elif (group, kind) in (("apps", "Deployment"), ("", "Pod")):
                index.workloads.append(doc)
            elif group == "" and kind == "Node":
                labels = doc.metadata.get("labels")
                index.node_labels[doc.name] = labels if isinstance(labels, dict) else {}
            elif group == ISTIO and kind == "ServiceEntry":
                target = Target(doc, _ports(doc, "number"))
                for host in strings(doc.spec.get("hosts")):
                    for scope in entry_scopes(doc):
                        index.hosts[(scope, to_fqdn(host, ns))] = target
            elif group == ISTIO and kind == "DestinationRule" and isinstance(doc.spec.get("host"), str):
                host_ns, host_name = resource_name_of_host(ns, doc.spec["host"])
                for subset in doc.spec.get("subsets") or []:
                    if isinstance(subset, dict) and isinstance(subset.get("name"), str):
                        index.subsets.add((host_ns, host_name, subset["name"]))
            elif group == ISTIO and kind == "Gateway":
                index.gateways[f"{ns}/{doc.name}"] = doc
            elif group == GATEWAY_API and kind == "Gateway":
                index.k8s_gateways[f"{ns}/{doc.name}"] = doc
            elif group == ISTIO and kind == "VirtualService":
                index.virtual_services.append(doc)
        for service in services:  # after ServiceEntries: a Service wins the same scoped host, as in istioctl
            fqdn = to_fqdn(service.name, service.namespace)
            index.services[fqdn] = service
            for scope in service_scopes(service):
                index.hosts[(scope, fqdn)] = Target(service, _ports(service, "port"))
        return index

    def destination(self, namespace: str, exported_to: list[str], host: str) -> Target | None:
        """The Service or ServiceEntry a `host` referenced from `namespace` resolves to (istioctl's
        GetDestinationHost): exported everywhere, else to the referring namespace or one of its own
        `exportTo` namespaces, else a wildcard ServiceEntry host visible there."""
        fqdn = to_fqdn(host, namespace)
        found = self.hosts.get((ALL, fqdn))
        if found is not None:
            return found
        for scope in [namespace if e == LOCAL else e for e in exported_to] or [namespace]:
            found = self.hosts.get((scope, fqdn))
            if found is not None:
                return found
        bare = host.removeprefix("*")
        for (scope, entry_host), target in self.hosts.items():
            if entry_host.startswith("*") and scope in (ALL, namespace) and bare.endswith(entry_host[1:]):
                return target
        return None

    def has_subset(self, namespace: str, host: str, subset: str) -> bool:
        """A DestinationRule defines `subset` for the host (matched by resource name, as istioctl does)."""
        return (*resource_name_of_host(namespace, host), subset) in self.subsets

    def pod_labels(self, workload: Document) -> dict[str, Any] | None:
        """Labels of the pods a workload runs (None: it runs none). Pods get their node's locality labels."""
        if workload.kind == "Deployment":
            replicas = workload.spec.get("replicas", 1)
            if isinstance(replicas, int) and replicas <= 0:
                return None
            template = workload.spec.get("template")
            metadata = template.get("metadata") if isinstance(template, dict) else None
            labels = metadata.get("labels") if isinstance(metadata, dict) else None
            return dict(labels) if isinstance(labels, dict) else {}
        labels = workload.metadata.get("labels")
        out = dict(labels) if isinstance(labels, dict) else {}
        node = workload.spec.get("nodeName")
        if isinstance(node, str) and node:
            node_labels = self.node_labels.get(node, {})
            region = node_labels.get("topology.kubernetes.io/region") or ""
            zone = node_labels.get("topology.kubernetes.io/zone") or ""
            subzone = node_labels.get("topology.istio.io/subzone") or ""
            if region:
                out["topology.kubernetes.io/region"] = region
            if zone:
                out["topology.kubernetes.io/zone"] = zone
                if subzone:
                    out["topology.istio.io/subzone"] = subzone
            out["kubernetes.io/hostname"] = node
        return out
