"""The fault layer: HTTPFaultInjection decided and applied in one place, after the route is chosen and before
anything is balanced or sent (Envoy's fault filter sits before the router).

A delay (`DI`) is slept here; an abort (`FI`, body `fault filter abort`) is answered here. `roll` is the decision
alone, shared with `graylane route`. Knows a rule's `Fault` and a random source; nothing else.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from graylane.mesh.proxy.errors import FaultAbort
from graylane.mesh.proxy.telemetry import Ctx
from graylane.mesh.routing import Fault


@dataclass(frozen=True, slots=True)
class FaultRoll:
    """What the fault filter does to one request: sleep `delay_s`, then answer `abort_status` (0: pass on)."""

    delay_s: float = 0.0
    abort_status: int = 0


NO_FAULT = FaultRoll()


def roll(fault: Fault | None, rng: random.Random) -> FaultRoll:
    """Delay and abort are drawn independently, each with its own percentage (delay first, as Envoy does)."""
    if fault is None:
        return NO_FAULT
    delay = fault.delay_s if fault.delay_percent > 0 and rng.random() * 100 < fault.delay_percent else 0.0
    abort = fault.abort_status if fault.abort_percent > 0 and fault.abort_status and \
        rng.random() * 100 < fault.abort_percent else 0
    return FaultRoll(delay, abort) if delay or abort else NO_FAULT


class Faults:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    async def apply(self, rule_fault: Fault, ctx: Ctx) -> None:
        """Sleep the delay (flag DI), then raise `FaultAbort` for an abort (flag FI, set where it is answered)."""
        fault = roll(rule_fault, self.rng)
        if fault.delay_s:
            ctx.flags.append("DI")
            await asyncio.sleep(fault.delay_s)
        if fault.abort_status:
            raise FaultAbort(fault.abort_status, rule_fault.abort_grpc)
