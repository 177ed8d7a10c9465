"""What the mesh is compiled from, besides resources: endpoints, sidecars, gateway listeners.

The runtime (or any endpoint source) produces these; `graylane.mesh.config` compiles them with the
stored resources into a versioned route snapshot that the data plane serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """One pod's serving address (a ready-or-not replica of a Deployment)."""

    namespace: str
    pod: str
    labels: dict[str, str]
    host: str  # where the process listens, e.g. 127.0.0.1
    port: int  # the PORT the process listens on (its containerPort maps to it)
    container_port: int = 9080  # the port the Service's targetPort refers to
    ready: bool = True
    workload: str = ""  # owning Deployment name
    service_account: str = "default"


@dataclass(frozen=True)
class Sidecar:
    """A per-replica outbound listener: requests from this pod enter the mesh here."""

    namespace: str
    pod: str
    labels: dict[str, str]
    port: int  # the listener port on 127.0.0.1 the pod's HTTP_PROXY points at
    workload: str = ""
    service_account: str = "default"


@dataclass(frozen=True)
class MeshOptions:
    """Mesh-wide settings (Istio's MeshConfig equivalents)."""

    gateway_bind: str = "127.0.0.1"
    # Gateway server port -> host port (80 -> 8080 when not root). Unmapped ports bind as they are.
    gateway_port_map: dict[int, int] = field(default_factory=lambda: {80: 8080, 443: 8443})
    load_balancing: str = "round_robin_weights"  # or "random" (Envoy's per-request pick)
    trace_sampling: float = 1.0  # percent, like Istio's meshConfig.defaultConfig.tracing.sampling
    access_log: str = ""  # "", "text" or "json"
    domain_suffix: str = "cluster.local"
