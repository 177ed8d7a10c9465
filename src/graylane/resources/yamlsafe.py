"""Untrusted YAML and text, safely: the one place Graylane turns YAML or file bytes into values.

PyYAML has no alias limits. Its composer hands back the same node object for every `*alias`, so a 549-byte
"billion laughs" document composes in microseconds and only explodes later, in whatever walks it (10 GB of
RSS in `graylane apply`). Here libyaml (CSafeLoader) composes, and our own builder turns nodes into plain
dicts and lists, expanding aliases into copies while it counts: every node reached again through an alias
spends from `MAX_ALIAS_NODES`, and nesting stops at `MAX_DEPTH`. Nothing that leaves this module is larger
than its text plus that budget, and nothing shares structure. Errors are `ValidationError`s naming file:line.

Bottom layer: imports only `graylane.errors`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from graylane.errors import ValidationError

try:  # the C loader is much faster; fall back when libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

MAX_ALIAS_NODES = 100_000  # nodes aliases may add to one file, beyond what is written (go-yaml has a like budget)
MAX_DEPTH = 256            # nesting of maps and lists (libyaml itself stops at 1000)

FieldPath = tuple[Any, ...]
PositionSink = Callable[[FieldPath, int], object]

_MERGE = "tag:yaml.org,2002:merge"
_AS_TEXT = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary")  # what JSON has no type for
_scalar_loader = yaml.SafeLoader("")


# -- bytes to text ----------------------------------------------------------------------------------

def decode_utf8(raw: bytes, where: str) -> str:
    """UTF-8 text, or a ValidationError naming the first bad byte's offset (never a silent U+FFFD).

    >>> decode_utf8(b"a: \\xff", "x.yaml")
    Traceback (most recent call last):
    graylane.errors.ValidationError: x.yaml: not UTF-8 text: byte 0xff at offset 3 ...
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1]
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValidationError(
            f"not UTF-8 text: byte 0x{bad.hex()} at offset {exc.start} (line {line}) {exc.reason}",
            where=where, hint="save the file as UTF-8") from None


def read_text(path: str | Path) -> str:
    """A file's text (UTF-8, BOM dropped); a bad byte or an unreadable file is a ValidationError naming it."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None
    return decode_utf8(raw, str(path)).removeprefix("\ufeff")


def read_stdin() -> str:
    """Standard input as text, with the same UTF-8 check as files (a text-only stream is read as is)."""
    buffer = getattr(sys.stdin, "buffer", None)
    return decode_utf8(buffer.read(), "-") if buffer is not None else sys.stdin.read()


# -- YAML -------------------------------------------------------------------------------------------

def _invalid(exc: yaml.YAMLError, where: str) -> ValidationError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return ValidationError(f"invalid YAML: {exc.problem or exc}", where=f"{where}:{line}")
    return ValidationError(f"invalid YAML: {exc}", where=where)


def compose_all(text: str, where: str) -> list[yaml.Node | None]:
    """The documents' node graphs (aliases still shared); a YAML error names `where`:line."""
    try:
        return list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _invalid(exc, where) from None
    except RecursionError:  # pragma: no cover - libyaml stops at 1000 levels first
        raise ValidationError(f"the YAML nests deeper than {MAX_DEPTH} levels", where=where) from None


class Builder:
    """Turns composed nodes into plain values within one alias budget (create one per file or text).

    `timestamps_as_text`: Kubernetes reads YAML as JSON, where `when: 2024-01-02` stays a string (and so
    does a `!!binary` value's text): everything built is JSON-serialisable.
    `merge_keys`: allow `<<: *base` (SnakeYAML does, so `#readYaml` does); manifests refuse them.
    """

    def __init__(self, where: str, *, timestamps_as_text: bool = True, merge_keys: bool = False,
                 max_alias_nodes: int = MAX_ALIAS_NODES, max_depth: int = MAX_DEPTH,
                 tick: Callable[[], object] | None = None) -> None:
        self.where = where
        self.tick = tick  # called every 4096 nodes (an expression's clock check); may raise to stop
        self.timestamps_as_text = timestamps_as_text
        self.merge_keys = merge_keys
        self.max_alias_nodes = max_alias_nodes
        self.max_depth = max_depth
        self.seen: set[int] = set()
        self.repeats = 0

    def at(self, node: yaml.Node) -> str:
        return f"{self.where}:{node.start_mark.line + 1}"

    def build(self, node: yaml.Node, sink: PositionSink | None = None, path: FieldPath = ()) -> Any:
        """The plain value of `node`; `sink(path, line)` hears the line of every field and item."""
        return self._build(node, path, sink, 0)

    def _count(self, node: yaml.Node) -> None:
        key = id(node)  # nodes stay alive in the composed graph, so ids are stable while we build
        if key in self.seen:
            self.repeats += 1
            if self.repeats > self.max_alias_nodes:
                raise ValidationError(
                    f"YAML aliases expand to more than {self.max_alias_nodes} extra nodes (an alias bomb?)",
                    where=self.at(node), hint="write the repeated parts out, or use fewer aliases")
        else:
            self.seen.add(key)
        if self.tick is not None and (len(self.seen) + self.repeats) % 4096 == 0:
            self.tick()

    def _build(self, node: yaml.Node, path: FieldPath, sink: PositionSink | None, depth: int) -> Any:
        self._count(node)
        if sink is not None:
            sink(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if depth >= self.max_depth:
            raise ValidationError(f"the YAML nests deeper than {self.max_depth} levels", where=self.at(node))
        if isinstance(node, yaml.SequenceNode):
            return [self._build(item, (*path, i), sink, depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, sink, depth)
        raise ValidationError(f"unsupported YAML node {type(node).__name__}", where=self.at(node))  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, path: FieldPath, sink: PositionSink | None, depth: int) -> Any:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                if not self.merge_keys:
                    raise ValidationError("YAML merge keys (<<) are not supported", where=self.at(key_node))
                merged.update(self._merge_sources(value_node, path, depth))
                continue
            key = self._build(key_node, path, None, depth + 1)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ValidationError("mapping keys must be scalars", where=self.at(key_node))
            if key in out:
                raise ValidationError(f"duplicate key {key!r}", where=self.at(key_node))
            if sink is not None:  # a field's line is its key's line
                sink((*path, key), key_node.start_mark.line + 1)
            out[key] = self._build(value_node, (*path, key), sink, depth + 1)
        if merged:
            return {**{k: v for k, v in merged.items() if k not in out}, **out}
        return out

    def _merge_sources(self, node: yaml.Node, path: FieldPath, depth: int) -> dict[Any, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[Any, Any] = {}
        for source in reversed(sources):  # earlier sources win (YAML merge key spec)
            value = self._build(source, path, None, depth + 1)
            if not isinstance(value, dict):
                raise ValidationError("a merge key (<<) needs a mapping or a list of mappings", where=self.at(source))
            merged.update(value)
        return merged

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _AS_TEXT and self.timestamps_as_text:
            return node.value
        try:
            return _scalar_loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, IndexError, KeyError, AttributeError) as exc:
            # PyYAML's constructors fail in many ways on hostile scalars (`!!int ` raises IndexError)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValidationError(f"invalid YAML value: {problem}", where=self.at(node)) from None


def load_all(text: str, where: str = "<input>", **options: Any) -> list[Any]:
    """Every document's plain value (empty documents are None); one alias budget for the whole text."""
    builder = Builder(where, **options)
    return [None if node is None else builder.build(node) for node in compose_all(text, where)]


def load(text: str, where: str = "<input>", **options: Any) -> Any:
    """The single document in `text` (None when empty); more than one document is an error."""
    documents = load_all(text, where, **options)
    if len(documents) > 1:
        raise ValidationError(f"expected one YAML document, found {len(documents)}", where=where,
                              hint="separate files, or read them all at once")
    return documents[0] if documents else None
