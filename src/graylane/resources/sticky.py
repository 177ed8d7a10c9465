"""The `graylane.io/sticky` annotation of a VirtualService: sticky canary, opt-in per route.

Istio's schema has no field for it, so it rides in an annotation holding JSON, one of:

    {"cookie": {"name": "gl-canary", "maxAge": "24h", "path": "/", "sameSite": "Lax"}}
    {"header": "x-user-id"}

`parse_sticky` checks it and returns the compiled wire form the data plane decodes
(`{"cookie": name, "max_age_s", "path", "same_site"}` or `{"header": name}`); `ValueError` says what is wrong.
Shared by admission (`graylane validate`) and the mesh compiler.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graylane.resources.durations import parse_duration

STICKY_ANNOTATION = "graylane.io/sticky"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SAME_SITE = ("Lax", "Strict", "None")
_COOKIE_KEYS = frozenset(("name", "maxAge", "path", "sameSite"))


def parse_sticky(text: Any) -> dict[str, Any]:
    """The annotation's value -> the wire form; raises `ValueError` naming the problem."""
    if not isinstance(text, str):
        raise ValueError("must be a JSON string")
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("cookie", "header"):
        raise ValueError('expected {"cookie": {...}} or {"header": "<name>"}')
    if "header" in spec:
        header = spec["header"]
        if not isinstance(header, str) or not _TOKEN.match(header):
            raise ValueError(f"header: {header!r} is not a header name")
        return {"header": header.lower()}
    cookie = spec["cookie"]
    if not isinstance(cookie, dict):
        raise ValueError("cookie: expected an object with name, maxAge, path, sameSite")
    unknown = sorted(set(cookie) - _COOKIE_KEYS)
    if unknown:
        raise ValueError(f"cookie: unknown field(s) {', '.join(unknown)} (known: name, maxAge, path, sameSite)")
    name = cookie.get("name", "gl-canary")
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(f"cookie.name: {name!r} is not a cookie name")
    max_age = cookie.get("maxAge", "24h")
    try:
        seconds = int(parse_duration(str(max_age)))
    except ValueError as exc:
        raise ValueError(f"cookie.maxAge: {exc}") from None
    if seconds <= 0 or not isinstance(max_age, str):
        raise ValueError(f"cookie.maxAge: {max_age!r} must be a positive duration such as \"24h\"")
    path = cookie.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/") or any(ch in path for ch in ";\r\n"):
        raise ValueError(f"cookie.path: {path!r} must start with / and hold no ';'")
    same_site = cookie.get("sameSite", "Lax")
    if same_site not in _SAME_SITE:
        raise ValueError(f"cookie.sameSite: {same_site!r} must be one of Lax, Strict, None")
    return {"cookie": name, "max_age_s": seconds, "path": path, "same_site": same_site}
