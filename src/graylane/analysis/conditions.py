"""A small, safe evaluator for Argo Rollouts' success/failure conditions (the expr-lang/expr subset they use).

Argo evaluates `successCondition` / `failureCondition` with expr-lang over one variable, `result`. Graylane's
pipeline expressions are SpEL, a different syntax (`len(result)`, `&&`, `#` closures are not SpEL), so Argo
conditions get their own evaluator: a tokenizer and a precedence-climbing parser over a fixed grammar, no
attribute access on Python objects, no imports, bounded input. Supported:

- literals: numbers, 'strings' / "strings", true, false, nil, [lists]; `result`; `a.b`, `a['b']`, `a[0]`
  (negative indexes count from the end), `a?.b` as `a.b`;
- operators: `! not - + * / % **`, `< <= > >= == !=`, `in`, `contains`, `startsWith`, `endsWith`, `matches`,
  `&& and || or`, `?:` (ternary), `??` (nil coalescing);
- functions: Argo's `isNaN isInf asInt asFloat isNil default`, and expr's `len abs int float string
  max min sum mean now duration`, and the closures `all any none one filter map count` (`all(result, # < 1000)`
  or `all(result, {# < 1000})`, `#` being each element).

As in Go, every comparison with NaN is false. Indexing an empty result, comparing nil with a number or
calling an unknown function raises ConditionError (a measurement Error), with a message saying so.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graylane.resources.durations import query_seconds as parse_duration

MAX_LENGTH = 4000


class ConditionError(Exception):
    """A condition that could not be parsed or evaluated."""


_TOKENS = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\?\?|\?\.|\*\*|==|!=|<=|>=|&&|\|\||[-+*/%<>!()\[\]{}.,?:\#])
""", re.VERBOSE)
_BINARY: dict[str, int] = {"??": 1, "||": 2, "or": 2, "&&": 3, "and": 3, "==": 4, "!=": 4, "<": 5, "<=": 5,
                           ">": 5, ">=": 5, "in": 5, "contains": 5, "startsWith": 5, "endsWith": 5,
                           "matches": 5, "+": 6, "-": 6, "*": 7, "/": 7, "%": 7, "**": 8}
_CLOSURES = ("all", "any", "none", "one", "filter", "map", "count")


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is longer than {MAX_LENGTH} characters")
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKENS.match(text, pos)
        if not m:
            raise ConditionError(f"unexpected character {text[pos]!r} at {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(0), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text:
            raise ConditionError(f"expected {text!r} at {tok.pos + 1}, found {tok.text or 'the end'!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "end":
            tok = self.peek()
            raise ConditionError(f"unexpected {tok.text!r} at {tok.pos + 1}")
        return node

    def expr(self, min_prec: int = 0) -> Node:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok.text == "?" and min_prec == 0:
                self.take()
                yes = self.expr()
                self.take(":")
                no = self.expr()
                left = ("if", left, yes, no)
                continue
            op = tok.text if tok.kind in ("op", "name") else ""
            negated = False
            if op == "not" and self.toks[self.i + 1].text == "in":
                negated, op = True, "in"
            prec = _BINARY.get(op)
            if prec is None or prec <= min_prec:
                return left
            self.take()
            if negated:
                self.take("in")
            right = self.expr(prec - 1 if op == "**" else prec)
            left = ("bin", op, left, right)
            if negated:
                left = ("not", left)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.text in ("!", "not"):
            self.take()
            return ("not", self.unary())
        if tok.text in ("-", "+"):
            self.take()
            operand = self.unary()
            return ("neg", operand) if tok.text == "-" else operand
        return self.postfix(self.primary())

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return ("lit", float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text))
        if tok.kind == "str":
            return ("lit", _unquote(tok.text))
        if tok.text == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok.text == "[":
            items: list[Node] = []
            while self.peek().text != "]":
                items.append(self.expr())
                if self.peek().text != ",":
                    break
                self.take(",")
            self.take("]")
            return ("list", items)
        if tok.text == "#":
            return ("elem",)
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text == "nil":
                return ("lit", None)
            if self.peek().text == "(":
                return self.call(tok)
            return ("var", tok.text)
        raise ConditionError(f"unexpected {tok.text or 'end of condition'!r} at {tok.pos + 1}")

    def call(self, name: _Tok) -> Node:
        self.take("(")
        args: list[Node] = []
        while self.peek().text != ")":
            if name.text in _CLOSURES and len(args) == 1 and self.peek().text == "{":
                self.take("{")
                args.append(("closure", self.expr()))
                self.take("}")
            elif name.text in _CLOSURES and len(args) == 1:
                args.append(("closure", self.expr()))
            else:
                args.append(self.expr())
            if self.peek().text != ",":
                break
            self.take(",")
        self.take(")")
        return ("call", name.text, args, name.pos)

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.peek()
            if tok.text in (".", "?."):
                self.take()
                field = self.take()
                if field.kind != "name":
                    raise ConditionError(f"expected a field name after '.' at {field.pos + 1}")
                node = ("get", node, ("lit", field.text))
            elif tok.text == "[":
                self.take()
                node = ("get", node, self.expr())
                self.take("]")
            else:
                return node


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _type(x: Any) -> str:
    if x is None:
        return "nil"
    if isinstance(x, bool):
        return "bool"
    if _num(x):
        return "float64" if isinstance(x, float) else "int"
    return {str: "string", list: "array", tuple: "array", dict: "map"}.get(type(x), type(x).__name__)


def _as_float(x: Any) -> float:
    if _num(x):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            raise ConditionError(f"asFloat: {x!r} is not a number") from None
    raise ConditionError(f"asFloat() not supported on {_type(x)}")


def _as_int(x: Any) -> int:
    if _num(x):
        if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
            raise ConditionError(f"asInt: {x} has no integer value")
        return int(x)
    if isinstance(x, str):
        try:
            return int(x)
        except ValueError:
            raise ConditionError(f"asInt: {x!r} is not an integer") from None
    raise ConditionError(f"asInt() not supported on {_type(x)}")


def _seq(x: Any, fn: str) -> list[Any]:
    if isinstance(x, list | tuple):
        return list(x)
    raise ConditionError(f"{fn}() needs an array, got {_type(x)}")


class _Eval:
    def __init__(self, result: Any, now: Callable[[], float]) -> None:
        self.result = result
        self.now = now

    def run(self, node: Node, elem: Any = None) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "var":
            if node[1] == "result":
                return self.result
            raise ConditionError(f"unknown name {node[1]!r} (the only variable is result)")
        if kind == "elem":
            return elem
        if kind == "list":
            return [self.run(n, elem) for n in node[1]]
        if kind == "not":
            value = self.run(node[1], elem)
            if not isinstance(value, bool):
                raise ConditionError(f"invalid operation: ! ({_type(value)})")
            return not value
        if kind == "neg":
            value = self.run(node[1], elem)
            if not _num(value):
                raise ConditionError(f"invalid operation: - ({_type(value)})")
            return -value
        if kind == "if":
            cond = self.run(node[1], elem)
            if not isinstance(cond, bool):
                raise ConditionError(f"a ternary needs a bool condition, got {_type(cond)}")
            return self.run(node[2] if cond else node[3], elem)
        if kind == "get":
            return _get(self.run(node[1], elem), self.run(node[2], elem))
        if kind == "bin":
            return self.binary(node[1], node[2], node[3], elem)
        if kind == "call":
            return self.call(node[1], node[2], elem)
        raise ConditionError(f"cannot evaluate {kind}")

    def binary(self, op: str, left_node: Node, right_node: Node, elem: Any) -> Any:
        left = self.run(left_node, elem)
        if op in ("&&", "and", "||", "or"):
            if not isinstance(left, bool):
                raise ConditionError(f"invalid operation: {op} on {_type(left)}")
            if (op in ("&&", "and")) != left:  # short circuit: false && .. / true || ..
                return left
            right = self.run(right_node, elem)
            if not isinstance(right, bool):
                raise ConditionError(f"invalid operation: {op} on {_type(right)}")
            return right
        if op == "??":
            return left if left is not None else self.run(right_node, elem)
        right = self.run(right_node, elem)
        if op == "==":
            return _equal(left, right)
        if op == "!=":
            return not _equal(left, right)
        if op in ("<", "<=", ">", ">="):
            if not ((_num(left) and _num(right)) or (isinstance(left, str) and isinstance(right, str))):
                raise ConditionError(f"invalid operation: {op} (mismatched types {_type(left)} and {_type(right)})")
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        if op == "in":
            if isinstance(right, dict):
                return left in right
            return any(_equal(left, x) for x in _seq(right, "in"))
        if op in ("contains", "startsWith", "endsWith", "matches"):
            if not (isinstance(left, str) and isinstance(right, str)):
                raise ConditionError(f"{op} needs strings, got {_type(left)} and {_type(right)}")
            if op == "matches":
                try:
                    return re.search(right, left) is not None
                except re.error as exc:
                    raise ConditionError(f"matches: bad regular expression {right!r}: {exc}") from None
            return {"contains": right in left, "startsWith": left.startswith(right),
                    "endsWith": left.endswith(right)}[op]
        if op == "+" and isinstance(left, str) and isinstance(right, str):
            return left + right
        if not (_num(left) and _num(right)):
            raise ConditionError(f"invalid operation: {op} (mismatched types {_type(left)} and {_type(right)})")
        try:
            if op == "+":
                return left + right
            if op == "-":
                return left - right
            if op == "*":
                return left * right
            if op == "/":
                return float(left) / float(right) if right != 0 else _divide_by_zero(left)
            if op == "%":
                if not (isinstance(left, int) and isinstance(right, int)) or right == 0:
                    raise ConditionError("% needs integers and a non-zero divisor")
                return int(math.fmod(left, right))
            if op == "**":
                return float(left) ** float(right)
        except OverflowError:
            return math.inf
        raise ConditionError(f"unknown operator {op}")

    def call(self, name: str, args: list[Node], elem: Any) -> Any:
        if name in _CLOSURES:
            if len(args) != 2:
                raise ConditionError(f"{name}() takes an array and a predicate")
            items = _seq(self.run(args[0], elem), name)
            body = args[1][1] if args[1][0] == "closure" else args[1]
            got = [self.run(body, item) for item in items]
            if name == "map":
                return got
            for g in got:
                if not isinstance(g, bool):
                    raise ConditionError(f"{name}(): the predicate gave {_type(g)}, not a bool")
            if name == "filter":
                return [item for item, g in zip(items, got, strict=True) if g]
            return {"all": all(got), "any": any(got), "none": not any(got), "one": sum(got) == 1,
                    "count": sum(got)}[name]
        values = [self.run(a, elem) for a in args]
        if name == "now" and not values:
            return self.now()
        if name == "isNil":
            return self.result is None if not values else values[0] is None
        if name == "default":
            if len(values) != 2:
                raise ConditionError("default() takes a value and a default")
            return values[1] if values[0] is None else values[0]
        fn = _FUNCTIONS.get(name)
        if fn is None:
            raise ConditionError(f"unknown function {name}()")
        try:
            return fn(*values)
        except TypeError:
            raise ConditionError(f"{name}() cannot take {', '.join(_type(v) for v in values) or 'no arguments'}") \
                from None


def _divide_by_zero(left: float) -> float:
    if left == 0 or math.isnan(left):
        return math.nan
    return math.inf if left > 0 else -math.inf


def _equal(a: Any, b: Any) -> bool:
    if _num(a) and _num(b):
        return bool(a == b)
    if type(a) is not type(b) and not (isinstance(a, list | tuple) and isinstance(b, list | tuple)):
        return False
    return bool(a == b)


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, list | tuple):
        if not _num(key) or isinstance(key, float) and not key.is_integer():
            raise ConditionError(f"an array index must be an integer, got {_type(key)}")
        i = int(key)
        if not -len(container) <= i < len(container):
            raise ConditionError(f"index {i} out of range (the array has {len(container)} element(s))")
        return container[i]
    if isinstance(container, str) and _num(key):
        return container[int(key)]
    raise ConditionError(f"cannot fetch {key!r} from {_type(container)}")


def _number_fn(name: str, fn: Callable[[float], Any]) -> Callable[[Any], Any]:
    def call(x: Any) -> Any:
        if not _num(x):
            raise ConditionError(f"{name}() needs a number, got {_type(x)}")
        return fn(float(x))
    return call


def _numbers(name: str, args: tuple[Any, ...]) -> list[float]:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
    if not items or not all(_num(x) for x in items):
        raise ConditionError(f"{name}() needs numbers")
    return [float(x) for x in items]


def _len(x: Any) -> int:
    if isinstance(x, list | tuple | str | dict):
        return len(x)
    raise ConditionError(f"invalid argument for len (type {_type(x)})")


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isNaN": _number_fn("isNaN", math.isnan),
    "isInf": _number_fn("isInf", math.isinf),
    "asInt": _as_int,
    "asFloat": _as_float,
    "float": _as_float,
    "int": _as_int,
    "string": lambda x: str(x).lower() if isinstance(x, bool) else str(x),
    "len": _len,
    "abs": _number_fn("abs", abs),
    "max": lambda *a: max(_numbers("max", a)),
    "min": lambda *a: min(_numbers("min", a)),
    "sum": lambda *a: sum(_numbers("sum", a)),
    "mean": lambda *a: (lambda v: sum(v) / len(v))(_numbers("mean", a)),
    "duration": lambda s: parse_duration(s, "duration()") if isinstance(s, str) else _as_float(s),
}


def parse_condition(text: str) -> Node:
    """Parse once (templates are checked when loaded); raises ConditionError."""
    if not text.strip():
        raise ConditionError("the condition is empty")
    return _Parser(text).parse()


def evaluate(text: str, result: Any, *, now: Callable[[], float] = time.time) -> Any:
    """The value of `text` with `result` bound (used for conditions and for rangeQuery start/end)."""
    return _Eval(result, now).run(parse_condition(text))


def evaluate_condition(text: str, result: Any, *, now: Callable[[], float] = time.time) -> bool:
    """True/False, or ConditionError (with Argo's wording for a nil or empty result)."""
    try:
        value = evaluate(text, result, now=now)
    except ConditionError:
        if result is None or (isinstance(result, list | tuple) and not result):
            raise ConditionError("metric result is nil or empty: no data returned from the metric provider") \
                from None
        raise
    if not isinstance(value, bool):
        raise ConditionError(f"expected bool, but got {_type(value)}")
    return value
