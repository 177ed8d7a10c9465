"""Service analyzers: IST0118 and IST0150, port names Istio cannot read a protocol from (istioctl's
service.PortNameAnalyzer).

Istio reads a Service port's protocol from `appProtocol` when set (`kubernetes.io/h2c`, `kubernetes.io/ws` and
`kubernetes.io/wss` included), else from the port name, `<protocol>[-<suffix>]` (`http`, `http2`, `https`,
`grpc`, `grpc-web`, `tcp`, `tls`, `udp`, `mongo`, `mysql`, `redis`, `http_proxy`, any case); a UDP port, or a
port without a protocol on 25, 53, 3306 or 27017, needs no name. Otherwise the protocol is sniffed (IST0118,
Info). On an ExternalName Service the same ports, and a port named `tcp`, are IST0150 instead. Services of the
control plane (label `istio`, or `release: istio`), gateway-managed ones (`gateway.istio.io/managed`) and those
of the namespaces istioctl ignores (kube-system, ...) are not judged.
"""

from __future__ import annotations

from typing import Any

from graylane.resources.analyzers_index import IGNORED_NAMESPACES
from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import EXTERNAL_NAME_INVALID_PORT_NAME, PORT_NAME_NOT_UNDER_CONVENTION

PORT_NAME_ANALYZER = "service.PortNameAnalyzer"

PROTOCOLS = frozenset({"tcp", "udp", "grpc", "grpc-web", "http", "http_proxy", "http2", "https", "tls", "mongo",
                       "redis", "mysql"})
APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"})
WELL_KNOWN_PORTS = frozenset({25, 53, 3306, 27017})  # SMTP, DNS, MySQL, MongoDB: TCP without a name
MANAGED_LABEL = "gateway.istio.io/managed"
MANAGED_BY = frozenset({"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"})


def port_protocol_known(port: dict[str, Any]) -> bool:
    """Whether Istio reads a protocol off this Service port (istio's kube.ConvertProtocol is not Unsupported)."""
    if port.get("protocol") == "UDP":
        return True
    app_protocol = port.get("appProtocol")
    name = app_protocol if isinstance(app_protocol, str) else port.get("name")
    name = name if isinstance(name, str) else ""
    if name in APP_PROTOCOLS or name[:8].lower() == "grpc-web":
        return True
    if name.split("-", 1)[0].lower() in PROTOCOLS:
        return True
    return port.get("port") in WELL_KNOWN_PORTS


def _skipped(service: Document) -> bool:
    labels = service.metadata.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    return (service.namespace in IGNORED_NAMESPACES or "istio" in labels or labels.get("release") == "istio"
            or labels.get(MANAGED_LABEL) in MANAGED_BY)


def _target_port(port: dict[str, Any]) -> str:
    """The target port as printed: as written, else the port itself (Kubernetes' default)."""
    target = port.get("targetPort")
    return str(target) if isinstance(target, int | str) and target != "" else str(port.get("port"))


def check_port_names(service: Document) -> list[Finding]:
    if _skipped(service):
        return []
    external = service.spec.get("type") == "ExternalName"
    ports = service.spec.get("ports")
    findings = []
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        if not isinstance(port, dict):
            continue
        known = port_protocol_known(port)
        if known and not (external and port.get("name") == "tcp"):
            continue
        path = ("spec", "ports", i)
        if external:
            findings.append(EXTERNAL_NAME_INVALID_PORT_NAME.at(service, path, analyzer=PORT_NAME_ANALYZER))
        else:
            name = port.get("name")
            findings.append(PORT_NAME_NOT_UNDER_CONVENTION.at(
                service, (*path, "name") if name else path, name if isinstance(name, str) and name else '""',
                port.get("port"), _target_port(port), analyzer=PORT_NAME_ANALYZER))
    return findings
