"""Java text formats, mapped onto Python safely: `String.format` (java.util.Formatter), `SimpleDateFormat`
patterns, and `replaceAll`'s replacement syntax (`$1`, `${name}`, `\\$`).

Every output is bounded before it is built: widths and precisions above the string limit are refused,
and the text grows only within `MethodEnv.max_string_length`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from typing import Any

from graylane.expressions.errors import LimitExceeded
from graylane.expressions.methods import INT_MIN, LONG_MAX, LONG_MIN, MethodEnv, fail
from graylane.expressions.semantics import is_number, type_name

# %[argument_index$][flags][width][.precision]conversion, as java.util.Formatter reads it
_SPEC = re.compile(r"%(\d+\$)?([-#+ 0,(<]*)?(\d+)?(\.\d+)?([tT])?([a-zA-Z%])")

_JAVA_CLASS = {"String": "java.lang.String", "Boolean": "java.lang.Boolean", "Integer": "java.lang.Integer",
               "Long": "java.lang.Long", "Double": "java.lang.Double", "List": "java.util.ArrayList",
               "Map": "java.util.LinkedHashMap"}


def _java_class(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and not LONG_MIN <= value <= LONG_MAX:
        return "java.math.BigInteger"
    name = type_name(value)
    return _JAVA_CLASS.get(name, name)


class _Out:
    """Text built within a limit."""

    __slots__ = ("env", "parts", "size")

    def __init__(self, env: MethodEnv) -> None:
        self.env, self.parts, self.size = env, [], 0

    def add(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.env.max_string_length:
            raise LimitExceeded(f"the string grows past {self.env.max_string_length} characters",
                                position=self.env.position)
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def _bounded(env: MethodEnv, number: int, what: str) -> int:
    if number > env.max_string_length:
        raise LimitExceeded(f"the format {what} {number} is larger than the string limit "
                            f"{env.max_string_length}", position=env.position)
    return number


def _pad(text: str, width: int | None, flags: str) -> str:
    if width is None or len(text) >= width:
        return text
    return text.ljust(width) if "-" in flags else text.rjust(width)


def _check_flags(env: MethodEnv, spec: str, conv: str, flags: str, allowed: str) -> None:
    for flag in flags:
        if flag not in allowed:
            raise fail(env, f"String.format: flag {flag!r} cannot be used with %{conv} in {spec!r} "
                            f"(FormatFlagsConversionMismatchException: Conversion = {conv}, Flags = {flag})")


def _group(digits: str) -> str:
    head, dot, tail = digits.partition(".")
    out = []
    while len(head) > 3:
        out.insert(0, head[-3:])
        head = head[:-3]
    out.insert(0, head)
    return ",".join(out) + (f".{tail}" if dot else "")


def _signed(magnitude: str, negative: bool, flags: str, width: int | None) -> str:
    """Sign, grouping already applied; then '(' or '+'/' ', and zero padding after the sign."""
    if negative:
        prefix, suffix = ("(", ")") if "(" in flags else ("-", "")
    else:
        prefix, suffix = ("+" if "+" in flags else " " if " " in flags else ""), ""
    if "0" in flags and width is not None:
        magnitude = magnitude.rjust(width - len(prefix) - len(suffix), "0")
    return _pad(prefix + magnitude + suffix, width, flags)


def _integer(env: MethodEnv, spec: str, conv: str, value: int, flags: str, width: int | None) -> str:
    lower = conv.lower()
    if lower == "d":
        _check_flags(env, spec, conv, flags, "-+ 0,(")
        digits = str(abs(value))
        return _signed(_group(digits) if "," in flags else digits, value < 0, flags, width)
    _check_flags(env, spec, conv, flags, "-#0")
    if LONG_MIN <= value < 0:  # Integer and Long print their two's complement
        value += 2**32 if value >= INT_MIN else 2**64
    negative = value < 0  # a BigInteger keeps its sign
    digits = format(abs(value), "x" if lower == "x" else "o")
    prefix = ("0x" if lower == "x" else "0") if "#" in flags else ""
    text = ("-" if negative else "") + prefix + digits
    if "0" in flags and width is not None:
        text = ("-" if negative else "") + prefix + digits.rjust(width - len(prefix) - negative, "0")
    text = _pad(text, width, flags)
    return text.upper() if conv == "X" else text


def _decimal_digits(value: float, precision: int, scientific: bool) -> tuple[str, bool]:
    """Java rounds the shortest decimal representation HALF_UP (2.675 -> 2.68 with %.2f)."""
    number = decimal.Decimal(repr(abs(value)))
    with decimal.localcontext() as ctx:
        ctx.rounding = decimal.ROUND_HALF_UP
        ctx.prec = max(28, abs(number.adjusted()) + precision + 10)
        if not scientific:
            return format(number.quantize(decimal.Decimal(1).scaleb(-precision)), "f"), value < 0 or (
                value == 0 and math.copysign(1, value) < 0)
        exponent = 0 if number == 0 else number.adjusted()
        mantissa = number.scaleb(-exponent).quantize(decimal.Decimal(1).scaleb(-precision))
        if mantissa >= 10:
            exponent += 1
            mantissa = number.scaleb(-exponent).quantize(decimal.Decimal(1).scaleb(-precision))
    sign = "-" if exponent < 0 else "+"
    return f"{format(mantissa, 'f')}e{sign}{abs(exponent):02d}", value < 0


def _floating(env: MethodEnv, spec: str, conv: str, value: float, flags: str, width: int | None,
              precision: int | None) -> str:
    lower = conv.lower()
    _check_flags(env, spec, conv, flags, "-#+ 0,(" if lower == "f" else "-#+ 0(")
    if math.isnan(value) or math.isinf(value):
        text = "NaN" if math.isnan(value) else "Infinity"
        negative = value < 0
        if negative:
            text = f"({text})" if "(" in flags else f"-{text}"
        elif not math.isnan(value) and ("+" in flags or " " in flags):
            text = ("+" if "+" in flags else " ") + text
        return _pad(text, width, flags)
    digits, negative = _decimal_digits(value, 6 if precision is None else precision, lower == "e")
    if "," in flags:
        digits = _group(digits)
    if lower == "e" and "#" in flags and precision == 0:
        digits = digits.replace("e", ".e", 1)
    text = _signed(digits, negative, flags, width)
    return text.upper() if conv == "E" else text


def _argument(env: MethodEnv, spec: str, args: list[Any], index: int) -> Any:
    if not 0 <= index < len(args):
        raise fail(env, f"String.format: no argument for {spec!r} (MissingFormatArgumentException: "
                        f"Format specifier '{spec}')")
    return args[index]


def java_format(env: MethodEnv, pattern: Any, args: list[Any]) -> str:
    """String.format(pattern, args...) for %s %S %b %c %d %o %x %X %f %e %E %n %% (Formatter's rules)."""
    if not isinstance(pattern, str):
        raise fail(env, f"String.format's pattern must be a String, but it is {type_name(pattern)}")
    out = _Out(env)
    ordinary = 0
    last: int | None = None
    pos = 0
    while True:
        start = pattern.find("%", pos)
        if start < 0:
            out.add(pattern[pos:])
            return out.text()
        out.add(pattern[pos:start])
        match = _SPEC.match(pattern, start)
        if match is None:
            bad = pattern[start + 1:start + 2] or "%"
            raise fail(env, f"String.format: unknown format conversion at {pattern[start:start + 8]!r} "
                            f"(UnknownFormatConversionException: Conversion = '{bad}')")
        pos = match.end()
        spec = match.group(0)
        explicit, flags, width_text, precision_text, date, conv = match.groups()
        flags = flags or ""
        width = _bounded(env, int(width_text), "width") if width_text else None
        precision = _bounded(env, int(precision_text[1:]), "precision") if precision_text else None
        if date:
            raise fail(env, f"String.format: date conversions ({spec!r}) are not supported; format a date with "
                            "new java.text.SimpleDateFormat(pattern).format(date)")
        if "0" in flags and "-" in flags:
            raise fail(env, f"String.format: flags '-' and '0' cannot be combined in {spec!r} "
                            "(IllegalFormatFlagsException)")
        if ("-" in flags or "0" in flags) and width is None:
            raise fail(env, f"String.format: {spec!r} needs a width with '-' or '0' "
                            f"(MissingFormatWidthException: {spec})")
        if conv == "n":
            out.add("\n")
            continue
        if conv == "%":
            out.add(_pad("%", width, flags))
            continue
        if conv not in "sSbBcCdoxXfeE":
            raise fail(env, f"String.format: conversion %{conv} is not supported (supported: %s %S %b %c %d %o "
                            "%x %X %f %e %E %n %%)")
        if "<" in flags:
            if last is None:
                raise fail(env, f"String.format: {spec!r} refers to a previous argument, but there is none "
                                f"(MissingFormatArgumentException: Format specifier '{spec}')")
            index = last
            flags = flags.replace("<", "")
        elif explicit:
            index = int(explicit[:-1]) - 1
        else:
            index = ordinary
            ordinary += 1
        value = _argument(env, spec, args, index)
        last = index
        out.add(_convert(env, spec, conv, value, flags, width, precision))


def _convert(env: MethodEnv, spec: str, conv: str, value: Any, flags: str, width: int | None,
             precision: int | None) -> str:
    lower = conv.lower()
    if lower in "sb":
        _check_flags(env, spec, conv, flags, "-")
        if lower == "b":
            text = "false" if value is None else ("true" if value else "false") if isinstance(value, bool) else "true"
        else:
            text = env.text(value)
        if precision is not None:
            text = text[:precision]
        text = _pad(text, width, flags)
        return text.upper() if conv.isupper() else text
    if value is None:
        return _pad("null", width, flags)
    if precision is not None and lower in "cdox":
        raise fail(env, f"String.format: %{conv} takes no precision (IllegalFormatPrecisionException: {precision})")
    if lower == "c":
        _check_flags(env, spec, conv, flags, "-")
        if isinstance(value, str) and len(value) == 1:
            char = value
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0x10FFFF:
            char = chr(value)
        else:
            raise _mismatch(env, conv, value)
        text = _pad(char, width, flags)
        return text.upper() if conv == "C" else text
    if lower in "dox":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(env, conv, value)
        return _integer(env, spec, conv, value, flags, width)
    if not isinstance(value, float):
        raise _mismatch(env, conv, value)
    return _floating(env, spec, conv, value, flags, width, precision)


def _mismatch(env: MethodEnv, conv: str, value: Any) -> Exception:
    hint = " (use %d for whole numbers, %f for decimals, %s for anything)" if is_number(value) else ""
    return fail(env, f"String.format: %{conv} cannot format {type_name(value)} "
                     f"(IllegalFormatConversionException: {conv} != {_java_class(value)}){hint}")


# -- SimpleDateFormat ----------------------------------------------------------------------------

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_PATTERN_LETTERS = set("GyYMLwWDdFEuaHkKhmsSzZX")


def compile_date_pattern(env: MethodEnv, pattern: str) -> list[tuple[str, int | str]]:
    """SimpleDateFormat's pattern as (letter, count) fields and ("", literal) runs; refuses what Java refuses."""
    fields: list[tuple[str, int | str]] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                fields.append(("", "'"))
                i += 2
                continue
            end = i + 1
            literal = []
            while True:
                if end >= n:
                    raise fail(env, f"SimpleDateFormat: unterminated quote in {pattern!r} "
                                    "(IllegalArgumentException: Unterminated quote)")
                if pattern[end] == "'":
                    if end + 1 < n and pattern[end + 1] == "'":
                        literal.append("'")
                        end += 2
                        continue
                    break
                literal.append(pattern[end])
                end += 1
            fields.append(("", "".join(literal)))
            i = end + 1
            continue
        if ch.isascii() and ch.isalpha():
            if ch not in _PATTERN_LETTERS:
                raise fail(env, f"SimpleDateFormat: illegal pattern character {ch!r} in {pattern!r} "
                                f"(IllegalArgumentException: Illegal pattern character '{ch}')")
            count = 1
            while i + count < n and pattern[i + count] == ch:
                count += 1
            if ch == "X" and count > 3:
                raise fail(env, f"SimpleDateFormat: invalid ISO 8601 format length {count} in {pattern!r}")
            fields.append((ch, count))
            i += count
            continue
        fields.append(("", ch))
        i += 1
    return fields


def _sunday_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


def _date_field(letter: str, count: int, moment: dt.datetime) -> str:
    day = moment.date()
    numbers = {
        "d": moment.day, "H": moment.hour, "m": moment.minute, "s": moment.second,
        "S": moment.microsecond // 1000, "D": day.timetuple().tm_yday, "F": (moment.day - 1) // 7 + 1,
        "u": day.isoweekday(), "k": moment.hour or 24, "K": moment.hour % 12, "h": moment.hour % 12 or 12,
    }
    if letter in numbers:
        return str(numbers[letter]).zfill(count)
    if letter in "yY":
        year = moment.year if letter == "y" else (_sunday_start(day) + dt.timedelta(days=6)).year
        return f"{year % 100:02d}" if count == 2 else str(year).zfill(count)
    if letter in "ML":
        if count >= 3:
            name = _MONTHS[moment.month - 1]
            return name if count >= 4 else name[:3]
        return str(moment.month).zfill(count)
    if letter == "E":
        name = _DAYS[day.weekday()]
        return name if count >= 4 else name[:3]
    if letter == "w":  # Locale.US weeks: Sunday first, week 1 holds January 1
        week_year = (_sunday_start(day) + dt.timedelta(days=6)).year
        return str((_sunday_start(day) - _sunday_start(dt.date(week_year, 1, 1))).days // 7 + 1).zfill(count)
    if letter == "W":
        return str((_sunday_start(day) - _sunday_start(day.replace(day=1))).days // 7 + 1).zfill(count)
    if letter == "G":
        return "AD"
    if letter == "a":
        return "AM" if moment.hour < 12 else "PM"
    if letter == "z":
        return "Coordinated Universal Time" if count >= 4 else "UTC"
    if letter == "Z":
        return "+0000"
    return "Z"  # X: ISO 8601 zone, UTC


def format_date(env: MethodEnv, fields: list[tuple[str, int | str]], moment: dt.datetime) -> str:
    """Format a UTC moment with a compiled SimpleDateFormat pattern."""
    out = _Out(env)
    for letter, value in fields:
        if letter:
            assert isinstance(value, int)
            out.add(_date_field(letter, _bounded(env, value, "field width"), moment))
        else:
            out.add(str(value))
    return out.text()


# -- replaceAll / replaceFirst ---------------------------------------------------------------------

def _expand(env: MethodEnv, replacement: str, match: Any, groups: int, names: dict[str, int]) -> str:
    """Matcher.appendReplacement's syntax: `$n`, `${name}`, `\\x` for a literal x."""
    out: list[str] = []
    i, n = 0, len(replacement)
    while i < n:
        ch = replacement[i]
        if ch == "\\":
            if i + 1 >= n:
                raise fail(env, "replaceAll: the replacement ends with a lone backslash "
                                "(IllegalArgumentException: character to be escaped is missing)")
            out.append(replacement[i + 1])
            i += 2
            continue
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= n:
            raise fail(env, "replaceAll: '$' at the end of the replacement (IllegalArgumentException: Illegal "
                            "group reference: group index is missing); write \\$ for a literal dollar sign")
        if replacement[i] == "{":
            end = replacement.find("}", i)
            name = replacement[i + 1:end] if end > 0 else ""
            if end < 0 or not name:
                raise fail(env, "replaceAll: named group reference ${...} is not closed or empty")
            if name not in names:
                raise fail(env, f"replaceAll: no group with name {{{name}}} (IllegalArgumentException)")
            out.append(match.group(names[name]) or "")
            i = end + 1
            continue
        if not replacement[i].isdigit():
            raise fail(env, "replaceAll: '$' must be followed by a group number or {name} (IllegalArgumentException: "
                            "Illegal group reference); write \\$ for a literal dollar sign")
        number = int(replacement[i])
        if number > groups:
            raise fail(env, f"replaceAll: no group {number} in the pattern (IndexOutOfBoundsException: "
                            f"No group {number})")
        i += 1
        while i < n and replacement[i].isdigit() and number * 10 + int(replacement[i]) <= groups:
            number = number * 10 + int(replacement[i])
            i += 1
        out.append(match.group(number) or "")
    return "".join(out)


def replace_regex(env: MethodEnv, text: str, compiled: Any, replacement: str, first_only: bool) -> str:
    """String.replaceAll / replaceFirst over an RE2 pattern, with Java's replacement syntax."""
    out = _Out(env)
    pos = 0
    for count, match in enumerate(compiled.finditer(text), 1):
        if count % 4096 == 0 and env.meter is not None:
            env.meter.check_time()  # a long text may match a million times
        out.add(text[pos:match.start()])
        out.add(_expand(env, replacement, match, compiled.groups, dict(compiled.groupindex)))
        pos = match.end()
        if first_only:
            break
    out.add(text[pos:])
    return out.text()


# -- SimpleDateFormat.parse ------------------------------------------------------------------------

_NUMERIC = set("yYMLwWDdFuHkKhmsS")
_ZONE = re.compile(r"(?:UTC|GMT|Z)|([+-])(\d\d):?(\d\d)")
_DIGITS = re.compile(r"\d+")


def _name_at(text: str, pos: int, names: tuple[str, ...]) -> tuple[int, int] | None:
    """(index, end) of the full or three-letter name at `pos`, case-insensitively, the longest first."""
    for i, name in sorted(enumerate(names), key=lambda item: -len(item[1])):
        for candidate in (name, name[:3]):
            if text[pos:pos + len(candidate)].lower() == candidate.lower():
                return i, pos + len(candidate)
    return None


def parse_date(env: MethodEnv, fields: list[tuple[str, int | str]], text: str, now_year: int) -> int:
    """SimpleDateFormat.parse(text) as epoch milliseconds: lenient like Java (Feb 30 is Mar 2), UTC unless the
    text names a zone; text after the pattern is ignored; a field that does not match is a ParseException."""
    values = {"y": 1970, "M": 1, "d": 1, "H": 0, "m": 0, "s": 0, "S": 0}
    pm: bool | None = None
    offset = 0
    pos = 0

    def unparseable() -> Exception:
        return fail(env, f"SimpleDateFormat.parse: {text!r} does not match the pattern (ParseException: "
                         f"Unparseable date: \"{text}\")")

    for i, (letter, value) in enumerate(fields):
        if not letter:
            literal = str(value)
            if not text.startswith(literal, pos):
                raise unparseable()
            pos += len(literal)
            continue
        assert isinstance(value, int)
        abutting = i + 1 < len(fields) and fields[i + 1][0] in _NUMERIC
        if letter in "ML" and value >= 3 or letter == "E":
            found = _name_at(text, pos, _MONTHS if letter in "ML" else _DAYS)
            if found is None:
                raise unparseable()
            if letter != "E":
                values["M"] = found[0] + 1
            pos = found[1]
            continue
        if letter in "aG":
            word = text[pos:pos + 2].upper()
            if word not in (("AM", "PM") if letter == "a" else ("AD",)):
                raise unparseable()
            pm = word == "PM" if letter == "a" else pm
            pos += 2
            continue
        if letter in "zZX":
            zone = _ZONE.match(text, pos)
            if zone is None:
                raise unparseable()
            if zone.group(1):
                offset = (int(zone.group(2)) * 60 + int(zone.group(3))) * (1 if zone.group(1) == "+" else -1)
            pos = zone.end()
            continue
        if abutting:  # SimpleDateFormat reads exactly `count` digits when another number follows at once
            digits = text[pos:pos + value]
        else:
            run = _DIGITS.match(text, pos)
            digits = run.group(0) if run else ""
        if not digits.isdigit() or len(digits) > 18:
            raise unparseable()
        number = int(digits)
        pos += len(digits)
        if letter in "yY" and value <= 2 and len(digits) == 2:  # two-digit years: 80 years back, 20 ahead
            number += (now_year - 80) // 100 * 100
            if number < now_year - 80:
                number += 100
        key = {"Y": "y", "L": "M", "k": "H", "K": "h"}.get(letter, letter)
        if key == "H" and letter == "k" and number == 24:
            number = 0
        values[key] = number
    hour = values["H"]
    if "h" in values:
        hour = values["h"] % 12 + (12 if pm else 0)
    elif pm and hour < 12:
        hour += 12
    year, month = values["y"], values["M"]
    if not 1 <= year <= 9999:
        raise fail(env, f"SimpleDateFormat.parse: the year {year} is out of range")
    try:
        year += (month - 1) // 12
        moment = dt.datetime(year, (month - 1) % 12 + 1, 1, tzinfo=dt.UTC) + dt.timedelta(
            days=values["d"] - 1, hours=hour, minutes=values["m"] - offset, seconds=values["s"],
            milliseconds=values["S"])
    except (OverflowError, ValueError):
        raise fail(env, f"SimpleDateFormat.parse: {text!r} gives a date out of range") from None
    return int((moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1000)
