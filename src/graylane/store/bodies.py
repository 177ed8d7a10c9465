"""Resource bodies as the store keeps them: server-set metadata, spec comparison, YAML diffs.

Pure functions over dicts; no SQL.
"""

from __future__ import annotations

import copy
import difflib
from datetime import UTC, datetime
from typing import Any

import yaml

from graylane.resources.document import ResourceKey

# Metadata the server owns (Kubernetes ObjectMeta); what a user sends there is ignored or checked.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
# Top-level fields that are not part of the spec for the purpose of `metadata.generation`
# (Kubernetes bumps generation on any change outside metadata and status).
NON_SPEC_FIELDS = ("apiVersion", "kind", "metadata", "status")


def rfc3339(ts: datetime) -> str:
    """Kubernetes' timestamp format: `2026-11-25T18:42:00Z`."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_view(body: dict[str, Any]) -> dict[str, Any]:
    """The body without server-set metadata: what a user writes, and what diffs compare."""
    out = copy.deepcopy(body)
    md = out.get("metadata")
    if isinstance(md, dict):
        for field in SERVER_METADATA:
            md.pop(field, None)
    return out


def spec_part(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in NON_SPEC_FIELDS}


def with_server_metadata(body: dict[str, Any], *, uid: str, resource_version: int, generation: int,
                         created: datetime) -> dict[str, Any]:
    out = dict(body)  # shallow: only metadata changes, and nested values are never mutated after this
    md = out["metadata"] = dict(out.get("metadata") or {})
    md["uid"] = uid
    md["resourceVersion"] = str(resource_version)
    md["generation"] = generation
    md["creationTimestamp"] = rfc3339(created)
    return out


_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter is ~20x faster


def to_yaml(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def unified_diff(before: dict[str, Any] | None, after: dict[str, Any] | None, key: ResourceKey,
                 before_label: str = "live", after_label: str = "applied") -> str:
    """A unified diff of two user views, as `kubectl diff` prints it; empty when equal."""
    a = to_yaml(user_view(before) if before else None).splitlines(keepends=True)
    b = to_yaml(user_view(after) if after else None).splitlines(keepends=True)
    name = f"{key.kind}/{key.namespace + '/' if key.namespace else ''}{key.name}"
    return "".join(difflib.unified_diff(a, b, f"{before_label}/{name}", f"{after_label}/{name}"))
