"""Checks every document of an apply before the store writes any of them.

Structural checks (apiVersion, kind, metadata.name, names, duplicates) live here; schema and
Istio admission checks are `graylane.resources.validate.check_apply`, called when present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.admission_envoyfilter import local_mesh_admission
from graylane.resources.document import Document, ResourceKey, Source
from graylane.resources.validate import check_apply

# Kubernetes object names: DNS-1123 subdomain; namespaces: DNS-1123 label.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def as_document(doc: Document | dict[str, Any], index: int = 0) -> Document:
    if isinstance(doc, Document):
        return doc
    if not isinstance(doc, dict):
        raise ValidationError("a document must be a mapping with apiVersion and kind", where=f"<api>#{index + 1}")
    return Document(body=doc, source=Source("<api>", 1, index))


def _where(doc: Document) -> str:
    if doc.source.file == "<api>":
        return f"document {doc.source.index + 1}"
    return doc.where()


def check_structure(doc: Document) -> None:
    """What every stored object needs, whatever its kind."""
    body = doc.body
    if not isinstance(body.get("apiVersion"), str) or not body["apiVersion"]:
        raise ValidationError("apiVersion is required", where=_where(doc), hint="e.g. apiVersion: v1")
    if not isinstance(body.get("kind"), str) or not body["kind"]:
        raise ValidationError("kind is required", where=_where(doc), hint="e.g. kind: Service")
    md = body.get("metadata")
    if not isinstance(md, dict):
        raise ValidationError(f"{doc.kind}: metadata is required", where=_where(doc),
                              hint="add metadata.name")
    name = md.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{doc.kind}: metadata.name is required", where=doc.where(("metadata",)))
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise ValidationError(f"{doc.kind} {name!r}: metadata.name must be a lowercase RFC 1123 subdomain",
                              where=doc.where(("metadata", "name")),
                              hint="use lowercase letters, digits, '-' and '.'")
    ns = md.get("namespace")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63 or not _LABEL.match(ns)):
        raise ValidationError(f"{doc.kind} {name}: metadata.namespace {ns!r} is not a valid namespace name",
                              where=doc.where(("metadata", "namespace")),
                              hint="use a lowercase RFC 1123 label")


def check_documents(docs: Sequence[Document]) -> None:
    """Raise ValidationError (naming file:line) for the first problem; writes nothing."""
    seen: dict[ResourceKey, Document] = {}
    for doc in docs:
        check_structure(doc)
        earlier = seen.get(doc.key)
        if earlier is not None:
            raise ValidationError(f"{doc.key} appears twice in one apply (also at {_where(earlier)})",
                                  where=_where(doc), hint="keep one document per object")
        seen[doc.key] = doc
    with local_mesh_admission():  # the store feeds the local mesh: what it cannot serve is refused
        check_apply(list(docs))
