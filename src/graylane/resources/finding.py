"""Finding: one validation or analysis result (severity, code, message, resource, field), as istioctl prints it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from graylane.resources.document import Document, FieldPath, format_path


class Severity(enum.StrEnum):
    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"


# Files of documents that came from the store rather than from the user's input, and of API bodies.
STORE_SOURCE = "<store>"
API_SOURCE = "<api>"


@dataclass(frozen=True)
class Finding:
    """`Error [IST0101] (VirtualService default/reviews vs.yaml:14) Referenced host+subset ... "reviews+v4"`."""

    severity: Severity
    code: str | None
    message: str
    doc: Document | None = None
    path: FieldPath = ()
    detail: str | None = None  # the bare admission message, without the code's template around it
    # Which istioctl analyzer this finding mirrors (`virtualservice.GatewayAnalyzer`, ...), for conformance checks.
    analyzer: str | None = None

    @property
    def where(self) -> str | None:
        if self.doc is None or self.doc.source.file == STORE_SOURCE:
            return None
        if self.doc.source.file == API_SOURCE:  # a body posted to the API: no file, say which document
            return f"document {self.doc.source.index + 1}"
        return self.doc.where(self.path)

    @property
    def resource(self) -> str | None:
        if self.doc is None or not self.doc.kind:
            return None
        return str(self.doc.key)

    def __str__(self) -> str:
        head = f"{self.severity}"
        if self.code:
            head += f" [{self.code}]"
        origin = " ".join(p for p in (self.resource, self.where) if p)
        if origin:
            head += f" ({origin})"
        return f"{head} {self.message}"

    def plain(self) -> str:
        """`vs.yaml:14: spec.http[0].route[0].weight: weight -1 < 0`, for one-line error reports."""
        parts = [p for p in (self.where, format_path(self.path)) if p]
        return ": ".join([*parts, self.detail or self.message])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": str(self.severity), "code": self.code, "message": self.message,
                               "path": format_path(self.path) or None}
        if self.doc is not None:
            key = self.doc.key
            out["resource"] = {"group": key.group, "kind": key.kind, "namespace": key.namespace or None,
                               "name": key.name}
            if self.doc.source.file not in (STORE_SOURCE, API_SOURCE):
                out["file"], out["line"] = self.doc.source.file, self.doc.line_of(self.path)
        if self.detail is not None:
            out["detail"] = self.detail
        return out
