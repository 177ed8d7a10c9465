"""What the mesh is compiled from, besides resources: endpoints, sidecars, gateway listeners.

The runtime (or any endpoint source) produces these; `graylane.mesh.config` compiles them with the
stored resources into a versioned route snapshot that the data plane serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graylane.workloads import Endpoint, Sidecar

__all__ = ["Endpoint", "MeshOptions", "Sidecar"]


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
