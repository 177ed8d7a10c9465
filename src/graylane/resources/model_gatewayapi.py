"""pydantic models for the Kubernetes Gateway API (gateway.networking.k8s.io v1, v1beta1 accepted; TCPRoute and
TLSRoute in their alpha versions too).

GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant, TCPRoute and TLSRoute, with field names and nesting of
kubernetes-sigs/gateway-api `apis/v1/*_types.go`. Types, enums and ranges are the CRD schema's; the CRD's
CEL rules (path values, filter combinations, timeouts) are admission checks in `admission_gatewayapi.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from graylane.resources.model_base import Resource, StrictSpec

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_VERSIONS = ("v1", "v1beta1")

_Port = Field(default=None, ge=1, le=65535)


# --------------------------------------------------------------------------------------------- shared


class ParentReference(StrictSpec):
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str = Field(min_length=1, max_length=253)
    section_name: str | None = None
    port: int | None = _Port


class LabelSelectorRequirement(StrictSpec):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(StrictSpec):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class BackendObjectReference(StrictSpec):
    group: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = None
    port: int | None = _Port


# --------------------------------------------------------------------------------------------- GatewayClass


class ParametersReference(StrictSpec):
    group: str
    kind: str
    name: str
    namespace: str | None = None


class GatewayClassSpec(StrictSpec):
    controller_name: str = Field(min_length=1, max_length=253)
    parameters_ref: ParametersReference | None = None
    description: str | None = None


class GatewayClass(Resource):
    spec: GatewayClassSpec


# --------------------------------------------------------------------------------------------- Gateway


class RouteNamespaces(StrictSpec):
    from_: Literal["All", "Same", "Selector", "None"] | None = Field(default=None, alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(StrictSpec):
    group: str | None = None
    kind: str


class AllowedRoutes(StrictSpec):
    namespaces: RouteNamespaces | None = None
    kinds: list[RouteGroupKind] | None = Field(default=None, max_length=8)


class SecretObjectReference(StrictSpec):
    group: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class GatewayTLSConfig(StrictSpec):
    mode: Literal["Terminate", "Passthrough"] | None = None
    certificate_refs: list[SecretObjectReference] | None = Field(default=None, max_length=64)
    frontend_validation: dict[str, Any] | None = None
    options: dict[str, str] | None = None


class Listener(StrictSpec):
    name: str = Field(min_length=1, max_length=253)
    hostname: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: str = Field(min_length=1, max_length=255)
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes | None = None


class GatewayAddress(StrictSpec):
    type: str | None = None
    value: str = Field(min_length=1, max_length=253)


class GatewaySpec(StrictSpec):
    gateway_class_name: str = Field(min_length=1, max_length=253)
    listeners: list[Listener] = Field(min_length=1, max_length=64)
    addresses: list[GatewayAddress] | None = Field(default=None, max_length=16)
    infrastructure: dict[str, Any] | None = None
    backend_tls: dict[str, Any] | None = None
    allowed_listeners: dict[str, Any] | None = None


class Gateway(Resource):
    spec: GatewaySpec


# --------------------------------------------------------------------------------------------- HTTPRoute

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


class HTTPPathMatch(StrictSpec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] | None = None
    value: str | None = Field(default=None, max_length=1024)


class HTTPHeaderMatch(StrictSpec):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)


class HTTPQueryParamMatch(StrictSpec):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=1024)


class HTTPRouteMatch(StrictSpec):
    path: HTTPPathMatch | None = None
    headers: list[HTTPHeaderMatch] | None = Field(default=None, max_length=16)
    query_params: list[HTTPQueryParamMatch] | None = Field(default=None, max_length=16)
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] | None = None


class HTTPHeader(StrictSpec):
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)


class HTTPHeaderFilter(StrictSpec):
    set_: list[HTTPHeader] | None = Field(default=None, alias="set", max_length=16)
    add: list[HTTPHeader] | None = Field(default=None, max_length=16)
    remove: list[str] | None = Field(default=None, max_length=16)


class HTTPPathModifier(StrictSpec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = Field(default=None, max_length=1024)
    replace_prefix_match: str | None = Field(default=None, max_length=1024)


class HTTPRequestRedirectFilter(StrictSpec):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = _Port
    status_code: Literal[301, 302, 303, 307, 308] | None = None


class HTTPURLRewriteFilter(StrictSpec):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class Fraction(StrictSpec):
    numerator: int = Field(ge=0)
    denominator: int | None = Field(default=None, ge=1)


class HTTPRequestMirrorFilter(StrictSpec):
    backend_ref: BackendObjectReference
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None


class LocalObjectReference(StrictSpec):
    group: str
    kind: str
    name: str


class HTTPRouteFilter(StrictSpec):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect",
                  "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = Field(default=None, alias="urlRewrite")
    extension_ref: LocalObjectReference | None = None
    cors: dict[str, Any] | None = None
    external_auth: dict[str, Any] | None = None


class HTTPBackendRef(BackendObjectReference):
    weight: int | None = Field(default=None, ge=0, le=1000000)
    filters: list[HTTPRouteFilter] | None = Field(default=None, max_length=16)


class HTTPRouteTimeouts(StrictSpec):
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRule(StrictSpec):
    name: str | None = None
    matches: list[HTTPRouteMatch] | None = Field(default=None, max_length=64)
    filters: list[HTTPRouteFilter] | None = Field(default=None, max_length=16)
    backend_refs: list[HTTPBackendRef] | None = Field(default=None, max_length=16)
    timeouts: HTTPRouteTimeouts | None = None
    retry: dict[str, Any] | None = None
    session_persistence: dict[str, Any] | None = None


class HTTPRouteSpec(StrictSpec):
    parent_refs: list[ParentReference] | None = Field(default=None, max_length=32)
    hostnames: list[str] | None = Field(default=None, max_length=16)
    rules: list[HTTPRouteRule] | None = Field(default=None, max_length=16)


class HTTPRoute(Resource):
    spec: HTTPRouteSpec


# --------------------------------------------------------------------------------------------- GRPCRoute


class GRPCMethodMatch(StrictSpec):
    type: Literal["Exact", "RegularExpression"] | None = None
    service: str | None = Field(default=None, max_length=1024)
    method: str | None = Field(default=None, max_length=1024)


class GRPCRouteMatch(StrictSpec):
    method: GRPCMethodMatch | None = None
    headers: list[HTTPHeaderMatch] | None = Field(default=None, max_length=16)


class GRPCRouteFilter(StrictSpec):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


class GRPCBackendRef(BackendObjectReference):
    weight: int | None = Field(default=None, ge=0, le=1000000)
    filters: list[GRPCRouteFilter] | None = Field(default=None, max_length=16)


class GRPCRouteRule(StrictSpec):
    name: str | None = None
    matches: list[GRPCRouteMatch] | None = Field(default=None, max_length=64)
    filters: list[GRPCRouteFilter] | None = Field(default=None, max_length=16)
    backend_refs: list[GRPCBackendRef] | None = Field(default=None, max_length=16)
    session_persistence: dict[str, Any] | None = None


class GRPCRouteSpec(StrictSpec):
    parent_refs: list[ParentReference] | None = Field(default=None, max_length=32)
    hostnames: list[str] | None = Field(default=None, max_length=16)
    rules: list[GRPCRouteRule] | None = Field(default=None, max_length=16)


class GRPCRoute(Resource):
    spec: GRPCRouteSpec


# --------------------------------------------------------------------------------------------- ReferenceGrant


class ReferenceGrantFrom(StrictSpec):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(StrictSpec):
    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(StrictSpec):
    from_: list[ReferenceGrantFrom] = Field(alias="from", min_length=1, max_length=16)
    to: list[ReferenceGrantTo] = Field(min_length=1, max_length=16)


class ReferenceGrant(Resource):
    spec: ReferenceGrantSpec


# --------------------------------------------------------------------------------------------- TCPRoute / TLSRoute
# Experimental channel `v1alpha2` (TLSRoute also `v1alpha3`), standard `v1` from Gateway API v1.5 (TLSRoute) and
# v1.6 (TCPRoute): apis/v1alpha2/tcproute_types.go, tlsroute_types.go. Rules carry backendRefs only.

TCP_ROUTE_VERSIONS = ("v1alpha2", "v1")
TLS_ROUTE_VERSIONS = ("v1alpha2", "v1alpha3", "v1")


class L4BackendRef(BackendObjectReference):
    weight: int | None = Field(default=None, ge=0, le=1000000)


class L4RouteRule(StrictSpec):
    name: str | None = Field(default=None, max_length=253)
    backend_refs: list[L4BackendRef] = Field(min_length=1, max_length=16)


class TCPRouteSpec(StrictSpec):
    parent_refs: list[ParentReference] | None = Field(default=None, max_length=32)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)
    use_default_gateways: str | None = None


class TCPRoute(Resource):
    spec: TCPRouteSpec


class TLSRouteSpec(StrictSpec):
    parent_refs: list[ParentReference] | None = Field(default=None, max_length=32)
    hostnames: list[str] | None = Field(default=None, max_length=16)
    rules: list[L4RouteRule] = Field(min_length=1, max_length=16)
    use_default_gateways: str | None = None


class TLSRoute(Resource):
    spec: TLSRouteSpec
