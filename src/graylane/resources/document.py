"""One Kubernetes-style document with where it came from (file, line of every field)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, NamedTuple

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """`("spec", "http", 0, "route")` -> `spec.http[0].route`; odd keys are quoted: `labels["a.b/c"]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "-_" for c in str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f'["{part}"]'
    return out

# Istio kinds are served under these API groups; every version has the same schema.
ISTIO_NETWORKING = "networking.istio.io"
GRAYLANE_GROUP = "graylane.io"


class ResourceKey(NamedTuple):
    """How the store keys a resource: (group, kind, namespace, name). Cluster-scoped: namespace ''."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


@dataclass(frozen=True)
class Source:
    """Where a document was read: file (or '-' for stdin, '<api>' for API bodies) and 1-based line."""

    file: str = "<input>"
    line: int = 1
    index: int = 0  # position of the document in its file (0-based)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding",
                                  "CustomResourceDefinition", "PersistentVolume", "StorageClass"})


@dataclass
class Document:
    """A parsed document: its raw body (a dict) plus source positions for error messages."""

    body: dict[str, Any]
    source: Source = field(default_factory=Source)
    positions: dict[FieldPath, int] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @property
    def group(self) -> str:
        av = self.api_version
        return av.split("/", 1)[0] if "/" in av else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def metadata(self) -> dict[str, Any]:
        md = self.body.get("metadata")
        return md if isinstance(md, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        if self.kind in CLUSTER_SCOPED_KINDS:
            return ""
        return str(self.metadata.get("namespace") or "default")

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.group, self.kind, self.namespace, self.name)

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    def line_of(self, path: FieldPath) -> int:
        """The line of `path` or of its nearest ancestor that has a known position."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.source.line

    def where(self, path: FieldPath = ()) -> str:
        """`file:line` for a field path, for error messages."""
        return f"{self.source.file}:{self.line_of(path)}"

    def with_namespace(self, namespace: str) -> Document:
        """A copy placed in `namespace` (namespaceOverride)."""
        body = copy.deepcopy(self.body)
        if self.kind not in CLUSTER_SCOPED_KINDS:
            body.setdefault("metadata", {})["namespace"] = namespace
        return Document(body=body, source=self.source, positions=dict(self.positions))

    def __repr__(self) -> str:
        return f"Document({self.key}, source={self.source})"
