"""Secret values are never shown: the one redaction every read path uses (API, CLI, console, history, diffs).

A Secret's `data` and `stringData` keep their keys with each value replaced by `<redacted>`; the
`kubectl.kubernetes.io/last-applied-configuration` annotation (a copy of the whole applied Secret) is redacted too.
A diff of two Secrets marks a changed value `<redacted: changed>` so a change stays visible without its value.
Only the mesh compiler reads the values (to build gateway TLS contexts), from the store directly.
"""

from __future__ import annotations

from typing import Any

SECRET_KINDS = frozenset({"Secret"})
REDACTED = "<redacted>"
CHANGED = "<redacted: changed>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
VALUE_FIELDS = ("data", "stringData")


def is_secret(body: Any) -> bool:
    return isinstance(body, dict) and body.get("kind") in SECRET_KINDS


def redact(body: dict[str, Any], marker: str = REDACTED, changed: frozenset[tuple[str, str]] = frozenset()) -> dict[
        str, Any]:
    """`body` with Secret values replaced (keys kept); any other kind unchanged (the same object)."""
    if not is_secret(body):
        return body
    out = dict(body)
    for field in VALUE_FIELDS:
        if isinstance(out.get(field), dict):
            out[field] = {k: (CHANGED if (field, k) in changed else marker) for k in out[field]}
        elif out.get(field) is not None:
            out[field] = marker
    meta = out.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict) and LAST_APPLIED in meta["annotations"]:
        out["metadata"] = {**meta, "annotations": {**meta["annotations"], LAST_APPLIED: marker}}
    return out


def redact_pair(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[
        dict[str, Any] | None, dict[str, Any] | None]:
    """Both sides of a diff redacted; values that differ between them read `<redacted: changed>` on the new side."""
    if not is_secret(before) and not is_secret(after):
        return before, after
    changed: set[tuple[str, str]] = set()
    if before is not None and after is not None:
        for field in VALUE_FIELDS:
            old, new = before.get(field), after.get(field)
            if isinstance(new, dict):
                old_map = old if isinstance(old, dict) else {}
                changed |= {(field, k) for k, v in new.items() if k in old_map and old_map[k] != v}
    return (redact(before) if before is not None else None,
            redact(after, changed=frozenset(changed)) if after is not None else None)
