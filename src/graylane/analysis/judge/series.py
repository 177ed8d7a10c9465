"""Recorded metric series for offline judging: CSV (metric,value or metric,timestamp,value) or JSON.

A CSV file has a header row naming its columns (`metric`, `value`, optionally `timestamp`, in any
order); rows keep their file order. A JSON file is an object of metric name to a list of values.
Empty cells, `null` and `NaN` are NaN, as a provider reports a missing interval. Errors name the
file and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from graylane.errors import ValidationError

_NAN_WORDS = {"", "nan", "NaN", "NAN", "null", "None"}


def load_series(path: str | Path) -> dict[str, list[float]]:
    """Metric name -> values, from a .csv or .json file (other names: JSON if the text starts with '{')."""
    source = str(path)
    from graylane.resources.yamlsafe import read_text

    text = read_text(path)  # UTF-8 (BOM dropped); a bad byte is named with its offset
    if source.endswith(".json") or (not source.endswith(".csv") and text.lstrip().startswith("{")):
        return parse_json_series(text, source)
    return parse_csv_series(text, source)


def _number(raw: object, where: str) -> float:
    if raw is None:
        return math.nan
    if isinstance(raw, bool):
        raise ValidationError(f"{json.dumps(raw)} is not a number", where=where)
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text in _NAN_WORDS:
            return math.nan
        try:
            value = float(text)
        except ValueError:
            raise ValidationError(f"{raw!r} is not a number", where=where) from None
        if math.isinf(value):
            raise ValidationError(f"{raw!r} is not a finite number", where=where)
        return value
    raise ValidationError(f"{json.dumps(raw)} is not a number", where=where)


def parse_json_series(text: str, source: str) -> dict[str, list[float]]:
    from graylane.resources import jsonsafe

    data = jsonsafe.loads(text, source)
    if not isinstance(data, dict):
        raise ValidationError("must be a JSON object of metric name to a list of values", where=source,
                              hint='for example {"latency": [12.5, 13.1, null]}')
    series: dict[str, list[float]] = {}
    for name, values in data.items():
        if not isinstance(values, list):
            raise ValidationError(f"metric {name!r}: must be a list of numbers", where=source)
        series[name] = [_number(v, f"{source}: {name}[{i}]") for i, v in enumerate(values)]
    return series


def parse_csv_series(text: str, source: str) -> dict[str, list[float]]:
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    series: dict[str, list[float]] = {}
    for row in rows:
        line = rows.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in ("metric", "value") if c not in header]
            unknown = [c for c in header if c not in ("metric", "value", "timestamp")]
            if missing or unknown:
                raise ValidationError(
                    f"the header row must name the columns metric,value or metric,timestamp,value; got {row}",
                    where=f"{source}:{line}", hint="start the file with a line such as: metric,timestamp,value")
            continue
        if len(row) != len(header):
            raise ValidationError(f"expected {len(header)} columns ({','.join(header)}), found {len(row)}",
                                  where=f"{source}:{line}")
        cells = dict(zip(header, row, strict=True))
        name = cells["metric"].strip()
        if not name:
            raise ValidationError("the metric column is empty", where=f"{source}:{line}")
        series.setdefault(name, []).append(_number(cells["value"], f"{source}:{line}"))
    if header is None:
        raise ValidationError("the file is empty", where=source,
                              hint="a header row metric,value (or metric,timestamp,value), then one row per value")
    return series
