"""Admission checks: what a cluster's admission (Istio's validation webhook, the API server) would reject.

One function per kind, in `admission_<kind>.py`; warnings here are Istio's validation warnings. Areas above
resources add checks for their own kinds under the `graylane.admission` entry-point group (analysis does, for
CanaryConfig and Argo's AnalysisTemplate): resources never imports them, they name themselves.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from graylane.resources.admission_base import Checks, hosts_overlap, is_dns1123_label, regex_error
from graylane.resources.admission_core import check_deployment, check_local_image, check_secret, check_service
from graylane.resources.admission_destinationrule import check_destination_rule
from graylane.resources.admission_gatewayapi import (
    check_grpc_route,
    check_http_route,
    check_k8s_gateway,
    check_l4_route,
    check_reference_grant,
)
from graylane.resources.admission_networking import check_envoy_filter, check_gateway, check_service_entry
from graylane.resources.admission_virtualservice import check_virtual_service
from graylane.resources.document import Document
from graylane.resources.finding import Finding

log = logging.getLogger(__name__)
ADMISSION_ENTRY_POINT = "graylane.admission"
Check = Callable[[Checks, dict[str, Any]], None]

__all__ = ["CHECKS", "admission_findings", "hosts_overlap", "is_dns1123_label", "regex_error"]

CHECKS: dict[tuple[str, str], Check] = {
    ("networking.istio.io", "VirtualService"): check_virtual_service,
    ("networking.istio.io", "DestinationRule"): check_destination_rule,
    ("networking.istio.io", "Gateway"): check_gateway,
    ("networking.istio.io", "ServiceEntry"): check_service_entry,
    ("networking.istio.io", "EnvoyFilter"): check_envoy_filter,
    ("apps", "Deployment"): check_deployment,
    ("", "Service"): check_service,
    ("", "Secret"): check_secret,
    ("graylane.io", "LocalImage"): check_local_image,
    ("gateway.networking.k8s.io", "Gateway"): check_k8s_gateway,
    ("gateway.networking.k8s.io", "HTTPRoute"): check_http_route,
    ("gateway.networking.k8s.io", "GRPCRoute"): check_grpc_route,
    ("gateway.networking.k8s.io", "TCPRoute"): check_l4_route,
    ("gateway.networking.k8s.io", "TLSRoute"): check_l4_route,
    ("gateway.networking.k8s.io", "ReferenceGrant"): check_reference_grant,
}


@functools.cache
def registered_checks() -> Mapping[tuple[str, str], Check]:
    """Checks other areas register under `graylane.admission` (a mapping {(group, kind): check}, see pyproject)."""
    found: dict[tuple[str, str], Check] = {}
    for ep in entry_points(group=ADMISSION_ENTRY_POINT):
        try:
            found.update(ep.load())
        except Exception:  # boundary: a broken plug-in must not stop every apply
            log.warning("cannot load the admission checks registered as %s (%s)", ep.name, ep.value, exc_info=True)
    return found


def admission_findings(doc: Document) -> list[Finding]:
    """Errors and warnings of the admission checks for one schema-valid document."""
    check = CHECKS.get((doc.group, doc.kind)) or registered_checks().get((doc.group, doc.kind))
    if check is None:
        return []
    c = Checks(doc, istio=doc.group == "networking.istio.io")
    check(c, doc.spec)
    return c.findings
