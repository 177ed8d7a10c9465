"""Kind registry: short names, plurals, groups; apply/delete order."""

from __future__ import annotations

import pytest

from graylane.errors import ValidationError
from graylane.resources.document import Document
from graylane.resources.kinds import resolve_kind
from graylane.resources.order import apply_order, delete_order


@pytest.mark.parametrize(("name", "kind", "group"), [
    ("vs", "VirtualService", "networking.istio.io"),
    ("VirtualServices", "VirtualService", "networking.istio.io"),
    ("virtualservices.networking.istio.io", "VirtualService", "networking.istio.io"),
    ("dr", "DestinationRule", "networking.istio.io"),
    ("gw", "Gateway", "networking.istio.io"),
    ("se", "ServiceEntry", "networking.istio.io"),
    ("ef", "EnvoyFilter", "networking.istio.io"),
    ("deploy", "Deployment", "apps"),
    ("deployment", "Deployment", "apps"),
    ("svc", "Service", ""),
    ("cm", "ConfigMap", ""),
    ("ns", "Namespace", ""),
    ("sa", "ServiceAccount", ""),
    ("secret", "Secret", ""),
    ("po", "Pod", ""),
    ("pods", "Pod", ""),
    ("localimage", "LocalImage", "graylane.io"),
    # Istio's other kinds, stored without being acted on, with the CRDs' short names
    ("ap", "AuthorizationPolicy", "security.istio.io"),
    ("authorizationpolicy.security.istio.io", "AuthorizationPolicy", "security.istio.io"),
    ("pa", "PeerAuthentication", "security.istio.io"),
    ("ra", "RequestAuthentication", "security.istio.io"),
    ("sidecar", "Sidecar", "networking.istio.io"),
    ("we", "WorkloadEntry", "networking.istio.io"),
    ("wg", "WorkloadGroup", "networking.istio.io"),
    ("proxyconfigs", "ProxyConfig", "networking.istio.io"),
    ("telemetry", "Telemetry", "telemetry.istio.io"),
    ("wasmplugin", "WasmPlugin", "extensions.istio.io"),
])
def test_resolve_kind(name: str, kind: str, group: str):
    info = resolve_kind(name)
    assert (info.kind, info.group) == (kind, group)


def test_kind_info_knows_scope_and_versions():
    assert resolve_kind("ns").namespaced is False
    vs = resolve_kind("vs")
    assert vs.namespaced and vs.api_versions == (
        "networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")


def test_istio_kinds_are_served_in_the_versions_of_istios_crds():
    assert resolve_kind("ef").api_versions == ("networking.istio.io/v1alpha3",)
    assert resolve_kind("ap").api_versions == ("security.istio.io/v1", "security.istio.io/v1beta1")
    assert resolve_kind("proxyconfig").api_versions == ("networking.istio.io/v1beta1",)
    assert not resolve_kind("pa").acted_on_locally and resolve_kind("pa").model is None


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(ValidationError) as exc:
        resolve_kind("virtualsrvice")
    assert "unknown kind 'virtualsrvice'" in str(exc.value)
    assert "virtualservices (vs)" in str(exc.value) and "deployments (deploy)" in str(exc.value)


def _doc(kind: str, name: str) -> Document:
    return Document({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}})


def test_make_before_break_order():
    docs = [_doc("VirtualService", "a"), _doc("HorizontalPodAutoscaler", "h"), _doc("DestinationRule", "b"),
            _doc("Deployment", "c"), _doc("Namespace", "d"), _doc("Service", "e"), _doc("VirtualService", "f")]
    assert [d.name for d in apply_order(docs)] == ["d", "e", "c", "b", "a", "f", "h"]
    assert [d.name for d in delete_order(docs)] == ["h", "a", "f", "b", "c", "e", "d"]
