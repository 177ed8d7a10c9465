"""Parse expression text into the AST (`nodes`), with a bounded size and nesting depth.

Knows the grammar and SpEL's literal syntax; knows nothing of evaluation or pipelines.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from graylane.expressions import nodes as n
from graylane.expressions.errors import ExpressionError, ExpressionSyntaxError, LimitExceeded

MAX_EXPRESSION_LENGTH = 10_000  # Spring's default maxExpressionLength
MAX_DEPTH = 150                 # keeps the recursive evaluator far from Python's recursion limit

_KEYWORDS = {
    "and": "AND", "or": "OR", "not": "NOT", "eq": "EQ", "ne": "NE", "lt": "LT", "gt": "GT",
    "le": "LE", "ge": "GE", "div": "DIV", "mod": "MOD", "matches": "MATCHES",
    "true": "TRUE", "false": "FALSE", "null": "NULL",
}

_OPS = {
    "||": "or", "or": "or", "&&": "and", "and": "and",
    "==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">", "gt": ">",
    "<=": "<=", "le": "<=", ">=": ">=", "ge": ">=",
    "+": "+", "-": "-", "*": "*", "/": "/", "div": "/", "%": "%", "mod": "%",
    "!": "!", "not": "!",
}

_TOKEN_NAMES = {
    "ELVIS": "'?:'", "SAFE_DOT": "'?.'", "SELECT": "'.?['", "PROJECT": "'.!['", "FIRST": "'.^['",
    "LAST": "'.$['", "OR_SYM": "'||'", "AND_SYM": "'&&'", "EQ_SYM": "'=='", "NE_SYM": "'!='",
    "LE_SYM": "'<='", "GE_SYM": "'>='", "LT_SYM": "'<'", "GT_SYM": "'>'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "PERCENT": "'%'", "CARET": "'^'", "BANG": "'!'", "LPAR": "'('",
    "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','",
    "COLON": "':'", "DOT": "'.'", "QMARK": "'?'", "VARIABLE": "a #variable", "NAME": "a name",
    "INT": "a number", "FLOAT": "a number", "HEX": "a number", "STRING": "a string", "$END": "the end",
}


def _retype_keyword(token: Token) -> Token:
    kind = _KEYWORDS.get(token.value.lower())
    if kind is not None:
        token.type = kind
    return token


def _pos(item: Any) -> int:
    if isinstance(item, Token):
        return item.start_pos or 0
    if isinstance(item, n.Node):
        return item.pos
    return 0


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


def _number(token: Token) -> int | float:
    text = token.value
    if token.type == "HEX":
        return int(text.rstrip("lL"), 16)
    if token.type == "FLOAT":
        return float(text.rstrip("fFdD"))
    return int(text.rstrip("lL"))


def _literal_value(token: Token) -> Any:
    kind = token.type
    if kind in ("INT", "HEX", "FLOAT"):
        return _number(token)
    if kind == "STRING":
        return _unquote(token.value)
    if kind == "TRUE":
        return True
    if kind == "FALSE":
        return False
    if kind == "NULL":
        return None
    return token.value  # NAME as a map key


def _args(items: Any) -> tuple[n.Node, ...]:
    return tuple(items) if items else ()


def _dotted(node: n.Node) -> str | None:
    """`java.lang.Math` parsed as an identifier chain -> "java.lang.Math"; anything else -> None."""
    if isinstance(node, n.Ident):
        return node.name
    if isinstance(node, n.Chain) and isinstance(node.base, n.Ident):
        parts = [node.base.name]
        for op in node.ops:
            if not isinstance(op, n.Prop) or op.safe:
                return None
            parts.append(op.name)
        return ".".join(parts)
    return None


class _ToAst(Transformer):  # type: ignore[type-arg]
    """Builds nodes while the LALR parser reduces (no recursion over the tree)."""

    def ternary(self, c: list[Any]) -> n.Node:
        return n.Ternary(_pos(c[0]), c[0], c[1], c[2])

    def elvis(self, c: list[Any]) -> n.Node:
        return n.Elvis(_pos(c[0]), c[0], c[2])

    def _logic(self, c: list[Any]) -> n.Node:
        return n.Logic(_pos(c[0]), _OPS[c[1].value.lower()], tuple(c[0::2]))

    logic_or = _logic
    logic_and = _logic

    def compare(self, c: list[Any]) -> n.Node:
        return n.Compare(_pos(c[0]), _OPS[c[1].value.lower()], c[0], c[2], _pos(c[1]))

    def matches(self, c: list[Any]) -> n.Node:
        return n.Matches(_pos(c[0]), c[0], c[2], _pos(c[1]))

    def _arith(self, c: list[Any]) -> n.Node:
        ops = c[1::2]
        return n.Arith(_pos(c[0]), tuple(c[0::2]), tuple(_OPS[t.value.lower()] for t in ops),
                       tuple(_pos(t) for t in ops))

    sum = _arith
    product = _arith

    def power(self, c: list[Any]) -> n.Node:
        return n.Power(_pos(c[0]), c[0], c[2], _pos(c[1]))

    def unary(self, c: list[Any]) -> n.Node:
        op = c[0].value.lower()
        return n.Unary(_pos(c[0]), _OPS.get(op, op), c[1])

    def chain(self, c: list[Any]) -> n.Node:
        return n.Chain(_pos(c[0]), c[0], tuple(c[1:]))

    def prop(self, c: list[Any]) -> n.Node:
        return n.Prop(_pos(c[0]), c[0].value, False)

    def safe_prop(self, c: list[Any]) -> n.Node:
        return n.Prop(_pos(c[0]), c[1].value, True)

    def method(self, c: list[Any]) -> n.Node:
        return n.Method(_pos(c[0]), c[0].value, _args(c[1]), False)

    def safe_method(self, c: list[Any]) -> n.Node:
        return n.Method(_pos(c[0]), c[1].value, _args(c[2]), True)

    def index(self, c: list[Any]) -> n.Node:
        return n.Index(_pos(c[0]), c[1])

    def _collection(kind: str):  # type: ignore[no-untyped-def]  # noqa: N805
        def build(self: _ToAst, c: list[Any]) -> n.Node:
            return n.Collection(_pos(c[0]), kind, c[1])
        return build

    select = _collection("select")
    project = _collection("project")
    first = _collection("first")
    last = _collection("last")

    def paren(self, c: list[Any]) -> n.Node:
        return c[1]

    def var(self, c: list[Any]) -> n.Node:  # the first character is "#" (or its lookalike "♯")
        return n.Var(_pos(c[0]), c[0].value[1:])

    def func(self, c: list[Any]) -> n.Node:
        return n.Func(_pos(c[0]), c[0].value[1:], _args(c[1]))

    def ident(self, c: list[Any]) -> n.Node:
        return n.Ident(_pos(c[0]), c[0].value)

    def call(self, c: list[Any]) -> n.Node:
        args = _args(c[1])
        if c[0].value == "T" and len(args) == 1:
            name = _dotted(args[0])
            if name is not None:
                return n.TypeRef(_pos(c[0]), name)
        return n.Call(_pos(c[0]), c[0].value, args)

    def qualified(self, c: list[Any]) -> tuple[str, int]:
        return ".".join(token.value for token in c), _pos(c[0])

    def construct(self, c: list[Any]) -> n.Node:
        name, name_pos = c[1]
        if c[0].value.lower() != "new":  # two names in a row: only `new Type(...)` allows that
            raise ExpressionSyntaxError(f"unexpected {name.split('.')[0]!r} after {c[0].value!r}", position=name_pos)
        return n.New(_pos(c[0]), name, _args(c[2]))

    def inline_list(self, c: list[Any]) -> n.Node:
        return n.InlineList(_pos(c[0]), _args(c[1]))

    def inline_map(self, c: list[Any]) -> n.Node:
        entries = c[1:]
        return n.InlineMap(_pos(c[0]), tuple(k for k, _ in entries), tuple(v for _, v in entries))

    def empty_map(self, c: list[Any]) -> n.Node:
        return n.InlineMap(_pos(c[0]), (), ())

    def args(self, c: list[Any]) -> list[n.Node]:
        return c

    def map_entry(self, c: list[Any]) -> tuple[Any, n.Node]:
        return (_literal_value(c[0]), c[1])

    def literal(self, c: list[Any]) -> n.Node:
        return n.Literal(_pos(c[0]), _literal_value(c[0]))


_parser = Lark(
    files("graylane.expressions").joinpath("grammar.lark").read_text(encoding="utf-8"),
    parser="lalr",
    lexer="basic",
    transformer=_ToAst(),
    lexer_callbacks={"NAME": _retype_keyword},
    maybe_placeholders=True,
)


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e.lower()) for e in expected})
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


# Punctuation an input method slips in (Chinese IMEs type these by default), and what was meant.
_LOOKALIKES = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\uff08": "(", "\uff09": ")",
    "\uff3b": "[", "\uff3d": "]", "\uff5b": "{", "\uff5d": "}", "\uff0c": ",", "\uff1a": ":",
    "\uff1d": "=", "\uff01": "!", "\uff03": "#", "\u3000": " ", "\uff0e": ".", "\uff1f": "?",
}


_CHAR_HINTS = {
    "=": "use == to compare; assignment is not supported",
    "&": "use && (or and)",
    "|": "use || (or or)",
    "@": "bean references (@name) are not supported",
}


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionSyntaxError:
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        meant = _LOOKALIKES.get(ch)
        hint = f"{ch!r} is full-width punctuation; write {meant!r} instead" if meant else _CHAR_HINTS.get(ch)
        return ExpressionSyntaxError(f"unexpected character {ch!r}", position=exc.pos_in_stream, expression=text,
                                     hint=hint)
    if isinstance(exc, UnexpectedEOF):
        return ExpressionSyntaxError(f"the expression ends too early; expected {_describe_expected(exc.expected)}",
                                     position=len(text), expression=text)
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            return ExpressionSyntaxError(
                f"the expression ends too early; expected {_describe_expected(exc.expected)}",
                position=len(text), expression=text)
        hint = None
        if text[: tok.start_pos or 0].rstrip().lower().endswith("new") or (
                tok.value in ("[", "{") and " new " in f" {text[: tok.start_pos or 0].lower()}"):
            hint = ("write a constructor as new Type(arguments), e.g. new Integer('42') or new java.util.Date(); "
                    "arrays (new int[3]) are not supported")
        return ExpressionSyntaxError(
            f"unexpected {tok.value!r}; expected {_describe_expected(exc.expected)}",
            position=tok.start_pos, expression=text, hint=hint)
    return ExpressionSyntaxError("not a valid expression", expression=text)


def _check_depth(root: n.Node, text: str) -> None:
    stack: list[tuple[n.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"the expression nests deeper than {MAX_DEPTH} levels", position=node.pos,
                                expression=text)
        stack.extend((child, depth + 1) for child in n.children(node))


def _bracket_depth(text: str) -> int:
    """Cheap pre-check so a pathological `((((...` never reaches the parser's transformer."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def parse_uncached(text: str) -> n.Node:
    """Parse one bare expression (no `${}`); raises ExpressionSyntaxError or LimitExceeded."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise LimitExceeded(f"the expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}",
                            expression=text[:200] + "...")
    if not text.strip():
        raise ExpressionSyntaxError("the expression is empty", position=0, expression=text)
    if _bracket_depth(text) > MAX_DEPTH:
        raise LimitExceeded(f"the expression nests deeper than {MAX_DEPTH} levels", expression=text)
    try:
        tree = _parser.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except ExpressionError as exc:  # raised by a transformer callback while the LALR parser reduces
        raise exc.located(text) from None
    except VisitError as exc:  # a transformer callback raised: report the underlying error
        inner = exc.orig_exc
        if isinstance(inner, ExpressionError):
            raise inner.located(text) from None
        raise ExpressionSyntaxError(f"not a valid expression ({inner})", expression=text) from None
    if not isinstance(tree, n.Node):  # pragma: no cover - the grammar always yields a node
        raise ExpressionSyntaxError("not a valid expression", expression=text)
    _check_depth(tree, text)
    return tree


@lru_cache(maxsize=2048)
def parse(text: str) -> n.Node:
    """`parse_uncached` behind a compiled-expression cache (nodes are immutable, so sharing is safe)."""
    return parse_uncached(text)
