"""The expression AST: small immutable nodes, each with the character offset it starts at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Ident(Node):
    """A bare name: a property of the active object (the root, or `#this` inside a selection)."""

    name: str


@dataclass(frozen=True, slots=True)
class Var(Node):
    """`#name`: `#root`, `#this`, or a variable."""

    name: str


@dataclass(frozen=True, slots=True)
class Func(Node):
    """`#name(args)`: a registered helper function."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Call(Node):
    """`name(args)` with no receiver: a method of the active object."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class TypeRef(Node):
    """`T(java.lang.Math)`: one of the allowed types."""

    name: str


@dataclass(frozen=True, slots=True)
class New(Node):
    """`new java.util.Date()`: a constructor of one of the allowed types."""

    type_name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class InlineList(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class InlineMap(Node):
    keys: tuple[Any, ...]
    values: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Prop(Node):
    name: str
    safe: bool


@dataclass(frozen=True, slots=True)
class Method(Node):
    name: str
    args: tuple[Node, ...]
    safe: bool


@dataclass(frozen=True, slots=True)
class Index(Node):
    key: Node


@dataclass(frozen=True, slots=True)
class Collection(Node):
    """`.?[...]` select, `.![...]` project, `.^[...]` first, `.$[...]` last."""

    kind: str
    body: Node


@dataclass(frozen=True, slots=True)
class Chain(Node):
    base: Node
    ops: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Arith(Node):
    """A left-associative chain of + - or * / %: operands[0] op[0] operands[1] ..."""

    operands: tuple[Node, ...]
    ops: tuple[str, ...]
    op_pos: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Power(Node):
    base: Node
    exponent: Node
    op_pos: int


@dataclass(frozen=True, slots=True)
class Logic(Node):
    """`and` / `or` over two or more operands, short-circuiting."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Compare(Node):
    op: str
    left: Node
    right: Node
    op_pos: int


@dataclass(frozen=True, slots=True)
class Matches(Node):
    left: Node
    right: Node
    op_pos: int


@dataclass(frozen=True, slots=True)
class Ternary(Node):
    cond: Node
    then: Node
    orelse: Node


@dataclass(frozen=True, slots=True)
class Elvis(Node):
    value: Node
    default: Node


def children(node: Node) -> list[Node]:
    """Direct child nodes, for the depth check."""
    out: list[Node] = []
    for name in node.__slots__:  # type: ignore[attr-defined]
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, Node))
    return out
