"""The route table over one decoded snapshot: host resolution and the routing decision for one request.

`RouteTable.route` runs matching (matching.py), the weighted pick and the endpoint pick (balancing.py) and returns
a `RouteDecision` the proxy and `graylane route` both read. Faults are the proxy's fault layer's business.
Takes the snapshot through the `RoutingSnapshot` protocol, so routing never imports the decoder.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from graylane.mesh.routing.balancing import BalancerState, Cluster, ClusterEndpoint
from graylane.mesh.routing.l4 import L4Route, TlsServer, select_l4
from graylane.mesh.routing.matching import RequestView, Source, host_matches, split_host_port, why
from graylane.mesh.routing.policies import ClusterPolicy, HeaderOps, InboundRateLimit, RateLimit, RetryPolicy
from graylane.mesh.routing.rules import Destination, Redirect, Rule, VirtualService, is_catch_all
from graylane.mesh.routing.sticky import sticky_choice, subset_name

PASSTHROUGH: Final = "PassthroughCluster"
# A gateway server's tls.httpsRedirect as a route: 301 to the same host and path over https, default port.
_HTTPS_REDIRECT: Final = Rule(-1, "https-redirect", (), (),
                              Redirect(scheme="https", derive_port="FROM_PROTOCOL_DEFAULT"), None, None, None,
                              RetryPolicy(0, None, frozenset(), frozenset()), None, (), None, HeaderOps(), HeaderOps())


class Outcome(enum.StrEnum):
    ROUTED = "ROUTED"
    NO_ROUTE = "NO_ROUTE"  # 404 NR
    CLUSTER_NOT_FOUND = "CLUSTER_NOT_FOUND"  # 503 NC
    NO_HEALTHY_UPSTREAM = "NO_HEALTHY_UPSTREAM"  # 503 UH
    REDIRECT = "REDIRECT"
    DIRECT_RESPONSE = "DIRECT_RESPONSE"


# `Outcome.X` costs ~850 instructions per access on 3.11 (EnumType defines `__getattr__`, so every class
# attribute read goes through the slow getattr hook): the per-request paths read these module aliases instead
# (`ROUTED` is exported for the proxy's per-request paths).
ROUTED, _NO_ROUTE = Outcome.ROUTED, Outcome.NO_ROUTE


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    kind: str  # sidecar | gateway
    bind: str
    port: int
    source: Source
    server_port: int = 0  # gateway server port (before host-port mapping)
    gateways: tuple[str, ...] = ()  # ns/name of gateways served here
    server_hosts: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    protocol: str = "http"  # http | tcp | tls (passthrough): routing/l4.py
    tls_servers: tuple[TlsServer, ...] = ()  # terminated TLS (SIMPLE/MUTUAL) in front of HTTP
    https_redirect: tuple[str, ...] = ()  # hosts of servers with tls.httpsRedirect: 301 to https

    @property
    def address(self) -> tuple[str, int]:
        return (self.bind, self.port)


def vhost_names(vs_hosts: Sequence[str], server_hosts: Sequence[str]) -> list[str]:
    """The gateway virtual hosts a VirtualService's hosts make: each intersected with each server host (the more
    specific of the two when one covers the other, as Istio's host.Names.Intersection)."""
    out: list[str] = []
    for v in vs_hosts:
        for s in server_hosts:
            name = v if host_matches(s, v) else s if host_matches(v, s) else None
            if name is not None and name not in out:
                out.append(name)
    return out


def vhost_specificity(name: str) -> tuple[int, int]:
    """Envoy's virtual host order: an exact domain, then wildcards by suffix length, then `*`."""
    if name == "*":
        return (0, 0)
    return (1, len(name)) if name.startswith("*") else (2, len(name))


# --------------------------------------------------------------------------------------------- decisions


@dataclass(slots=True, init=False)
class RouteDecision:
    """What happens to one request, explaining itself (proxy and `graylane route` read the same value)."""

    outcome: Outcome
    host: str  # destination service FQDN (or the Host when unresolved)
    virtual_service: VirtualService | None
    rule: Rule | None
    match_index: int | None
    skipped: list[tuple[int, str]]  # (rule index, why it did not match)
    destination: Destination | None
    share: float
    cluster: Cluster | None
    cluster_name: str
    endpoint: ClusterEndpoint | None
    set_cookie: str | None
    sticky_cookie: str | None  # a sticky canary's Set-Cookie value (routing/sticky.py)
    sticky: str  # how stickiness chose, e.g. "cookie gl-canary=v2 kept"
    detail: str

    # Written out: compiled (graylane.mesh.native), a dataclass's generated __init__ stays interpreted Python
    # (one per request: ~2,800 instructions of attribute stores for these 15 fields).
    def __init__(self, outcome: Outcome, host: str = "", virtual_service: VirtualService | None = None,
                 rule: Rule | None = None, match_index: int | None = None,
                 skipped: list[tuple[int, str]] | None = None, destination: Destination | None = None,
                 share: float = 1.0, cluster: Cluster | None = None, cluster_name: str = "",
                 endpoint: ClusterEndpoint | None = None, set_cookie: str | None = None,
                 sticky_cookie: str | None = None, sticky: str = "", detail: str = "") -> None:
        self.outcome = outcome
        self.host = host
        self.virtual_service = virtual_service
        self.rule = rule
        self.match_index = match_index
        self.skipped = [] if skipped is None else skipped
        self.destination = destination
        self.share = share
        self.cluster = cluster
        self.cluster_name = cluster_name
        self.endpoint = endpoint
        self.set_cookie = set_cookie
        self.sticky_cookie = sticky_cookie
        self.sticky = sticky
        self.detail = detail

    @property
    def flags(self) -> str:
        return {Outcome.NO_ROUTE: "NR", Outcome.CLUSTER_NOT_FOUND: "NC",
                Outcome.NO_HEALTHY_UPSTREAM: "UH"}.get(self.outcome, "")

    @property
    def status(self) -> int:
        if self.outcome is Outcome.NO_ROUTE:
            return 404
        if self.outcome in (Outcome.CLUSTER_NOT_FOUND, Outcome.NO_HEALTHY_UPSTREAM):
            return 503
        rule = self.rule
        if self.outcome is Outcome.REDIRECT:
            return rule.redirect.code if rule is not None and rule.redirect is not None else 301
        if self.outcome is Outcome.DIRECT_RESPONSE:
            return rule.direct_response.status if rule is not None and rule.direct_response is not None else 200
        return 0


@dataclass(frozen=True, slots=True)
class Service:
    fqdn: str
    name: str
    namespace: str
    ports: tuple[int, ...]
    external: bool = False
    protocols: tuple[tuple[int, str], ...] = ()  # (port, "grpc" | "http2") for ports speaking HTTP/2 upstream


@dataclass(frozen=True, slots=True)
class _LiveRoute:
    destinations: tuple[Destination, ...]
    weights: tuple[int, ...]
    total: int
    key: Hashable | None  # the weighted split's name; None for a single destination


class RoutingOptions(Protocol):
    """The snapshot options routing reads."""

    @property
    def domain_suffix(self) -> str: ...
    @property
    def load_balancing(self) -> str: ...
    @property
    def trace_sampling(self) -> float: ...
    @property
    def outbound_traffic_policy(self) -> str: ...


class RoutingSnapshot(Protocol):
    """What routing reads from a decoded snapshot (`graylane.mesh.snapshot.Snapshot` provides it)."""

    @property
    def version(self) -> int: ...
    @property
    def options(self) -> RoutingOptions: ...
    @property
    def services(self) -> Mapping[str, Service]: ...
    @property
    def virtual_services(self) -> tuple[VirtualService, ...]: ...
    @property
    def subsets(self) -> Mapping[str, frozenset[str]]: ...
    @property
    def clusters(self) -> Mapping[str, Cluster]: ...
    @property
    def listeners(self) -> Mapping[str, Listener]: ...
    @property
    def inbound_rate_limits(self) -> tuple[InboundRateLimit, ...]: ...
    @property
    def l4_routes(self) -> tuple[L4Route, ...]: ...


# --------------------------------------------------------------------------------------------- the table


class RouteTable:
    """Decisions over one decoded snapshot: host resolution, rule matching, weighted and endpoint picks.

    Caches only what follows from the snapshot (resolved hosts, live destinations, cluster names); the state that
    changes per request comes in as a `BalancerState`.
    """

    def __init__(self, snapshot: RoutingSnapshot, previous: RouteTable | None = None) -> None:
        """`previous`: the table this one replaces; what it computed for rules still in the snapshot (the same
        decoded objects: `decode_snapshot` reuses unchanged VirtualServices) is taken over, not computed again."""
        self.snapshot = snapshot
        self.version = snapshot.version
        options = snapshot.options
        self.domain_suffix = options.domain_suffix
        self.use_random = options.load_balancing == "random"
        self.trace_sampling = options.trace_sampling
        # meshConfig.outboundTrafficPolicy.mode: ALLOW_ANY (Istio's default) or REGISTRY_ONLY.
        self.allow_any = options.outbound_traffic_policy != "REGISTRY_ONLY"
        self.services: Mapping[str, Service] = snapshot.services
        self._h2_ports: frozenset[tuple[str, int]] | None = None  # made by the first `speaks_h2`
        self.virtual_services: tuple[VirtualService, ...] = snapshot.virtual_services
        self.subsets: Mapping[str, frozenset[str]] = snapshot.subsets
        self.clusters: Mapping[str, Cluster] = snapshot.clusters
        self.listeners: Mapping[str, Listener] = snapshot.listeners
        self.inbound_rate_limits: tuple[InboundRateLimit, ...] = snapshot.inbound_rate_limits
        # Per rule (by identity; rules live as long as this table): live destinations, their weights and the name
        # of their weighted split (the same name across snapshots while the split is unchanged).
        self.rule_live: dict[int, _LiveRoute] = {}
        # Ids of `previous`'s rules are unique while it is alive (it holds its snapshot), so a hit is the same rule.
        reuse = previous.rule_live if previous is not None and previous.use_random == self.use_random else {}
        for vs in self.virtual_services:
            for rule in vs.rules:
                hit = reuse.get(id(rule))
                self.rule_live[id(rule)] = hit if hit is not None else self._live(vs.key, rule)
        self.l4_routes: tuple[L4Route, ...] = snapshot.l4_routes
        for l4 in self.l4_routes:  # tcp/tls routes split by the same weighted pick, keyed apart from http rules
            self.rule_live[id(l4)] = self._live(f"{l4.virtual_service} {l4.protocol}", l4)
        self._vhost_cache: dict[tuple[str, str], tuple[str, VirtualService | None]] = {}
        self._cluster_cache: dict[tuple[int, int], tuple[str, Cluster | None]] = {}
        self._default_dest: dict[str, Destination] = {}
        self._passthrough_clusters: dict[tuple[str, int], Cluster] = {}

    def _live(self, vs_key: str, rule: Rule | L4Route) -> _LiveRoute:
        live = tuple(rule.live_destinations())
        weights = tuple(d.weight for d in live)
        # A string: its hash is computed once, not per request (the key is looked up on every weighted pick).
        key = repr((vs_key, rule.index, tuple((d.host, d.subset, d.port, d.weight) for d in live), self.use_random)) \
            if len(live) > 1 else None
        return _LiveRoute(live, weights, sum(weights), key)

    # -- host resolution -------------------------------------------------------------------------------

    def candidates(self, host: str, namespace: str) -> list[str]:
        """Istio's virtual-host domains: `reviews`, `reviews.ns`, `reviews.ns.svc`, FQDN (port ignored)."""
        suffix = self.domain_suffix
        out = [host]
        parts = host.split(".")
        if len(parts) == 1:
            out.append(f"{host}.{namespace}.svc.{suffix}")
        elif len(parts) == 2:
            out.append(f"{host}.svc.{suffix}")
        elif len(parts) == 3 and parts[2] == "svc":
            out.append(f"{host}.{suffix}")
        return out

    def resolve(self, listener: Listener, authority: str) -> tuple[str, VirtualService | None]:
        """(destination host, VirtualService or None) for a request's Host on a listener. Cached per listener."""
        key = (listener.name, authority)
        hit = self._vhost_cache.get(key)
        if hit is not None:
            return hit
        host, _ = split_host_port(authority, 80)
        result: tuple[str, VirtualService | None]
        if listener.kind == "gateway":
            result = (host, self._gateway_vs(listener, host))
        else:
            result = ("", None)
            for cand in reversed(self.candidates(host, listener.source.namespace)):
                vs = self._mesh_vs(cand, listener.source.namespace)
                if vs is not None or cand in self.services:
                    result = (cand, vs)
                    break
            if not result[0]:
                result = (host, None)
        if len(self._vhost_cache) < 100_000:
            self._vhost_cache[key] = result
        return result

    def _mesh_vs(self, fqdn: str, namespace: str) -> VirtualService | None:
        # Sidecars do not merge VirtualServices for one host: the oldest wins (snapshot order).
        for vs in self.virtual_services:
            if "mesh" in vs.gateways and vs.is_exported_to(namespace) and any(host_matches(h, fqdn) for h in vs.hosts):
                return vs
        return None

    def _gateway_vs(self, listener: Listener, host: str) -> VirtualService | None:
        """Istio builds one virtual host per VirtualService host (intersected with the servers' hosts) and merges
        the VirtualServices sharing it; Envoy then serves a request from its most specific virtual host (exact
        name, then the longest wildcard suffix, then `*`): a VirtualService for `*` does not join one for
        `a.example.com` (pilot's buildGatewayHTTPRouteConfig, Envoy's virtual host selection)."""
        if not any(host_matches(h, host) for h in listener.server_hosts):
            return None
        by_vhost: dict[str, list[VirtualService]] = {}
        for vs in self.virtual_services:
            if any(g in vs.gateways for g in listener.gateways):
                for name in vhost_names(vs.hosts, listener.server_hosts):
                    if host_matches(name, host) and vs not in by_vhost.setdefault(name, []):
                        by_vhost[name].append(vs)
        if not by_vhost:
            return None
        group = by_vhost[max(by_vhost, key=vhost_specificity)]
        if len(group) == 1:
            return group[0]
        # Gateways merge VirtualServices for one host: rules in creation order, catch-all rules moved to the end
        # (istio.io traffic-management best practices; pilot mergeVirtualServicesIfNeeded).
        rules = [r for vs in group for r in vs.rules]
        ordered = [r for r in rules if not is_catch_all(r)] + [r for r in rules if is_catch_all(r)]
        merged = tuple(replace(r, index=i) for i, r in enumerate(ordered))
        first = group[0]
        return VirtualService("+".join(vs.name if vs.namespace == first.namespace else vs.key for vs in group),
                              first.namespace, first.hosts, first.gateways, first.export_to, merged, first.sticky)

    # -- routing ---------------------------------------------------------------------------------------

    def speaks_h2(self, cluster: Cluster | None) -> bool:
        """Whether the cluster's Service port speaks HTTP/2 upstream (`appProtocol`/port name grpc, http2, h2c).
        Asked for every HTTP/1.1 request: the (service, port) pairs are gathered once per table."""
        ports = self._h2_ports
        if ports is None:
            ports = self._h2_ports = frozenset((name, port) for name, svc in self.services.items()
                                               for port, _ in svc.protocols)
        return bool(ports) and cluster is not None and (cluster.service, cluster.port) in ports

    def route(self, req: RequestView, listener: Listener, rng: random.Random, state: BalancerState,
              now: float = 0.0, explain: bool = False, pick_endpoint: bool = True) -> RouteDecision:
        """First matching http rule of the host's VirtualService, then a weighted destination and endpoint.

        `state` is the caller's endpoint health, load and split progress; `rng` every random choice.
        """
        host, vs = self.resolve(listener, req.authority)
        if listener.https_redirect and any(host_matches(h, host) for h in listener.https_redirect):
            return self._https_redirect(host, vs)
        if vs is None:
            if listener.kind == "sidecar" and host not in self.services and self.allow_any:
                return self._passthrough(req, host, pick_endpoint)
            if listener.kind == "gateway" or host not in self.services:
                return RouteDecision(Outcome.NO_ROUTE, host, detail=f"no route for host {host!r}")
            # No VirtualService: default route to the whole Service (all versions), default retry policy.
            dest = self._default_dest.get(host)
            if dest is None:
                dest = self._default_dest[host] = Destination(host, "", None, 100, HeaderOps(), HeaderOps())
            return self._destination(RouteDecision(Outcome.ROUTED, host), req, dest, rng, state, now,
                                     pick_endpoint)
        gateways = listener.gateways if listener.kind == "gateway" else ()
        decision = RouteDecision(_NO_ROUTE, host, virtual_service=vs)
        for rule in vs.rules:
            if not rule.matches:
                # A rule without match is a catch-all; Istio stops translating after it.
                decision.match_index = None
                return self._apply(decision, rule, req, rng, state, now, pick_endpoint)
            reasons = []
            for mi, m in enumerate(rule.matches):
                miss = m.mismatch(req, listener.source, gateways)
                if miss is None:
                    decision.match_index = mi
                    return self._apply(decision, rule, req, rng, state, now, pick_endpoint)
                if explain:
                    reasons.append(f"match[{mi}]: {why(miss)}")
            if explain:
                decision.skipped.append((rule.index, "; ".join(reasons)))
        decision.detail = f"no rule of VirtualService {vs.key} matched"
        return decision

    def _https_redirect(self, host: str, vs: VirtualService | None) -> RouteDecision:
        """A gateway server with `tls.httpsRedirect`: every request gets 301 to https (Envoy's require_tls ALL)."""
        return RouteDecision(Outcome.REDIRECT, host, virtual_service=vs, rule=_HTTPS_REDIRECT,
                             detail="the gateway server has tls.httpsRedirect")

    def route_l4(self, listener: Listener, port: int, sni: str, source_ip: str, rng: random.Random,
                 state: BalancerState, now: float = 0.0, host: str = "") -> RouteDecision:
        """A TCP connection (or an unterminated TLS one, by its SNI) on `listener`: the first `tcp`/`tls` route that
        takes it, then a weighted destination and an endpoint, as `route` does for HTTP.

        `host`: the target of a sidecar's CONNECT tunnel: `tcp` routes of VirtualServices for its Service bound to
        mesh, else the whole Service, else (outside the registry, ALLOW_ANY) the PassthroughCluster."""
        gateways = listener.gateways if listener.kind == "gateway" else ("mesh",)
        fqdn = next((c for c in reversed(self.candidates(host, listener.source.namespace)) if c in self.services),
                    host) if host else ""
        route = select_l4(self.l4_routes, "tcp" if host else listener.protocol, port, gateways, sni,
                          listener.source.namespace, fqdn)
        req = RequestView("", "/", host or sni, {}, "tcp", port, source_ip)
        if route is None and fqdn in self.services:  # the whole Service (one Destination per host: cache keys by id)
            dest = self._default_dest.get(fqdn) or self._default_dest.setdefault(
                fqdn, Destination(fqdn, "", None, 100, HeaderOps(), HeaderOps()))
            return self._destination(RouteDecision(Outcome.ROUTED, fqdn), req, dest, rng, state, now, True)
        if route is None and host and self.allow_any:
            return self._passthrough(req, host, True)
        if route is None:
            return RouteDecision(Outcome.NO_ROUTE, fqdn or sni, detail=f"no {listener.protocol} route for port {port}"
                                 + (f" and SNI {sni!r}" if sni else ""))
        entry = self.rule_live[id(route)]
        d = RouteDecision(Outcome.NO_ROUTE, sni, detail=route.name)
        if not entry.destinations:
            d.detail = "route has no destination with weight > 0"
            return d
        index = 0 if entry.key is None else state.pick_weighted(entry.key, entry.weights, self.use_random, rng)
        dest = entry.destinations[index]
        d.outcome, d.share = Outcome.ROUTED, (dest.weight / entry.total if entry.key is not None else 1.0)
        return self._destination(d, req, dest, rng, state, now, True)

    def _passthrough(self, req: RequestView, host: str, pick_endpoint: bool) -> RouteDecision:
        """Istio's default outboundTrafficPolicy ALLOW_ANY: a host outside the registry goes where it says."""
        port = req.port
        key = (host, port)
        cluster = self._passthrough_clusters.get(key)
        if cluster is None:
            address = f"{host}:{port}"
            ep = ClusterEndpoint((PASSTHROUGH, address), address, host, port, "", "", {}, "", "default")
            cluster = Cluster.build(PASSTHROUGH, host, port, "", ClusterPolicy(), (ep,))
            if len(self._passthrough_clusters) < 10_000:
                self._passthrough_clusters[key] = cluster
        dest = Destination(host, "", port, 100, HeaderOps(), HeaderOps())
        d = RouteDecision(Outcome.ROUTED, host, destination=dest, cluster=cluster, cluster_name=PASSTHROUGH,
                          detail="outside the mesh registry: PassthroughCluster (outboundTrafficPolicy ALLOW_ANY)")
        if pick_endpoint:
            d.endpoint = cluster.endpoints[0]
        return d

    def _apply(self, d: RouteDecision, rule: Rule, req: RequestView, rng: random.Random, state: BalancerState,
               now: float, pick_endpoint: bool) -> RouteDecision:
        d.rule = rule
        if rule.redirect is not None:
            d.outcome = Outcome.REDIRECT
            return d
        if rule.direct_response is not None:
            d.outcome = Outcome.DIRECT_RESPONSE
            return d
        entry = self.rule_live.get(id(rule))
        if entry is None:  # a rule from outside this table (a merged gateway view)
            entry = self.rule_live[id(rule)] = self._live(d.virtual_service.key if d.virtual_service else "", rule)
        live = entry.destinations
        if not live:
            d.outcome, d.detail = Outcome.NO_ROUTE, "route has no destination with weight > 0"
            return d
        sticky = d.virtual_service.sticky if d.virtual_service is not None else None
        choice = sticky_choice(sticky, req.headers, live) if sticky is not None else None
        if choice is not None and choice.index is not None:
            dest = live[choice.index]
        elif entry.key is None:
            dest = live[0]
        else:
            dest = live[state.pick_weighted(entry.key, entry.weights, self.use_random, rng)]
        share = dest.weight / entry.total if entry.key is not None else 1.0
        if sticky is not None and choice is not None:
            d.sticky = choice.why
            if choice.set_cookie:
                d.sticky_cookie = sticky.set_cookie(subset_name(dest))
                d.sticky = f"cookie {sticky.cookie}={subset_name(dest)} set ({choice.why})"
        d.outcome = ROUTED
        d.share = share
        return self._destination(d, req, dest, rng, state, now, pick_endpoint)

    def destination_port(self, host: str, port: int | None, req_port: int) -> int:
        if port:
            return int(port)
        svc = self.services.get(host)
        if svc is None or not svc.ports:
            return req_port
        if len(svc.ports) == 1 or req_port not in svc.ports:
            return svc.ports[0]
        return req_port

    def cluster_for(self, host: str, subset: str, port: int | None, req_port: int) -> tuple[str, Cluster | None]:
        p = self.destination_port(host, port, req_port)
        name = f"outbound|{p}|{subset}|{host}"
        return name, self.clusters.get(name)

    def _destination(self, d: RouteDecision, req: RequestView, dest: Destination, rng: random.Random,
                     state: BalancerState, now: float, pick_endpoint: bool) -> RouteDecision:
        d.destination = dest
        d.host = dest.host
        ckey = (id(dest), req.port)
        hit = self._cluster_cache.get(ckey)
        if hit is None:
            hit = self._cluster_cache[ckey] = self.cluster_for(dest.host, dest.subset, dest.port, req.port)
        name, cluster = hit
        d.cluster_name = name
        if cluster is None:
            d.outcome = Outcome.CLUSTER_NOT_FOUND
            d.detail = (f"subset {dest.subset!r} of {dest.host} is not defined in any DestinationRule"
                        if dest.subset else f"no service {dest.host}")
            return d
        d.cluster = cluster
        if not pick_endpoint:
            if not cluster.healthy(now, state):
                d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        ep, cookie = cluster.pick(req, rng, now, state)
        if ep is None:
            d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        d.endpoint, d.set_cookie = ep, cookie
        return d
