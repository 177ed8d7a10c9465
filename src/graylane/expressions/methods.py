"""The allow-list of methods callable on values, and of `T(...)` types with their static members.

Nothing here looks a user-supplied name up on a Python object: every callable is a table entry.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from graylane.expressions.errors import EvaluationError, LimitExceeded
from graylane.expressions.semantics import Instant, compare, is_number, java_equals, to_string, type_name

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class MethodEnv:
    """What a method may need beyond its receiver and arguments."""

    position: int | None
    max_string_length: int
    clock: Callable[[], dt.datetime]


@dataclass(frozen=True, slots=True)
class JavaType:
    """The value of `T(java.lang.Math)`: a handle for static methods and fields."""

    name: str


Impl = Callable[..., Any]
Table = dict[str, tuple[int, int, Impl]]


def _fail(env: MethodEnv, message: str) -> EvaluationError:
    return EvaluationError(message, position=env.position)


def _need_str(env: MethodEnv, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(env, f"{what} must be a String, but it is {type_name(value)}")
    return value


def _need_int(env: MethodEnv, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(env, f"{what} must be an integer, but it is {type_name(value)}")
    return value


def _cap(env: MethodEnv, text: str) -> str:
    if len(text) > env.max_string_length:
        raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    return text


_REGEX_OPTIONS = re2.Options()
_REGEX_OPTIONS.max_mem = 8 << 20
_REGEX_OPTIONS.log_errors = False  # a bad user pattern is reported as an EvaluationError, not logged by RE2


def compile_regex(pattern: str, env_position: int | None) -> Any:
    """An RE2 pattern (linear time, no backreferences); a bad pattern is an EvaluationError."""
    try:
        return _compile_cached(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", errors="replace")
        raise EvaluationError(f"invalid regular expression {pattern!r}: {detail}", position=env_position) from None


_regex_cache: dict[str, Any] = {}


def _compile_cached(pattern: str) -> Any:
    compiled = _regex_cache.get(pattern)
    if compiled is None:
        compiled = re2.compile(pattern, options=_REGEX_OPTIONS)
        if len(_regex_cache) > 512:
            _regex_cache.clear()
        _regex_cache[pattern] = compiled
    return compiled


_REGEX_META = set(".$|()[]{}^?*+\\")


def java_split(env: MethodEnv, text: str, regex: str, limit: int = 0) -> list[str]:
    """String.split(regex, limit): trailing empty strings dropped when limit == 0."""
    literal = regex if len(regex) == 1 and regex not in _REGEX_META else None
    if len(regex) == 2 and regex[0] == "\\" and not regex[1].isalnum():
        literal = regex[1]  # "\\." splits on a dot
    if literal is not None:
        parts = text.split(literal, limit - 1 if limit > 0 else -1)
    else:
        compiled = compile_regex(regex, env.position)
        parts, start = [], 0
        for match in compiled.finditer(text):
            if limit > 0 and len(parts) == limit - 1:
                break
            if match.end() == 0:
                continue  # a zero-width match at the start never yields a leading empty string
            if match.start() == match.end() and match.start() >= len(text):
                break
            parts.append(text[start:match.start()])
            start = match.end()
        parts.append(text[start:])
    if limit == 0:
        while len(parts) > 1 and parts[-1] == "":
            parts.pop()
        if parts == [""] and text:
            parts = []
    return parts


def _substring(env: MethodEnv, s: str, begin: Any, end: Any = None) -> str:
    b = _need_int(env, begin, "substring's begin index")
    e = len(s) if end is None else _need_int(env, end, "substring's end index")
    if b < 0 or e > len(s) or b > e:
        raise _fail(env, f"substring({b}{'' if end is None else f', {e}'}) is out of range for a String of "
                         f"length {len(s)}")
    return s[b:e]


def _index_of(env: MethodEnv, s: str, sub: Any, start: Any = 0) -> int:
    return s.find(_need_str(env, sub, "indexOf's argument"), max(0, _need_int(env, start, "indexOf's start")))


def _char_at(env: MethodEnv, s: str, i: Any) -> str:
    i = _need_int(env, i, "charAt's index")
    if not 0 <= i < len(s):
        raise _fail(env, f"charAt({i}) is out of range for a String of length {len(s)}")
    return s[i]


def _java_trim(s: str) -> str:
    return s.strip("".join(chr(c) for c in range(33)))


def _replace(env: MethodEnv, s: str, old: Any, new: Any) -> str:
    old_s, new_s = to_string(old), to_string(new)
    if old_s == "":
        if (len(s) + 1) * len(new_s) + len(s) > env.max_string_length:
            raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    elif new_s and s.count(old_s) * len(new_s) > env.max_string_length:
        raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    return _cap(env, s.replace(old_s, new_s))


def _matches(env: MethodEnv, s: str, regex: Any) -> bool:
    return compile_regex(_need_str(env, regex, "matches' pattern"), env.position).fullmatch(s) is not None


STRING_METHODS: Table = {
    "equals": (1, 1, lambda env, s, o: isinstance(o, str) and s == o),
    "equalsIgnoreCase": (1, 1, lambda env, s, o: isinstance(o, str) and s.lower() == o.lower()),
    "contains": (1, 1, lambda env, s, o: _need_str(env, o, "contains' argument") in s),
    "startsWith": (1, 2, lambda env, s, p, off=0: s.startswith(_need_str(env, p, "startsWith' prefix"),
                                                              _need_int(env, off, "startsWith' offset"))),
    "endsWith": (1, 1, lambda env, s, p: s.endswith(_need_str(env, p, "endsWith' suffix"))),
    "toLowerCase": (0, 0, lambda env, s: s.lower()),
    "toUpperCase": (0, 0, lambda env, s: s.upper()),
    "trim": (0, 0, lambda env, s: _java_trim(s)),
    "strip": (0, 0, lambda env, s: s.strip()),
    "split": (1, 2, lambda env, s, r, lim=0: java_split(env, s, _need_str(env, r, "split's pattern"),
                                                         _need_int(env, lim, "split's limit"))),
    "substring": (1, 2, _substring),
    "replace": (2, 2, _replace),
    "length": (0, 0, lambda env, s: len(s)),
    "isEmpty": (0, 0, lambda env, s: s == ""),
    "isBlank": (0, 0, lambda env, s: s.strip() == ""),
    "indexOf": (1, 2, _index_of),
    "lastIndexOf": (1, 1, lambda env, s, sub: s.rfind(_need_str(env, sub, "lastIndexOf's argument"))),
    "charAt": (1, 1, _char_at),
    "concat": (1, 1, lambda env, s, o: _cap(env, s + _need_str(env, o, "concat's argument"))),
    "matches": (1, 1, _matches),
    "compareTo": (1, 1, lambda env, s, o: compare(s, _need_str(env, o, "compareTo's argument"))),
    "toString": (0, 0, lambda env, s: s),
}


def _list_get(env: MethodEnv, items: list[Any], i: Any) -> Any:
    i = _need_int(env, i, "get's index")
    if not 0 <= i < len(items):
        raise _fail(env, f"get({i}) is out of range for a List of size {len(items)}")
    return items[i]


def _index_in(items: list[Any], o: Any) -> int:
    return next((i for i, v in enumerate(items) if java_equals(v, o)), -1)


def _sub_list(env: MethodEnv, items: list[Any], a: Any, b: Any) -> list[Any]:
    a, b = _need_int(env, a, "subList's start"), _need_int(env, b, "subList's end")
    if a < 0 or b > len(items) or a > b:
        raise _fail(env, f"subList({a}, {b}) is out of range for a List of size {len(items)}")
    return items[a:b]


LIST_METHODS: Table = {
    "size": (0, 0, lambda env, xs: len(xs)),
    "isEmpty": (0, 0, lambda env, xs: not xs),
    "contains": (1, 1, lambda env, xs, o: _index_in(xs, o) >= 0),
    "get": (1, 1, _list_get),
    "indexOf": (1, 1, lambda env, xs, o: _index_in(xs, o)),
    "subList": (2, 2, _sub_list),
    "equals": (1, 1, lambda env, xs, o: java_equals(xs, o)),
    "toString": (0, 0, lambda env, xs: to_string(xs)),
}


def has_key(m: Mapping[Any, Any], key: Any) -> bool:
    """`key in m`, where a list or map key (unhashable in Python) is simply absent."""
    try:
        return key in m
    except TypeError:
        return False


def _map_get(m: Mapping[Any, Any], key: Any, default: Any = None) -> Any:
    if has_key(m, key):
        return m[key]
    if not isinstance(key, str) and to_string(key) in m:
        return m[to_string(key)]
    return default


MAP_METHODS: Table = {
    "size": (0, 0, lambda env, m: len(m)),
    "isEmpty": (0, 0, lambda env, m: len(m) == 0),
    "containsKey": (1, 1, lambda env, m, k: has_key(m, k)),
    "containsValue": (1, 1, lambda env, m, v: any(java_equals(x, v) for x in m.values())),
    "get": (1, 1, lambda env, m, k: _map_get(m, k)),
    "getOrDefault": (2, 2, lambda env, m, k, d: _map_get(m, k, d)),
    "keySet": (0, 0, lambda env, m: list(m.keys())),
    "values": (0, 0, lambda env, m: list(m.values())),
    "entrySet": (0, 0, lambda env, m: [{"key": k, "value": v} for k, v in m.items()]),
    "equals": (1, 1, lambda env, m, o: java_equals(m, o)),
    "toString": (0, 0, lambda env, m: to_string(m)),
}


def _to_int32(env: MethodEnv, value: float | int) -> int:
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        value = INT_MAX if value >= INT_MAX else INT_MIN if value <= INT_MIN else int(value)
    return value


NUMBER_METHODS: Table = {
    "toString": (0, 0, lambda env, x: to_string(x)),
    "equals": (1, 1, lambda env, x, o: is_number(o) and type(x) is type(o) and x == o),
    "intValue": (0, 0, lambda env, x: _to_int32(env, x)),
    "longValue": (0, 0, lambda env, x: int(x) if not isinstance(x, float) or math.isfinite(x) else 0),
    "doubleValue": (0, 0, lambda env, x: float(x)),
    "floatValue": (0, 0, lambda env, x: float(x)),
    "compareTo": (1, 1, lambda env, x, o: compare(x, o, position=env.position)),
}

BOOLEAN_METHODS: Table = {
    "toString": (0, 0, lambda env, b: to_string(b)),
    "equals": (1, 1, lambda env, b, o: isinstance(o, bool) and b == o),
    "booleanValue": (0, 0, lambda env, b: b),
}

_DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def _plus(env: MethodEnv, value: Any, amount: Any, unit: str, sign: int) -> Any:
    n = _need_int(env, amount, "the amount") * sign
    try:
        if isinstance(value, Instant):
            return Instant(value.moment + dt.timedelta(**{unit: n}))
        if unit == "months":
            total = value.year * 12 + value.month - 1 + n
            year, month = divmod(total, 12)
            day = min(value.day, [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month])
            return value.replace(year=year, month=month + 1, day=day)
        return value + dt.timedelta(**{unit: n})
    except (OverflowError, ValueError) as exc:
        raise _fail(env, f"date arithmetic out of range: {exc}") from None


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _date_compare(env: MethodEnv, a: Any, b: Any) -> int:
    return compare(a, b, position=env.position)


_DATE_COMMON: Table = {
    "toString": (0, 0, lambda env, d: to_string(d)),
    "equals": (1, 1, lambda env, d, o: type(d) is type(o) and d == o),
    "isBefore": (1, 1, lambda env, d, o: _date_compare(env, d, o) < 0),
    "isAfter": (1, 1, lambda env, d, o: _date_compare(env, d, o) > 0),
    "compareTo": (1, 1, _date_compare),
}

LOCAL_DATE_METHODS: Table = {
    **_DATE_COMMON,
    "getYear": (0, 0, lambda env, d: d.year),
    "getMonthValue": (0, 0, lambda env, d: d.month),
    "getDayOfMonth": (0, 0, lambda env, d: d.day),
    "getDayOfYear": (0, 0, lambda env, d: d.timetuple().tm_yday),
    "getDayOfWeek": (0, 0, lambda env, d: _DAYS[d.weekday()]),
    "plusDays": (1, 1, lambda env, d, n: _plus(env, d, n, "days", 1)),
    "minusDays": (1, 1, lambda env, d, n: _plus(env, d, n, "days", -1)),
    "plusWeeks": (1, 1, lambda env, d, n: _plus(env, d, n, "weeks", 1)),
    "minusWeeks": (1, 1, lambda env, d, n: _plus(env, d, n, "weeks", -1)),
    "plusMonths": (1, 1, lambda env, d, n: _plus(env, d, n, "months", 1)),
    "minusMonths": (1, 1, lambda env, d, n: _plus(env, d, n, "months", -1)),
}

LOCAL_DATE_TIME_METHODS: Table = {
    **LOCAL_DATE_METHODS,
    "getHour": (0, 0, lambda env, d: d.hour),
    "getMinute": (0, 0, lambda env, d: d.minute),
    "getSecond": (0, 0, lambda env, d: d.second),
    "plusHours": (1, 1, lambda env, d, n: _plus(env, d, n, "hours", 1)),
    "minusHours": (1, 1, lambda env, d, n: _plus(env, d, n, "hours", -1)),
    "plusMinutes": (1, 1, lambda env, d, n: _plus(env, d, n, "minutes", 1)),
    "minusMinutes": (1, 1, lambda env, d, n: _plus(env, d, n, "minutes", -1)),
    "toLocalDate": (0, 0, lambda env, d: d.date()),
}

INSTANT_METHODS: Table = {
    **_DATE_COMMON,
    "toEpochMilli": (0, 0, lambda env, i: i.to_epoch_ms()),
    "getEpochSecond": (0, 0, lambda env, i: int(i.moment.timestamp())),
    "plusSeconds": (1, 1, lambda env, i, n: _plus(env, i, n, "seconds", 1)),
    "minusSeconds": (1, 1, lambda env, i, n: _plus(env, i, n, "seconds", -1)),
    "plusMillis": (1, 1, lambda env, i, n: _plus(env, i, n, "milliseconds", 1)),
    "minusMillis": (1, 1, lambda env, i, n: _plus(env, i, n, "milliseconds", -1)),
}

UUID_METHODS: Table = {
    "toString": (0, 0, lambda env, u: str(u)),
    "equals": (1, 1, lambda env, u, o: isinstance(o, uuid.UUID) and u == o),
}


def _methods_for(receiver: Any) -> Table | None:
    if isinstance(receiver, str):
        return STRING_METHODS
    if isinstance(receiver, bool):
        return BOOLEAN_METHODS
    if is_number(receiver):
        return NUMBER_METHODS
    if isinstance(receiver, list):
        return LIST_METHODS
    if isinstance(receiver, Mapping):
        return MAP_METHODS
    if isinstance(receiver, dt.datetime):
        return LOCAL_DATE_TIME_METHODS
    if isinstance(receiver, dt.date):
        return LOCAL_DATE_METHODS
    if isinstance(receiver, Instant):
        return INSTANT_METHODS
    if isinstance(receiver, uuid.UUID):
        return UUID_METHODS
    return None


def _invoke(table: Table, owner: str, name: str, receiver: Any, args: list[Any], env: MethodEnv,
            static: bool = False) -> Any:
    entry = table.get(name)
    if entry is None:
        allowed = ", ".join(sorted(table))
        raise _fail(env, f"method {name}() is not allowed on {owner}; allowed: {allowed}")
    low, high, impl = entry
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise _fail(env, f"{owner}.{name}() takes {want} argument{'s' if high != 1 else ''}, got {len(args)}")
    return impl(env, *args) if static else impl(env, receiver, *args)


def call_method(receiver: Any, name: str, args: list[Any], env: MethodEnv) -> Any:
    """Call an allow-listed method; anything else is an EvaluationError naming what is allowed."""
    if isinstance(receiver, JavaType):
        return _invoke(TYPES[receiver.name][0], receiver.name, name, None, args, env, static=True)
    if receiver is None:
        raise _fail(env, f"method {name}() cannot be called on null (use ?.{name}() to get null instead)")
    table = _methods_for(receiver)
    if table is None:
        raise _fail(env, f"method {name}() cannot be called on {type_name(receiver)}")
    return _invoke(table, type_name(receiver), name, receiver, args, env)


# --- T(...) types -------------------------------------------------------------------------------

def _parse_int(env: MethodEnv, text: Any, radix: Any = 10, low: int = INT_MIN, high: int = INT_MAX,
               kind: str = "int") -> int:
    if is_number(text) and isinstance(text, int):
        value = text
    else:
        s = _need_str(env, text, "the value")
        r = _need_int(env, radix, "the radix")
        if not 2 <= r <= 36 or not s or not all(c.isascii() for c in s) or s.strip() != s or "_" in s:
            raise _fail(env, f"{s!r} is not a valid {kind}")
        try:
            value = int(s, r)
        except ValueError:
            raise _fail(env, f"{s!r} is not a valid {kind}") from None
    if not low <= value <= high:
        raise _fail(env, f"{value} is out of range for {kind}")
    return value


def parse_java_double(text: str) -> float | None:
    """Double.valueOf's accepted forms (trimmed; optional f/d suffix; NaN; Infinity); None if not a number."""
    s = _java_trim(text)
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


def _parse_double(env: MethodEnv, text: Any) -> float:
    if is_number(text):
        return float(text)
    value = parse_java_double(_need_str(env, text, "the value"))
    if value is None:
        raise _fail(env, f"{text!r} is not a valid double")
    return value


def _num(env: MethodEnv, value: Any) -> float | int:
    if not is_number(value):
        raise _fail(env, f"expected a number, got {type_name(value)}")
    return value


def _math_round(env: MethodEnv, x: Any) -> int:
    x = _num(env, x)
    return int(x) if isinstance(x, int) else (0 if math.isnan(x) else int(math.floor(x + 0.5)))


def _parse_date(env: MethodEnv, text: Any, kind: str) -> Any:
    s = _need_str(env, text, "the value")
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
        raise _fail(env, f"{s!r} is not a valid {kind}") from None


def _bad_date(s: str, kind: str) -> Any:
    raise ValueError(f"{s!r} is not a valid {kind}")


def _date_of(env: MethodEnv, *parts: Any) -> Any:
    ints = [_need_int(env, p, "a date field") for p in parts]
    try:
        return dt.date(*ints) if len(ints) == 3 else dt.datetime(*ints)
    except (ValueError, TypeError) as exc:
        raise _fail(env, f"invalid date: {exc}") from None


def _local_now(env: MethodEnv) -> dt.datetime:
    return env.clock().astimezone(dt.UTC).replace(tzinfo=None)


def _join(env: MethodEnv, delimiter: Any, *items: Any) -> str:
    parts = items[0] if len(items) == 1 and isinstance(items[0], list) else list(items)
    return _cap(env, _need_str(env, delimiter, "join's delimiter").join(to_string(p) for p in parts))


def _instant_of_ms(env: MethodEnv, ms: Any) -> Instant:
    try:
        return Instant(dt.datetime.fromtimestamp(_need_int(env, ms, "epoch milliseconds") / 1000, dt.UTC))
    except (OverflowError, ValueError, OSError) as exc:
        raise _fail(env, f"instant out of range: {exc}") from None


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
    a, b = _need_int(env, a, "the dividend"), _need_int(env, b, "the divisor")
    if b == 0:
        raise _fail(env, "division by zero (/ by zero)")
    return a // b if div else a % b


TYPES: dict[str, tuple[Table, dict[str, Any]]] = {
    "Math": (_MATH, {"PI": math.pi, "E": math.e}),
    "Integer": ({
        "parseInt": (1, 2, lambda env, s, r=10: _parse_int(env, s, r)),
        "valueOf": (1, 2, lambda env, s, r=10: _parse_int(env, s, r)),
        "toString": (1, 1, lambda env, x: to_string(x)),
        "max": (2, 2, lambda env, a, b: max(_need_int(env, a, "a"), _need_int(env, b, "b"))),
        "min": (2, 2, lambda env, a, b: min(_need_int(env, a, "a"), _need_int(env, b, "b"))),
        "sum": (2, 2, lambda env, a, b: _need_int(env, a, "a") + _need_int(env, b, "b")),
    }, {"MAX_VALUE": INT_MAX, "MIN_VALUE": INT_MIN}),
    "Long": ({
        "parseLong": (1, 2, lambda env, s, r=10: _parse_int(env, s, r, LONG_MIN, LONG_MAX, "long")),
        "valueOf": (1, 2, lambda env, s, r=10: _parse_int(env, s, r, LONG_MIN, LONG_MAX, "long")),
        "toString": (1, 1, lambda env, x: to_string(x)),
    }, {"MAX_VALUE": LONG_MAX, "MIN_VALUE": LONG_MIN}),
    "Double": ({
        "parseDouble": (1, 1, _parse_double),
        "valueOf": (1, 1, _parse_double),
        "toString": (1, 1, lambda env, x: to_string(float(_num(env, x)))),
        "isNaN": (1, 1, lambda env, x: isinstance(x, float) and math.isnan(x)),
    }, {"MAX_VALUE": 1.7976931348623157e308, "MIN_VALUE": 5e-324, "NaN": math.nan,
        "POSITIVE_INFINITY": math.inf, "NEGATIVE_INFINITY": -math.inf}),
    "Boolean": ({
        "parseBoolean": (1, 1, lambda env, s: isinstance(s, str) and s.lower() == "true"),
        "valueOf": (1, 1, lambda env, s: s if isinstance(s, bool) else isinstance(s, str) and s.lower() == "true"),
        "toString": (1, 1, lambda env, b: to_string(b)),
    }, {"TRUE": True, "FALSE": False}),
    "String": ({
        "valueOf": (1, 1, lambda env, x: to_string(x)),
        "join": (2, 64, _join),
    }, {}),
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
        "ofEpochSecond": (1, 1, lambda env, s: _instant_of_ms(env, _need_int(env, s, "epoch seconds") * 1000)),
    }, {}),
}

_PACKAGES = {"Math": "java.lang", "Integer": "java.lang", "Long": "java.lang", "Double": "java.lang",
             "Boolean": "java.lang", "String": "java.lang", "UUID": "java.util", "LocalDate": "java.time",
             "LocalDateTime": "java.time", "Instant": "java.time"}


def _uuid(env: MethodEnv, s: Any) -> uuid.UUID:
    try:
        return uuid.UUID(_need_str(env, s, "the value"))
    except ValueError:
        raise _fail(env, f"{s!r} is not a valid UUID") from None


def resolve_type(name: str, position: int | None) -> JavaType:
    """`T(name)` for the allowed types, by simple or fully qualified name."""
    simple = name.rsplit(".", 1)[-1]
    if simple in TYPES and name in (simple, f"{_PACKAGES[simple]}.{simple}"):
        return JavaType(simple)
    allowed = ", ".join(sorted(TYPES))
    raise EvaluationError(f"type {name} is not allowed in expressions; allowed: {allowed}", position=position)


def static_field(java_type: JavaType, name: str, position: int | None) -> Any:
    fields = TYPES[java_type.name][1]
    if name not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise EvaluationError(f"{java_type.name} has no field {name!r}; fields: {known}", position=position)
    return fields[name]
