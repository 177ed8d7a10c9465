"""Istio Gateway analyzers (istioctl's pkg/config/analysis/analyzers/gateway):

- SecretAnalyzer: IST0101 for a server's `tls.credentialName` that names no Secret. The Secret is looked for in the
  Gateway's namespace and in `istio-system`, where the local mesh reads it (docs/dataplane.md, Protocols).
- IngressGatewayPortAnalyzer: IST0101 `selector` when the Gateway's selector matches no pod; IST0162 for a server
  port that no Service selecting those pods exposes (as a TCP `targetPort`, or as a `port` when the Service maps it).
- ConflictingGatewayAnalyzer: IST0145 for a server whose port, `bind` and one of whose hosts (as written) another
  Gateway's server repeats, when both Gateways select the same workload: the same selector, or a known pod both
  select (istioctl looks for that pod only when one selector's text contains the other's).
- CertificateAnalyzer: IST0138 for TLS servers of two Gateways with the same certificate (the same `credentialName`,
  or, neither having one, the same `serverCertificate` and `privateKey`) when the other Gateway's selector holds
  every label of this one's (an empty selector: every Gateway), in any namespace.

Pods are the known Pods and the pods of Deployments with replicas > 0 (istioctl reads Pods only). When no
`istio-system/istio-ingressgateway` Service is known, the ingress gateway istioctl assumes for files is assumed too:
a pod labelled `istio: ingressgateway` (and `app: istio-ingressgateway`, as the local mesh's gateway) behind a
Service with ports 80, 443, 31400 and 15443. Likewise, when no `istio-system/istio-egressgateway` Service is known,
the egress gateway of Istio's demo profile is assumed (istioctl assumes none): the local mesh's one gateway serves
every Gateway, the egress Gateways of istio.io's egress tasks (`selector: {istio: egressgateway}`) included; a pod
labelled `istio: egressgateway` and `app: istio-egressgateway` behind a Service mapping 80 -> 8080 and 443 -> 8443.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graylane.resources.analyzers_index import Index
from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import (
    CONFLICTING_GATEWAYS,
    GATEWAY_DUPLICATE_CERTIFICATE,
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
    REFERENCED_RESOURCE_NOT_FOUND,
)

SECRET_ANALYZER = "gateway.SecretAnalyzer"
PORT_ANALYZER = "gateway.IngressGatewayPortAnalyzer"
CONFLICT_ANALYZER = "gateway.ConflictingGatewayAnalyzer"
CERTIFICATE_ANALYZER = "gateway.CertificateAnalyzer"

INGRESS_NAMESPACE = "istio-system"
# Gateways assumed when no such Service is known: (Service name, pod labels, (port, targetPort)...). The ingress one
# is istioctl's default for files (pkg/config/analysis/local/defaults.go); the egress one the demo profile's.
ASSUMED_GATEWAYS = (
    ("istio-ingressgateway", {"istio": "ingressgateway", "app": "istio-ingressgateway"},
     ((80, 80), (443, 443), (31400, 31400), (15443, 15443))),
    ("istio-egressgateway", {"istio": "egressgateway", "app": "istio-egressgateway"}, ((80, 8080), (443, 8443))),
)


def check_gateway_secrets(gw: Document, docs: Iterable[Document]) -> list[Finding]:
    secrets = {(d.namespace, d.name) for d in docs if d.kind == "Secret" and d.group == ""}
    findings = []
    for i, server in _servers(gw):
        tls = server.get("tls")
        name = tls.get("credentialName") if isinstance(tls, dict) else None
        if not isinstance(name, str) or not name:
            continue
        if (gw.namespace, name) not in secrets and ("istio-system", name) not in secrets:
            findings.append(REFERENCED_RESOURCE_NOT_FOUND.at(gw, ("spec", "servers", i, "tls", "credentialName"),
                                                             "credentialName", name, analyzer=SECRET_ANALYZER))
    return findings


def _servers(gw: Document) -> list[tuple[int, dict[str, Any]]]:
    servers = gw.spec.get("servers")
    return [(i, s) for i, s in enumerate(servers if isinstance(servers, list) else []) if isinstance(s, dict)]


def _labels(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def selector_of(gw: Document) -> dict[str, str]:
    return _labels(gw.spec.get("selector"))


def selector_text(selector: dict[str, str]) -> str:
    """A selector as Kubernetes prints a label set: `app=x,istio=ingressgateway` (sorted; "" selects everything)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def selects(selector: dict[str, str], labels: dict[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, Any]


@dataclass(frozen=True)
class GatewayWorkloads:
    """The pods gateways can select and the Services in front of them."""

    pods: tuple[Pod, ...]
    services: tuple[Document, ...]

    @classmethod
    def build(cls, index: Index) -> GatewayWorkloads:
        pods = [Pod(w.namespace, labels) for w in index.workloads if (labels := index.pod_labels(w)) is not None]
        services = list(index.services.values())
        for name, labels, ports in ASSUMED_GATEWAYS:
            if any(s.namespace == INGRESS_NAMESPACE and s.name == name for s in services):
                continue
            pods.append(Pod(INGRESS_NAMESPACE, dict(labels)))
            services.append(Document({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": INGRESS_NAMESPACE},
                "spec": {"selector": {"istio": labels["istio"]},
                         "ports": [{"port": p, "protocol": "TCP", "targetPort": t} for p, t in ports]}}))
        return cls(tuple(pods), tuple(services))

    def selected(self, selector: dict[str, str]) -> list[Pod]:
        return [p for p in self.pods if selects(selector, p.labels)]


def _int_value(target: Any) -> int:
    """Kubernetes' IntOrString.IntValue: a number, a numeric string, else 0 (a named port)."""
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    return int(target) if isinstance(target, str) and target.isdigit() else 0


def _exposed_ports(pods: list[Pod], services: Iterable[Document]) -> tuple[set[int], set[int]]:
    """(target ports, service ports that map to one) of the TCP ports of Services selecting any of `pods`."""
    targets: set[int] = set()
    mapped: set[int] = set()
    for service in services:
        selector = _labels(service.spec.get("selector"))
        if not any(p.namespace == service.namespace and selects(selector, p.labels) for p in pods):
            continue
        ports = service.spec.get("ports")
        for port in ports if isinstance(ports, list) else []:
            if not isinstance(port, dict) or port.get("protocol", "TCP") != "TCP":
                continue
            target = _int_value(port.get("targetPort"))
            if target:
                targets.add(target)
                if isinstance(port.get("port"), int):
                    mapped.add(port["port"])
            elif isinstance(port.get("port"), int):
                targets.add(port["port"])
    return targets, mapped


def check_gateway_ports(gw: Document, workloads: GatewayWorkloads) -> list[Finding]:
    selector = selector_of(gw)
    pods = workloads.selected(selector)
    if not pods:
        return [REFERENCED_RESOURCE_NOT_FOUND.at(gw, ("spec", "selector"), "selector", selector_text(selector),
                                                 analyzer=PORT_ANALYZER)]
    targets, mapped = _exposed_ports(pods, workloads.services)
    findings = []
    for i, server in _servers(gw):
        port = server.get("port")
        number = port.get("number") if isinstance(port, dict) else None
        if isinstance(number, int) and number not in targets and number not in mapped:
            findings.append(GATEWAY_PORT_NOT_DEFINED_ON_SERVICE.at(
                gw, ("spec", "servers", i, "port", "number"), number, selector_text(selector), analyzer=PORT_ANALYZER))
    return findings


def _port_number(server: dict[str, Any]) -> int:
    port = server.get("port")
    number = port.get("number") if isinstance(port, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def _hosts(server: dict[str, Any]) -> list[str]:
    hosts = server.get("hosts")
    return [h for h in hosts if isinstance(h, str)] if isinstance(hosts, list) else []


def _bind(server: dict[str, Any]) -> str:
    bind = server.get("bind")
    return bind if isinstance(bind, str) else ""


def _same_workload(a: dict[str, str], b: dict[str, str], workloads: GatewayWorkloads) -> bool:
    return a == b or any(selects(a, p.labels) and selects(b, p.labels) for p in workloads.pods)


def check_conflicting_gateways(gw: Document, index: Index, workloads: GatewayWorkloads) -> list[Finding]:
    """IST0145, once per server of `gw` that another Gateway on the same workload repeats (port, bind, a host)."""
    selector = selector_of(gw)
    others = [o for o in index.gateways.values()
              if o.key != gw.key and _same_workload(selector, selector_of(o), workloads)]
    findings = []
    for i, server in _servers(gw):
        number, bind, hosts = _port_number(server), _bind(server), set(_hosts(server))
        names = sorted({f"{o.namespace}/{o.name}" for o in others for _, theirs in _servers(o)
                        if _port_number(theirs) == number and _bind(theirs) == bind and hosts & set(_hosts(theirs))})
        if names:
            findings.append(CONFLICTING_GATEWAYS.at(gw, ("spec", "servers", i), ",".join(names),
                                                    selector_text(selector), str(number), ",".join(_hosts(server)),
                                                    analyzer=CONFLICT_ANALYZER))
    return findings


def _tls_text(tls: dict[str, Any], key: str) -> str:
    value = tls.get(key)
    return value if isinstance(value, str) else ""


def same_certificate(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two servers' `tls` serve one certificate: one credentialName, or one serverCertificate and privateKey."""
    name_a, name_b = _tls_text(a, "credentialName"), _tls_text(b, "credentialName")
    if name_a or name_b:
        return bool(name_a and name_b) and name_a == name_b
    cert_a, cert_b = _tls_text(a, "serverCertificate"), _tls_text(b, "serverCertificate")
    key_a, key_b = _tls_text(a, "privateKey"), _tls_text(b, "privateKey")
    return bool(cert_a and key_a and key_b) and cert_a == cert_b and key_a == key_b


def check_duplicate_certificates(gw: Document, index: Index) -> list[Finding]:
    """IST0138, once per pair of TLS servers sharing a certificate with a Gateway whose selector covers this one's."""
    selector = selector_of(gw)
    mine = [tls for _, server in _servers(gw) if isinstance(tls := server.get("tls"), dict)]
    findings = []
    for other in sorted(index.gateways.values(), key=lambda d: (d.namespace, d.name)):
        if other.key == gw.key or not selects(selector, selector_of(other)):
            continue
        theirs = [tls for _, server in _servers(other) if isinstance(tls := server.get("tls"), dict)]
        names = f"[{gw.namespace}/{gw.name} {other.namespace}/{other.name}]"
        findings += [GATEWAY_DUPLICATE_CERTIFICATE.at(gw, ("metadata", "name"), names, analyzer=CERTIFICATE_ANALYZER)
                     for a in mine for b in theirs if same_certificate(a, b)]
    return findings
