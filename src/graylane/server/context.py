"""What the control plane's request handlers and background components share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from graylane.events import EventBus


class Component(Protocol):
    """A background part of the control plane (mesh control, runtime, executor, telemetry)."""

    async def stop(self) -> None: ...


@dataclass
class ControlPlane:
    """Held in `app.state.cp`. `store` is a graylane.store.Store; components register by name."""

    store: Any
    bus: EventBus = field(default_factory=EventBus)
    components: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def component(self, name: str) -> Any:
        return self.components.get(name)
