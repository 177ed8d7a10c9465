"""Load multi-document YAML/JSON from files, folders (recursive, sorted) and stdin, keeping positions."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from graylane.errors import ValidationError
from graylane.resources.document import Document, FieldPath, Source

try:  # the C loader is much faster; fall back when libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

_SUFFIXES = {".yaml", ".yml", ".json"}


def _construct(node: yaml.Node, path: FieldPath, positions: dict[FieldPath, int], where: str) -> Any:
    positions.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ValidationError("YAML merge keys (<<) are not supported",
                                      where=f"{where}:{key_node.start_mark.line + 1}")
            key = _construct(key_node, path, {}, where)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ValidationError("mapping keys must be scalars", where=f"{where}:{key_node.start_mark.line + 1}")
            if key in out:
                raise ValidationError(f"duplicate key {key!r}", where=f"{where}:{key_node.start_mark.line + 1}")
            positions[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*path, key), positions, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), positions, where) for i, item in enumerate(node.value)]
    # Scalars: let PyYAML's resolver apply the YAML 1.1 core types (ints, bools, nulls, ...).
    return _scalar(node)


_scalar_loader = yaml.SafeLoader("")


def _scalar(node: yaml.ScalarNode) -> Any:
    # Kubernetes converts YAML to JSON, where a timestamp is a string (`when: 2024-01-02` stays "2024-01-02").
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value
    return _scalar_loader.construct_object(node, deep=True)


def load_text(text: str, file: str = "<input>") -> list[Document]:
    """Parse every document in `text`; empty documents are skipped. Errors name file and line."""
    docs: list[Document] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ValidationError(f"invalid YAML: {exc.problem or exc}", where=f"{file}:{line}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"invalid YAML: {exc}", where=file) from None
    for index, node in enumerate(nodes):
        if node is None:
            continue
        positions: dict[FieldPath, int] = {}
        body = _construct(node, (), positions, file)
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
            text = stdin_text if stdin_text is not None else sys.stdin.read()
            docs.extend(load_text(text, "-"))
            continue
        path = Path(raw)
        if path.is_dir():
            for f in _files_under(path):
                docs.extend(load_text(f.read_text(encoding="utf-8"), str(f)))
        elif path.is_file():
            docs.extend(load_text(path.read_text(encoding="utf-8"), str(path)))
        else:
            raise ValidationError("no such file or folder", where=str(path), hint="check the -f path")
    return docs
