"""One metric-provider interface: a query and a scope in, a Measurement out.

Every provider (`local`, `prometheus`, `web`) answers `measure(query, scope, now)` with a Measurement whose
`outcome` says what came back: `ok` (values), `empty` (the query matched nothing: no traffic, wrong labels),
`nan` (values, all of them NaN: e.g. a success rate over zero requests) or `error` (the provider could not be
asked or refused the query). Empty results, NaN and errors are first-class answers with their own message,
never an exception or an "index out of range" further on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Outcome = Literal["ok", "empty", "nan", "error"]
OUTCOMES: tuple[str, ...] = ("ok", "empty", "nan", "error")


@dataclass(frozen=True)
class Scope:
    """What a measurement is about, as Kayenta's scopes: `scope` (a version, workload or selector value),
    `location` (a namespace or region), and any other variables a query template names.

    `start`/`end`/`step` (unix seconds, seconds) ask a provider for a range instead of one instant.
    """

    scope: str = ""
    location: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    step: float | None = None

    def values(self) -> dict[str, str]:
        """Every template variable: `scope`, `location`, then the extra variables (which may override)."""
        out = {"scope": self.scope, "location": self.location}
        out.update({str(k): str(v) for k, v in self.variables.items()})
        return out


@dataclass
class Measurement:
    """One answer of a provider.

    `value` is what a condition sees as `result` (a float, a list of floats for a Prometheus vector or
    range, any JSON value for `web`); `values` are the numbers in it, flattened. `query` is the query as
    sent (variables substituted). `message` says what happened in one sentence.
    """

    provider: str
    query: str
    outcome: Outcome
    value: Any = None
    values: tuple[float, ...] = ()
    message: str = ""
    at: float = 0.0
    labels: tuple[dict[str, str], ...] = ()  # one per value when the provider has labelled series

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "query": self.query, "outcome": self.outcome,
                "value": plain(self.value), "values": [plain(v) for v in self.values],
                "message": self.message, "at": self.at,
                **({"labels": [dict(lab) for lab in self.labels]} if self.labels else {})}


class MetricProvider(Protocol):
    """`measure` never raises for a provider problem: it returns a Measurement with outcome `error`."""

    name: str

    async def measure(self, query: Any, scope: Scope, now: float) -> Measurement: ...


def classify(provider: str, query: str, values: list[float], *, value: Any = None, at: float = 0.0,
             labels: tuple[dict[str, str], ...] = (), what: str = "the query") -> Measurement:
    """A Measurement for numeric answers: `empty` when there are none, `nan` when all are NaN, else `ok`."""
    shown = value if value is not None else values
    if not values:
        return Measurement(provider, query, "empty", value=[] if value is None else value, at=at,
                           message=f"{what} returned no data (no series matched: no traffic in the window, "
                                   "or labels that match nothing)")
    if all(math.isnan(v) for v in values):
        return Measurement(provider, query, "nan", value=shown, values=tuple(values), at=at, labels=labels,
                           message=f"{what} returned NaN (e.g. a ratio over zero requests)")
    return Measurement(provider, query, "ok", value=shown, values=tuple(values), at=at, labels=labels,
                       message=f"{what} returned {describe(shown)}")


def error(provider: str, query: str, message: str, *, at: float = 0.0) -> Measurement:
    return Measurement(provider, query, "error", message=message, at=at)


def plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become the strings Prometheus uses ("NaN", "+Inf", "-Inf")."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def describe(value: Any) -> str:
    """A short human form of a result: `0.973`, `[0.973, 0.41]`, `NaN`, `{"ok": true}`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return f"{value:.6g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        items = [describe(v) for v in value[:5]]
        more = f", ... ({len(value)} values)" if len(value) > 5 else ""
        return "[" + ", ".join(items) + more + "]"
    if value is None:
        return "nil"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    import json

    text = json.dumps(plain(value), sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


_DOLLAR = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}")
_ARGS = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


MAX_SUBSTITUTED_CHARS = 1 << 20
"""A query, URL or header value once its variables are in: a template that names a long variable many times
must not grow without bound (both come from stored resources and pipeline parameters)."""


class TemplateTooLarge(ValueError):
    """The substituted text would pass MAX_SUBSTITUTED_CHARS."""


def substitute(template: str, variables: Mapping[str, str], *, strict: bool = True) -> str:
    """Replace `${name}` (Kayenta's customInlineTemplate) and `{{args.name}}` (Argo) with their values.

    With `strict`, a variable without a value is an error naming it (a query with a hole in it would
    silently match nothing). Text that would grow past MAX_SUBSTITUTED_CHARS raises TemplateTooLarge.
    """
    missing: list[str] = []
    room = [MAX_SUBSTITUTED_CHARS - len(template)]

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in variables:
            value = str(variables[name])
            room[0] -= len(value)
            if room[0] < 0:
                raise TemplateTooLarge(f"the query grows past {MAX_SUBSTITUTED_CHARS:,} characters once "
                                       f"its variables are substituted (${{{name}}} is {len(value):,} long)")
            return value
        missing.append(name)
        return m.group(0)

    out = _ARGS.sub(one, _DOLLAR.sub(one, template))
    if missing and strict:
        raise KeyError(", ".join(sorted(set(missing))))
    return out
