"""Request health as Kiali judges it by default (Kiali's `health_config.rate` tolerances)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HEALTHY, DEGRADED, FAILURE, NA = "Healthy", "Degraded", "Failure", "NA"
_ORDER = {NA: 0, HEALTHY: 1, DEGRADED: 2, FAILURE: 3}


@dataclass(frozen=True)
class Tolerance:
    code_class: str  # "5xx" or "4xx"
    degraded: float  # percent; an error rate above this is Degraded
    failure: float  # percent; an error rate at or above this is Failure


# Kiali defaults: HTTP 5xx degraded 0 / failure 10; HTTP 4xx degraded 10 / failure 20.
DEFAULT_TOLERANCES = (Tolerance("5xx", 0.0, 10.0), Tolerance("4xx", 10.0, 20.0))


def error_rates(by_code: Mapping[str, float]) -> dict[str, float]:
    """Percent of requests per code class (`5xx`, `4xx`) from a {response_code: count-or-rate} map."""
    total = sum(by_code.values())
    out = {"5xx": 0.0, "4xx": 0.0}
    if total <= 0:
        return out
    for code, value in by_code.items():
        if code[:1] == "5":
            out["5xx"] += value
        elif code[:1] == "4":
            out["4xx"] += value
    return {k: 100.0 * v / total for k, v in out.items()}


def health_of(by_code: Mapping[str, float], tolerances: tuple[Tolerance, ...] = DEFAULT_TOLERANCES) -> str:
    """NA without traffic; else the worst status any code class reaches."""
    if sum(by_code.values()) <= 0:
        return NA
    rates = error_rates(by_code)
    status = HEALTHY
    for tol in tolerances:
        rate = rates.get(tol.code_class, 0.0)
        if rate >= tol.failure and rate > 0:
            status = worst(status, FAILURE)
        elif rate > tol.degraded:
            status = worst(status, DEGRADED)
    return status


def worst(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b
