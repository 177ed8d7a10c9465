"""DestinationRule analyzers: IST0174 (host matches no service), IST0173 (subset selects no pods) and
IST0128/IST0129 (TLS without caCertificates, istioctl's destinationrule.CaCertificateAnalyzer).

The host is resolved as istioctl does, from the rule's namespace and `exportTo`. A subset of a
Service host selects the pods of Deployments (replicas > 0) and Pods in the Service's namespace that
carry the Service's selector and the subset's labels; Pods also carry their Node's locality labels
(`topology.kubernetes.io/region`, `.../zone`, `topology.istio.io/subzone`, `kubernetes.io/hostname`).
Unlike istioctl, IST0173 is judged only when some workload of that namespace is known (input or
live): checking a DestinationRule file alone says nothing about pods.

IST0128 (`trafficPolicy.tls`) and IST0129 (each `portLevelSettings[].tls`): TLS mode SIMPLE or MUTUAL without
`caCertificates`, so the server's certificate is not verified; a `credentialName` counts only on a rule with a
`workloadSelector` (a gateway's, which reads the CA from the credential).
"""

from __future__ import annotations

from typing import Any

from graylane.resources.analyzers_index import Index, export_to
from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import (
    DR_SUBSET_SELECTS_NO_PODS,
    NO_SERVER_CERT_VERIFICATION_DR,
    NO_SERVER_CERT_VERIFICATION_PORT,
    UNKNOWN_DR_HOST,
)

SUBSET_SELECT_POD = "destinationrule.SubsetSelectPodAnalyzer"
CA_CERTIFICATE = "destinationrule.CaCertificateAnalyzer"


def _selects(labels: dict[str, Any], selector: dict[str, Any]) -> bool:
    return all(k in labels and labels[k] == v for k, v in selector.items())


def check_destination_rule(dr: Document, index: Index) -> list[Finding]:
    host = dr.spec.get("host")
    if not isinstance(host, str):
        return []
    target = index.destination(dr.namespace, export_to(dr), host)
    if target is None:
        return [UNKNOWN_DR_HOST.at(dr, ("spec", "host"), host, analyzer=SUBSET_SELECT_POD)]
    service = target.doc
    if service.kind != "Service" or service.group != "":
        return []
    in_namespace = [w for w in index.workloads if w.namespace == service.namespace]
    if not in_namespace:
        return []  # no workloads known for that namespace: nothing to judge pods by
    selector = service.spec.get("selector")
    selector = selector if isinstance(selector, dict) else {}
    pods = [labels for w in in_namespace if (labels := index.pod_labels(w)) is not None]
    backing = [labels for labels in pods if selector and _selects(labels, selector)]
    findings = []
    subsets = dr.spec.get("subsets")
    for i, subset in enumerate(subsets if isinstance(subsets, list) else []):
        if not isinstance(subset, dict):
            continue
        labels = subset.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        if not any(_selects(pod, labels) for pod in backing):
            findings.append(DR_SUBSET_SELECTS_NO_PODS.at(dr, ("spec", "subsets", i), subset.get("name"),
                                                         analyzer=SUBSET_SELECT_POD))
    return findings


def _unverified_mode(tls: Any, selected: bool) -> str | None:
    """The TLS mode (SIMPLE, MUTUAL) of a `tls` block that verifies no server certificate, else None."""
    if not isinstance(tls, dict) or tls.get("mode") not in ("SIMPLE", "MUTUAL") or tls.get("caCertificates"):
        return None
    return None if tls.get("credentialName") and selected else str(tls["mode"])


def check_ca_certificates(dr: Document) -> list[Finding]:
    policy = dr.spec.get("trafficPolicy")
    policy = policy if isinstance(policy, dict) else {}
    selected = dr.spec.get("workloadSelector") is not None
    name, host = f"{dr.namespace}/{dr.name}", dr.spec.get("host", "")
    findings = []
    mode = _unverified_mode(policy.get("tls"), selected)
    if mode:
        findings.append(NO_SERVER_CERT_VERIFICATION_DR.at(dr, ("spec", "trafficPolicy", "tls"), name, dr.namespace,
                                                          mode, host, analyzer=CA_CERTIFICATE))
    settings = policy.get("portLevelSettings")
    for i, setting in enumerate(settings if isinstance(settings, list) else []):
        if not isinstance(setting, dict) or not (mode := _unverified_mode(setting.get("tls"), selected)):
            continue
        port = setting.get("port")
        number = port.get("number") if isinstance(port, dict) else None
        findings.append(NO_SERVER_CERT_VERIFICATION_PORT.at(
            dr, ("spec", "trafficPolicy", "portLevelSettings", i, "tls"), name, dr.namespace, mode, host,
            number if number is not None else "", analyzer=CA_CERTIFICATE))
    return findings
