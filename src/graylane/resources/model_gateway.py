"""pydantic models for Istio Gateway (istio/api `networking/v1alpha3/gateway.proto`)."""

from __future__ import annotations

from typing import Literal

from graylane.resources.model_base import Resource, StrictSpec


class GatewayPort(StrictSpec):
    number: int
    protocol: str
    name: str | None = None
    target_port: int | None = None


class ServerTLSSettings(StrictSpec):
    https_redirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL",
                  "OPTIONAL_MUTUAL"] | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: str | None = None
    max_protocol_version: str | None = None
    cipher_suites: list[str] | None = None


class Server(StrictSpec):
    port: GatewayPort
    bind: str | None = None
    hosts: list[str] | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class GatewaySpec(StrictSpec):
    selector: dict[str, str] | None = None
    servers: list[Server] | None = None


class Gateway(Resource):
    spec: GatewaySpec
