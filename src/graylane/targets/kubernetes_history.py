"""A Deployment's rollout history on Kubernetes: its ReplicaSets' revisions, as `kubectl rollout undo` reads them.

Each ReplicaSet a Deployment owns carries `deployment.kubernetes.io/revision`; its pod template (without the
`pod-template-hash` label the controller adds) is the Deployment's template at that revision. Other kinds keep
no history on a cluster: `HistoryUnsupported` says so, naming the account.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from graylane.errors import NotFound
from graylane.resources.document import ResourceKey
from graylane.targets.base import HistoryUnsupported, ManifestRevision

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


class _Reader(Protocol):
    account: str

    async def get(self, key: ResourceKey) -> dict[str, Any] | None: ...

    async def list(self, kind: str, namespace: str | None = None,
                   group: str | None = None) -> list[dict[str, Any]]: ...


def _owned_by(rs: dict[str, Any], deployment: dict[str, Any]) -> bool:
    uid = (deployment.get("metadata") or {}).get("uid")
    name = (deployment.get("metadata") or {}).get("name")
    for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Deployment" and (ref.get("uid") == uid if uid and ref.get("uid") else
                                                ref.get("name") == name):
            return True
    return False


def _revision(rs: dict[str, Any]) -> int | None:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {})[REVISION])
    except (KeyError, TypeError, ValueError):
        return None


async def rollout_history(target: _Reader, key: ResourceKey) -> list[ManifestRevision]:
    """The Deployment as it was at each ReplicaSet revision, oldest first (the newest is the current one)."""
    if key.kind != "Deployment":
        raise HistoryUnsupported(f"account {target.account!r} (Kubernetes): {key.kind} {key.namespace}/{key.name} "
                                 "has no rollout history; only a Deployment's ReplicaSets keep one",
                                 hint="undoRolloutManifest on Kubernetes works on Deployments")
    current = await target.get(key)
    if current is None:
        raise NotFound(f"{key} does not exist in account {target.account!r}")
    revisions: list[ManifestRevision] = []
    for rs in await target.list("ReplicaSet", key.namespace, "apps"):
        number = _revision(rs)
        if number is None or not _owned_by(rs, current):
            continue
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        labels = (template.get("metadata") or {}).get("labels")
        if isinstance(labels, dict):
            labels.pop(HASH_LABEL, None)
        body = copy.deepcopy(current)
        body.setdefault("spec", {})["template"] = template
        revisions.append(ManifestRevision(number, body))
    return sorted(revisions, key=lambda r: r.revision)
