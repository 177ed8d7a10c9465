"""What the local data plane can serve of an EnvoyFilter: Envoy's local_ratelimit only (docs/dataplane.md).

Istio's webhook accepts any patch; the local mesh cannot apply most of them. Writing to the local store
(`local_mesh_admission()`, entered by the store's apply gate) makes each unsupported patch an admission
error naming the field, so `graylane apply` refuses it up front; elsewhere (a Kubernetes account,
`graylane validate`) it is a warning, since a real Istio serves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from graylane.resources.admission_base import Checks, as_map, items_of
from graylane.resources.document import FieldPath, format_path

LOCAL_RATELIMIT = "envoy.filters.http.local_ratelimit"
LOCAL_RATELIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
CONTEXTS = ("SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "ANY")
_DOCS = "the local data plane serves only HTTP_FILTER/HTTP_ROUTE patches for " + LOCAL_RATELIMIT \
        + " (docs/dataplane.md)"

_LOCAL: ContextVar[bool] = ContextVar("graylane_local_mesh_admission", default=False)


@contextlib.contextmanager
def local_mesh_admission() -> Iterator[None]:
    """Inside: documents are bound for the local mesh, and what it cannot serve is an admission error."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def _unsupported(c: Checks, path: FieldPath, message: str) -> None:
    if _LOCAL.get():
        c.error(path, f"{message}; {_DOCS}")
    else:
        c.warn(path, f"{format_path(path)}: {message}; {_DOCS}, so applying it to the local mesh is refused")


def _typed_config(c: Checks, path: FieldPath, value: Any) -> None:
    value = as_map(value)
    if value.get("@type") == TYPED_STRUCT or "type_url" in value:
        if value.get("type_url") != LOCAL_RATELIMIT_TYPE:
            _unsupported(c, (*path, "type_url"), f"typed_config type_url {value.get('type_url')!r} is not supported")
    elif value.get("@type") not in (None, LOCAL_RATELIMIT_TYPE):
        _unsupported(c, (*path, "@type"), f"typed_config @type {value.get('@type')!r} is not supported")


def check_local_envoy_filter(c: Checks, spec: dict[str, Any]) -> None:
    """Each configPatch the local data plane cannot apply, at its field (applyTo, context, filter name, type)."""
    for i, patch in items_of(spec.get("configPatches")):
        patch, path = as_map(patch), ("spec", "configPatches", i)
        apply_to = patch.get("applyTo")
        if not apply_to or patch.get("patch") is None:
            continue  # Istio's own admission message says what is missing
        context = as_map(patch.get("match")).get("context", "ANY")
        if context not in CONTEXTS:
            _unsupported(c, (*path, "match", "context"), f"match.context {context!r} is not supported")
        value = as_map(as_map(patch["patch"]).get("value"))
        vpath = (*path, "patch", "value")
        if apply_to == "HTTP_FILTER":
            if value.get("name") != LOCAL_RATELIMIT:
                _unsupported(c, (*vpath, "name"), f"HTTP filter {value.get('name')!r} is not supported")
            else:
                _typed_config(c, (*vpath, "typed_config"), value.get("typed_config"))
        elif apply_to == "HTTP_ROUTE":
            per_filter = as_map(value.get("typed_per_filter_config"))
            others = sorted(set(per_filter) - {LOCAL_RATELIMIT})
            if others or not per_filter:
                _unsupported(c, (*vpath, "typed_per_filter_config"),
                             f"HTTP_ROUTE patch for filters {others or '(none)'} is not supported")
            else:
                _typed_config(c, (*vpath, "typed_per_filter_config", LOCAL_RATELIMIT), per_filter[LOCAL_RATELIMIT])
        else:
            _unsupported(c, (*path, "applyTo"), f"applyTo {apply_to!r} is not supported")
