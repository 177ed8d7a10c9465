"""Pieces every part of the mesh compiler shares: durations, resource names, `where` strings, label selectors.

Pure functions over resource bodies; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.resources.durations import to_seconds


def parse_duration(value: Any, where: str) -> float:
    """Protobuf/Go duration to seconds (`10s`, `0.5s`, `100ms`, `1m30s`): the one grammar, resources/durations.py."""
    return to_seconds(value, where)


def meta(res: Mapping[str, Any]) -> tuple[str, str]:
    md = res.get("metadata") or {}
    return str(md.get("name", "")), str(md.get("namespace") or "default")


def where_of(res: Mapping[str, Any], path: str = "") -> str:
    name, ns = meta(res)
    return f"{res.get('kind')} {ns}/{name}" + (f": {path}" if path else "")


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
