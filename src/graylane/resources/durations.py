"""The one duration grammar and the one set of duration formatters.

Parsing: Go's `time.ParseDuration` syntax as Istio's CRDs accept it (1.5s, 300ms, 1m30s, 2h), exact as Decimal
(`parse_duration`), or as float seconds for compiled config and queries (`to_seconds`, which also takes `d`, and
bare numbers where a query language allows them). Formatting: kubectl's AGE (`format_age`), how long a pipeline
stage or execution ran (`format_elapsed`, `elapsed_between`), and a query window as PromQL writes it
(`format_window`).
"""

from __future__ import annotations

import re
import time
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


def format_elapsed(seconds: float) -> str:
    """How long a stage or execution ran: tenths of a second under a minute, then minutes and seconds, then hours
    and minutes (the CLI's and the console's execution views).

    >>> [format_elapsed(s) for s in (2, 59.94, 59.96, 245, 3599, 4500, 90061)]
    ['2.0s', '59.9s', '1m00s', '4m05s', '59m59s', '1h15m', '25h01m']
    """
    tenths = round(max(0.0, seconds), 1)
    if tenths < 60:
        return f"{tenths:.1f}s"
    s = max(int(seconds), 60)  # 59.96s rounds up to a minute
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def elapsed_between(start_ms: object, end_ms: object, *, now: float | None = None) -> str:
    """`format_elapsed` from epoch-millisecond stamps (Spinnaker's startTime/endTime): "" when there is no start;
    with no end yet, up to `now` (epoch seconds, default the clock)."""
    if isinstance(start_ms, bool) or not isinstance(start_ms, int | float) or start_ms <= 0:
        return ""
    if isinstance(end_ms, int | float) and not isinstance(end_ms, bool) and end_ms > 0:
        stop = float(end_ms)
    else:
        stop = (time.time() if now is None else now) * 1000
    return format_elapsed((stop - start_ms) / 1000)


def format_window(seconds: float) -> str:
    """A query window or range as PromQL writes durations: whole minutes as `5m` or `1h30m`, whole seconds as `90s`,
    finer in milliseconds (`1500ms`: PromQL takes no fractions). The local provider's PromQL, the built-in checks'
    `window` and the Prometheus provider's messages.

    >>> [format_window(s) for s in (60, 300, 90, 5400, 7200, 30, 1.5, 0)]
    ['1m', '5m', '90s', '1h30m', '2h', '30s', '1500ms', '0s']
    """
    if seconds >= 60 and seconds % 60 == 0:
        hours, minutes = divmod(int(seconds) // 60, 60)
        return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


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
