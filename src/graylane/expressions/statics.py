"""`T(...)`: the allowed Java types (kork's InstantiationTypeRestrictor: Math, Integer, Long, Double, Boolean,
Byte, String, UUID, LocalDate, LocalDateTime, Instant, Date, SimpleDateFormat, Random, URLEncoder, DayOfWeek,
ChronoUnit, TemporalAdjusters) and their static methods and fields, as allow-list tables. The same names
are what `new` may construct (see `constructors`).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any

from graylane.expressions.errors import EvaluationError, LimitExceeded
from graylane.expressions.javaobjects import DATE_STATICS, URL_ENCODER_STATICS, string_format
from graylane.expressions.javatime import (
    CHRONO_UNIT_FIELDS,
    CHRONO_UNIT_STATICS,
    DAY_OF_WEEK_FIELDS,
    DAY_OF_WEEK_STATICS,
    TEMPORAL_ADJUSTERS_STATICS,
)
from graylane.expressions.methods import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    MethodEnv,
    Table,
    cap_string,
    fail,
    invoke,
    java_trim,
    need_int,
    need_str,
)
from graylane.expressions.semantics import Instant, is_number, to_string, type_name


@dataclass(frozen=True, slots=True)
class JavaType:
    """The value of `T(java.lang.Math)`: a handle for static methods and fields."""

    name: str


def parse_int_arg(env: MethodEnv, text: Any, radix: Any = 10, low: int = INT_MIN, high: int = INT_MAX,
               kind: str = "int") -> int:
    if is_number(text) and isinstance(text, int):
        value = text
    else:
        s = need_str(env, text, "the value")
        r = need_int(env, radix, "the radix")
        if not 2 <= r <= 36 or not s or not all(c.isascii() for c in s) or s.strip() != s or "_" in s:
            raise fail(env, f"{s!r} is not a valid {kind}")
        try:
            value = int(s, r)
        except ValueError:
            raise fail(env, f"{s!r} is not a valid {kind}") from None
    if not low <= value <= high:
        raise fail(env, f"{value} is out of range for {kind}")
    return value


def parse_java_double(text: str) -> float | None:
    """Double.valueOf's accepted forms (trimmed; optional f/d suffix; NaN; Infinity); None if not a number."""
    s = java_trim(text)
    if s.endswith(("f", "F", "d", "D")) and not s.lower().endswith("infinity"):
        s = s[:-1]
    if s in ("NaN", "+NaN", "-NaN"):
        return math.nan
    if s in ("Infinity", "+Infinity"):
        return math.inf
    if s == "-Infinity":
        return -math.inf
    if not s or not all(c in "0123456789+-.eE" for c in s):
        return None
    try:
        return float(s)
    except ValueError:
        return None


def parse_double_arg(env: MethodEnv, text: Any) -> float:
    if is_number(text):
        return float(text)
    value = parse_java_double(need_str(env, text, "the value"))
    if value is None:
        raise fail(env, f"{text!r} is not a valid double")
    return value


def _num(env: MethodEnv, value: Any) -> float | int:
    if not is_number(value):
        raise fail(env, f"expected a number, got {type_name(value)}")
    return value


def _math_round(env: MethodEnv, x: Any) -> int:
    x = _num(env, x)
    return int(x) if isinstance(x, int) else (0 if math.isnan(x) else int(math.floor(x + 0.5)))


def _parse_date(env: MethodEnv, text: Any, kind: str) -> Any:
    s = need_str(env, text, "the value")
    try:
        if kind == "LocalDate":
            return dt.date.fromisoformat(s)
        if kind == "LocalDateTime":
            return dt.datetime.fromisoformat(s).replace(tzinfo=None) if "T" in s else _bad_date(s, kind)
        moment = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return _bad_date(s, kind)
        return Instant(moment)
    except ValueError:
        raise fail(env, f"{s!r} is not a valid {kind}") from None


def _bad_date(s: str, kind: str) -> Any:
    raise ValueError(f"{s!r} is not a valid {kind}")


def _date_of(env: MethodEnv, *parts: Any) -> Any:
    ints = [need_int(env, p, "a date field") for p in parts]
    try:
        return dt.date(*ints) if len(ints) == 3 else dt.datetime(*ints)
    except (ValueError, TypeError) as exc:
        raise fail(env, f"invalid date: {exc}") from None


def _local_now(env: MethodEnv) -> dt.datetime:
    return env.clock().astimezone(dt.UTC).replace(tzinfo=None)


def _join(env: MethodEnv, delimiter: Any, *items: Any) -> str:
    parts = items[0] if len(items) == 1 and isinstance(items[0], list) else list(items)
    separator = need_str(env, delimiter, "join's delimiter")
    texts: list[str] = []
    size = 0
    for i, part in enumerate(parts):  # each part printed within what is left, so the whole stays bounded
        size += len(separator) if i else 0
        texts.append(env.text(part, env.max_string_length - size))
        size += len(texts[-1])
        if size > env.max_string_length:
            raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    return cap_string(env, separator.join(texts))


def _instant_of_ms(env: MethodEnv, ms: Any) -> Instant:
    try:
        return Instant(dt.datetime.fromtimestamp(need_int(env, ms, "epoch milliseconds") / 1000, dt.UTC))
    except (OverflowError, ValueError, OSError) as exc:
        raise fail(env, f"instant out of range: {exc}") from None


_MATH: Table = {
    "abs": (1, 1, lambda env, x: abs(_num(env, x))),
    "max": (2, 2, lambda env, a, b: max(_num(env, a), _num(env, b))),
    "min": (2, 2, lambda env, a, b: min(_num(env, a), _num(env, b))),
    "floor": (1, 1, lambda env, x: float(math.floor(_num(env, x))) if math.isfinite(_num(env, x)) else x),
    "ceil": (1, 1, lambda env, x: float(math.ceil(_num(env, x))) if math.isfinite(_num(env, x)) else x),
    "round": (1, 1, _math_round),
    "pow": (2, 2, lambda env, a, b: _pow(env, a, b)),
    "sqrt": (1, 1, lambda env, x: math.sqrt(_num(env, x)) if _num(env, x) >= 0 else math.nan),
    "random": (0, 0, lambda env: random.random()),  # noqa: S311 - not for security
    "floorDiv": (2, 2, lambda env, a, b: _floor_op(env, a, b, True)),
    "floorMod": (2, 2, lambda env, a, b: _floor_op(env, a, b, False)),
}


def _pow(env: MethodEnv, a: Any, b: Any) -> float:
    try:
        return math.pow(float(_num(env, a)), float(_num(env, b)))
    except (OverflowError, ValueError):
        return math.inf if float(a) > 0 else math.nan


def _floor_op(env: MethodEnv, a: Any, b: Any, div: bool) -> int:
    a, b = need_int(env, a, "the dividend"), need_int(env, b, "the divisor")
    if b == 0:
        raise fail(env, "division by zero (/ by zero)")
    return a // b if div else a % b


TYPES: dict[str, tuple[Table, dict[str, Any]]] = {
    "Math": (_MATH, {"PI": math.pi, "E": math.e}),
    "Integer": ({
        "parseInt": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r)),
        "valueOf": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r)),
        "toString": (1, 1, lambda env, x: to_string(x)),
        "max": (2, 2, lambda env, a, b: max(need_int(env, a, "a"), need_int(env, b, "b"))),
        "min": (2, 2, lambda env, a, b: min(need_int(env, a, "a"), need_int(env, b, "b"))),
        "sum": (2, 2, lambda env, a, b: need_int(env, a, "a") + need_int(env, b, "b")),
    }, {"MAX_VALUE": INT_MAX, "MIN_VALUE": INT_MIN}),
    "Long": ({
        "parseLong": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r, LONG_MIN, LONG_MAX, "long")),
        "valueOf": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r, LONG_MIN, LONG_MAX, "long")),
        "toString": (1, 1, lambda env, x: to_string(x)),
    }, {"MAX_VALUE": LONG_MAX, "MIN_VALUE": LONG_MIN}),
    "Double": ({
        "parseDouble": (1, 1, parse_double_arg),
        "valueOf": (1, 1, parse_double_arg),
        "toString": (1, 1, lambda env, x: to_string(float(_num(env, x)))),
        "isNaN": (1, 1, lambda env, x: isinstance(x, float) and math.isnan(x)),
    }, {"MAX_VALUE": 1.7976931348623157e308, "MIN_VALUE": 5e-324, "NaN": math.nan,
        "POSITIVE_INFINITY": math.inf, "NEGATIVE_INFINITY": -math.inf}),
    "Boolean": ({
        "parseBoolean": (1, 1, lambda env, s: isinstance(s, str) and s.lower() == "true"),
        "valueOf": (1, 1, lambda env, s: s if isinstance(s, bool) else isinstance(s, str) and s.lower() == "true"),
        "toString": (1, 1, lambda env, b: to_string(b)),
    }, {"TRUE": True, "FALSE": False}),
    "Byte": ({
        "parseByte": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r, -128, 127, "byte")),
        "valueOf": (1, 2, lambda env, s, r=10: parse_int_arg(env, s, r, -128, 127, "byte")),
        "toString": (1, 1, lambda env, x: to_string(x)),
    }, {"MAX_VALUE": 127, "MIN_VALUE": -128}),
    "String": ({
        "valueOf": (1, 1, lambda env, x: env.text(x)),
        "join": (2, 64, _join),
        "format": (1, 256, string_format),
    }, {}),
    "Date": (DATE_STATICS, {}),
    "SimpleDateFormat": ({}, {}),
    "Random": ({}, {}),
    "URLEncoder": (URL_ENCODER_STATICS, {}),
    "DayOfWeek": (DAY_OF_WEEK_STATICS, DAY_OF_WEEK_FIELDS),
    "ChronoUnit": (CHRONO_UNIT_STATICS, CHRONO_UNIT_FIELDS),
    "TemporalAdjusters": (TEMPORAL_ADJUSTERS_STATICS, {}),
    "UUID": ({
        "randomUUID": (0, 0, lambda env: uuid.uuid4()),
        "fromString": (1, 1, lambda env, s: _uuid(env, s)),
    }, {}),
    "LocalDate": ({
        "now": (0, 0, lambda env: _local_now(env).date()),
        "parse": (1, 1, lambda env, s: _parse_date(env, s, "LocalDate")),
        "of": (3, 3, _date_of),
    }, {}),
    "LocalDateTime": ({
        "now": (0, 0, lambda env: _local_now(env)),
        "parse": (1, 1, lambda env, s: _parse_date(env, s, "LocalDateTime")),
        "of": (5, 6, _date_of),
    }, {}),
    "Instant": ({
        "now": (0, 0, lambda env: Instant(env.clock())),
        "parse": (1, 1, lambda env, s: _parse_date(env, s, "Instant")),
        "ofEpochMilli": (1, 1, _instant_of_ms),
        "ofEpochSecond": (1, 1, lambda env, s: _instant_of_ms(env, need_int(env, s, "epoch seconds") * 1000)),
    }, {}),
}

_PACKAGES = {"Math": "java.lang", "Integer": "java.lang", "Long": "java.lang", "Double": "java.lang",
             "Boolean": "java.lang", "Byte": "java.lang", "String": "java.lang", "UUID": "java.util",
             "LocalDate": "java.time", "LocalDateTime": "java.time", "Instant": "java.time", "Date": "java.util",
             "SimpleDateFormat": "java.text", "Random": "java.util", "URLEncoder": "java.net",
             "DayOfWeek": "java.time", "ChronoUnit": "java.time.temporal", "TemporalAdjusters": "java.time.temporal"}


def _uuid(env: MethodEnv, s: Any) -> uuid.UUID:
    try:
        return uuid.UUID(need_str(env, s, "the value"))
    except ValueError:
        raise fail(env, f"{s!r} is not a valid UUID") from None


def qualified_name(simple: str) -> str:
    """`Date` -> `java.util.Date`."""
    return f"{_PACKAGES[simple]}.{simple}"


def resolve_type(name: str, position: int | None) -> JavaType:
    """`T(name)` or `new name(...)` for the allowed types, by simple or fully qualified name.

    SpEL itself finds short names only in java.lang (`T(Integer)`, `new String('x')`); we also accept
    the short names of the other allowed types (`T(LocalDate)`, `new Date()`).
    """
    simple = name.rsplit(".", 1)[-1]
    if simple in TYPES and name in (simple, qualified_name(simple)):
        return JavaType(simple)
    allowed = ", ".join(sorted(TYPES))
    raise EvaluationError(f"type {name} is not allowed in expressions; allowed: {allowed}", position=position)


def static_field(java_type: JavaType, name: str, position: int | None) -> Any:
    fields = TYPES[java_type.name][1]
    if name not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise EvaluationError(f"{java_type.name} has no field {name!r}; fields: {known}", position=position)
    return fields[name]


def call_static(java_type: JavaType, name: str, args: list[Any], env: MethodEnv) -> Any:
    """`T(Math).max(1, 2)`: an allow-listed static method."""
    return invoke(TYPES[java_type.name][0], java_type.name, name, None, args, env, static=True)
