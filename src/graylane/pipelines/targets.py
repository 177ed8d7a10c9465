"""Which Target serves an account: `local` is the embedded mesh; others come from graylane.targets.accounts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

DEFAULT_ACCOUNT = "local"


class TargetRegistry:
    """Resolve a stage's `account` (+ namespaceOverride) to a Target; cached per account and namespace."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._cache: dict[tuple[str, str | None], Any] = {}

    async def get(self, account: str | None, namespace: str | None = None) -> Any:
        name = account or DEFAULT_ACCOUNT
        key = (name, namespace if name != DEFAULT_ACCOUNT else None)
        if key not in self._cache:
            self._cache[key] = await self._build(name, namespace)
        return self._cache[key]

    async def _build(self, name: str, namespace: str | None) -> Any:
        try:
            accounts = importlib.import_module("graylane.targets.accounts")
        except ModuleNotFoundError:
            accounts = None
        if accounts is not None and hasattr(accounts, "get_target"):
            target = accounts.get_target(name, self.cp, namespace=namespace)
            return await target if inspect.isawaitable(target) else target
        from graylane.targets.local import LocalTarget

        return LocalTarget(self.cp.store, runtime=self.cp.component("runtime"), mesh=self.cp.component("mesh"))


def targets_for(cp: Any) -> TargetRegistry:
    reg = cp.settings.get("pipelines.targets")
    if reg is None:
        reg = cp.settings["pipelines.targets"] = TargetRegistry(cp)
    return reg


async def get_target(cp: Any, account: str | None, namespace: str | None = None) -> Any:
    return await targets_for(cp).get(account, namespace)
