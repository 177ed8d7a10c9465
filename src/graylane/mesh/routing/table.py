"""The route table: one snapshot decoded, host resolution, and the decision for one request.

`RouteTable.route` runs matching (matching.py), faults, the weighted pick and the endpoint pick (balancing.py) and
returns a `RouteDecision` the proxy and `graylane route` both read.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh.routing.balancing import Cluster, ClusterCounters, EndpointState, WeightedPicker
from graylane.mesh.routing.matching import RequestView, Source, host_matches, split_host_port, why
from graylane.mesh.routing.policies import ClusterPolicy, HeaderOps
from graylane.mesh.routing.rules import Destination, Rule, VirtualService, is_catch_all

PASSTHROUGH = "PassthroughCluster"


class Outcome(enum.StrEnum):
    ROUTED = "ROUTED"
    NO_ROUTE = "NO_ROUTE"  # 404 NR
    CLUSTER_NOT_FOUND = "CLUSTER_NOT_FOUND"  # 503 NC
    NO_HEALTHY_UPSTREAM = "NO_HEALTHY_UPSTREAM"  # 503 UH
    FAULT_ABORT = "FAULT_ABORT"  # FI
    REDIRECT = "REDIRECT"
    DIRECT_RESPONSE = "DIRECT_RESPONSE"


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
    rate_limit: Mapping[str, Any] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.bind, self.port)


# --------------------------------------------------------------------------------------------- decisions


@dataclass(slots=True)
class RouteDecision:
    """What happens to one request, explaining itself (proxy and `graylane route` read the same value)."""

    outcome: Outcome
    host: str = ""  # destination service FQDN (or the Host when unresolved)
    virtual_service: VirtualService | None = None
    rule: Rule | None = None
    match_index: int | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (rule index, why it did not match)
    destination: Destination | None = None
    share: float = 1.0
    cluster: Cluster | None = None
    cluster_name: str = ""
    endpoint: EndpointState | None = None
    set_cookie: str | None = None
    delay_s: float = 0.0
    abort_status: int = 0
    detail: str = ""

    @property
    def flags(self) -> str:
        return {Outcome.NO_ROUTE: "NR", Outcome.CLUSTER_NOT_FOUND: "NC", Outcome.NO_HEALTHY_UPSTREAM: "UH",
                Outcome.FAULT_ABORT: "FI"}.get(self.outcome, "")

    @property
    def status(self) -> int:
        if self.outcome is Outcome.NO_ROUTE:
            return 404
        if self.outcome in (Outcome.CLUSTER_NOT_FOUND, Outcome.NO_HEALTHY_UPSTREAM):
            return 503
        if self.outcome is Outcome.FAULT_ABORT:
            return self.abort_status
        if self.outcome is Outcome.REDIRECT:
            return int((self.rule.redirect or {}).get("redirectCode", 301)) if self.rule else 301
        if self.outcome is Outcome.DIRECT_RESPONSE:
            return int((self.rule.direct_response or {}).get("status", 200)) if self.rule else 200
        return 0


@dataclass(frozen=True, slots=True)
class Service:
    fqdn: str
    name: str
    namespace: str
    ports: tuple[int, ...]
    external: bool = False


# --------------------------------------------------------------------------------------------- the table


class RouteTable:
    """An immutable, versioned view of a snapshot with the per-route/per-cluster state the proxy keeps."""

    def __init__(self, snapshot: Mapping[str, Any], previous: RouteTable | None = None) -> None:
        self.snapshot = snapshot
        self.version = int(snapshot.get("version", 0))
        options = snapshot.get("options") or {}
        self.domain_suffix = options.get("domain_suffix", "cluster.local")
        self.use_random = options.get("load_balancing") == "random"
        self.trace_sampling = float(options.get("trace_sampling", 1.0))
        self.services: dict[str, Service] = {
            fqdn: Service(fqdn, s["name"], s["namespace"], tuple(p["port"] for p in s.get("ports", ())),
                          bool(s.get("external")))
            for fqdn, s in (snapshot.get("services") or {}).items()}
        self.virtual_services: list[VirtualService] = []
        # Unchanged parts of the previous snapshot are reused as they are (dict equality is cheap, compiling isn't).
        old_vs_raw = previous.vs_raw if previous else {}
        self.vs_raw: dict[tuple[str, str], tuple[Mapping[str, Any], VirtualService]] = {}
        for i, vs in enumerate(snapshot.get("virtual_services") or ()):
            key = (vs.get("namespace"), vs.get("name"))
            hit = old_vs_raw.get(key)
            if hit is not None and hit[0] == vs:
                self.virtual_services.append(hit[1])
                self.vs_raw[key] = hit
                continue
            where = f"VirtualService {vs.get('namespace')}/{vs.get('name')}"
            try:
                rules = tuple(Rule.load(j, r) for j, r in enumerate(vs.get("http") or ()))
            except ValidationError as exc:
                raise ValidationError(f"{where}: {exc.message}") from None
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(f"{where}: malformed rule ({exc!r}) in snapshot item {i}") from None
            obj = VirtualService(vs["name"], vs["namespace"], tuple(vs.get("hosts") or ()),
                                 tuple(vs.get("gateways") or ("mesh",)), tuple(vs.get("export_to") or ()), rules)
            self.virtual_services.append(obj)
            self.vs_raw[key] = (vs, obj)
        self.subsets: dict[str, set[str]] = {h: set(s) for h, s in (snapshot.get("subsets") or {}).items()}
        old_clusters = previous.clusters if previous else {}
        old_cluster_raw = previous.cluster_raw if previous else {}
        self.cluster_raw: dict[str, Mapping[str, Any]] = {}
        self.clusters: dict[str, Cluster] = {}
        for name, c in (snapshot.get("clusters") or {}).items():
            old = old_clusters.get(name)
            self.cluster_raw[name] = c
            if old is not None and old_cluster_raw.get(name) == c:
                self.clusters[name] = old
                continue
            old_eps = {ep.address: ep for ep in old.endpoints} if old else {}
            eps = []
            for e in c.get("endpoints") or ():
                prev = old_eps.get(e["address"])
                if prev is not None:  # keep active counts and ejections across snapshots
                    prev.ready = bool(e.get("ready", True))
                    prev.labels = dict(e.get("labels") or {})
                    eps.append(prev)
                    continue
                eps.append(EndpointState(e["address"], e["host"], int(e["port"]), e.get("pod", ""),
                                         e.get("namespace", ""), dict(e.get("labels") or {}),
                                         e.get("workload", ""), e.get("service_account", "default"),
                                         bool(e.get("ready", True))))
            self.clusters[name] = Cluster(name, c["service"], int(c["port"]), c.get("subset", ""),
                                          ClusterPolicy.load(c.get("policy")), eps,
                                          old.counters if old else ClusterCounters())
        self.listeners: dict[str, Listener] = {}
        for spec in snapshot.get("listeners") or ():
            src = spec.get("source") or {}
            lst = Listener(spec["name"], spec["kind"], spec.get("bind", "127.0.0.1"), int(spec["port"]),
                           Source(src.get("namespace", "default"), src.get("pod", ""), dict(src.get("labels") or {}),
                                  src.get("workload", "unknown"), src.get("service_account", "default")),
                           int(spec.get("server_port", 0)), tuple(spec.get("gateways") or ()),
                           tuple(spec.get("server_hosts") or ()), spec.get("rate_limit"))
            self.listeners[lst.name] = lst
        self.inbound_rate_limits: list[Mapping[str, Any]] = list(snapshot.get("inbound_rate_limits") or ())
        old_pickers = previous.pickers if previous else {}
        self.pickers: dict[tuple[Any, ...], WeightedPicker] = {}
        # Per rule (by identity; rules live as long as this table): live destinations and their picker.
        self.rule_live: dict[int, tuple[list[Destination], WeightedPicker | None]] = {}
        for vs in self.virtual_services:
            for rule in vs.rules:
                live = rule.live_destinations()
                picker = None
                if len(live) > 1:
                    key = (vs.key, rule.index, tuple((d.host, d.subset, d.port, d.weight) for d in live))
                    old_p = old_pickers.get(key)
                    picker = self.pickers[key] = old_p if old_p and old_p.use_random == self.use_random else \
                        WeightedPicker([d.weight for d in live], self.use_random)
                self.rule_live[id(rule)] = (live, picker)
        self._vhost_cache: dict[tuple[str, str], tuple[str, VirtualService | None]] = {}
        self._cluster_cache: dict[tuple[int, int], tuple[str, Cluster | None]] = {}
        self._default_dest: dict[str, Destination] = {}
        self._passthrough_clusters: dict[tuple[str, int], Cluster] = {}
        # meshConfig.outboundTrafficPolicy.mode: ALLOW_ANY (Istio's default) or REGISTRY_ONLY.
        self.allow_any = options.get("outbound_traffic_policy", "ALLOW_ANY") != "REGISTRY_ONLY"

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
        if not any(host_matches(h, host) for h in listener.server_hosts):
            return None
        group = [vs for vs in self.virtual_services
                 if any(g in vs.gateways for g in listener.gateways) and any(host_matches(h, host) for h in vs.hosts)]
        if len(group) <= 1:
            return group[0] if group else None
        # Gateways merge VirtualServices for one host: rules in creation order, catch-all rules moved to the end
        # (istio.io traffic-management best practices; pilot mergeVirtualServicesIfNeeded).
        rules = [r for vs in group for r in vs.rules]
        ordered = [r for r in rules if not is_catch_all(r)] + [r for r in rules if is_catch_all(r)]
        merged = tuple(replace(r, index=i) for i, r in enumerate(ordered))
        first = group[0]
        return VirtualService("+".join(vs.name if vs.namespace == first.namespace else vs.key for vs in group),
                              first.namespace, first.hosts, first.gateways, first.export_to, merged)

    # -- routing ---------------------------------------------------------------------------------------

    def route(self, req: RequestView, listener: Listener, rng: random.Random, now: float = 0.0,
              explain: bool = False, pick_endpoint: bool = True) -> RouteDecision:
        """First matching http rule of the host's VirtualService, then a weighted destination and endpoint."""
        host, vs = self.resolve(listener, req.authority)
        if vs is None:
            if listener.kind == "sidecar" and host not in self.services and self.allow_any:
                return self._passthrough(req, host, pick_endpoint)
            if listener.kind == "gateway" or host not in self.services:
                return RouteDecision(Outcome.NO_ROUTE, host, detail=f"no route for host {host!r}")
            # No VirtualService: default route to the whole Service (all versions), default retry policy.
            dest = self._default_dest.get(host)
            if dest is None:
                dest = self._default_dest[host] = Destination(host, "", None, 100, HeaderOps(), HeaderOps())
            return self._destination(RouteDecision(Outcome.ROUTED, host), req, dest, rng, now, pick_endpoint)
        gateways = listener.gateways if listener.kind == "gateway" else ()
        decision = RouteDecision(Outcome.NO_ROUTE, host, virtual_service=vs)
        for rule in vs.rules:
            if not rule.matches:
                # A rule without match is a catch-all; Istio stops translating after it.
                decision.match_index = None
                return self._apply(decision, rule, req, rng, now, pick_endpoint)
            reasons = []
            for mi, m in enumerate(rule.matches):
                miss = m.mismatch(req, listener.source, gateways)
                if miss is None:
                    decision.match_index = mi
                    return self._apply(decision, rule, req, rng, now, pick_endpoint)
                if explain:
                    reasons.append(f"match[{mi}]: {why(miss)}")
            if explain:
                decision.skipped.append((rule.index, "; ".join(reasons)))
        decision.detail = f"no rule of VirtualService {vs.key} matched"
        return decision

    def _passthrough(self, req: RequestView, host: str, pick_endpoint: bool) -> RouteDecision:
        """Istio's default outboundTrafficPolicy ALLOW_ANY: a host outside the registry goes where it says."""
        port = req.port
        key = (host, port)
        cluster = self._passthrough_clusters.get(key)
        if cluster is None:
            ep = EndpointState(f"{host}:{port}", host, port, "", "", {}, "", "default")
            cluster = Cluster(PASSTHROUGH, host, port, "", ClusterPolicy(), [ep], ClusterCounters())
            if len(self._passthrough_clusters) < 10_000:
                self._passthrough_clusters[key] = cluster
        dest = Destination(host, "", port, 100, HeaderOps(), HeaderOps())
        d = RouteDecision(Outcome.ROUTED, host, destination=dest, cluster=cluster, cluster_name=PASSTHROUGH,
                          detail="outside the mesh registry: PassthroughCluster (outboundTrafficPolicy ALLOW_ANY)")
        if pick_endpoint:
            d.endpoint = cluster.endpoints[0]
        return d

    def _apply(self, d: RouteDecision, rule: Rule, req: RequestView, rng: random.Random, now: float,
               pick_endpoint: bool) -> RouteDecision:
        d.rule = rule
        # Faults apply at the client-side proxy before routing (delay, then abort), independently.
        if rule.delay_percent > 0 and rng.random() * 100 < rule.delay_percent:
            d.delay_s = rule.delay_s
        if rule.abort_percent > 0 and rule.abort_status and rng.random() * 100 < rule.abort_percent:
            d.outcome, d.abort_status = Outcome.FAULT_ABORT, rule.abort_status
            return d
        if rule.redirect is not None:
            d.outcome = Outcome.REDIRECT
            return d
        if rule.direct_response is not None:
            d.outcome = Outcome.DIRECT_RESPONSE
            return d
        entry = self.rule_live.get(id(rule))
        if entry is None:  # a rule from outside this table
            live0 = rule.live_destinations()
            entry = self.rule_live[id(rule)] = (live0, WeightedPicker([x.weight for x in live0], self.use_random)
                                                if len(live0) > 1 else None)
        live, picker = entry
        if not live:
            d.outcome, d.detail = Outcome.NO_ROUTE, "route has no destination with weight > 0"
            return d
        if picker is None:
            dest, share = live[0], 1.0
        else:
            dest = live[picker.pick(rng)]
            share = dest.weight / picker.total
        d.outcome = Outcome.ROUTED
        d.share = share
        return self._destination(d, req, dest, rng, now, pick_endpoint)

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

    def _destination(self, d: RouteDecision, req: RequestView, dest: Destination, rng: random.Random, now: float,
                     pick_endpoint: bool) -> RouteDecision:
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
            if not cluster.healthy(now):
                d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        ep, cookie = cluster.pick(req, rng, now)
        if ep is None:
            d.outcome, d.detail = Outcome.NO_HEALTHY_UPSTREAM, "no healthy upstream"
            return d
        d.endpoint, d.set_cookie = ep, cookie
        return d
