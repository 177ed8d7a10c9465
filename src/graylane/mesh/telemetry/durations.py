"""Prometheus/Jaeger-style durations: `90s`, `1m`, `1h30m`, `250ms`, `1.5s` -> seconds."""

from __future__ import annotations

import re

from graylane.errors import ValidationError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)")
_UNIT = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int, field: str = "duration") -> float:
    """Seconds in `text`; a bare number is seconds. Raises ValidationError naming `field`."""
    if isinstance(text, int | float):
        return float(text)
    raw = text.strip()
    try:
        return float(raw)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _PART.finditer(raw):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(raw) or not raw:
        raise ValidationError(f"{field}: {text!r} is not a duration", hint="use e.g. 30s, 1m, 5m, 250ms")
    return total
