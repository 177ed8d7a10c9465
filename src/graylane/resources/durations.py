"""Durations as Istio's CRDs accept them (Go `time.ParseDuration` syntax: 1.5s, 300ms, 1m30s, 2h)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

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
