"""The console's one event stream per page: execution events (as the executions API streams them) and
resource changes (kinds and names changed, the store's revision) from the control plane's bus.

Knows the bus and SSE message shapes; graylane.server.ui serves it at /ui/events, console.js listens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from graylane.events import EventBus

PING_S = 15.0


def message(topic: str, data: dict[str, Any]) -> dict[str, str] | None:
    """An SSE message for a bus event, or None for topics pages do not follow.

    >>> message("resource", {"keys": [{"kind": "ConfigMap"}], "revision": 7})
    {'event': 'resource', 'data': '{"keys": [{"kind": "ConfigMap"}], "revision": 7}'}
    """
    if topic == "execution":
        return {"event": str(data.get("kind", "execution")), "data": json.dumps(data, default=str)}
    if topic == "resource":
        return {"event": "resource",
                "data": json.dumps({"keys": data.get("keys", []), "revision": data.get("revision")}, default=str)}
    return None


async def console_events(bus: EventBus,
                         is_disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[dict[str, str]]:
    async with bus.subscribe() as queue:
        while not await is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), timeout=PING_S)
            except TimeoutError:
                yield {"event": "ping", "data": "{}"}
                continue
            out = message(event.topic, event.data)
            if out is not None:
                yield out
