"""Which Target serves an account: `local` is the embedded mesh; others come from graylane.targets.accounts."""

from __future__ import annotations

import inspect
from typing import Any

from graylane.targets import accounts
from graylane.targets.base import Target

DEFAULT_ACCOUNT = "local"


class TargetRegistry:
    """Resolve a stage's `account` (+ namespaceOverride) to a Target; cached per account and namespace."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._cache: dict[tuple[str, str | None], Target] = {}

    async def get(self, account: str | None, namespace: str | None = None) -> Target:
        name = account or DEFAULT_ACCOUNT
        key = (name, namespace if name != DEFAULT_ACCOUNT else None)
        if key not in self._cache:
            self._cache[key] = await self._build(name, namespace)
        return self._cache[key]

    async def _build(self, name: str, namespace: str | None) -> Target:
        target = accounts.get_target(name, self.cp, namespace=namespace)
        built: Target = await target if inspect.isawaitable(target) else target
        return built


def targets_for(cp: Any) -> TargetRegistry:
    reg = cp.settings.get("pipelines.targets")
    if reg is None:
        reg = cp.settings["pipelines.targets"] = TargetRegistry(cp)
    return reg


async def get_target(cp: Any, account: str | None, namespace: str | None = None) -> Any:
    return await targets_for(cp).get(account, namespace)
