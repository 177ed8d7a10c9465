"""Cross-resource analyzers with istioctl's codes (IST0101, IST0109, IST0112, IST0130, IST0131, IST0173, IST0174).

They look at a whole set of resources: the input documents plus, optionally, what is already in the
store (`context`). Findings are reported only on input documents; the context only answers questions
such as "does this Service exist" or "which Deployments could back this subset".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from graylane.resources.admission import hosts_overlap
from graylane.resources.document import Document, FieldPath, ResourceKey
from graylane.resources.finding import Finding
from graylane.resources.messages import (
    CONFLICTING_MESH_GATEWAY_VS_HOSTS,
    DR_SUBSET_SELECTS_NO_PODS,
    REFERENCED_RESOURCE_NOT_FOUND,
    UNKNOWN_DR_HOST,
    VS_DESTINATION_PORT_SELECTOR_REQUIRED,
    VS_HOST_NOT_FOUND_IN_GATEWAY,
    VS_INEFFECTIVE_MATCH,
    VS_UNREACHABLE_RULE,
    WEIGHTS_NOT_100,
)

CLUSTER_DOMAIN = "cluster.local"
ISTIO = "networking.istio.io"


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


def _gateway_key(name: str, namespace: str) -> str:
    if "/" in name:
        return name
    if "." in name:  # legacy `name.namespace` form
        gw, _, ns = name.partition(".")
        return f"{ns}/{gw}"
    return f"{namespace}/{name}"


@dataclass
class _Index:
    """What exists, from input and context together (input wins for the same key)."""

    services: dict[str, Document] = field(default_factory=dict)  # fqdn -> Service
    entry_hosts: list[str] = field(default_factory=list)  # ServiceEntry hosts, fqdn
    rules: list[tuple[str, Document]] = field(default_factory=list)  # (fqdn host, DestinationRule)
    gateways: dict[str, Document] = field(default_factory=dict)  # "ns/name" -> Gateway
    deployments: list[Document] = field(default_factory=list)
    virtual_services: list[Document] = field(default_factory=list)

    @classmethod
    def build(cls, docs: list[Document]) -> _Index:
        index = cls()
        for doc in docs:
            group, kind, ns = doc.group, doc.kind, doc.namespace
            if group == "" and kind == "Service":
                index.services[f"{doc.name}.{ns}.svc.{CLUSTER_DOMAIN}"] = doc
            elif group == "apps" and kind == "Deployment":
                index.deployments.append(doc)
            elif group == ISTIO and kind == "ServiceEntry":
                index.entry_hosts.extend(to_fqdn(h, ns) for h in doc.spec.get("hosts") or [] if isinstance(h, str))
            elif group == ISTIO and kind == "DestinationRule" and isinstance(doc.spec.get("host"), str):
                index.rules.append((to_fqdn(doc.spec["host"], ns), doc))
            elif group == ISTIO and kind == "Gateway":
                index.gateways[f"{ns}/{doc.name}"] = doc
            elif group == ISTIO and kind == "VirtualService":
                index.virtual_services.append(doc)
        return index

    def host_exists(self, fqdn: str) -> bool:
        if fqdn in self.services or any(hosts_overlap(fqdn, h) for h in self.entry_hosts):
            return True
        return fqdn.startswith("*") and any(hosts_overlap(fqdn, h) for h in self.services)

    def has_subset(self, fqdn: str, subset: str) -> bool:
        for host, rule in self.rules:
            if hosts_overlap(host, fqdn) and any(
                    isinstance(s, dict) and s.get("name") == subset for s in rule.spec.get("subsets") or []):
                return True
        return False


def _destinations(spec: dict[str, Any]) -> Iterator[tuple[FieldPath, dict[str, Any], bool]]:
    """(path of the destination, destination, is_mirror) for every route and mirror of a VirtualService."""
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(spec.get(section) or []):
            if not isinstance(rule, dict):
                continue
            for j, route in enumerate(rule.get("route") or []):
                if isinstance(route, dict) and isinstance(route.get("destination"), dict):
                    yield ("spec", section, i, "route", j, "destination"), route["destination"], False
            if isinstance(rule.get("mirror"), dict):
                yield ("spec", section, i, "mirror"), rule["mirror"], True
            for k, mirror in enumerate(rule.get("mirrors") or []):
                if isinstance(mirror, dict) and isinstance(mirror.get("destination"), dict):
                    yield ("spec", section, i, "mirrors", k, "destination"), mirror["destination"], True


def _service_ports(service: Document) -> list[int]:
    ports = service.spec.get("ports") or []
    return [p["port"] for p in ports if isinstance(p, dict) and isinstance(p.get("port"), int)]


def _check_destinations(vs: Document, index: _Index) -> list[Finding]:
    findings: list[Finding] = []
    for path, dest, is_mirror in _destinations(vs.spec):
        host = dest.get("host")
        if not isinstance(host, str):
            continue
        fqdn = to_fqdn(host, vs.namespace)
        if not index.host_exists(fqdn):
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(vs, (*path, "host"), "mirror host" if is_mirror
                                                             else "host", host))
            continue
        subset = dest.get("subset")
        if subset and not index.has_subset(fqdn, subset):
            reftype = "mirror+subset in destinationrule" if is_mirror else "host+subset in destinationrule"
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(vs, (*path, "subset"), reftype, f"{host}+{subset}"))
        service = index.services.get(fqdn)
        if service is None:
            continue
        ports = _service_ports(service)
        port = (dest.get("port") or {}).get("number") if isinstance(dest.get("port"), dict) else None
        if port is not None and ports and port not in ports:
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(vs, (*path, "port"), "host:port", f"{host}:{port}"))
        elif port is None and len(ports) > 1 and not is_mirror:
            findings.append(VS_DESTINATION_PORT_SELECTOR_REQUIRED.at(
                vs, path, host, "[" + " ".join(str(p) for p in ports) + "]"))
    return findings


def _check_gateways(vs: Document, index: _Index) -> list[Finding]:
    findings = []
    refs: list[tuple[FieldPath, Any]] = [(("spec", "gateways", i), g)
                                         for i, g in enumerate(vs.spec.get("gateways") or [])]
    for i, rule in enumerate(vs.spec.get("http") or []):
        for j, match in enumerate(rule.get("match") or [] if isinstance(rule, dict) else []):
            if isinstance(match, dict):
                refs += [(("spec", "http", i, "match", j, "gateways", k), g)
                         for k, g in enumerate(match.get("gateways") or [])]
    hosts = [h for h in vs.spec.get("hosts") or [] if isinstance(h, str)]
    for path, name in refs:
        if not isinstance(name, str) or name == "mesh":
            continue
        key = _gateway_key(name, vs.namespace)
        gateway = index.gateways.get(key)
        if gateway is None:
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(vs, path, "gateway", name))
        elif path[1] == "gateways" and hosts and not _hosts_in_gateway(gateway, hosts, vs.namespace):
            findings.append(VS_HOST_NOT_FOUND_IN_GATEWAY.at(
                vs, path, "[" + " ".join(hosts) + "]", f"{vs.namespace}/{vs.name}", key))
    return findings


def _hosts_in_gateway(gateway: Document, hosts: list[str], vs_namespace: str) -> bool:
    """A VirtualService binds to a Gateway server when one of its hosts overlaps a server host it may use."""
    for server in gateway.spec.get("servers") or []:
        for entry in (server.get("hosts") or []) if isinstance(server, dict) else []:
            ns, _, dns = str(entry).rpartition("/")
            if ns == ".":
                ns = gateway.namespace
            if ns not in ("", "*", vs_namespace):
                continue
            if any(hosts_overlap(dns, h) for h in hosts):
                return True
    return False


def _applies_to_mesh(vs: Document) -> bool:
    gateways = vs.spec.get("gateways") or []
    return not gateways or "mesh" in gateways


def _check_conflicting_hosts(inputs: set[ResourceKey], index: _Index) -> list[Finding]:
    """IST0109: sidecars do not merge VirtualServices; with two for one host, only the oldest applies."""
    by_host: dict[str, list[tuple[Document, int]]] = defaultdict(list)
    for vs in index.virtual_services:
        if not _applies_to_mesh(vs):
            continue
        for i, host in enumerate(vs.spec.get("hosts") or []):
            if isinstance(host, str):
                by_host[to_fqdn(host, vs.namespace)].append((vs, i))
    findings = []
    for host, entries in by_host.items():
        if len({vs.key for vs, _ in entries}) < 2:
            continue
        names = ",".join(sorted(f"{vs.namespace}/{vs.name}" for vs, _ in entries))
        for vs, i in entries:
            if vs.key in inputs:
                findings.append(CONFLICTING_MESH_GATEWAY_VS_HOSTS.at(vs, ("spec", "hosts", i), names, host))
    return findings


def _pod_labels(deployment: Document) -> dict[str, Any]:
    template = deployment.spec.get("template")
    metadata = template.get("metadata") if isinstance(template, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return labels if isinstance(labels, dict) else {}


def _runs_pods(deployment: Document) -> bool:
    replicas = deployment.spec.get("replicas", 1)
    return not isinstance(replicas, int) or replicas > 0


def _check_destination_rule(dr: Document, index: _Index) -> list[Finding]:
    host = dr.spec.get("host")
    if not isinstance(host, str):
        return []
    fqdn = to_fqdn(host, dr.namespace)
    if not index.host_exists(fqdn):
        return [UNKNOWN_DR_HOST.at(dr, ("spec", "host"), host)]
    service = index.services.get(fqdn)
    if service is None:
        return []
    in_namespace = [d for d in index.deployments if d.namespace == service.namespace]
    if not in_namespace:
        return []  # no workloads known for that namespace: nothing to judge pods by
    selector = service.spec.get("selector") or {}
    backing = [d for d in in_namespace
               if _runs_pods(d) and selector and all(_pod_labels(d).get(k) == v for k, v in selector.items())]
    findings = []
    for i, subset in enumerate(dr.spec.get("subsets") or []):
        if not isinstance(subset, dict):
            continue
        labels = subset.get("labels") or {}
        if not any(all(_pod_labels(d).get(k) == v for k, v in labels.items()) for d in backing):
            findings.append(DR_SUBSET_SELECTS_NO_PODS.at(dr, ("spec", "subsets", i), subset.get("name")))
    return findings


def _check_weights(vs: Document) -> list[Finding]:
    findings = []
    for section in ("http", "tcp", "tls"):
        for i, rule in enumerate(vs.spec.get(section) or []):
            routes = rule.get("route") if isinstance(rule, dict) else None
            if not isinstance(routes, list) or len(routes) < 2:
                continue
            weights = [r.get("weight", 0) if isinstance(r, dict) else 0 for r in routes]
            if all(isinstance(w, int) and w >= 0 for w in weights) and 0 < sum(weights) != 100:
                findings.append(WEIGHTS_NOT_100.at(vs, ("spec", section, i, "route"), sum(weights)))
    return findings


def _rule_name(rule: dict[str, Any], n: int) -> str:
    name = rule.get("name")
    return json.dumps(name) if isinstance(name, str) and name else f"#{n}"


def _match_name(match: Any, n: int) -> str:
    name = match.get("name") if isinstance(match, dict) else None
    return json.dumps(name) if isinstance(name, str) and name else f"#{n}"


def _match_key(match: Any) -> str:
    if isinstance(match, dict):
        match = {k: v for k, v in match.items() if k != "name"}
    return json.dumps(match, sort_keys=True, default=str)


def _check_unreachable(vs: Document) -> list[Finding]:
    """IST0130/IST0131, as Istio's analyzeUnreachableHTTPRules: first match wins, so later copies never fire."""
    findings: list[Finding] = []
    for section in ("http", "tcp", "tls"):
        seen: dict[str, int] = {}
        catch_all = -1
        rules = vs.spec.get(section) or []
        for n, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            path = ("spec", section, n)
            matches = rule.get("match") or []
            if not matches:
                if catch_all >= 0:
                    findings.append(VS_UNREACHABLE_RULE.at(vs, path, _rule_name(rule, n),
                                                           "only the last rule can have no matches"))
                catch_all = n
                continue
            if catch_all >= 0:
                findings.append(VS_UNREACHABLE_RULE.at(vs, path, _rule_name(rule, n),
                                                       "route without matches defined before"))
                continue
            duplicates = 0
            for m, match in enumerate(matches):
                key = _match_key(match)
                if key in seen:
                    first = seen[key]
                    findings.append(VS_INEFFECTIVE_MATCH.at(vs, (*path, "match", m), _rule_name(rule, n),
                                                            _match_name(match, m), _rule_name(rules[first], first)))
                    duplicates += 1
                else:
                    seen[key] = n
            if duplicates == len(matches):
                findings.append(VS_UNREACHABLE_RULE.at(vs, path, _rule_name(rule, n),
                                                       "all matches used by prior rules"))
    return findings


def analyze_set(inputs: list[Document], context: list[Document]) -> list[Finding]:
    """Run every cross-resource analyzer over `inputs` (+ `context`); findings are on input documents only."""
    input_keys = {d.key for d in inputs}
    merged = {d.key: d for d in context if d.key not in input_keys}
    merged.update({d.key: d for d in inputs})
    index = _Index.build(list(merged.values()))
    latest = {d.key: d for d in inputs}  # the same key twice in one input: the last one is what gets applied
    findings: list[Finding] = []
    for doc in latest.values():
        if doc.group != ISTIO:
            continue
        if doc.kind == "VirtualService":
            findings += _check_destinations(doc, index)
            findings += _check_gateways(doc, index)
            findings += _check_weights(doc)
            findings += _check_unreachable(doc)
        elif doc.kind == "DestinationRule":
            findings += _check_destination_rule(doc, index)
    findings += _check_conflicting_hosts(input_keys, index)
    return findings
