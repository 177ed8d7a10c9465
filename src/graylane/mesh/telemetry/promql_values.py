"""The values a PromQL expression evaluates to over the local mesh's recorded series, and their JSON shape.

Prometheus' four types: a scalar, a string, an instant vector (one float per label set) and a range vector
(several timestamped floats per label set). `to_json` renders what `/api/v1/query` puts under `data`, so the
in-process engine and the HTTP endpoint give callers (canary analysis, Grafana, Argo's prometheus provider)
the very shape a Prometheus server would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, `__name__` among them while a sample has one
NAME = "__name__"


class PromQLError(Exception):
    """A query Prometheus would refuse (`bad_data`) or could not run (`execution`, `timeout`)."""

    def __init__(self, message: str, kind: str = "bad_data") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class Scalar:
    value: float


@dataclass(frozen=True)
class String:
    value: str


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float
    at: float = math.nan  # when the scrape it came from was taken (timestamp()); NaN once computed


Vector = list[Sample]


@dataclass(frozen=True)
class Series:
    labels: Labels
    points: list[tuple[float, float]]  # (time, value), oldest first


@dataclass(frozen=True)
class Matrix:
    series: list[Series]


Value = Scalar | String | Vector | Matrix


def type_name(value: Value) -> str:
    if isinstance(value, Scalar):
        return "scalar"
    if isinstance(value, String):
        return "string"
    if isinstance(value, Matrix):
        return "range vector"
    return "instant vector"


def without_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def label(labels: Labels, name: str) -> str:
    for k, v in labels:
        if k == name:
            return v
    return ""


def format_value(value: float) -> str:
    """As Prometheus writes a sample value: shortest round-trip decimal, never an exponent; NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _time(t: float) -> float | int:
    ms = round(t * 1000)
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def to_json(value: Value, at: float) -> dict[str, Any]:
    """`data` of an instant query's answer (resultType and result)."""
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [_time(at), format_value(value.value)]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [_time(at), value.value]}
    if isinstance(value, Matrix):
        return matrix_json(value)
    return {"resultType": "vector",
            "result": [{"metric": dict(s.labels), "value": [_time(at), format_value(s.value)]} for s in value]}


def matrix_json(value: Matrix) -> dict[str, Any]:
    return {"resultType": "matrix",
            "result": [{"metric": dict(s.labels), "values": [[_time(t), format_value(v)] for t, v in s.points]}
                       for s in value.series]}
