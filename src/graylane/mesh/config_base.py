"""Pieces every part of the mesh compiler shares: durations, resource names, `where` strings, label selectors.

Pure functions over resource bodies; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """Protobuf/Go duration to seconds: `10s`, `0.5s`, `100ms`, `1m30s`."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValidationError(f"invalid duration {value!r}", where=where, hint="use e.g. 10s, 0.5s or 100ms")
    return total


def meta(res: Mapping[str, Any]) -> tuple[str, str]:
    md = res.get("metadata") or {}
    return str(md.get("name", "")), str(md.get("namespace") or "default")


def where_of(res: Mapping[str, Any], path: str = "") -> str:
    name, ns = meta(res)
    return f"{res.get('kind')} {ns}/{name}" + (f": {path}" if path else "")


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
