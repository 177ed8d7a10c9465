"""Route one request through a decoded snapshot: host, VirtualService rule, weighted destination, endpoint.

Pure decisions shared by the data plane and `graylane route`: no sockets, no asyncio, no store, no dicts from the
wire (`graylane.mesh.snapshot` decodes those) and no counters. Randomness, time and the caller's balancer state
(endpoint health, in-flight requests, split progress: `BalancerState`) are parameters.

One module per concept: matching (requests, string matches, HTTPMatchRequest, the source), policies (headers,
retries, CORS, load-balancer/pool/outlier/rate-limit settings as data), rules (VirtualService routes, faults,
rewrites, redirects as data), balancing (weighted picks, endpoint choice, hash ring), rewrites (paths, redirect
locations), table (the route table and its decisions). This package re-exports their public names.
"""

# ruff: noqa: E402  # the submodules are imported after the compiled build is put on the path
from graylane.mesh import native as _native

_native.activate(__name__, __path__)  # the compiled modules when current (graylane.mesh.native)

from graylane.mesh.routing.balancing import (
    BalancerState,
    Cluster,
    ClusterEndpoint,
    hash_ring,
    pfair_pick,
    random_pick,
)
from graylane.mesh.routing.matching import (
    Match,
    Miss,
    RequestView,
    Source,
    StringMatch,
    compile_regex,
    host_matches,
    split_host_port,
    split_path,
    why,
)
from graylane.mesh.routing.policies import (
    DEFAULT_RETRY_CODES,
    DEFAULT_RETRY_ON,
    RING_SIZE,
    ClusterPolicy,
    Cors,
    HashCookie,
    HeaderOps,
    InboundRateLimit,
    LoadBalancer,
    OutlierPolicy,
    PoolPolicy,
    RateLimit,
    RetryPolicy,
    StickyPolicy,
)
from graylane.mesh.routing.rewrites import redirect_location, rewritten_path
from graylane.mesh.routing.rules import (
    Destination,
    DirectResponse,
    Fault,
    Mirror,
    Redirect,
    Rewrite,
    Rule,
    VirtualService,
    is_catch_all,
)
from graylane.mesh.routing.sticky import StickyChoice, sticky_choice
from graylane.mesh.routing.table import (
    PASSTHROUGH,
    ROUTED,
    Listener,
    Outcome,
    RouteDecision,
    RouteTable,
    RoutingSnapshot,
    Service,
)

__all__ = [
    "BalancerState", "Cluster", "ClusterEndpoint", "ClusterPolicy", "Cors", "DEFAULT_RETRY_CODES", "DEFAULT_RETRY_ON",
    "Destination", "DirectResponse", "Fault", "HashCookie", "HeaderOps", "InboundRateLimit", "Listener", "LoadBalancer",
    "Match", "Mirror", "Miss", "Outcome", "OutlierPolicy", "PASSTHROUGH", "PoolPolicy", "RING_SIZE", "ROUTED",
    "RateLimit", "Redirect", "RequestView", "RetryPolicy", "Rewrite", "RouteDecision", "RouteTable", "RoutingSnapshot",
    "Rule", "Service", "Source", "StickyChoice", "StickyPolicy", "StringMatch", "VirtualService", "compile_regex",
    "hash_ring", "host_matches", "is_catch_all", "pfair_pick", "random_pick", "redirect_location", "rewritten_path",
    "split_host_port", "split_path", "sticky_choice", "why",
]
