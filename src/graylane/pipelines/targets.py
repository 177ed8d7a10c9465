"""Which Target serves an account: `local` is the embedded mesh; others come from graylane.targets.accounts."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from graylane.errors import NotFound

DEFAULT_ACCOUNT = "local"


class TargetRegistry:
    """Resolve accounts to Targets for the stages; one LocalTarget per control plane, built on first use."""

    def __init__(self, cp: Any) -> None:
        self.cp = cp
        self._local: Any = None

    def local(self) -> Any:
        if self._local is None:
            from graylane.targets.local import LocalTarget

            self._local = LocalTarget(self.cp.store, runtime=self.cp.component("runtime"),
                                      mesh=self.cp.component("mesh"))
        return self._local

    async def get(self, account: str | None) -> Any:
        name = account or DEFAULT_ACCOUNT
        if name == DEFAULT_ACCOUNT:
            return self.local()
        try:
            accounts = importlib.import_module("graylane.targets.accounts")
        except ModuleNotFoundError:
            accounts = None
        if accounts is not None:
            for fn_name in ("get_target", "target_for", "resolve"):
                fn = getattr(accounts, fn_name, None)
                if fn is None:
                    continue
                target = fn(self.cp, name) if len(inspect.signature(fn).parameters) >= 2 else fn(name)
                if inspect.isawaitable(target):
                    target = await target
                if target is not None:
                    return target
        raise NotFound(f"no account {name!r}", hint="use account `local`, or add one with `graylane account add`")


def targets_for(cp: Any) -> TargetRegistry:
    reg = cp.settings.get("pipelines.targets") if hasattr(cp, "settings") else None
    if reg is None:
        reg = TargetRegistry(cp)
        if hasattr(cp, "settings"):
            cp.settings["pipelines.targets"] = reg
    return reg


async def get_target(cp: Any, account: str | None) -> Any:
    return await targets_for(cp).get(account)
