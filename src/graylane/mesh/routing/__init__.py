"""Route one request through a compiled snapshot: host, VirtualService rule, weighted destination, endpoint.

Pure core shared by the data plane and `graylane route`: no sockets, no asyncio, no store. Randomness and
time are parameters. Mutable state here is only what Envoy keeps per route/cluster (round-robin cursors,
active-request counts, outlier ejections) and it lives in small objects the proxy carries across snapshots.

One module per concept: matching (requests, string matches, HTTPMatchRequest, the source), policies (headers,
retries, CORS, load-balancer/pool/outlier settings as data), rules (VirtualService routes), balancing (weighted
picker, endpoint choice, hash ring), rewrites (paths, redirects), table (the route table and its decisions).
This package re-exports their public names, so `from graylane.mesh.routing import X` keeps working.
"""

from graylane.mesh.routing.balancing import Cluster, ClusterCounters, EndpointState, WeightedPicker
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
    HeaderOps,
    LoadBalancer,
    OutlierPolicy,
    PoolPolicy,
    RetryPolicy,
)
from graylane.mesh.routing.rewrites import redirect_location, rewritten_path
from graylane.mesh.routing.rules import Destination, Mirror, Rule, VirtualService, is_catch_all
from graylane.mesh.routing.table import PASSTHROUGH, Listener, Outcome, RouteDecision, RouteTable, Service

__all__ = [
    "DEFAULT_RETRY_CODES", "DEFAULT_RETRY_ON", "PASSTHROUGH", "RING_SIZE", "Cluster", "ClusterCounters",
    "ClusterPolicy", "Cors", "Destination", "EndpointState", "HeaderOps", "Listener", "LoadBalancer", "Match",
    "Mirror", "Miss", "OutlierPolicy", "Outcome", "PoolPolicy", "RequestView", "RetryPolicy", "RouteDecision",
    "RouteTable", "Rule", "Service", "Source", "StringMatch", "VirtualService", "WeightedPicker", "compile_regex",
    "host_matches", "is_catch_all", "redirect_location", "rewritten_path", "split_host_port", "split_path", "why",
]
