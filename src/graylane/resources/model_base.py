"""Base classes for resource models: strict Istio/Graylane specs, lenient Kubernetes core specs.

Istio's CRD schemas (and our own kinds) reject unknown fields and wrong types, so their models
forbid extras; Kubernetes core kinds accept many fields Graylane never reads, so theirs allow them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class StrictSpec(BaseModel):
    """A CRD-schema object: camelCase keys as in YAML, unknown fields rejected, no type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, frozen=True)


class LenientSpec(BaseModel):
    """A Kubernetes core object: the fields Graylane acts on are typed; other fields are kept."""

    model_config = ConfigDict(extra="allow", strict=True, alias_generator=to_camel, frozen=True)


class ObjectMeta(LenientSpec):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Resource(BaseModel):
    """Envelope common to every kind: apiVersion, kind, metadata; subclasses type `spec`."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, frozen=True)

    api_version: str
    kind: str
    metadata: ObjectMeta
    status: Any = None
