"""pydantic models for Istio ServiceEntry and EnvoyFilter (istio/api networking v1alpha3)."""

from __future__ import annotations

from typing import Any, Literal

from graylane.resources.model_base import Resource, StrictSpec


class ServicePort(StrictSpec):
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class WorkloadEntry(StrictSpec):
    address: str | None = None
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


class EntrySelector(StrictSpec):
    labels: dict[str, str] | None = None


class ServiceEntrySpec(StrictSpec):
    hosts: list[str] | None = None
    addresses: list[str] | None = None
    ports: list[ServicePort] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: EntrySelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None


class ServiceEntry(Resource):
    spec: ServiceEntrySpec


class Patch(StrictSpec):
    operation: Literal["INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
                       "INSERT_FIRST", "REPLACE"] | None = None
    value: dict[str, Any] | None = None  # Envoy config: schemaless in the CRD
    filter_class: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None


class EnvoyConfigObjectPatch(StrictSpec):
    apply_to: str | None = None
    match: dict[str, Any] | None = None  # listener/routeConfiguration/cluster matchers, kept as written
    patch: Patch | None = None


class PolicyTargetReference(StrictSpec):
    group: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class EnvoyFilterSpec(StrictSpec):
    workload_selector: EntrySelector | None = None
    target_refs: list[PolicyTargetReference] | None = None
    config_patches: list[EnvoyConfigObjectPatch] | None = None
    priority: int | None = None


class EnvoyFilter(Resource):
    spec: EnvoyFilterSpec
