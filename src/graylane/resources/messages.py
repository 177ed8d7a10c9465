"""The catalog of finding codes: istioctl's (pkg/config/analysis/msg/messages.yaml) and Graylane's own.

Codes are never reused. Templates use Go's verbs as istioctl does; `render` formats %q like Go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from graylane.resources.document import Document, FieldPath
from graylane.resources.finding import Finding, Severity


@dataclass(frozen=True, slots=True)
class MessageType:
    code: str
    name: str
    severity: Severity
    template: str

    def render(self, *args: Any) -> str:
        return _go_format(self.template, args)

    def at(self, doc: Document | None, path: FieldPath, *args: Any, detail: str | None = None,
           analyzer: str | None = None) -> Finding:
        return Finding(self.severity, self.code, self.render(*args), doc, tuple(path), detail, analyzer)


def go_quote(value: Any) -> str:
    """Go's %q for strings: double quotes with JSON-like escapes."""
    return json.dumps(str(value), ensure_ascii=False)


def go_float(value: float) -> str:
    """Go's %v for a float64: shortest form, no trailing .0 (150 -> "150", 1e-05 -> "1e-05")."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _go_format(template: str, args: tuple[Any, ...]) -> str:
    out, i, n = [], 0, 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template):
            verb = template[i + 1]
            if verb == "%":
                out.append("%")
            else:
                arg = args[n]
                n += 1
                if verb == "q":
                    out.append(go_quote(arg))
                elif verb == "f":
                    out.append(f"{float(arg):f}")
                elif verb == "v" and isinstance(arg, float):
                    out.append(go_float(arg))
                else:
                    out.append(str(arg))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

REFERENCED_RESOURCE_NOT_FOUND = MessageType("IST0101", "ReferencedResourceNotFound", E, "Referenced %s not found: %q")
SCHEMA_VALIDATION_ERROR = MessageType("IST0106", "SchemaValidationError", E, "Schema validation error: %v")
CONFLICTING_MESH_GATEWAY_VS_HOSTS = MessageType(
    "IST0109", "ConflictingMeshGatewayVirtualServiceHosts", E,
    "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined "
    "behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.")
VS_DESTINATION_PORT_SELECTOR_REQUIRED = MessageType(
    "IST0112", "VirtualServiceDestinationPortSelectorRequired", E,
    "This VirtualService routes to a service %q that exposes multiple ports %s. Specifying a port in the "
    "destination is required to disambiguate.")
NO_SERVER_CERT_VERIFICATION_DR = MessageType(
    "IST0128", "NoServerCertificateVerificationDestinationLevel", W,
    "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server "
    "identity for host: %s")
NO_SERVER_CERT_VERIFICATION_PORT = MessageType(
    "IST0129", "NoServerCertificateVerificationPortLevel", W,
    "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server "
    "identity for host: %s at port %s")
VS_UNREACHABLE_RULE = MessageType("IST0130", "VirtualServiceUnreachableRule", W,
                                  "VirtualService rule %v not used (%s).")
VS_INEFFECTIVE_MATCH = MessageType(
    "IST0131", "VirtualServiceIneffectiveMatch", INFO,
    "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v).")
VS_HOST_NOT_FOUND_IN_GATEWAY = MessageType(
    "IST0132", "VirtualServiceHostNotFoundInGateway", W,
    "one or more host %v defined in VirtualService %s not found in Gateway %s.")
SERVICE_ENTRY_ADDRESSES_REQUIRED = MessageType("IST0134", "ServiceEntryAddressesRequired", W,
                                               "ServiceEntry addresses are required for this protocol.")
GATEWAY_DUPLICATE_CERTIFICATE = MessageType(
    "IST0138", "GatewayDuplicateCertificate", W,
    "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections.")
INGRESS_ROUTE_RULES_NOT_AFFECTED = MessageType(
    "IST0140", "IngressRouteRulesNotAffected", W,
    "Subset in virtual service %s has no effect on ingress gateway %s requests")
CONFLICTING_GATEWAYS = MessageType(
    "IST0145", "ConflictingGateways", E,
    "Conflict with gateways %s (workload selector %s, port %s, hosts %v).")
EXTERNAL_NAME_INVALID_PORT_NAME = MessageType(
    "IST0150", "ExternalNameServiceTypeInvalidPortName", W,
    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for "
    "ports serving TCP protocol from being forwarded correctly")
GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = MessageType(
    "IST0162", "GatewayPortNotDefinedOnService", W,
    "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its "
    "workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it "
    "will not be available.")
REFERENCED_INTERNAL_GATEWAY = MessageType(
    "IST0165", "ReferencedInternalGateway", W,
    "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s.")
PORT_NAME_NOT_UNDER_CONVENTION = MessageType(
    "IST0118", "PortNameIsNotUnderNamingConvention", INFO,
    "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port.")
SCHEMA_WARNING = MessageType("IST0133", "SchemaWarning", W, "Schema validation warning: %v")
DR_SUBSET_SELECTS_NO_PODS = MessageType(
    "IST0173", "DestinationRuleSubsetNotSelectPods", E,
    "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH "
    "(NoHealthyUpstream).")
UNKNOWN_DR_HOST = MessageType(
    "IST0174", "UnknownDestinationRuleHost", W,
    "The host %s defined in the DestinationRule does not match any services in the mesh.")
CONFLICTING_SERVICE_ENTRY_PROTOCOL = MessageType(
    "IST0177", "ConflictingServiceEntryProtocol", W,
    "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s).")

# Graylane's own codes.
KIND_NOT_ACTED_ON_LOCALLY = MessageType(
    "GL0001", "KindNotActedOnLocally", W,
    "the local target does not act on this kind (%s); a Kubernetes target applies it as it is")
WEIGHTS_NOT_100 = MessageType(
    "GL0002", "RouteWeightsNotHundred", W,
    "route weights sum to %v, not 100: Istio 1.15+ sends each destination weight/sum of the traffic, "
    "Istio 1.14 and older reject this")

CATALOG: tuple[MessageType, ...] = (
    REFERENCED_RESOURCE_NOT_FOUND, SCHEMA_VALIDATION_ERROR, CONFLICTING_MESH_GATEWAY_VS_HOSTS,
    VS_DESTINATION_PORT_SELECTOR_REQUIRED, PORT_NAME_NOT_UNDER_CONVENTION, NO_SERVER_CERT_VERIFICATION_DR,
    NO_SERVER_CERT_VERIFICATION_PORT, VS_UNREACHABLE_RULE, VS_INEFFECTIVE_MATCH,
    VS_HOST_NOT_FOUND_IN_GATEWAY, SCHEMA_WARNING, SERVICE_ENTRY_ADDRESSES_REQUIRED, GATEWAY_DUPLICATE_CERTIFICATE,
    INGRESS_ROUTE_RULES_NOT_AFFECTED, CONFLICTING_GATEWAYS, EXTERNAL_NAME_INVALID_PORT_NAME,
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE, REFERENCED_INTERNAL_GATEWAY, DR_SUBSET_SELECTS_NO_PODS, UNKNOWN_DR_HOST,
    CONFLICTING_SERVICE_ENTRY_PROTOCOL, KIND_NOT_ACTED_ON_LOCALLY, WEIGHTS_NOT_100,
)
