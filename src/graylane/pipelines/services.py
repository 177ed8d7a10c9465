"""What tasks may use to reach the world, each as a narrow interface: the deployment target of an account,
child pipelines (and other executions' results), artifacts, expression evaluation, analysis sources.
Passed in, never global; never the scheduler and never the store.

The control plane builds the real ones (pipelines/component.py); tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from graylane.errors import GraylaneError
from graylane.pipelines.artifacts import ArtifactFetcher
from graylane.pipelines.evaluation import Evaluated
from graylane.pipelines.execution import Execution
from graylane.pipelines.status import ExecutionStatus
from graylane.targets.base import Target

TargetLookup = Callable[[str | None, str | None], Awaitable[Target]]


class ChildPipelines(Protocol):
    """Executions other than the task's own: start and follow a child pipeline, read another's results."""

    def exists(self, execution_id: str) -> bool: ...

    def get(self, execution_id: str) -> Execution: ...

    def config_id(self, ref: str, application: str | None) -> str:
        """The id of a pipeline config given its id or name; NotFound when there is none."""
        ...

    def recent(self, config_id: str, statuses: list[ExecutionStatus], limit: int) -> list[dict[str, Any]]:
        """Execution headers of a pipeline config in those statuses, newest first."""
        ...

    async def start(self, ref: str, application: str | None, *, parameters: dict[str, Any],
                    parent: dict[str, Any], parent_stage_id: str, user: str, execution_id: str) -> Execution:
        """Start the pipeline `ref` as a child (trigger type `pipeline`) under a fixed execution id."""
        ...

    async def cancel(self, execution_id: str, *, user: str, reason: str) -> None: ...


class Artifacts(Protocol):
    async def fetch_text(self, artifact: dict[str, Any]) -> str:
        """The text of a bound artifact (credentials for private repositories are the service's business)."""
        ...


class Expressions(Protocol):
    """`${...}` evaluation against an execution (with `#pipelineId` resolved against the stored pipelines)."""

    def templated(self, value: Any, execution: dict[str, Any], stage_id: str | None,
                  user: str | None = None) -> Evaluated: ...

    def expression(self, text: str, execution: dict[str, Any], stage_id: str | None,
                   user: str | None = None) -> Any: ...


class Analysis(Protocol):
    """What analysis stages (kayentaCanary, analysis) need beyond the target: an account's metric providers."""

    def providers(self, account: str) -> Any:
        """The metric providers of an account (graylane.analysis.canary_run.Providers)."""
        ...


@dataclass(frozen=True)
class TaskServices:
    """The services a task sees as `stage.services`. The executor fills `children` and `expressions`."""

    get_target: TargetLookup | None = None
    artifacts: Artifacts | None = None
    children: ChildPipelines | None = None
    expressions: Expressions | None = None
    analysis: Analysis | None = None

    async def target(self, account: str | None, namespace: str | None = None) -> Target:
        if self.get_target is None:
            raise GraylaneError("no deployment targets are configured in this control plane")
        return await self.get_target(account, namespace)

    def child_pipelines(self) -> ChildPipelines:
        if self.children is None:
            raise GraylaneError("this control plane runs no child pipelines")
        return self.children

    def analysis_sources(self) -> Analysis:
        if self.analysis is None:
            raise GraylaneError("this control plane offers no canary analysis (no metric providers)")
        return self.analysis

    def evaluator(self) -> Expressions:
        if self.expressions is None:
            raise GraylaneError("no expression evaluator in this control plane")
        return self.expressions

    async def fetch_artifact(self, artifact: dict[str, Any]) -> str:
        if self.artifacts is None:
            return await ArtifactFetcher().fetch_text(artifact)  # no account credentials
        return await self.artifacts.fetch_text(artifact)
