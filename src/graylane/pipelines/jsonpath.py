"""A small JSONPath subset for webhook stages: `$.a.b`, `$.items[0].name`, `$['key']`."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def read(doc: Any, path: str) -> Any:
    """The value at `path`, or None when any step is missing."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    elif text and not text.startswith((".", "[")):
        text = "." + text
    pos, node = 0, doc
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {path!r} at position {pos + 1}")
        pos = m.end()
        name, index, q1, q2 = m.groups()
        if index is not None:
            if not isinstance(node, list) or int(index) >= len(node):
                return None
            node = node[int(index)]
        else:
            key = name if name is not None else (q1 if q1 is not None else q2)
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
    return node
