"""`new Type(args)`: the constructors of the types on Spinnaker's allow-list, as an allow-list table.

kork's AllowListTypeLocator gives `new` the same types as `T(...)` (InstantiationTypeRestrictor);
each type here takes only the constructors Java has for it, with SpEL's argument conversion for
the common cases (`new Integer('42')`, `new Integer(42)`). Types without a public constructor
(Math, LocalDate, Instant, URLEncoder, ...) are refused with a pointer to their static methods.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from graylane.expressions.errors import EvaluationError
from graylane.expressions.javaobjects import DEFAULT_DATE_PATTERN, DateFormat, JavaDate, JavaRandom, date_now
from graylane.expressions.methods import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    MethodEnv,
    Table,
    fail,
    need_int,
    need_str,
)
from graylane.expressions.semantics import is_number, type_name
from graylane.expressions.statics import parse_double_arg, parse_int_arg, qualified_name, resolve_type


def _whole(env: MethodEnv, value: Any, low: int, high: int, kind: str) -> int:
    """Integer(String) parses; Integer(int) takes a number, a Double narrowed as SpEL's converter does."""
    if value is None:
        raise fail(env, f"new {kind}(null): cannot parse null (NumberFormatException: Cannot parse null string)")
    if isinstance(value, float) and not isinstance(value, bool):
        if not math.isfinite(value) or not low <= int(value) <= high:
            raise fail(env, f"{value!r} is out of range for {kind.lower()}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(env, f"new {kind}(...) needs a String or a number, not {type_name(value)}")
    return parse_int_arg(env, value, 10, low, high, kind.lower() if kind != "Integer" else "int")


def _double(env: MethodEnv, value: Any) -> float:
    if value is None:
        raise fail(env, "new Double(null): cannot parse null (NullPointerException)")
    if isinstance(value, bool) or not (is_number(value) or isinstance(value, str)):
        raise fail(env, f"new Double(...) needs a String or a number, not {type_name(value)}")
    return parse_double_arg(env, value)


def _boolean(env: MethodEnv, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None or isinstance(value, str):
        return value is not None and value.lower() == "true"  # Boolean(String) is parseBoolean
    raise fail(env, f"new Boolean(...) needs a String or a boolean, not {type_name(value)}")


def _string(env: MethodEnv, value: Any = "") -> str:
    if value is None:
        raise fail(env, "new String(null): the value is null (NullPointerException)")
    return need_str(env, value, "new String's argument")


def _date(env: MethodEnv, ms: Any = None) -> JavaDate:
    if ms is None:
        return date_now(env)
    millis = need_int(env, ms, "new Date's epoch milliseconds")
    if not LONG_MIN <= millis <= LONG_MAX:
        raise fail(env, f"{millis} is out of range for long")
    return JavaDate(millis)


def _random(env: MethodEnv, seed: Any = None) -> JavaRandom:
    if seed is None:
        return JavaRandom()
    value = need_int(env, seed, "new Random's seed")
    if not LONG_MIN <= value <= LONG_MAX:
        raise fail(env, f"{value} is out of range for long")
    return JavaRandom(value)


def _uuid(env: MethodEnv, high: Any, low: Any) -> uuid.UUID:
    bits = [need_int(env, part, "a UUID half") for part in (high, low)]
    if not all(LONG_MIN <= b <= LONG_MAX for b in bits):
        raise fail(env, "each half of new UUID(most, least) must be a long")
    return uuid.UUID(int=((bits[0] & (2**64 - 1)) << 64) | (bits[1] & (2**64 - 1)))


CONSTRUCTORS: Table = {
    "String": (0, 1, _string),
    "Integer": (1, 1, lambda env, v: _whole(env, v, INT_MIN, INT_MAX, "Integer")),
    "Long": (1, 1, lambda env, v: _whole(env, v, LONG_MIN, LONG_MAX, "Long")),
    "Byte": (1, 1, lambda env, v: _whole(env, v, -128, 127, "Byte")),
    "Double": (1, 1, _double),
    "Boolean": (1, 1, _boolean),
    "Date": (0, 1, _date),
    "SimpleDateFormat": (0, 1, lambda env, p=DEFAULT_DATE_PATTERN: DateFormat(env, need_str(env, p, "the pattern"))),
    "Random": (0, 1, _random),
    "UUID": (2, 2, _uuid),
}

_INSTEAD = {
    "Math": "T(Math).max(a, b)", "LocalDate": "T(java.time.LocalDate).now()",
    "LocalDateTime": "T(java.time.LocalDateTime).now()", "Instant": "T(java.time.Instant).now()",
    "URLEncoder": 'T(java.net.URLEncoder).encode(text, "UTF-8")',
    "DayOfWeek": "T(java.time.DayOfWeek).MONDAY", "ChronoUnit": "T(java.time.temporal.ChronoUnit).DAYS",
    "TemporalAdjusters": "T(java.time.temporal.TemporalAdjusters).next(T(java.time.DayOfWeek).MONDAY)",
}


def construct(type_name_text: str, args: list[Any], env: MethodEnv) -> Any:
    """`new type_name_text(args)`; the sandbox's rules: allowed types only, their real constructors only."""
    java_type = resolve_type(type_name_text, env.position)
    entry = CONSTRUCTORS.get(java_type.name)
    if entry is None:
        example = _INSTEAD.get(java_type.name, f"T({qualified_name(java_type.name)})")
        raise EvaluationError(f"{qualified_name(java_type.name)} has no public constructor; use its static methods, "
                              f"e.g. {example}", position=env.position)
    low, high, impl = entry
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        plural = "" if low == high == 1 else "s"
        raise fail(env, f"new {java_type.name}(...) takes {want} argument{plural}, got {len(args)} "
                        f"(no suitable constructor on {qualified_name(java_type.name)})")
    return impl(env, *args)
