"""pydantic models for Istio DestinationRule (istio/api `networking/v1alpha3/destination_rule.proto`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from graylane.resources.model_base import Resource, StrictSpec
from graylane.resources.model_virtualservice import Percent, PortSelector


class HTTPCookieAttribute(StrictSpec):
    name: str
    value: str | None = None


class HTTPCookie(StrictSpec):
    name: str | None = None
    path: str | None = None
    ttl: str | None = None
    attributes: list[HTTPCookieAttribute] | None = None


class RingHash(StrictSpec):
    minimum_ring_size: int | None = None


class MagLev(StrictSpec):
    table_size: int | None = None


class ConsistentHashLB(StrictSpec):
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: int | None = None  # deprecated


class LocalityDistribute(StrictSpec):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, int] | None = None


class LocalityFailover(StrictSpec):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(StrictSpec):
    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None


class WarmupConfiguration(StrictSpec):
    duration: str | None = None
    minimum_percent: float | None = None
    aggression: float | None = None


class LoadBalancerSettings(StrictSpec):
    simple: Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: str | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(StrictSpec):
    probes: int | None = None
    time: str | None = None
    interval: str | None = None


class TCPSettings(StrictSpec):
    max_connections: int | None = None
    connect_timeout: str | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: str | None = None
    idle_timeout: str | None = None


class HTTPSettings(StrictSpec):
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: str | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: int | None = None


class ConnectionPoolSettings(StrictSpec):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(StrictSpec):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_5xx_errors: int | None = Field(default=None, alias="consecutive5xxErrors")
    consecutive_errors: int | None = None  # deprecated
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


class ClientTLSSettings(StrictSpec):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None


class PortTrafficPolicy(StrictSpec):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TunnelSettings(StrictSpec):
    protocol: str | None = None
    target_host: str
    target_port: int


class ProxyProtocol(StrictSpec):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(StrictSpec):
    percent: Percent | None = None
    min_retry_concurrency: int | None = None


class TrafficPolicy(StrictSpec):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None


class Subset(StrictSpec):
    name: str
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None


class WorkloadSelector(StrictSpec):
    match_labels: dict[str, str] | None = None


class DestinationRuleSpec(StrictSpec):
    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: WorkloadSelector | None = None


class DestinationRule(Resource):
    spec: DestinationRuleSpec
