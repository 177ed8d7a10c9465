"""What tasks may use to reach the world: targets, child pipelines, artifacts, HTTP. Passed in, never global."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graylane.pipelines.executor import Executor


@dataclass
class TaskServices:
    get_target: Callable[[str | None, str | None], Awaitable[Any]] | None = None
    store: Any = None  # graylane.store.Store (read-only use: history for undoRollout)
    executor: Executor | None = None
    artifacts: Any = None  # graylane.pipelines.artifacts.ArtifactResolver
    pipeline_lookup: Callable[[str, str | None], str | None] | None = None  # for #pipelineId
    extra: dict[str, Any] = field(default_factory=dict)

    async def target(self, account: str | None, namespace: str | None = None) -> Any:
        if self.get_target is None:
            from graylane.errors import GraylaneError

            raise GraylaneError("no deployment targets are configured in this control plane")
        return await self.get_target(account, namespace)
