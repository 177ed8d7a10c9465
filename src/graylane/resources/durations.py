"""The one duration grammar and the one age formatter.

Parsing: Go's `time.ParseDuration` syntax as Istio's CRDs accept it (1.5s, 300ms, 1m30s, 2h), exact as Decimal
(`parse_duration`), or as float seconds for compiled config and queries (`to_seconds`, which also takes `d`, and
bare numbers where a query language allows them). Formatting: kubectl's AGE (`format_age`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from graylane.errors import ValidationError

_UNITS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"), "μs": Decimal("1e-6"),
          "ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE = re.compile(r"^(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$")


def parse_duration(text: str) -> Decimal:
    """`"1m30.5s"` -> Decimal("90.5") seconds; `"0"` -> 0. Raises ValueError for anything else."""
    if text == "0":
        return Decimal(0)
    if not _WHOLE.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h), e.g. 1.5s")
    total = Decimal(0)
    for number, unit in _PART.findall(text):
        try:
            total += Decimal(number) * _UNITS[unit]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise ValueError(f"invalid duration {text!r}") from exc
    return total


_LOOSE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_FLOAT_UNITS = {unit: float(factor) for unit, factor in _UNITS.items()} | {"d": 86400.0}


def to_seconds(value: str | float | int, where: str = "duration", *, bare_numbers: bool = False,
               query: bool = False) -> float:
    """`"1m30s"` -> 90.0; a number passes through. `bare_numbers`: `"90"` means seconds (Prometheus, Jaeger).

    Raises ValidationError: for config `invalid duration '5 minutes'` at `where`; for a query (`query=True`)
    `window: '5 minutes' is not a duration`, naming the field.

    >>> to_seconds("1h30m", "x")
    5400.0
    """
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if bare_numbers:
        try:
            return float(text)
        except ValueError:
            pass
    pos, total = 0, 0.0
    for m in _LOOSE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _FLOAT_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        if query:
            raise ValidationError(f"{where}: {value!r} is not a duration", hint="use e.g. 30s, 1m, 5m, 250ms")
        raise ValidationError(f"invalid duration {value!r}", where=where, hint="use e.g. 10s, 0.5s or 100ms")
    return total


def query_seconds(value: str | float | int, field: str = "duration") -> float:
    """A duration in a query (Prometheus/Jaeger style: `90s`, `1h30m`, `2d`, a bare number of seconds)."""
    return to_seconds(value, field, bare_numbers=True, query=True)


def format_age(seconds: float) -> str:
    """kubectl's AGE (k8s.io/apimachinery duration.HumanDuration).

    >>> [format_age(s) for s in (45, 192, 900, 7500, 14000, 43200)]
    ['45s', '3m12s', '15m', '125m', '3h53m', '12h']
    """
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m" if s % 60 == 0 else f"{m}m{s % 60}s"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h" if m % 60 == 0 else f"{h}h{m % 60}m"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d" if h % 24 == 0 else f"{d}d{h % 24}h"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y" if d % 365 == 0 else f"{y}y{d % 365}d"
    return f"{y}y"


def duration_seconds(text: str) -> float:
    """Convenience for runtime/mesh code: a duration string as float seconds."""
    return float(parse_duration(text))


def validate_duration(text: str) -> str | None:
    """Istio's ValidateDuration: at least 1ms, whole milliseconds. Returns the error message or None."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        return str(exc)
    if value < Decimal("0.001"):
        return "duration must be greater than 1ms"
    if value % Decimal("0.001") != 0:
        return "only durations to ms precision are supported"
    return None
