"""The `web` metric provider (Argo Rollouts' `web`): an HTTP GET/POST/PUT answering JSON, one value picked
by a JSONPath.

As Argo: `jsonPath` is Kubernetes JSONPath in braces (`{$.data.ok}`, `{.data}`, `{$.items[0].value}`,
`{$['a-b']}`; `[*]` takes every element and, like Argo, the first match is the value); no `jsonPath` means
the whole body. A body that is not JSON is the result as a string. A status outside 2xx is an error, so is
a path that is not in the body; JSON `null` is an empty result.

Addresses follow `graylane.addresses` (public addresses only; the host is resolved once, checked, and the
checked address is the one connected to; redirects are not followed) unless the provider is built with
networks an operator trusts (tests trust `127.0.0.0/8`). Header values come from the template (args, so
secrets via `valueFrom.secretKeyRef` and the SecretResolver hook in `graylane.analysis.argo`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from graylane import addresses
from graylane.analysis.measurement import Measurement, Scope, TemplateTooLarge, describe, error, substitute
from graylane.errors import GraylaneError

MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class WebQuery:
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    json_body: Any = None
    json_path: str = ""
    timeout: float = 10.0  # Argo's default timeoutSeconds


class WebProvider:
    name = "web"

    def __init__(self, *, allowed_networks: Sequence[str] = ()) -> None:
        self.allowed_networks = tuple(allowed_networks)

    async def measure(self, query: WebQuery, scope: Scope, now: float) -> Measurement:
        variables = scope.values()
        try:
            url = substitute(query.url, variables)
            headers = {k: substitute(v, variables) for k, v in query.headers.items()}
        except KeyError as exc:
            return error(self.name, query.url, f"the request names variable(s) without a value: {exc.args[0]}",
                         at=now)
        except TemplateTooLarge as exc:
            return error(self.name, query.url[:200], str(exc), at=now)
        shown = f"{query.method} {url}" + (f" {query.json_path}" if query.json_path else "")
        method = query.method.upper()
        if method not in ("GET", "POST", "PUT"):
            return error(self.name, shown, f"method {query.method!r} is not GET, POST or PUT", at=now)
        if (query.body is not None or query.json_body is not None) and method == "GET":
            return error(self.name, shown, "a body can only be sent with POST or PUT", at=now)
        if query.body is not None and query.json_body is not None:
            return error(self.name, shown, "use either body or jsonBody, not both", at=now)
        try:
            path = parse_jsonpath(query.json_path)
        except ValueError as exc:
            return error(self.name, shown, str(exc), at=now)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return error(self.name, shown, "the URL must be http(s) with a host", at=now)
        try:
            address = await asyncio.to_thread(addresses.check_host, parts.hostname, self.allowed_networks)
        except GraylaneError as exc:
            return error(self.name, shown, exc.message, at=now)
        host = f"[{address}]" if ":" in address else address
        target = parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()
        send = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "application/json", **headers}
        content: bytes | None = None
        if query.json_body is not None:
            content = json.dumps(query.json_body).encode()
            send.setdefault("Content-Type", "application/json")
        elif query.body is not None:
            content = query.body.encode()
        try:
            async with httpx.AsyncClient(timeout=query.timeout, follow_redirects=False, trust_env=False) as http:
                resp = await http.request(method, target, headers=send, content=content,
                                          extensions={"sni_hostname": parts.hostname})
        except httpx.TimeoutException:
            return error(self.name, shown, f"no answer within {query.timeout:g}s", at=now)
        except httpx.HTTPError as exc:
            return error(self.name, shown, f"request failed: {type(exc).__name__}: {exc}", at=now)
        if not 200 <= resp.status_code < 300:
            return error(self.name, shown, f"received non 2xx response code: {resp.status_code}", at=now)
        if len(resp.content) > MAX_BYTES:
            return error(self.name, shown, f"the response is larger than {MAX_BYTES} bytes", at=now)
        try:
            data = resp.json()
        except ValueError:
            text = resp.text
            return Measurement(self.name, shown, "ok", value=text, at=now,
                               message=f"the body is not JSON; the result is the text {describe(text)}")
        found = find(data, path)
        if not found:
            return error(self.name, shown, f"could not find {query.json_path or '{$}'} in the body", at=now)
        value = found[0]
        if value is None:
            return Measurement(self.name, shown, "empty", value=None, at=now,
                               message=f"{query.json_path or 'the body'} is null")
        numbers = _numbers(value)
        return Measurement(self.name, shown, "ok", value=value, values=tuple(numbers), at=now,
                           message=f"{query.json_path or 'the body'} is {describe(value)}")


_TOKEN = re.compile(r"""\.\.|\.(\*|[A-Za-z_$][\w$-]*)|\[\s*(\*|-?\d+|'[^']*'|"[^"]*")\s*\]""")


def parse_jsonpath(text: str) -> list[str | int]:
    """`{$.data.items[0]['a-b']}` -> ["data", "items", 0, "a-b"]; `*` for a wildcard. Empty: the whole body."""
    raw = text.strip()
    if not raw:
        return []
    if raw.startswith("{") and raw.endswith("}"):
        raw = raw[1:-1].strip()
    if raw.startswith("$"):
        raw = raw[1:]
    steps: list[str | int] = []
    pos = 0
    while pos < len(raw):
        m = _TOKEN.match(raw, pos)
        if not m or m.group(0) == "..":
            raise ValueError(f"jsonPath {text!r}: cannot read {raw[pos:]!r} (supported: .name, [n], ['name'], [*])")
        name, index = m.group(1), m.group(2)
        if name is not None:
            steps.append(name)
        elif index == "*":
            steps.append("*")
        elif index[0] in "'\"":
            steps.append(index[1:-1])
        else:
            steps.append(int(index))
        pos = m.end()
    return steps


def find(data: Any, steps: list[str | int]) -> list[Any]:
    """Every value at the path (a wildcard fans out), in document order."""
    current = [data]
    for step in steps:
        nxt: list[Any] = []
        for item in current:
            if step == "*":
                if isinstance(item, list):
                    nxt.extend(item)
                elif isinstance(item, dict):
                    nxt.extend(item.values())
            elif isinstance(step, int) and isinstance(item, list):
                if -len(item) <= step < len(item):
                    nxt.append(item[step])
            elif isinstance(step, str) and isinstance(item, dict) and step in item:
                nxt.append(item[step])
        current = nxt
    return current


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list):
        return [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
    return []
