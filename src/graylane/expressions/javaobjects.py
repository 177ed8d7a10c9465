"""Java objects on Spinnaker's allow-list that have no JSON shape: java.util.Date, java.text.SimpleDateFormat,
java.util.Random; their method tables; the static members of Date, Byte and URLEncoder; and the extra
String methods (replaceAll, replaceFirst, repeat, formatted, hashCode, ...).

Dates are UTC (a Spinnaker pod's default time zone). Random is Java's 48-bit generator, so a seeded
`new java.util.Random(42)` gives Java's numbers.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, ClassVar

from graylane.expressions.errors import LimitExceeded
from graylane.expressions.javaformat import (
    compile_date_pattern,
    format_date,
    java_format,
    parse_date,
    replace_regex,
)
from graylane.expressions.methods import (
    INT_MAX,
    STRING_METHODS,
    MethodEnv,
    Table,
    cap_string,
    compile_regex,
    fail,
    java_trim,
    need_int,
    need_str,
)
from graylane.expressions.semantics import Instant, JavaObject, compare, type_name

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


class JavaDate(JavaObject):
    """java.util.Date: milliseconds since the epoch; prints as `Sat Mar 14 15:09:26 UTC 2026`."""

    __slots__ = ("ms",)
    JAVA_TYPE = "Date"
    METHODS: ClassVar[Table] = {}

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def moment(self, env: MethodEnv | None = None) -> dt.datetime:
        try:
            return _EPOCH + dt.timedelta(milliseconds=self.ms)
        except OverflowError:
            if env is None:
                raise
            raise fail(env, f"the date {self.ms} ms from the epoch is out of range") from None

    def java_text(self) -> str:
        try:
            return self.moment().strftime("%a %b %d %H:%M:%S UTC %Y")
        except OverflowError:
            return f"Date({self.ms})"

    def plain(self) -> Any:
        return self.ms  # Jackson writes a Date as its epoch milliseconds

    def sort_key(self) -> Any:
        return self.ms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JavaDate) and other.ms == self.ms

    def __hash__(self) -> int:
        return hash(self.ms)


def date_now(env: MethodEnv) -> JavaDate:
    return JavaDate(int((env.clock() - _EPOCH).total_seconds() * 1000))


def _need_date(env: MethodEnv, value: Any, what: str) -> JavaDate:
    if not isinstance(value, JavaDate):
        raise fail(env, f"{what} must be a Date, but it is {type_name(value)}")
    return value


JavaDate.METHODS = {
    "getTime": (0, 0, lambda env, d: d.ms),
    "toString": (0, 0, lambda env, d: d.java_text()),
    "equals": (1, 1, lambda env, d, o: d == o),
    "before": (1, 1, lambda env, d, o: d.ms < _need_date(env, o, "before's argument").ms),
    "after": (1, 1, lambda env, d, o: d.ms > _need_date(env, o, "after's argument").ms),
    "compareTo": (1, 1, lambda env, d, o: compare(d, _need_date(env, o, "compareTo's argument"))),
    "toInstant": (0, 0, lambda env, d: Instant(d.moment(env))),
}


DEFAULT_DATE_PATTERN = "M/d/yy, h:mm a"  # SimpleDateFormat() for Locale.US (Java 9+ CLDR data)


class DateFormat(JavaObject):
    """java.text.SimpleDateFormat with its pattern checked when it is constructed (as Java does)."""

    __slots__ = ("fields", "pattern")
    JAVA_TYPE = "SimpleDateFormat"
    METHODS: ClassVar[Table] = {}

    def __init__(self, env: MethodEnv, pattern: str) -> None:
        self.pattern = pattern
        self.fields = compile_date_pattern(env, pattern)

    def java_text(self) -> str:
        return f"java.text.SimpleDateFormat[{self.pattern}]"

    def format(self, env: MethodEnv, value: Any) -> str:
        if isinstance(value, JavaDate):
            moment = value.moment(env)
        elif isinstance(value, int) and not isinstance(value, bool):
            moment = JavaDate(value).moment(env)  # DateFormat.format(Object) takes a Number as epoch ms
        else:
            raise fail(env, f"SimpleDateFormat.format needs a Date (new java.util.Date()) or epoch milliseconds, "
                            f"not {type_name(value)} (IllegalArgumentException: Cannot format given Object as a "
                            "Date)")
        return format_date(env, self.fields, moment)


DateFormat.METHODS = {
    "format": (1, 1, lambda env, f, value: f.format(env, value)),
    "parse": (1, 1, lambda env, f, text: JavaDate(parse_date(env, f.fields, need_str(env, text, "the text"),
                                                             env.clock().year))),
    "toPattern": (0, 0, lambda env, f: f.pattern),
    "toString": (0, 0, lambda env, f: f.java_text()),
}


class JavaRandom(JavaObject):
    """java.util.Random: the same linear congruential generator, so seeds reproduce Java's sequence."""

    __slots__ = ("seed",)
    JAVA_TYPE = "Random"
    METHODS: ClassVar[Table] = {}
    _MULTIPLIER = 0x5DEECE66D
    _MASK = (1 << 48) - 1

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = random.getrandbits(64)  # noqa: S311 - Java's Random is not for security either
        self.seed = (seed ^ self._MULTIPLIER) & self._MASK

    def next(self, bits: int) -> int:
        self.seed = (self.seed * self._MULTIPLIER + 0xB) & self._MASK
        return _signed(self.seed >> (48 - bits), 32)

    def next_int(self, env: MethodEnv, bound: Any = None) -> int:
        if bound is None:
            return self.next(32)
        limit = need_int(env, bound, "nextInt's bound")
        if not 0 < limit <= INT_MAX:
            raise fail(env, f"nextInt's bound must be positive, got {limit} (IllegalArgumentException)")
        r = self.next(31)
        m = limit - 1
        if limit & m == 0:
            return (limit * r) >> 31
        u = r
        r = u % limit
        while u - r + m > INT_MAX:  # Java's int overflow test: reject the top, uneven slice
            u = self.next(31)
            r = u % limit
        return r

    def next_long(self) -> int:
        return _signed((self.next(32) << 32) + self.next(32), 64)

    def next_double(self) -> float:
        return ((self.next(26) << 27) + self.next(27)) * 2.0**-53


JavaRandom.METHODS = {
    "nextInt": (0, 1, lambda env, r, bound=None: r.next_int(env, bound)),
    "nextLong": (0, 0, lambda env, r: r.next_long()),
    "nextDouble": (0, 0, lambda env, r: r.next_double()),
    "nextBoolean": (0, 0, lambda env, r: r.next(1) != 0),
    "toString": (0, 0, lambda env, r: "java.util.Random"),
}


# -- static members --------------------------------------------------------------------------------

def _date_from(env: MethodEnv, instant: Any) -> JavaDate:
    if not isinstance(instant, Instant):
        raise fail(env, f"Date.from needs an Instant, but it is {type_name(instant)}")
    return JavaDate(instant.to_epoch_ms())


_URL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


def url_encode(env: MethodEnv, text: Any, charset: Any = "UTF-8") -> str:
    """URLEncoder.encode: letters, digits and `.-*_` kept, space as `+`, the rest as %XX of UTF-8 bytes."""
    s = need_str(env, text, "the text to encode")
    name = need_str(env, charset, "the charset")
    if name.upper().replace("-", "") != "UTF8":
        raise fail(env, f"URLEncoder.encode: charset {name!r} is not supported; use \"UTF-8\" "
                        f"(UnsupportedEncodingException: {name})")
    out = []
    for ch in s:
        if ch in _URL_SAFE:
            out.append(ch)
        elif ch == " ":
            out.append("+")
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", errors="replace")))
    return cap_string(env, "".join(out))


DATE_STATICS: Table = {"from": (1, 1, _date_from)}
URL_ENCODER_STATICS: Table = {"encode": (1, 2, url_encode)}


def string_format(env: MethodEnv, pattern: Any, *args: Any) -> str:
    """String.format(pattern, args...): SpEL passes the arguments after the pattern as varargs."""
    return java_format(env, pattern, list(args))


# -- String methods beyond methods.STRING_METHODS ------------------------------------------------

def _replace_all(env: MethodEnv, s: str, regex: Any, replacement: Any, first_only: bool = False) -> str:
    compiled = compile_regex(need_str(env, regex, "the pattern"), env.position)
    return replace_regex(env, s, compiled, need_str(env, replacement, "the replacement"), first_only)


def _repeat(env: MethodEnv, s: str, count: Any) -> str:
    n = need_int(env, count, "repeat's count")
    if n < 0:
        raise fail(env, f"repeat's count is negative: {n} (IllegalArgumentException)")
    if len(s) * n > env.max_string_length:
        raise LimitExceeded(f"the string grows past {env.max_string_length} characters", position=env.position)
    return s * n


def _hash_code(s: str) -> int:
    value = 0
    data = s.encode("utf-16-le", errors="surrogatepass")
    for i in range(0, len(data), 2):  # over UTF-16 code units, wrapping as a Java int
        value = (31 * value + int.from_bytes(data[i:i + 2], "little")) & 0xFFFFFFFF
    return _signed(value, 32)


def _last_index_of(env: MethodEnv, s: str, sub: Any, start: Any = None) -> int:
    needle = need_str(env, sub, "lastIndexOf's argument")
    if start is None:
        return s.rfind(needle)
    end = need_int(env, start, "lastIndexOf's start")
    if end < 0:
        return -1
    return s.rfind(needle, 0, end + len(needle))


STRING_EXTRAS: Table = {
    "replaceAll": (2, 2, lambda env, s, r, rep: _replace_all(env, s, r, rep)),
    "replaceFirst": (2, 2, lambda env, s, r, rep: _replace_all(env, s, r, rep, first_only=True)),
    "repeat": (1, 1, _repeat),
    "formatted": (0, 256, lambda env, s, *args: java_format(env, s, list(args))),
    "hashCode": (0, 0, lambda env, s: _hash_code(s)),
    "lastIndexOf": (1, 2, _last_index_of),
    "compareToIgnoreCase": (1, 1, lambda env, s, o: compare(s.lower(), need_str(env, o, "the argument").lower())),
    "stripLeading": (0, 0, lambda env, s: s.lstrip()),
    "stripTrailing": (0, 0, lambda env, s: s.rstrip()),
    "toCharArray": (0, 0, lambda env, s: list(s)),
    "codePointAt": (1, 1, lambda env, s, i: ord(s[need_int(env, i, "the index")])
                    if 0 <= need_int(env, i, "the index") < len(s) else _out_of_range(env, i, s)),
    "trim": (0, 0, lambda env, s: java_trim(s)),
}


def _out_of_range(env: MethodEnv, i: Any, s: str) -> int:
    raise fail(env, f"index {i} is out of range for a String of length {len(s)}")


STRING_METHODS.update(STRING_EXTRAS)  # one table for every String method; this module fills in the rest
