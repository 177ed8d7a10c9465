"""Cross-resource analyzers with istioctl's codes (IST0101, IST0109, IST0112, IST0118, IST0128, IST0129, IST0130,
IST0131, IST0132, IST0134, IST0138, IST0140, IST0145, IST0150, IST0162, IST0165, IST0173, IST0174, IST0177) and
Graylane's GL0002.

They look at a whole set of resources: the input documents plus, optionally, what is already live
(`context`). Findings are reported only on input documents; the context only answers questions such
as "does this Service exist" or "which Deployments could back this subset". Each finding names the
istioctl analyzer it mirrors (`Finding.analyzer`), so it can be held against Istio's own test data.
The checks live in analyzers_virtualservice, analyzers_matches, analyzers_destinationrule, analyzers_gateway,
analyzers_service and analyzers_serviceentry; what exists (hosts scoped by `exportTo`, subsets, gateways,
workloads) in analyzers_index.
"""

from __future__ import annotations

from graylane.resources.analyzers_destinationrule import check_ca_certificates, check_destination_rule
from graylane.resources.analyzers_gateway import (
    GatewayWorkloads,
    check_conflicting_gateways,
    check_duplicate_certificates,
    check_gateway_ports,
    check_gateway_secrets,
)
from graylane.resources.analyzers_gatewayapi import analyze_gateway_api
from graylane.resources.analyzers_index import ISTIO, Index, to_fqdn
from graylane.resources.analyzers_matches import check_unreachable
from graylane.resources.analyzers_service import check_port_names
from graylane.resources.analyzers_serviceentry import check_addresses, check_conflicting_protocols
from graylane.resources.analyzers_virtualservice import (
    check_conflicting_hosts,
    check_destination_hosts,
    check_gateways,
    check_ingress_subsets,
    check_subsets,
    check_weights,
)
from graylane.resources.document import Document
from graylane.resources.finding import Finding

__all__ = ["analyze_set", "to_fqdn"]


def analyze_set(inputs: list[Document], context: list[Document]) -> list[Finding]:
    """Run every cross-resource analyzer over `inputs` (+ `context`); findings are on input documents only."""
    input_keys = {d.key for d in inputs}
    merged = {d.key: d for d in context if d.key not in input_keys}
    merged.update({d.key: d for d in inputs})
    index = Index.build(list(merged.values()))
    latest = {d.key: d for d in inputs}  # the same key twice in one input: the last one is what gets applied
    workloads = GatewayWorkloads.build(index)
    findings: list[Finding] = []
    for doc in latest.values():
        if doc.group == "" and doc.kind == "Service":
            findings += check_port_names(doc)
        if doc.group != ISTIO:
            continue
        if doc.kind == "VirtualService":
            findings += check_destination_hosts(doc, index)
            findings += check_ingress_subsets(doc, index)
            findings += check_subsets(doc, index)
            findings += check_gateways(doc, index)
            findings += check_weights(doc)
            findings += check_unreachable(doc)
        elif doc.kind == "ServiceEntry":
            findings += check_addresses(doc)
        elif doc.kind == "DestinationRule":
            findings += check_destination_rule(doc, index)
            findings += check_ca_certificates(doc)
        elif doc.kind == "Gateway":
            findings += check_gateway_secrets(doc, merged.values())
            findings += check_gateway_ports(doc, workloads)
            findings += check_conflicting_gateways(doc, index, workloads)
            findings += check_duplicate_certificates(doc, index)
    findings += check_conflicting_hosts(input_keys, index)
    findings += check_conflicting_protocols(input_keys, merged.values())
    findings += analyze_gateway_api(latest.values(), list(merged.values()), index)
    return findings
