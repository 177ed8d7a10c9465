"""pydantic models for Istio VirtualService (networking.istio.io v1alpha3/v1beta1/v1, one schema).

Field names and nesting follow istio/api `networking/v1alpha3/virtual_service.proto`; semantic checks
(weights, durations, regexes, ...) live in `admission.py`, not here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from graylane.resources.model_base import Resource, StrictSpec


class StringMatch(StrictSpec):
    """oneof exact | prefix | regex (RE2); `{}` means presence for headers."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class Percent(StrictSpec):
    value: float | None = None


class PortSelector(StrictSpec):
    number: int | None = None


class Destination(StrictSpec):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class HeaderOperations(StrictSpec):
    set_: dict[str, str] | None = Field(default=None, alias="set")
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(StrictSpec):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(StrictSpec):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None


class HTTPRouteDestination(StrictSpec):
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class RouteDestination(StrictSpec):
    destination: Destination
    weight: int | None = None


class HTTPRedirect(StrictSpec):
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: int | None = None


class HTTPBody(StrictSpec):
    string: str | None = None
    bytes_: str | None = Field(default=None, alias="bytes")  # base64 in YAML


class HTTPDirectResponse(StrictSpec):
    status: int
    body: HTTPBody | None = None


class Delegate(StrictSpec):
    name: str | None = None
    namespace: str | None = None


class RegexRewrite(StrictSpec):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(StrictSpec):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(StrictSpec):
    attempts: int | None = None
    per_try_timeout: str | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: str | None = None


class FaultDelay(StrictSpec):
    fixed_delay: str | None = None
    exponential_delay: str | None = None
    percentage: Percent | None = None
    percent: int | None = None  # deprecated integer form


class FaultAbort(StrictSpec):
    http_status: int | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(StrictSpec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(StrictSpec):
    destination: Destination
    percentage: Percent | None = None


class CorsPolicy(StrictSpec):
    allow_origins: list[StringMatch] | None = None
    allow_origin: list[str] | None = None  # deprecated
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: str | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPRoute(StrictSpec):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: str | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirror_percent: int | None = None  # deprecated
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class L4MatchAttributes(StrictSpec):
    destination_subnets: list[str] | None = None
    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None
    source_subnet: str | None = None


class TLSMatchAttributes(StrictSpec):
    sni_hosts: list[str] | None = None
    destination_subnets: list[str] | None = None
    port: int | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TCPRoute(StrictSpec):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class TLSRoute(StrictSpec):
    match: list[TLSMatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(StrictSpec):
    hosts: list[str] | None = None
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None


class VirtualService(Resource):
    spec: VirtualServiceSpec


