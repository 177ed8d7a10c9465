"""Walk an expression AST against the root object, with SpEL semantics, a step budget and allow-lists.

No `eval`, no `getattr` with a user-supplied name: properties are map keys, methods and types come
from `methods`' tables, functions from `functions.REGISTRY`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graylane.expressions import nodes as n
from graylane.expressions.constructors import construct
from graylane.expressions.context import EvaluationContext
from graylane.expressions.errors import EvaluationError, ExpressionError, LimitExceeded
from graylane.expressions.functions import REGISTRY
from graylane.expressions.methods import MethodEnv, call_method, compile_regex, has_key
from graylane.expressions.plain import to_plain  # noqa: F401 - re-exported: template and callers use it here
from graylane.expressions.semantics import (
    Meter,
    arithmetic,
    as_boolean,
    compare,
    java_equals,
    negate,
    power,
    preview,
    to_string,
    type_name,
)
from graylane.expressions.statics import JavaType, call_static, resolve_type, static_field

log = logging.getLogger(__name__)


# orca's helpers that read services Graylane does not have (front50 applications, Kayenta's config store)
SPINNAKER_ONLY = {
    "applicationMetadata": "Front50's application metadata (Graylane has no application objects)",
    "canaryConfigNameToId": "Kayenta's stored canary configs (kayentaCanary stages name their config directly)",
}


class InternalEvaluationError(EvaluationError):
    """A bug in the evaluator surfaced as an expression error (logged with its traceback)."""

    exception_type = "InternalEvaluationError"


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth an INFO entry: an unknown key read as null."""

    message: str
    position: int


def _short_keys(keys: Any, limit: int = 12) -> str:
    names = [repr(k) if isinstance(k, str) else preview(k, 40) for k in itertools.islice(keys, limit + 1)]
    if len(names) > limit:
        names = names[:limit] + ["..."]
    return ", ".join(names) or "none"


def _functions() -> dict[str, Any]:
    return REGISTRY


class Evaluator:
    """Evaluates one AST; create one per expression (it holds the step count and notes).

    Steps and built size are counted per `run`; the time budget (`max_time_s`) runs from the
    Evaluator's creation, so one templating pass over a whole stage config is bounded too.
    """

    def __init__(self, ctx: EvaluationContext) -> None:
        self.ctx = ctx
        self.options = ctx.options
        self.root = ctx.root
        self.functions = _functions()
        self.deadline = time.monotonic() + self.options.max_time_s
        self.meter = self._new_meter()
        self.this_stack: list[Any] = [self.root]
        self.notes: list[Note] = []

    def _new_meter(self) -> Meter:
        return Meter(self.options.max_steps, self.options.max_total_size, self.options.max_time_s, self.deadline)

    @property
    def steps(self) -> int:
        return self.meter.steps

    # -- entry ------------------------------------------------------------------------------------
    def run(self, node: n.Node) -> Any:
        """Evaluate `node` from a fresh step count and note list (an Evaluator is reusable)."""
        self.meter = self._new_meter()
        self.meter.check_time()
        self.notes = []
        self.this_stack = [self.root]
        try:
            return self.eval(node)
        except ExpressionError as exc:
            if self.notes and exc.hint is None and isinstance(exc, EvaluationError):
                exc.hint = self.notes[-1].message  # e.g. why a value was null
            raise
        except RecursionError:
            raise LimitExceeded("the expression nests too deeply to evaluate", position=node.pos) from None
        except Exception as exc:  # boundary: a bug must not escape as anything but an expression error
            log.error("internal error evaluating an expression", exc_info=True)
            raise InternalEvaluationError(f"internal error: {type(exc).__name__}: {exc}",
                                          position=node.pos) from exc

    def eval(self, node: n.Node) -> Any:
        try:
            self.meter.step()
            return _DISPATCH[type(node)](self, node)
        except ExpressionError as exc:
            if exc.position is None:
                exc.position = node.pos
            raise

    def charge(self, value: Any, pos: int) -> Any:
        """Count a produced string, list or map against max_total_size (each may be big; together bounded)."""
        kind = type(value)
        if kind is str or kind is list or kind is dict:
            self.spend_size(len(value), pos)
        return value

    def spend_size(self, size: int, pos: int | None) -> None:
        """Count `size` characters or items built (e.g. a parsed document's) against max_total_size."""
        try:
            self.meter.build(size)
        except LimitExceeded as exc:
            exc.position = pos
            raise

    def method_env(self, position: int) -> MethodEnv:
        return MethodEnv(position, self.options.max_string_length, self.options.clock, self.meter)

    # -- leaves -----------------------------------------------------------------------------------
    def _literal(self, node: n.Literal) -> Any:
        return node.value

    def _ident(self, node: n.Ident) -> Any:
        return self.read_property(self.this_stack[-1], node.name, node.pos, safe=False)

    def _var(self, node: n.Var) -> Any:
        if node.name == "root":
            return self.root
        if node.name == "this":
            return self.this_stack[-1]
        if node.name in self.ctx.variables:
            return self.ctx.variables[node.name]
        self.notes.append(Note(f"variable #{node.name} is not set (read as null)", node.pos))
        return None

    def _type_ref(self, node: n.TypeRef) -> Any:
        return resolve_type(node.name, node.pos)

    def _func(self, node: n.Func) -> Any:
        helper = self.functions.get(node.name)
        if helper is None:
            if node.name in ("root", "this"):
                raise EvaluationError(f"#{node.name} is not a function", position=node.pos)
            if node.name in SPINNAKER_ONLY:
                raise EvaluationError(f"#{node.name}() is a Spinnaker helper Graylane does not provide: it needs "
                                      f"{SPINNAKER_ONLY[node.name]}", position=node.pos)
            known = ", ".join(f"#{name}" for name in sorted(self.functions))
            raise EvaluationError(f"unknown function #{node.name}(); functions: {known}", position=node.pos)
        args = [self.eval(a) for a in node.args]
        return self.charge(helper.call(self, node.name, args, node.pos), node.pos)

    def _new(self, node: n.New) -> Any:
        args = [self.eval(a) for a in node.args]
        return self.charge(construct(node.type_name, args, self.method_env(node.pos)), node.pos)

    def _call(self, node: n.Call) -> Any:
        args = [self.eval(a) for a in node.args]
        return self.invoke(self.this_stack[-1], node.name, args, node.pos)

    def invoke(self, receiver: Any, name: str, args: list[Any], pos: int) -> Any:
        env = self.method_env(pos)
        if isinstance(receiver, JavaType):
            return self.charge(call_static(receiver, name, args, env), pos)
        return self.charge(call_method(receiver, name, args, env), pos)

    def _inline_list(self, node: n.InlineList) -> Any:
        return self.charge([self.eval(item) for item in node.items], node.pos)

    def _inline_map(self, node: n.InlineMap) -> Any:
        return self.charge({key: self.eval(value) for key, value in zip(node.keys, node.values, strict=True)},
                           node.pos)

    # -- chains -----------------------------------------------------------------------------------
    def _chain(self, node: n.Chain) -> Any:
        value = self.eval(node.base)
        for op in node.ops:
            try:
                self.meter.step()
                value = self.apply_postfix(value, op)
            except ExpressionError as exc:
                if exc.position is None:
                    exc.position = op.pos
                raise
        return value

    def apply_postfix(self, value: Any, op: n.Node) -> Any:
        if isinstance(op, n.Prop):
            return self.read_property(value, op.name, op.pos, safe=op.safe)
        if isinstance(op, n.Index):
            return self.read_index(value, self.eval(op.key), op.pos)
        if isinstance(op, n.Method):
            if value is None and op.safe:
                return None
            args = [self.eval(a) for a in op.args]
            return self.invoke(value, op.name, args, op.pos)
        if isinstance(op, n.Collection):
            return self.collection(value, op)
        raise EvaluationError(f"unsupported operation {type(op).__name__}", position=op.pos)  # pragma: no cover

    def read_property(self, target: Any, name: str, pos: int, *, safe: bool) -> Any:
        if target is None:
            if safe:
                return None
            raise EvaluationError(f"cannot read property {name!r} of null (use ?.{name} to get null instead)",
                                  position=pos)
        if isinstance(target, JavaType):
            return static_field(target, name, pos)
        if isinstance(target, Mapping):
            try:
                return target[name]
            except KeyError:
                return self.unknown_key(target, name, pos)
        if isinstance(target, str | list) and name == "empty":
            return len(target) == 0
        if isinstance(target, list) and name == "length":  # a Java array's length (split(',').length)
            return len(target)
        raise EvaluationError(f"{type_name(target)} has no property {name!r}", position=pos)

    def unknown_key(self, target: Mapping[Any, Any], key: Any, pos: int) -> None:
        known = getattr(target, "pojo_properties", None)
        if known is not None:  # orca's execution / stage objects: a getter reads null, any other name fails
            if key in known:
                return None
            raise EvaluationError(f"requested getter {key!r} not found on {type_name(target)} (an object, not a map: "
                                  f"its properties are {_short_keys(sorted(known), limit=40)})", position=pos)
        where = "the root" if target is self.root else f"this {type_name(target)}"
        if not self.options.allow_unknown_keys:
            raise EvaluationError(f"no key {key!r} in {where}; keys: {_short_keys(target.keys())}", position=pos)
        self.notes.append(Note(f"no key {key!r} in {where} (read as null); keys: {_short_keys(target.keys())}", pos))
        return None

    def read_index(self, target: Any, key: Any, pos: int) -> Any:
        if target is None:
            raise EvaluationError(f"cannot index null with [{preview(key)!r}]", position=pos)
        if isinstance(target, Mapping):
            if has_key(target, key):
                return target[key]
            if not isinstance(key, str | list | Mapping) and to_string(key) in target:
                return target[to_string(key)]
            return self.unknown_key(target, key, pos)
        if isinstance(target, list | str):
            index = key
            if isinstance(key, str) and key.lstrip("-").isdigit():
                index = int(key)
            if isinstance(index, bool) or not isinstance(index, int):
                if isinstance(target, list):
                    raise EvaluationError(f"a List is indexed by number, not by {type_name(key)} {key!r}",
                                          position=pos)
                raise EvaluationError(f"a String is indexed by number, not by {type_name(key)} {key!r}",
                                      position=pos)
            if not 0 <= index < len(target):
                raise EvaluationError(f"index {index} is out of bounds for a {type_name(target)} of size "
                                      f"{len(target)}", position=pos)
            return target[index]
        if isinstance(target, JavaType) and isinstance(key, str):
            return static_field(target, key, pos)
        raise EvaluationError(f"cannot index {type_name(target)} with [{preview(key)!r}]", position=pos)

    def collection(self, target: Any, op: n.Collection) -> Any:
        symbol = {"select": ".?[", "project": ".![", "first": ".^[", "last": ".$["}[op.kind]
        if target is None:
            raise EvaluationError(f"cannot apply {symbol}...] to null", position=op.pos)
        is_map = isinstance(target, Mapping)
        if is_map:
            items: list[Any] = [{"key": k, "value": v} for k, v in target.items()]
        elif isinstance(target, list):
            items = target
        else:
            raise EvaluationError(f"{symbol}...] needs a List or a Map, not {type_name(target)}", position=op.pos)
        if op.kind == "project":
            return self.charge([self.with_this(item, op.body) for item in items], op.pos)
        chosen = []
        sequence = reversed(items) if op.kind == "last" else items
        for item in sequence:
            keep = as_boolean(self.with_this(item, op.body), "the selection criterion", position=op.body.pos)
            if keep:
                chosen.append(item)
                if op.kind != "select":
                    break
        if op.kind == "select":
            return self.charge({e["key"]: e["value"] for e in chosen} if is_map else chosen, op.pos)
        if not chosen:
            return None
        return {chosen[0]["key"]: chosen[0]["value"]} if is_map else chosen[0]

    def with_this(self, item: Any, body: n.Node) -> Any:
        self.this_stack.append(item)
        try:
            return self.eval(body)
        finally:
            self.this_stack.pop()

    # -- operators --------------------------------------------------------------------------------
    def _unary(self, node: n.Unary) -> Any:
        value = self.eval(node.operand)
        if node.op == "!":
            return not as_boolean(value, "the operand of '!'", position=node.operand.pos)
        if node.op == "-":
            return negate(value, position=node.pos)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvaluationError(f"unary '+' needs a number, not {type_name(value)}", position=node.pos)
        return value

    def _arith(self, node: n.Arith) -> Any:
        value = self.eval(node.operands[0])
        for op, pos, operand in zip(node.ops, node.op_pos, node.operands[1:], strict=True):
            value = self.charge(arithmetic(op, value, self.eval(operand), position=pos,
                                           max_string=self.options.max_string_length), pos)
        return value

    def _power(self, node: n.Power) -> Any:
        return power(self.eval(node.base), self.eval(node.exponent), position=node.op_pos)

    def _logic(self, node: n.Logic) -> Any:
        short_circuit = node.op == "or"
        for operand in node.operands:
            if as_boolean(self.eval(operand), f"each operand of '{node.op}'", position=operand.pos) == short_circuit:
                return short_circuit
        return not short_circuit

    def _compare(self, node: n.Compare) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if node.op == "==":
            return java_equals(left, right, self.meter)
        if node.op == "!=":
            return not java_equals(left, right, self.meter)
        order = compare(left, right, position=node.op_pos)
        return {"<": order < 0, ">": order > 0, "<=": order <= 0, ">=": order >= 0}[node.op]

    def _matches(self, node: n.Matches) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if not isinstance(left, str):
            raise EvaluationError(f"the left side of 'matches' must be a String, not {type_name(left)}",
                                  position=node.left.pos)
        if not isinstance(right, str):
            raise EvaluationError(f"the pattern of 'matches' must be a String, not {type_name(right)}",
                                  position=node.right.pos)
        return compile_regex(right, node.right.pos).fullmatch(left) is not None

    def _ternary(self, node: n.Ternary) -> Any:
        if as_boolean(self.eval(node.cond), "the condition of '? :'", position=node.cond.pos):
            return self.eval(node.then)
        return self.eval(node.orelse)

    def _elvis(self, node: n.Elvis) -> Any:
        value = self.eval(node.value)
        # Spring 5: the Elvis operator treats null and the empty String alike
        return self.eval(node.default) if value is None or value == "" else value


_DISPATCH: dict[type, Callable[[Evaluator, Any], Any]] = {
    n.Literal: Evaluator._literal,
    n.Ident: Evaluator._ident,
    n.Var: Evaluator._var,
    n.TypeRef: Evaluator._type_ref,
    n.Func: Evaluator._func,
    n.Call: Evaluator._call,
    n.New: Evaluator._new,
    n.InlineList: Evaluator._inline_list,
    n.InlineMap: Evaluator._inline_map,
    n.Chain: Evaluator._chain,
    n.Unary: Evaluator._unary,
    n.Arith: Evaluator._arith,
    n.Power: Evaluator._power,
    n.Logic: Evaluator._logic,
    n.Compare: Evaluator._compare,
    n.Matches: Evaluator._matches,
    n.Ternary: Evaluator._ternary,
    n.Elvis: Evaluator._elvis,
}
