"""A PromQL query as the local engine evaluates it: bounded before parsing, parsed by promql-parser (the Rust
parser GreptimeDB uses, from PyPI), and compiled once into small frozen nodes (graylane.mesh.telemetry.promql_engine
evaluates them; promql_calls holds the functions and aggregations).

Hostile input is refused before the parser sees it: size, nesting and operator count (a long operator chain takes
the parser seconds, and a few thousand crash it); regexes are compiled with RE2, anchored as Prometheus anchors
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import promql_parser
import re2

from graylane.mesh.telemetry.promql_values import Matrix, PromQLError, Value, Vector

MAX_QUERY_BYTES = 16_384
MAX_NESTING = 48
MAX_OPERATORS = 200


class Evaluator(Protocol):
    """What functions and aggregations need of an evaluation (graylane.mesh.telemetry.promql_engine.Evaluation)."""

    def eval(self, node: Node, ts: float) -> Value: ...
    def vector(self, node: Node, ts: float, where: str) -> Vector: ...
    def scalar(self, node: Node, ts: float, where: str) -> float: ...
    def string(self, node: Node, ts: float, where: str) -> str: ...
    def range(self, node: Node, ts: float, where: str) -> tuple[Matrix, float, float]: ...
    def count(self, n: int) -> None: ...


# ---- the compiled tree ----------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str
    pattern: Any = None

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = self.pattern.search(value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True, eq=False)
class Num:
    value: float


@dataclass(frozen=True, eq=False)
class Str:
    value: str


@dataclass(frozen=True, eq=False)
class Neg:
    expr: Node


@dataclass(frozen=True, eq=False)
class Selector:
    name: str
    matchers: tuple[Matcher, ...]
    offset: float
    at: tuple[str, float] | None  # ("at", t) | ("start", 0) | ("end", 0)


@dataclass(frozen=True, eq=False)
class RangeSel:
    selector: Selector
    range: float


@dataclass(frozen=True, eq=False)
class Subquery:
    expr: Node
    range: float
    step: float | None
    offset: float
    at: tuple[str, float] | None


@dataclass(frozen=True, eq=False)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Aggregate:
    op: str
    expr: Node
    param: Node | None
    labels: tuple[str, ...]
    without: bool
    grouped: bool  # by/without given


@dataclass(frozen=True, eq=False)
class Binary:
    op: str
    lhs: Node
    rhs: Node
    return_bool: bool
    card: str  # one-to-one, many-to-one, one-to-many, many-to-many
    on: bool | None  # None: neither on() nor ignoring()
    matching: tuple[str, ...]
    include: tuple[str, ...]


Node = Num | Str | Neg | Selector | RangeSel | Subquery | Call | Aggregate | Binary


def _read(node: Any, name: str, what: str) -> Any:
    """A time or duration of the parser's node. Its bindings raise ValueError or OverflowError for one past what
    Python's datetime holds, and panic (a BaseException) for an `@` time before 1970: both are the query's fault."""
    try:
        return getattr(node, name)
    except (ValueError, OverflowError):
        pass
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
    raise PromQLError(f"invalid parameter \"query\": the {what} is out of range (Graylane's engine takes times "
                      "from 1970 to 9999 and durations that reach no further)")


def _seconds(node: Any, name: str, what: str) -> float:
    delta = _read(node, name, what)
    return 0.0 if delta is None else float(delta.total_seconds())


def _at(node: Any) -> tuple[str, float] | None:
    modifier = _read(node, "at", "@ modifier's time")
    if modifier is None:
        return None
    kind = str(modifier.type).rsplit(".", 1)[-1].lower()
    if kind == "at":
        at = _read(modifier, "at", "@ modifier's time")
        try:
            return ("at", at.timestamp())
        except (ValueError, OverflowError):
            raise PromQLError("invalid parameter \"query\": the @ modifier's time is out of range (Graylane's "
                              "engine takes times from 1970 to 9999)") from None
    return (kind, 0.0)


_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}


def _matcher(m: Any) -> Matcher:
    op = _OPS[str(m.op)]
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re2.compile(f"^(?:{m.value})$")
        except re2.error as exc:
            raise PromQLError(f"invalid regular expression in matcher {m.name}{op}\"{m.value}\": {exc}") from None
    return Matcher(str(m.name), op, str(m.value), pattern)


def _selector(node: Any) -> Selector:
    matchers = tuple(_matcher(m) for m in node.matchers.matchers)
    if node.matchers.or_matchers:
        raise PromQLError("`or` inside a selector's braces is not supported; write two selectors joined by `or`")
    return Selector(str(node.name or ""), matchers, _seconds(node, "offset", "offset"), _at(node))


def _card(modifier: Any) -> str:
    if modifier is None:
        return "one-to-one"
    return {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many",
            "ManyToMany": "many-to-many"}[str(modifier.card).rsplit(".", 1)[-1]]


def compile_tree(node: Any) -> Node:
    """promql-parser's tree -> this module's frozen nodes (once per query)."""
    kind = type(node).__name__
    if kind == "NumberLiteral":
        return Num(float(node.val))
    if kind == "StringLiteral":
        return Str(str(node.val))
    if kind == "ParenExpr":
        return compile_tree(node.expr)
    if kind == "UnaryExpr":
        return Neg(compile_tree(node.expr))
    if kind == "VectorSelector":
        return _selector(node)
    if kind == "MatrixSelector":
        return RangeSel(_selector(node.vector_selector), _seconds(node, "range", "range selector's duration"))
    if kind == "SubqueryExpr":
        step = _seconds(node, "step", "subquery's step") or None
        return Subquery(compile_tree(node.expr), _seconds(node, "range", "subquery's duration"), step,
                        _seconds(node, "offset", "offset"), _at(node))
    if kind == "Call":
        return Call(str(node.func.name), tuple(compile_tree(a) for a in node.args))
    if kind == "AggregateExpr":
        mod = node.modifier
        labels = tuple(str(x) for x in mod.labels) if mod is not None else ()
        without = mod is not None and str(mod.type).endswith("Without")
        param = compile_tree(node.param) if node.param is not None else None
        return Aggregate(str(node.op), compile_tree(node.expr), param, labels, without, mod is not None)
    if kind == "BinaryExpr":
        mod = node.modifier
        on: bool | None = None
        matching: tuple[str, ...] = ()
        include: tuple[str, ...] = ()
        if mod is not None and mod.matching is not None:
            on = str(mod.matching.type).endswith("Include")
            matching = tuple(str(x) for x in mod.matching.labels)
        if mod is not None:
            include = tuple(str(x) for x in (mod.group_labels or ()))
        op = str(node.op)
        card = _card(mod)
        if op in ("and", "or", "unless"):
            card = "many-to-many"
        return Binary(op, compile_tree(node.lhs), compile_tree(node.rhs), bool(mod is not None and mod.return_bool),
                      card, on, matching, include)
    raise PromQLError(f"unsupported expression {kind}")


# ---- guards before parsing ----------------------------------------------------------------------------------

_WORD_OPS = re.compile(r"\b(?:and|or|unless|atan2)\b")
_SYMBOL_OPS = re.compile(r"[-+*/%^]|[=!<>]=|[<>]|=~|!~")


def check_size(text: str) -> None:
    """Refuse what could make the parser or the evaluator slow or deep: size, nesting, operator count."""
    if len(text.encode()) > MAX_QUERY_BYTES:
        raise PromQLError(f"the query is {len(text.encode())} bytes; at most {MAX_QUERY_BYTES} are accepted")
    depth = top = ops = 0
    outside: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" and c != "`" else 1
            i = j + 1
            outside.append(" ")
            continue
        if c == "#":  # a comment runs to the end of the line
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "([{":
            depth += 1
            top = max(top, depth)
        elif c in ")]}":
            depth -= 1
        outside.append(c)
        i += 1
    if top > MAX_NESTING:
        raise PromQLError(f"the query nests {top} levels deep; at most {MAX_NESTING} are accepted")
    bare = re.sub(r"\{[^{}]*\}", " ", "".join(outside))  # matchers' =, !=, =~ are not operators
    bare = re.sub(r"\[[^\[\]]*\]", " ", bare)  # nor a range's or subquery's durations
    bare = re.sub(r"\d[\d.]*[eE][-+]?\d+", "0", bare)  # nor an exponent's sign
    ops = len(_SYMBOL_OPS.findall(bare)) + len(_WORD_OPS.findall(bare))
    if ops > MAX_OPERATORS:
        raise PromQLError(f"the query has {ops} operators; at most {MAX_OPERATORS} are accepted")


def parse(text: str) -> Node:
    check_size(text)
    try:
        tree = promql_parser.parse(text)
    except ValueError as exc:
        raise PromQLError(f"invalid parameter \"query\": {exc}") from None
    return compile_tree(tree)
