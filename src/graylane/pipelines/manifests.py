"""Manifests for the manifest stages: documents from stage text or artifacts, and `"<kind> <name>"` selectors."""

from __future__ import annotations

from typing import Any

from graylane.errors import ValidationError
from graylane.resources.document import Document, ResourceKey, Source
from graylane.resources.load import load_text


def documents_from(manifests: Any, where: str) -> list[Document]:
    """Stage `manifests` (list of maps, or YAML/JSON text) as Documents; errors name the stage and index."""
    if isinstance(manifests, str):
        return load_text(manifests, file=where)
    if isinstance(manifests, dict):
        manifests = [manifests]
    if not isinstance(manifests, list) or not manifests:
        raise ValidationError("No text manifest was specified.", where=where,
                              hint="set `manifests` (a list) or `manifest` (one object)")
    docs: list[Document] = []
    for i, body in enumerate(manifests):
        if isinstance(body, str):
            docs += load_text(body, file=f"{where} manifests[{i}]")
            continue
        if not isinstance(body, dict):
            raise ValidationError(f"manifests[{i}] must be an object", where=where)
        missing = [f for f in ("apiVersion", "kind") if not body.get(f)]
        if not (body.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise ValidationError(f"manifests[{i}] ({body.get('kind') or '?'}) has no {', '.join(missing)}",
                                  where=where)
        docs.append(Document(body=body, source=Source(f"{where} manifests[{i}]", 1, i)))
    return docs


def key_for(manifest_name: str, location: str | None, where: str) -> ResourceKey:
    """`deployment reviews-v2` in `default` -> ResourceKey('apps', 'Deployment', 'default', 'reviews-v2')."""
    from graylane.resources.kinds import resolve_kind

    parts = str(manifest_name or "").split()
    if len(parts) != 2:
        raise ValidationError(f"manifestName {manifest_name!r} must be '<kind> <name>', e.g. 'deployment reviews-v2'",
                              where=where)
    info = resolve_kind(parts[0])
    namespace = (location or "default") if info.namespaced else ""
    return ResourceKey(info.group, info.kind, namespace, parts[1])


def names_by_namespace(keys: list[ResourceKey]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(key.namespace, []).append(f"{key.kind.lower()} {key.name}")
    return out
