"""The timeout layer: the route's request timeout (or `x-envoy-upstream-rq-timeout-ms`) as a deadline over every
try, and `perTryTimeout` per try, each with its own error (`UpstreamTimeout`, `PerTryTimeout`: 504 UT).

Covers the wait for response headers, as Envoy's route timeout does. Knows a loop clock and the numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from graylane.mesh.proxy.errors import PerTryTimeout, UpstreamTimeout

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Deadline:
    """When the whole request must have its response headers (`at`, loop time; None: no limit) and per try."""

    at: float | None
    per_try_s: float | None

    @classmethod
    def start(cls, clock: Callable[[], float], route_timeout_s: float | None, header_ms: str | None,
              per_try_s: float | None) -> Deadline:
        """`header_ms` is the request's `x-envoy-upstream-rq-timeout-ms` (it replaces the route's; 0 disables).
        `clock` (the loop's) is read only when there is a deadline: the common route has none."""
        if header_ms is None and not route_timeout_s and per_try_s is None:
            return NO_DEADLINE
        timeout_s = route_timeout_s
        if header_ms and header_ms.isdigit():
            timeout_s = int(header_ms) / 1000 or None
        if not timeout_s and per_try_s is None:
            return NO_DEADLINE
        return cls(clock() + timeout_s if timeout_s else None, per_try_s)

    def limit(self, now: float) -> tuple[float | None, bool]:
        """(seconds this try may take, whether the per-try timeout is the tighter one)."""
        left = self.at - now if self.at is not None else None
        if self.per_try_s is not None and (left is None or self.per_try_s < left):
            return self.per_try_s, True
        return left, False

    def clamp(self, delay_s: float, now: float) -> float:
        """A backoff that ends before the deadline does."""
        return delay_s if self.at is None else max(0.0, min(delay_s, self.at - now - 0.001))


NO_DEADLINE: Final = Deadline(None, None)


async def within(deadline: Deadline, now: float, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run one try under the tighter of the two limits (a cancelled try closes what it opened)."""
    limit, is_per_try = deadline.limit(now)
    if limit is None:
        return await attempt()
    try:
        async with asyncio.timeout(limit):
            return await attempt()
    except TimeoutError:
        raise (PerTryTimeout if is_per_try else UpstreamTimeout)(what) from None
