"""Layer-4 routing as values: VirtualService `tcp` and `tls` routes, their matches, and a gateway's TLS servers.

Pure data and matching (which route a connection takes, which TLS server a handshake's SNI selects); the weighted
pick and the endpoint pick are the route table's (`table.py`), the sockets the proxy's (`proxy/tcp.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from graylane.mesh.routing.matching import host_matches
from graylane.mesh.routing.rules import Destination

# Listener protocols: what a listener's accepted connections speak.
HTTP: Final = "http"  # HTTP/1.1 (behind a terminated TLS server when the listener has `tls_servers`)
TCP: Final = "tcp"  # raw TCP, routed by VirtualService `tcp` routes
TLS_PASSTHROUGH: Final = "tls"  # TLS not terminated: routed by the ClientHello's SNI through `tls` routes


@dataclass(frozen=True, slots=True)
class L4Match:
    """L4MatchAttributes / TLSMatchAttributes: port, gateways, sniHosts (TLS only), source namespace."""

    port: int | None = None
    gateways: tuple[str, ...] | None = None
    sni_hosts: tuple[str, ...] = ()
    source_namespace: str | None = None

    def matches(self, port: int, gateways: Sequence[str], sni: str, namespace: str) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.gateways is not None and not any(g in self.gateways for g in (gateways or ("mesh",))):
            return False
        if self.source_namespace is not None and self.source_namespace != namespace:
            return False
        return not self.sni_hosts or any(host_matches(h, sni) for h in self.sni_hosts)


@dataclass(frozen=True, slots=True)
class L4Route:
    """One `tcp` or `tls` route of a VirtualService (in the order written)."""

    virtual_service: str  # ns/name
    protocol: str  # TCP or TLS_PASSTHROUGH
    index: int
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]  # the VirtualService's gateways (resolved ns/name, or "mesh")
    matches: tuple[L4Match, ...]
    destinations: tuple[Destination, ...]

    @property
    def name(self) -> str:
        return f"{self.virtual_service} {'tcp' if self.protocol == TCP else 'tls'}[{self.index}]"

    def live_destinations(self) -> list[Destination]:
        """As HTTP routes: a single destination gets all, otherwise weight/sum and weight 0 gets none."""
        if len(self.destinations) == 1:
            return list(self.destinations)
        return [d for d in self.destinations if d.weight > 0]

    def applies(self, protocol: str, port: int, gateways: Sequence[str], sni: str, namespace: str,
                host: str = "") -> bool:
        if protocol != self.protocol or not any(g in self.gateways for g in (gateways or ("mesh",))):
            return False
        if host and not any(host_matches(h, host) for h in self.hosts):  # a sidecar's destination Service
            return False
        if self.protocol == TLS_PASSTHROUGH and not any(host_matches(h, sni) for h in self.hosts):
            return False
        return not self.matches or any(m.matches(port, gateways, sni, namespace) for m in self.matches)


def select_l4(routes: Sequence[L4Route], protocol: str, port: int, gateways: Sequence[str], sni: str = "",
              namespace: str = "", host: str = "") -> L4Route | None:
    """The first route (VirtualServices in snapshot order, routes as written) that takes this connection; `host`:
    the destination Service of a sidecar's connection (the VirtualService's `hosts` must include it)."""
    for route in routes:
        if route.applies(protocol, port, gateways, sni, namespace, host):
            return route
    return None


@dataclass(frozen=True, slots=True)
class TlsServer:
    """A gateway server that terminates TLS: its hosts (SNI), SIMPLE or MUTUAL, and its credential's key."""

    hosts: tuple[str, ...]
    mode: str  # SIMPLE | MUTUAL | OPTIONAL_MUTUAL
    credential: str  # key into the snapshot's `tls_credentials`

    def serves(self, sni: str) -> bool:
        return any(host_matches(h, sni) for h in self.hosts)


@dataclass(frozen=True, slots=True, repr=False)
class TlsCredential:
    """PEM text of a `kubernetes.io/tls` Secret (ca only for MUTUAL). Never printed."""

    cert: str
    key: str
    ca: str = ""

    def __repr__(self) -> str:
        return "TlsCredential(<redacted>)"


def select_tls_server(servers: Sequence[TlsServer], sni: str | None) -> TlsServer | None:
    """Envoy's filter chain match on server names: an exact host before a wildcard, then the first catch-all.

    Without SNI (or an SNI no server names) the first server whose hosts include `*` serves, else none (Envoy
    finds no filter chain and closes the connection).
    """
    if not servers:
        return None
    name = (sni or "").lower().rstrip(".")
    if name:
        for s in servers:
            if name in s.hosts:
                return s
        best: TlsServer | None = None
        best_len = -1
        for s in servers:
            for h in s.hosts:
                if h.startswith("*") and h != "*" and name.endswith(h[1:]) and len(h) > best_len:
                    best, best_len = s, len(h)
        if best is not None:
            return best
    for s in servers:
        if "*" in s.hosts:
            return s
    return None
