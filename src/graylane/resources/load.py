"""Load multi-document YAML/JSON from files, folders (recursive, sorted) and stdin, keeping positions.

Parsing goes through `yamlsafe` (alias budget, depth limit, UTF-8 errors with the byte offset).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from graylane.errors import ValidationError
from graylane.resources import yamlsafe
from graylane.resources.document import Document, FieldPath, Source

_SUFFIXES = {".yaml", ".yml", ".json"}


def load_text(text: str, file: str = "<input>") -> list[Document]:
    """Parse every document in `text`; empty documents are skipped. Errors name file and line."""
    docs: list[Document] = []
    builder = yamlsafe.Builder(file)  # one alias budget for the whole file
    for index, node in enumerate(yamlsafe.compose_all(text, file)):
        if node is None:
            continue
        positions: dict[FieldPath, int] = {}
        body = builder.build(node, positions.setdefault)
        if body is None:
            continue
        line = node.start_mark.line + 1
        if not isinstance(body, dict):
            raise ValidationError("a document must be a mapping with apiVersion and kind",
                                  where=f"{file}:{line}")
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for i, item in enumerate(body["items"]):
                item_pos = {p[2:]: ln for p, ln in positions.items() if p[:2] == ("items", i)}
                docs.append(Document(item, Source(file, item_pos.get((), line), index), item_pos))
            continue
        docs.append(Document(body, Source(file, line, index), positions))
    return docs


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)


def load_paths(paths: Iterable[str | Path], stdin_text: str | None = None) -> list[Document]:
    """Load documents from files, folders (recursive, sorted by path) and `-` (stdin)."""
    docs: list[Document] = []
    for raw in paths:
        if str(raw) == "-":
            text = stdin_text if stdin_text is not None else yamlsafe.read_stdin()
            docs.extend(load_text(text, "-"))
            continue
        path = Path(raw)
        if path.is_dir():
            for f in _files_under(path):
                docs.extend(load_text(yamlsafe.read_text(f), str(f)))
        elif path.is_file():
            docs.extend(load_text(yamlsafe.read_text(path), str(path)))
        else:
            raise ValidationError("no such file or folder", where=str(path), hint="check the -f path")
    return docs
