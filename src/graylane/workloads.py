"""What a running workload offers the mesh: its serving address (Endpoint) and its outbound listener (Sidecar).

The runtime (or any endpoint source) produces these and the mesh compiles them; both import this module and
neither imports the other (docs/architecture.md: runtime | mesh).
"""

from __future__ import annotations

from dataclasses import dataclass


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
