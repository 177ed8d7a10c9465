"""The kind registry: API group, versions, scope, plural and short names of every kind Graylane knows.

`resolve_kind("vs")` turns what a user types (kubectl-style short, singular or plural names, any
case, optionally `plural.group`) into a `KindInfo`; the CLI verbs and the API use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from graylane.errors import ValidationError
from graylane.resources import (
    model_core,
    model_destinationrule,
    model_gateway,
    model_gatewayapi,
    model_graylane,
    model_serviceentry,
    model_virtualservice,
)
from graylane.resources.document import GRAYLANE_GROUP, ISTIO_NETWORKING

# All three versions serve one schema (CRD `+cue-gen:...:versions:v1,v1beta1,v1alpha3`); v1 is preferred.
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")


@dataclass(frozen=True, slots=True)
class KindInfo:
    group: str
    kind: str
    namespaced: bool
    api_versions: tuple[str, ...]  # full apiVersion strings, preferred first
    plural: str
    short_names: tuple[str, ...] = ()
    model: type[BaseModel] | None = None
    strict: bool = False          # unknown fields are errors (CRD schema), not kept
    acted_on_locally: bool = True  # False: kept/listed, but the local target does nothing with it

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def preferred_version(self) -> str:
        return self.api_versions[0]

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _gateway_api(kind: str, plural: str, short: tuple[str, ...], model: type[BaseModel],
                 namespaced: bool = True,
                 versions: tuple[str, ...] = model_gatewayapi.GATEWAY_API_VERSIONS) -> KindInfo:
    group = model_gatewayapi.GATEWAY_API_GROUP
    return KindInfo(group, kind, namespaced, tuple(f"{group}/{v}" for v in versions),
                    plural, short, model, strict=True)


def _istio(kind: str, plural: str, short: tuple[str, ...], model: type[BaseModel],
           versions: tuple[str, ...] = ISTIO_VERSIONS) -> KindInfo:
    return KindInfo(ISTIO_NETWORKING, kind, True, tuple(f"{ISTIO_NETWORKING}/{v}" for v in versions),
                    plural, short, model, strict=True)


def _istio_stored(group: str, kind: str, plural: str, short: tuple[str, ...], versions: tuple[str, ...]) -> KindInfo:
    """An Istio kind the local target stores and lists without acting on it (GL0001), as Istio's CRDs serve it:
    its apiVersion is checked, its fields are kept as written."""
    return KindInfo(group, kind, True, tuple(f"{group}/{v}" for v in versions), plural, short, None,
                    acted_on_locally=False)


KINDS: tuple[KindInfo, ...] = (
    KindInfo("", "Namespace", False, ("v1",), "namespaces", ("ns",), model_core.Namespace),
    KindInfo("", "ServiceAccount", True, ("v1",), "serviceaccounts", ("sa",), model_core.ServiceAccount),
    KindInfo("", "ConfigMap", True, ("v1",), "configmaps", ("cm",), model_core.ConfigMap),
    KindInfo("", "Secret", True, ("v1",), "secrets", (), model_core.Secret),
    KindInfo("", "Service", True, ("v1",), "services", ("svc",), model_core.Service),
    KindInfo("apps", "Deployment", True, ("apps/v1",), "deployments", ("deploy",), model_core.Deployment),
    # Pods are not applied: the runtime reports its replicas as pods (graylane get pods).
    KindInfo("", "Pod", True, ("v1",), "pods", ("po",), None, acted_on_locally=False),
    _istio("Gateway", "gateways", ("gw",), model_gateway.Gateway),
    _istio("VirtualService", "virtualservices", ("vs",), model_virtualservice.VirtualService),
    _istio("DestinationRule", "destinationrules", ("dr",), model_destinationrule.DestinationRule),
    _istio("ServiceEntry", "serviceentries", ("se",), model_serviceentry.ServiceEntry),
    _istio("EnvoyFilter", "envoyfilters", ("ef",), model_serviceentry.EnvoyFilter, ("v1alpha3",)),  # its only one
    # Istio's other kinds (manifests/charts/base/files/crd-all.gen.yaml): stored, not acted on locally.
    _istio_stored(ISTIO_NETWORKING, "Sidecar", "sidecars", (), ISTIO_VERSIONS),
    _istio_stored(ISTIO_NETWORKING, "WorkloadEntry", "workloadentries", ("we",), ISTIO_VERSIONS),
    _istio_stored(ISTIO_NETWORKING, "WorkloadGroup", "workloadgroups", ("wg",), ISTIO_VERSIONS),
    _istio_stored(ISTIO_NETWORKING, "ProxyConfig", "proxyconfigs", (), ("v1beta1",)),
    _istio_stored("security.istio.io", "AuthorizationPolicy", "authorizationpolicies", ("ap",), ("v1", "v1beta1")),
    _istio_stored("security.istio.io", "PeerAuthentication", "peerauthentications", ("pa",), ("v1", "v1beta1")),
    _istio_stored("security.istio.io", "RequestAuthentication", "requestauthentications", ("ra",), ("v1", "v1beta1")),
    _istio_stored("telemetry.istio.io", "Telemetry", "telemetries", ("telemetry",), ("v1", "v1alpha1")),
    _istio_stored("extensions.istio.io", "WasmPlugin", "wasmplugins", (), ("v1alpha1",)),
    # Kubernetes Gateway API: `gateway` / `gw` stay Istio's Gateway (as kubectl resolves them with Istio installed).
    _gateway_api("GatewayClass", "gatewayclasses", ("gc",), model_gatewayapi.GatewayClass, namespaced=False),
    _gateway_api("Gateway", "gateways", (), model_gatewayapi.Gateway),
    _gateway_api("HTTPRoute", "httproutes", (), model_gatewayapi.HTTPRoute),
    _gateway_api("GRPCRoute", "grpcroutes", (), model_gatewayapi.GRPCRoute),
    # Experimental-channel v1alpha2 preferred: the version every cluster serving these kinds has (v1 from v1.5/v1.6).
    _gateway_api("TCPRoute", "tcproutes", (), model_gatewayapi.TCPRoute, versions=model_gatewayapi.TCP_ROUTE_VERSIONS),
    _gateway_api("TLSRoute", "tlsroutes", (), model_gatewayapi.TLSRoute, versions=model_gatewayapi.TLS_ROUTE_VERSIONS),
    _gateway_api("ReferenceGrant", "referencegrants", ("refgrant",), model_gatewayapi.ReferenceGrant),
    KindInfo(GRAYLANE_GROUP, "LocalImage", True, (f"{GRAYLANE_GROUP}/v1alpha1",), "localimages", ("li",),
             model_graylane.LocalImage, strict=True),
    # Analysis configs (graylane.analysis.resources): read by the kayentaCanary and analysis stages.
    KindInfo(GRAYLANE_GROUP, "CanaryConfig", True, (f"{GRAYLANE_GROUP}/v1alpha1",), "canaryconfigs", ("cc",)),
    KindInfo("argoproj.io", "AnalysisTemplate", True, ("argoproj.io/v1alpha1",), "analysistemplates", ("at",)),
    KindInfo("argoproj.io", "ClusterAnalysisTemplate", False, ("argoproj.io/v1alpha1",),
             "clusteranalysistemplates", ("cat",)),
)

_BY_GROUP_KIND = {(k.group, k.kind): k for k in KINDS}
_BY_NAME: dict[str, KindInfo] = {}
for _k in KINDS:
    for _name in (_k.kind.lower(), _k.plural, *_k.short_names):
        _BY_NAME.setdefault(_name, _k)  # the first registered kind keeps a bare name (`gateway`: Istio's)
        _BY_NAME[f"{_name}.{_k.group}" if _k.group else _name] = _k


def kind_info(group: str, kind: str) -> KindInfo | None:
    """The registered kind for an (API group, kind) pair, or None for kinds Graylane does not model."""
    return _BY_GROUP_KIND.get((group, kind))


def known_kind_names() -> list[str]:
    return [f"{k.plural} ({', '.join(k.short_names)})" if k.short_names else k.plural for k in KINDS]


def resolve_kind(name: str) -> KindInfo:
    """`vs`, `virtualservice`, `VirtualServices`, `virtualservices.networking.istio.io` -> KindInfo."""
    info = _BY_NAME.get(name.strip().lower())
    if info is None:
        raise ValidationError(f"unknown kind {name!r}",
                              hint="known kinds: " + ", ".join(known_kind_names()))
    return info
