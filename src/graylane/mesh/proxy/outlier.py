"""Outlier detection: consecutive 5xx / gateway errors eject a host for baseEjectionTime x times ejected."""

from __future__ import annotations

from graylane.mesh.routing import Cluster, EndpointState

GATEWAY_ERRORS = frozenset((502, 503, 504))


def record(cluster: Cluster, ep: EndpointState, status: int, now: float) -> bool:
    """Count one result for `ep` (locally originated failures come as 503/504). True when it got ejected."""
    policy = cluster.policy.outlier
    if policy is None:
        return False
    if status >= 500:
        ep.consecutive_5xx += 1
        ep.consecutive_gateway = ep.consecutive_gateway + 1 if status in GATEWAY_ERRORS else 0
    else:
        ep.consecutive_5xx = ep.consecutive_gateway = 0
        return False
    tripped = (policy.consecutive_5xx > 0 and ep.consecutive_5xx >= policy.consecutive_5xx) or (
        policy.consecutive_gateway > 0 and ep.consecutive_gateway >= policy.consecutive_gateway)
    if not tripped or ep.ejected_until > now:
        return False
    ejected = sum(1 for e in cluster.endpoints if e.ejected_until > now)
    # Envoy ejects while the ejected share is below maxEjectionPercent.
    if cluster.endpoints and 100.0 * ejected / len(cluster.endpoints) >= policy.max_ejection_percent:
        return False
    ep.times_ejected += 1
    ep.ejected_until = now + min(policy.base_ejection_s * ep.times_ejected, max(300.0, policy.base_ejection_s))
    ep.consecutive_5xx = ep.consecutive_gateway = 0
    return True
