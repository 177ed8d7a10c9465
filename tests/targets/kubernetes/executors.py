"""A pipeline executor for tests that drive Kubernetes accounts: SQLite tables, targets from the accounts file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from graylane.pipelines.executor import Executor
from graylane.pipelines.services import TaskServices
from graylane.pipelines.tables import metadata
from graylane.targets import accounts


class ControlPlane:
    """What `accounts.get_target` caches its connections in."""

    settings: dict[str, Any]

    def __init__(self) -> None:
        self.settings = {}


@dataclass
class Pipelines:
    """The pipelines' engine and a started executor whose tasks reach every account in the accounts file."""

    engine: sa.Engine
    ex: Executor
    cp: ControlPlane

    async def close(self) -> None:
        """Stop the executor, close the cluster connections the targets opened, release the database."""
        await self.ex.stop()
        for target in self.cp.settings.get("kubernetes_targets", {}).values():
            await target.close()
        self.engine.dispose()


async def started_executor(tmp_path: Path) -> Pipelines:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pipelines.db'}")
    metadata.create_all(engine)
    cp = ControlPlane()

    async def get_target(account: str | None, namespace: str | None) -> Any:
        return accounts.get_target(account or "local", cp, namespace=namespace)

    ex = Executor(engine, services=TaskServices(get_target=get_target))
    await ex.start()
    return Pipelines(engine, ex, cp)
