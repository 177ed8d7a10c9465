"""Admission checks: what a cluster's admission (Istio's validation webhook, the API server) would reject.

One function per kind, in `admission_<kind>.py`; warnings here are Istio's validation warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graylane.resources.admission_base import Checks, hosts_overlap, is_dns1123_label, regex_error
from graylane.resources.admission_core import check_deployment, check_local_image, check_service
from graylane.resources.admission_destinationrule import check_destination_rule
from graylane.resources.admission_gatewayapi import check_http_route, check_k8s_gateway, check_reference_grant
from graylane.resources.admission_networking import check_envoy_filter, check_gateway, check_service_entry
from graylane.resources.admission_virtualservice import check_virtual_service
from graylane.resources.document import Document
from graylane.resources.finding import Finding


def _check_canary_config(c: Checks, spec: dict[str, Any]) -> None:
    from graylane.analysis.resources import check_canary_config

    check_canary_config(c, spec)


def _check_analysis_template(c: Checks, spec: dict[str, Any]) -> None:
    from graylane.analysis.resources import check_analysis_template

    check_analysis_template(c, spec)


__all__ = ["CHECKS", "admission_findings", "hosts_overlap", "is_dns1123_label", "regex_error"]

CHECKS: dict[tuple[str, str], Callable[[Checks, dict[str, Any]], None]] = {
    ("networking.istio.io", "VirtualService"): check_virtual_service,
    ("networking.istio.io", "DestinationRule"): check_destination_rule,
    ("networking.istio.io", "Gateway"): check_gateway,
    ("networking.istio.io", "ServiceEntry"): check_service_entry,
    ("networking.istio.io", "EnvoyFilter"): check_envoy_filter,
    ("apps", "Deployment"): check_deployment,
    ("", "Service"): check_service,
    ("graylane.io", "LocalImage"): check_local_image,
    ("gateway.networking.k8s.io", "Gateway"): check_k8s_gateway,
    ("gateway.networking.k8s.io", "HTTPRoute"): check_http_route,
    ("gateway.networking.k8s.io", "ReferenceGrant"): check_reference_grant,
    ("graylane.io", "CanaryConfig"): _check_canary_config,
    ("argoproj.io", "AnalysisTemplate"): _check_analysis_template,
    ("argoproj.io", "ClusterAnalysisTemplate"): _check_analysis_template,
}


def admission_findings(doc: Document) -> list[Finding]:
    """Errors and warnings of the admission checks for one schema-valid document."""
    check = CHECKS.get((doc.group, doc.kind))
    if check is None:
        return []
    c = Checks(doc, istio=doc.group == "networking.istio.io")
    check(c, doc.spec)
    return c.findings
