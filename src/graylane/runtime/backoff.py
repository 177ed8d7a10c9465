"""CrashLoopBackOff: how long a crashed container waits before its next start (kubelet's policy).

The first restart is immediate; each further crash while backed off doubles the wait from 10 s up
to a 5 min cap; a container that ran `reset_after_s` without crashing starts again from zero.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 10.0
    cap_s: float = 300.0
    reset_after_s: float = 600.0

    def delay_s(self, consecutive_crashes: int) -> float:
        """Wait before restart number `consecutive_crashes` (1-based) of a crash loop.

        >>> [BackoffPolicy().delay_s(n) for n in (1, 2, 3, 4, 7, 8)]
        [0.0, 10.0, 20.0, 40.0, 300.0, 300.0]
        """
        if consecutive_crashes <= 1:
            return 0.0
        return min(self.cap_s, self.initial_s * 2 ** (consecutive_crashes - 2))

    def next_crash_count(self, previous: int, ran_s: float) -> int:
        """Consecutive-crash counter after a container that ran `ran_s` seconds exits."""
        return 1 if ran_s >= self.reset_after_s else previous + 1
