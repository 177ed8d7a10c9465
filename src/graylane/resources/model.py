"""Typed access to documents: schema-check a Document against its kind's pydantic model, or parse it.

Schema problems come back as (field path, message) pairs so callers can point at file:line; kinds
Graylane does not model have no schema here (they are kept as written).
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from pydantic import BaseModel

from graylane.errors import ValidationError
from graylane.resources.document import Document, FieldPath, format_path
from graylane.resources.kinds import KindInfo, kind_info

_TYPE_WORDS = {
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "string_type": "must be a string", "bool_type": "must be a boolean", "bool_parsing": "must be a boolean",
    "list_type": "must be a list", "dict_type": "must be a map", "model_type": "must be an object",
    "model_attributes_type": "must be an object", "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}

# RFC 1123 subdomain, the rule for most Kubernetes object names.
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        text = f"must be one of {expected}"
    elif kind == "value_error":
        text = str(error["msg"]).removeprefix("Value error, ")
    else:
        text = _TYPE_WORDS.get(kind, str(error["msg"]))
    if kind not in ("missing", "extra_forbidden"):
        got = error.get("input")
        if isinstance(got, str | int | float | bool) or got is None:
            text += f" (got {got!r})"
    return text


def _envelope_problems(doc: Document) -> list[tuple[FieldPath, str]]:
    problems: list[tuple[FieldPath, str]] = []
    if "apiVersion" not in doc.body and "kind" not in doc.body:
        return [((), "not a Kubernetes resource: apiVersion and kind are missing")]
    for key in ("apiVersion", "kind"):
        value = doc.body.get(key)
        if not isinstance(value, str) or not value:
            problems.append(((key,), "required field is missing" if value is None else "must be a non-empty string"))
    metadata = doc.body.get("metadata")
    if not isinstance(metadata, dict):
        problems.append((("metadata",), "required field is missing" if metadata is None else "must be a map"))
    else:
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            problems.append((("metadata", "name"), "required field is missing"))
        elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            problems.append((("metadata", "name"), f"invalid name {name!r}: a lowercase RFC 1123 subdomain must "
                             "consist of lower case alphanumeric characters, '-' or '.', and must start and end "
                             "with an alphanumeric character"))
        ns = metadata.get("namespace")
        if ns is not None and (not isinstance(ns, str) or not _DNS1123_SUBDOMAIN.match(ns) or "." in ns):
            problems.append((("metadata", "namespace"), f"invalid namespace {ns!r}: must be a lowercase RFC 1123 "
                             "label"))
    return problems


def version_problem(doc: Document, info: KindInfo) -> str | None:
    if doc.api_version not in info.api_versions:
        return (f'no matches for kind "{doc.kind}" in version "{doc.api_version}" '
                f"(served versions: {', '.join(info.api_versions)})")
    return None


def schema_problems(doc: Document) -> list[tuple[FieldPath, str]]:
    """Every schema problem of `doc` (envelope, apiVersion, fields), as (path, message); [] when valid."""
    problems = _envelope_problems(doc)
    if problems:
        return problems
    info = kind_info(doc.group, doc.kind)
    if info is None:
        return []
    bad_version = version_problem(doc, info)
    if bad_version:
        return [(("apiVersion",), bad_version)]
    if info.model is None:
        return []
    try:
        info.model.model_validate(doc.body)
    except pydantic.ValidationError as exc:
        return [(tuple(e["loc"]), _describe(e)) for e in exc.errors()]
    return []


def parse(doc: Document) -> BaseModel | None:
    """The typed model of `doc` (VirtualService, Deployment, ...), or None for kinds Graylane does not model.

    Raises ValidationError naming file:line and field for an invalid document.
    """
    info = kind_info(doc.group, doc.kind)
    if info is None or info.model is None:
        return None
    problems = schema_problems(doc)
    if problems:
        path, message = problems[0]
        raise ValidationError(f"{doc.key}: {format_path(path)}: {message}", where=doc.where(path))
    return info.model.model_validate(doc.body)
