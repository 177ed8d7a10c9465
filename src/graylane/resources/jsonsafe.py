"""JSON from files and streams a user hands the CLI (pipelines, execution snapshots, canary configs, series):
UTF-8 checked with the byte offset named, syntax errors with file:line:column, and nesting too deep for the
parser refused as an error instead of a RecursionError traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graylane.errors import ValidationError
from graylane.resources.yamlsafe import read_stdin, read_text


def loads(text: str, where: str) -> Any:
    """Parse JSON text; every failure is a ValidationError naming `where` (and the line and column)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc.msg}", where=f"{where}:{exc.lineno}:{exc.colno}") from None
    except RecursionError:
        raise ValidationError("the JSON nests too deeply to read", where=where,
                              hint="a real pipeline or snapshot nests a few dozen levels at most") from None


def read(path: str | Path) -> Any:
    """A JSON file (or `-` for standard input), read with `read_text`'s UTF-8 check and parsed with `loads`."""
    where = "<stdin>" if str(path) == "-" else str(path)
    text = read_stdin() if str(path) == "-" else read_text(path)
    return loads(text, where)
