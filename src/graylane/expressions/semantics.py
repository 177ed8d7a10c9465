"""Java/SpEL value semantics over Python values: type names, toString, equality, ordering, arithmetic.

Values are JSON-shaped (None, bool, int, float, str, list, dict/Mapping) plus a few Java-like
objects (dates, UUID). Integers are unbounded but capped in size; they do not wrap at 32 bits.
Walking a value (toString, equality) is bounded: text stops at a length limit and equality spends
from a `Meter`, because values may share structure and be far larger than they look.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from graylane.expressions.errors import EvaluationError, LimitExceeded

MAX_INT_BITS = 4096
MAX_TEXT = 10_000_000      # characters toString may produce when the caller gives no tighter limit
MAX_COMPARE = 1_000_000    # nodes one equality may visit when the caller gives no meter
MAX_WALK_DEPTH = 256


class Meter:
    """What one evaluation may still spend: steps (work, equality included), built size, and time.

    Raises LimitExceeded (without a position; the evaluator adds the node's) when any runs out.
    """

    __slots__ = ("deadline", "max_size", "max_steps", "max_time_s", "size", "steps", "_tick")

    def __init__(self, max_steps: int, max_size: int, max_time_s: float, deadline: float | None = None) -> None:
        self.max_steps, self.max_size, self.max_time_s = max_steps, max_size, max_time_s
        self.deadline = time.monotonic() + max_time_s if deadline is None else deadline
        self.steps = 0
        self.size = 0
        self._tick = 0

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise LimitExceeded(f"the expression took more than {self.max_steps} evaluation steps")
        self._tick += n
        if self._tick >= 512:
            self._tick = 0
            self.check_time()

    def build(self, n: int) -> None:
        self.size += n
        if self.size > self.max_size:
            raise LimitExceeded(f"the expression builds more than {self.max_size} characters or items in total")
        if n > 4096:  # big values take time to build (parsing a document): look at the clock
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"the expression took longer than {self.max_time_s:g}s to evaluate")


class Instant:
    """java.time.Instant: a UTC point in time."""

    __slots__ = ("moment",)

    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment.astimezone(dt.UTC)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instant) and other.moment == self.moment

    def __hash__(self) -> int:
        return hash(self.moment)

    def to_epoch_ms(self) -> int:
        return int(self.moment.timestamp() * 1000)

    def __str__(self) -> str:
        text = self.moment.replace(tzinfo=None).isoformat()
        return text + "Z"


class JavaObject:
    """A Java object with no JSON shape (Date, SimpleDateFormat, Random): its type, text and methods.

    Subclasses set JAVA_TYPE and METHODS (an allow-list table, filled in by the module defining them).
    """

    __slots__ = ()
    JAVA_TYPE: ClassVar[str] = "Object"
    METHODS: ClassVar[dict[str, Any]] = {}

    def java_text(self) -> str:
        """What Java's toString() prints."""
        return self.JAVA_TYPE

    def plain(self) -> Any:
        """The JSON value when an expression's whole result is this object."""
        return self.java_text()

    def sort_key(self) -> Any:
        """For Comparable types, the value `<` and `compareTo` order by; None if not comparable."""
        return None


class NotEvaluable:
    """`#doNotEval(x)`: a value that templating must return untouched."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def type_name(value: Any) -> str:
    """The Java type a user would recognise in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer" if -(2**31) <= value < 2**31 else "Long"
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "List"
    if isinstance(value, Mapping):
        return getattr(value, "java_type", "Map")
    if isinstance(value, dt.datetime):
        return "LocalDateTime"
    if isinstance(value, dt.date):
        return "LocalDate"
    if isinstance(value, Instant):
        return "Instant"
    if isinstance(value, uuid.UUID):
        return "UUID"
    if isinstance(value, NotEvaluable):
        return "NotEvaluableExpression"
    if isinstance(value, JavaObject):
        return value.JAVA_TYPE
    return "Object"


def _float_text(value: float) -> str:
    """Double.toString: plain for 1e-3 <= |x| < 1e7, else computerized scientific (1.5E10)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exp = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    exponent = len(digits) - 1 + int(exp)
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exponent}"


def _scalar_text(value: Any) -> str | None:
    """String.valueOf for everything that is not a List, Map or NotEvaluable (None for those)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | Mapping | NotEvaluable):
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date | uuid.UUID | Instant):
        return str(value)
    if isinstance(value, JavaObject):
        return value.java_text()
    return type_name(value)


class _Full(Exception):
    """The text writer reached its limit."""


class _TextWriter:
    __slots__ = ("limit", "parts", "room")

    def __init__(self, limit: int) -> None:
        self.limit, self.room, self.parts = limit, limit, []

    def emit(self, text: str) -> None:
        self.room -= len(text)
        if self.room < 0:
            self.parts.append(text[:self.room + len(text)])
            raise _Full
        self.parts.append(text)

    def write(self, value: Any, depth: int) -> None:
        text = _scalar_text(value)
        if text is not None:
            self.emit(text)
            return
        if depth > MAX_WALK_DEPTH:
            raise LimitExceeded(f"the value nests deeper than {MAX_WALK_DEPTH} levels")
        if isinstance(value, NotEvaluable):
            self.write(value.value, depth + 1)
        elif isinstance(value, list):
            self.emit("[")
            for i, item in enumerate(value):
                if i:
                    self.emit(", ")
                self.write(item, depth + 1)
            self.emit("]")
        else:
            self.emit("{")
            for i, (key, item) in enumerate(value.items()):
                if i:
                    self.emit(", ")
                self.write(key, depth + 1)
                self.emit("=")
                self.write(item, depth + 1)
            self.emit("}")


def to_string(value: Any, limit: int = MAX_TEXT) -> str:
    """`String.valueOf(value)` as Java prints it: true, 1.0, [a, b], {k=v}, null.

    Lists and maps stop at `limit` characters with LimitExceeded, before the text is built: a value
    sharing structure may print to far more than it holds.
    """
    text = _scalar_text(value)
    if text is not None:
        return text
    writer = _TextWriter(limit)
    try:
        writer.write(value, 0)
    except _Full:
        raise LimitExceeded(f"the string grows past {limit} characters") from None
    return "".join(writer.parts)


def preview(value: Any, limit: int = 80) -> str:
    """The start of `to_string(value)`, for messages: never fails, never walks past `limit` characters."""
    writer = _TextWriter(limit)
    try:
        writer.write(value, 0)
    except _Full:
        return "".join(writer.parts) + "..."
    except LimitExceeded:
        return type_name(value)
    return "".join(writer.parts)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def java_equals(left: Any, right: Any, meter: Meter | None = None) -> bool:
    """SpEL `==`: numbers by value (1 == 1.0), otherwise Java equals (true != 1, "1" != 1).

    Every list or map element compared is a step of `meter` (shared structure cannot escape it).
    """
    if isinstance(left, list | Mapping) and isinstance(right, list | Mapping):
        if left is right:  # AbstractList/AbstractMap.equals: the same object is equal to itself
            return True
        return _equals(left, right, meter or Meter(MAX_COMPARE, MAX_COMPARE, 60.0), 0)
    return _scalar_equals(left, right)


def _scalar_equals(left: Any, right: Any) -> bool:
    if is_number(left) and is_number(right):
        return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, list | Mapping) or isinstance(right, list | Mapping):
        return False
    if type_name(left) != type_name(right) and not (is_number(left) or is_number(right)):
        return False
    return bool(left == right)


def _equals(left: Any, right: Any, meter: Meter, depth: int) -> bool:
    meter.step()
    if left is right and isinstance(left, list | Mapping):
        return True
    if isinstance(left, list) and isinstance(right, list):
        if depth > MAX_WALK_DEPTH:
            raise LimitExceeded(f"the values nest deeper than {MAX_WALK_DEPTH} levels")
        return len(left) == len(right) and all(
            _equals(a, b, meter, depth + 1) for a, b in zip(left, right, strict=True))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        if depth > MAX_WALK_DEPTH:
            raise LimitExceeded(f"the values nest deeper than {MAX_WALK_DEPTH} levels")
        meter.step(len(left))
        return left.keys() == right.keys() and all(_equals(left[k], right[k], meter, depth + 1) for k in left)
    return _scalar_equals(left, right)


def compare(left: Any, right: Any, *, position: int | None = None) -> int:
    """SpEL's StandardTypeComparator: numbers, strings, booleans, dates; null sorts first."""
    if left is None or right is None:
        return 0 if left is right else (-1 if left is None else 1)
    if is_number(left) and is_number(right):
        return (left > right) - (left < right)
    for kind in (str, bool, dt.datetime, dt.date):
        if isinstance(left, kind) and isinstance(right, kind) and (
            kind is not dt.date or not (isinstance(left, dt.datetime) or isinstance(right, dt.datetime))
        ):
            return (left > right) - (left < right)
    if isinstance(left, Instant) and isinstance(right, Instant):
        return (left.moment > right.moment) - (left.moment < right.moment)
    if isinstance(left, JavaObject) and type(left) is type(right) and left.sort_key() is not None:
        a, b = left.sort_key(), right.sort_key()
        return (a > b) - (a < b)
    raise EvaluationError(f"cannot compare {type_name(left)} {_short(left)} with {type_name(right)} {_short(right)}",
                          position=position)


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = repr(value[:40])
        return text if len(value) <= 40 else text[:37] + "..."
    text = preview(value, 40)
    return text if len(text) <= 40 else text[:37] + "..."


def as_boolean(value: Any, what: str, *, position: int | None = None) -> bool:
    """SpEL's conversion to boolean: Boolean, or the strings "true"/"false"; anything else fails."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise EvaluationError(f"{what} must be a boolean, but it is {type_name(value)} {_short(value)}",
                          position=position)


def check_int(value: int, *, position: int | None = None) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"the number grows past {MAX_INT_BITS} bits", position=position)
    return value


def _java_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _java_mod(a: int, b: int) -> int:
    return a - b * _java_div(a, b)


def arithmetic(op: str, left: Any, right: Any, *, position: int | None, max_string: int) -> Any:
    """`+ - * / %` with Java rules: int/int truncates toward zero, `%` takes the dividend's sign."""
    if op == "+" and (isinstance(left, str) or isinstance(right, str)):
        try:  # each side is printed within what is left of the limit, never in full first
            head = to_string(left, max_string)
            text = head + to_string(right, max_string - len(head))
        except LimitExceeded:
            raise LimitExceeded(f"the string grows past {max_string} characters", position=position) from None
        return text
    if op == "*" and isinstance(left, str) and isinstance(right, int) and not isinstance(right, bool):
        if len(left) * max(right, 0) > max_string:
            raise LimitExceeded(f"the string grows past {max_string} characters", position=position)
        return left * max(right, 0)
    if not (is_number(left) and is_number(right)):
        raise EvaluationError(
            f"operator {op!r} is not defined for {type_name(left)} {_short(left)} and "
            f"{type_name(right)} {_short(right)}", position=position)
    if isinstance(left, int) and isinstance(right, int):
        if op == "+":
            return check_int(left + right, position=position)
        if op == "-":
            return check_int(left - right, position=position)
        if op == "*":
            return check_int(left * right, position=position)
        if right == 0:
            raise EvaluationError("division by zero (/ by zero)", position=position)
        return _java_div(left, right) if op == "/" else _java_mod(left, right)
    a, b = float(left), float(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
        return a / b
    if b == 0:
        return math.nan
    return math.fmod(a, b)


def power(base: Any, exponent: Any, *, position: int | None) -> Any:
    """`^`: int^int stays an integer (BigInteger.pow); otherwise Math.pow."""
    if not (is_number(base) and is_number(exponent)):
        raise EvaluationError(f"operator '^' is not defined for {type_name(base)} and {type_name(exponent)}",
                              position=position)
    if isinstance(base, int) and isinstance(exponent, int):
        if exponent < 0:
            raise EvaluationError("negative exponent for an integer power (use a decimal base, e.g. 2.0^-1)",
                                  position=position)
        if abs(base) > 1 and exponent * max(abs(base), 2).bit_length() > MAX_INT_BITS:
            raise LimitExceeded(f"the number grows past {MAX_INT_BITS} bits", position=position)
        return base**exponent
    try:
        return math.pow(float(base), float(exponent))
    except (OverflowError, ValueError):
        return math.inf if float(base) > 0 else math.nan


def negate(value: Any, *, position: int | None) -> Any:
    if not is_number(value):
        raise EvaluationError(f"cannot negate {type_name(value)} {_short(value)}", position=position)
    return -value
