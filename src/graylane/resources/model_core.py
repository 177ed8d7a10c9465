"""pydantic models for the Kubernetes core kinds Graylane acts on (v1 and apps/v1).

Only the fields the local runtime and mesh read are typed; every other Kubernetes field is kept
as written (a real cluster accepts them, and a Kubernetes target applies them unchanged).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, PlainValidator

from graylane.resources.model_base import LenientSpec, ObjectMeta, Resource


def _int_or_string(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be an integer or a string")
    return value


IntOrString = Annotated[int | str, PlainValidator(_int_or_string)]


class CoreResource(Resource):
    """Core kinds carry top-level fields of their own (ConfigMap `data`, Secret `type`, ...)."""

    model_config = ConfigDict(extra="allow")


# === Pods (as templated by Deployments) ===

class ObjectFieldSelector(LenientSpec):
    field_path: str
    api_version: str | None = None


class KeySelector(LenientSpec):
    name: str | None = None
    key: str
    optional: bool | None = None


class EnvVarSource(LenientSpec):
    field_ref: ObjectFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


class EnvVar(LenientSpec):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class ContainerPort(LenientSpec):
    container_port: int
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None


class HTTPHeader(LenientSpec):
    name: str
    value: str


class HTTPGetAction(LenientSpec):
    path: str | None = None
    port: IntOrString
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(LenientSpec):
    port: IntOrString
    host: str | None = None


class ExecAction(LenientSpec):
    command: list[str] | None = None


class Probe(LenientSpec):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: int | None = None
    period_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None


class ResourceRequirements(LenientSpec):
    limits: dict[str, IntOrString | float] | None = None
    requests: dict[str, IntOrString | float] | None = None


class Container(LenientSpec):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    resources: ResourceRequirements | None = None


class PodSpec(LenientSpec):
    containers: list[Container]
    termination_grace_period_seconds: int | None = None
    service_account_name: str | None = None


class PodTemplateSpec(LenientSpec):
    metadata: ObjectMeta | None = None
    spec: PodSpec


# === Deployment (apps/v1) ===

class LabelSelector(LenientSpec):
    match_labels: dict[str, str] | None = None


class RollingUpdate(LenientSpec):
    max_surge: IntOrString | None = None
    max_unavailable: IntOrString | None = None


class DeploymentStrategy(LenientSpec):
    type: Literal["RollingUpdate", "Recreate"] | None = None
    rolling_update: RollingUpdate | None = None


class DeploymentSpec(LenientSpec):
    replicas: int | None = None
    selector: LabelSelector
    strategy: DeploymentStrategy | None = None
    template: PodTemplateSpec
    min_ready_seconds: int | None = None
    progress_deadline_seconds: int | None = None


class Deployment(CoreResource):
    spec: DeploymentSpec


# === Service (v1) ===

class ServicePort(LenientSpec):
    port: int
    name: str | None = None
    target_port: IntOrString | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    app_protocol: str | None = None
    node_port: int | None = None


class ServiceSpec(LenientSpec):
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] | None = None


class Service(CoreResource):
    spec: ServiceSpec


# === Namespace, ServiceAccount, ConfigMap, Secret (v1) ===

class Namespace(CoreResource):
    pass


class ServiceAccount(CoreResource):
    pass


class ConfigMap(CoreResource):
    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None


class Secret(CoreResource):
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    type: str | None = None
    immutable: bool | None = None
