"""The allow-list of methods callable on values (strings, lists, maps, numbers, dates).

Nothing here looks a user-supplied name up on a Python object: every callable is a table entry.
`T(...)` types and their static members live in `statics`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from graylane.expressions.errors import EvaluationError, LimitExceeded
from graylane.expressions.semantics import (
    Instant,
    JavaObject,
    Meter,
    compare,
    is_number,
    java_equals,
    to_string,
    type_name,
)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class MethodEnv:
    """What a method may need beyond its receiver and arguments (`meter`: the evaluation's budget)."""

    position: int | None
    max_string_length: int
    clock: Callable[[], dt.datetime]
    meter: Meter | None = None

    def text(self, value: Any, limit: int | None = None) -> str:
        """`to_string(value)` within `limit` (max_string_length) characters, else LimitExceeded here."""
        limit = self.max_string_length if limit is None else limit
        try:
            if limit < 0:
                raise LimitExceeded(f"the string grows past {self.max_string_length} characters")
            return to_string(value, limit)
        except LimitExceeded:
            raise LimitExceeded(f"the string grows past {self.max_string_length} characters",
                                position=self.position) from None

    def equals(self, left: Any, right: Any) -> bool:
        return java_equals(left, right, self.meter)


Impl = Callable[..., Any]
Table = dict[str, tuple[int, int, Impl]]


def fail(env: MethodEnv, message: str) -> EvaluationError:
    return EvaluationError(message, position=env.position)


def need_str(env: MethodEnv, value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise fail(env, f"{what} must be a String, but it is {type_name(value)}")
    return value


def need_int(env: MethodEnv, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(env, f"{what} must be an integer, but it is {type_name(value)}")
    return value


def cap_string(env: MethodEnv, text: str) -> str:
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
    b = need_int(env, begin, "substring's begin index")
    e = len(s) if end is None else need_int(env, end, "substring's end index")
    if b < 0 or e > len(s) or b > e:
        raise fail(env, f"substring({b}{'' if end is None else f', {e}'}) is out of range for a String of "
                         f"length {len(s)}")
    return s[b:e]


def _index_of(env: MethodEnv, s: str, sub: Any, start: Any = 0) -> int:
    return s.find(need_str(env, sub, "indexOf's argument"), max(0, need_int(env, start, "indexOf's start")))


def _char_at(env: MethodEnv, s: str, i: Any) -> str:
    i = need_int(env, i, "charAt's index")
    if not 0 <= i < len(s):
        raise fail(env, f"charAt({i}) is out of range for a String of length {len(s)}")
    return s[i]


def java_trim(s: str) -> str:
    return s.strip("".join(chr(c) for c in range(33)))


def _replace(env: MethodEnv, s: str, old: Any, new: Any) -> str:
    old_s, new_s = env.text(old), env.text(new)
    if old_s == "":
        if (len(s) + 1) * len(new_s) + len(s) > env.max_string_length:
            raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    elif new_s and s.count(old_s) * len(new_s) > env.max_string_length:
        raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    return cap_string(env, s.replace(old_s, new_s))


def _matches(env: MethodEnv, s: str, regex: Any) -> bool:
    return compile_regex(need_str(env, regex, "matches' pattern"), env.position).fullmatch(s) is not None


STRING_METHODS: Table = {
    "equals": (1, 1, lambda env, s, o: isinstance(o, str) and s == o),
    "equalsIgnoreCase": (1, 1, lambda env, s, o: isinstance(o, str) and s.lower() == o.lower()),
    "contains": (1, 1, lambda env, s, o: need_str(env, o, "contains' argument") in s),
    "startsWith": (1, 2, lambda env, s, p, off=0: s.startswith(need_str(env, p, "startsWith' prefix"),
                                                              need_int(env, off, "startsWith' offset"))),
    "endsWith": (1, 1, lambda env, s, p: s.endswith(need_str(env, p, "endsWith' suffix"))),
    "toLowerCase": (0, 0, lambda env, s: s.lower()),
    "toUpperCase": (0, 0, lambda env, s: s.upper()),
    "trim": (0, 0, lambda env, s: java_trim(s)),
    "strip": (0, 0, lambda env, s: s.strip()),
    "split": (1, 2, lambda env, s, r, lim=0: java_split(env, s, need_str(env, r, "split's pattern"),
                                                         need_int(env, lim, "split's limit"))),
    "substring": (1, 2, _substring),
    "replace": (2, 2, _replace),
    "length": (0, 0, lambda env, s: len(s)),
    "isEmpty": (0, 0, lambda env, s: s == ""),
    "isBlank": (0, 0, lambda env, s: s.strip() == ""),
    "indexOf": (1, 2, _index_of),
    "lastIndexOf": (1, 1, lambda env, s, sub: s.rfind(need_str(env, sub, "lastIndexOf's argument"))),
    "charAt": (1, 1, _char_at),
    "concat": (1, 1, lambda env, s, o: cap_string(env, s + need_str(env, o, "concat's argument"))),
    "matches": (1, 1, _matches),
    "compareTo": (1, 1, lambda env, s, o: compare(s, need_str(env, o, "compareTo's argument"))),
    "toString": (0, 0, lambda env, s: s),
}


def _list_get(env: MethodEnv, items: list[Any], i: Any) -> Any:
    i = need_int(env, i, "get's index")
    if not 0 <= i < len(items):
        raise fail(env, f"get({i}) is out of range for a List of size {len(items)}")
    return items[i]


def _index_in(env: MethodEnv, items: list[Any], o: Any) -> int:
    return next((i for i, v in enumerate(items) if env.equals(v, o)), -1)


def _sub_list(env: MethodEnv, items: list[Any], a: Any, b: Any) -> list[Any]:
    a, b = need_int(env, a, "subList's start"), need_int(env, b, "subList's end")
    if a < 0 or b > len(items) or a > b:
        raise fail(env, f"subList({a}, {b}) is out of range for a List of size {len(items)}")
    return items[a:b]


LIST_METHODS: Table = {
    "size": (0, 0, lambda env, xs: len(xs)),
    "isEmpty": (0, 0, lambda env, xs: not xs),
    "contains": (1, 1, lambda env, xs, o: _index_in(env, xs, o) >= 0),
    "get": (1, 1, _list_get),
    "indexOf": (1, 1, lambda env, xs, o: _index_in(env, xs, o)),
    "subList": (2, 2, _sub_list),
    "equals": (1, 1, lambda env, xs, o: env.equals(xs, o)),
    "toString": (0, 0, lambda env, xs: env.text(xs)),
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
    if not isinstance(key, str | list | Mapping) and to_string(key) in m:
        return m[to_string(key)]
    return default


MAP_METHODS: Table = {
    "size": (0, 0, lambda env, m: len(m)),
    "isEmpty": (0, 0, lambda env, m: len(m) == 0),
    "containsKey": (1, 1, lambda env, m, k: has_key(m, k)),
    "containsValue": (1, 1, lambda env, m, v: any(env.equals(x, v) for x in m.values())),
    "get": (1, 1, lambda env, m, k: _map_get(m, k)),
    "getOrDefault": (2, 2, lambda env, m, k, d: _map_get(m, k, d)),
    "keySet": (0, 0, lambda env, m: list(m.keys())),
    "values": (0, 0, lambda env, m: list(m.values())),
    "entrySet": (0, 0, lambda env, m: [{"key": k, "value": v} for k, v in m.items()]),
    "equals": (1, 1, lambda env, m, o: env.equals(m, o)),
    "toString": (0, 0, lambda env, m: env.text(m)),
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
    n = need_int(env, amount, "the amount") * sign
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
        raise fail(env, f"date arithmetic out of range: {exc}") from None


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
    if isinstance(receiver, JavaObject):
        return type(receiver).METHODS
    return None


def invoke(table: Table, owner: str, name: str, receiver: Any, args: list[Any], env: MethodEnv,
            static: bool = False) -> Any:
    entry = table.get(name)
    if entry is None:
        allowed = ", ".join(sorted(table))
        raise fail(env, f"method {name}() is not allowed on {owner}; allowed: {allowed}")
    low, high, impl = entry
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise fail(env, f"{owner}.{name}() takes {want} argument{'s' if high != 1 else ''}, got {len(args)}")
    return impl(env, *args) if static else impl(env, receiver, *args)


def call_method(receiver: Any, name: str, args: list[Any], env: MethodEnv) -> Any:
    """Call an allow-listed method; anything else is an EvaluationError naming what is allowed."""
    if receiver is None:
        raise fail(env, f"method {name}() cannot be called on null (use ?.{name}() to get null instead)")
    table = _methods_for(receiver)
    if table is None:
        raise fail(env, f"method {name}() cannot be called on {type_name(receiver)}")
    return invoke(table, type_name(receiver), name, receiver, args, env)
