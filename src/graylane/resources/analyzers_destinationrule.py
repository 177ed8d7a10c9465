"""DestinationRule analyzers: IST0174 (host matches no service) and IST0173 (subset selects no pods).

The host is resolved as istioctl does, from the rule's namespace and `exportTo`. A subset of a
Service host selects the pods of Deployments (replicas > 0) and Pods in the Service's namespace that
carry the Service's selector and the subset's labels; Pods also carry their Node's locality labels
(`topology.kubernetes.io/region`, `.../zone`, `topology.istio.io/subzone`, `kubernetes.io/hostname`).
Unlike istioctl, IST0173 is judged only when some workload of that namespace is known (input or
live): checking a DestinationRule file alone says nothing about pods.
"""

from __future__ import annotations

from typing import Any

from graylane.resources.analyzers_index import Index, export_to
from graylane.resources.document import Document
from graylane.resources.finding import Finding
from graylane.resources.messages import DR_SUBSET_SELECTS_NO_PODS, UNKNOWN_DR_HOST

SUBSET_SELECT_POD = "destinationrule.SubsetSelectPodAnalyzer"


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
