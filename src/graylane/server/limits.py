"""Request bounds: body size (413 before the route reads it), JSON nesting depth and value count.

Knows ASGI and JSON; the numbers come from graylane.settings.ServerLimits (docs/security.md).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graylane.errors import GraylaneError, ValidationError
from graylane.settings import ServerLimits


class PayloadTooLarge(GraylaneError):
    """A request (or one document in it) is bigger than the server accepts (the API answers 413)."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than the {limit} bytes this server accepts",
                           where="<request>",
                           hint="split it into smaller requests, or raise GRAYLANE_MAX_BODY_BYTES on the server")


class BodyLimitMiddleware:
    """Refuses bodies over `limits.max_body_bytes`: by Content-Length before reading, else while reading
    (the route's `await request.body()` then raises PayloadTooLarge, which the app turns into 413)."""

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limit = limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    exc = _too_large(self.limit)
                    body = {"error": {"message": exc.message, "where": exc.where, "hint": exc.hint}}
                    await JSONResponse(body, status_code=413, headers={"connection": "close"})(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, limited, send)


def check_shape(value: Any, limits: ServerLimits, where: str) -> None:
    """Refuse values nested deeper than `max_json_depth` or with more than `max_json_values` values.

    Walks iteratively (no recursion), counting shared references each time they are reached, so a
    YAML alias bomb is refused here instead of expanding later.
    >>> check_shape({"a": [1, 2]}, ServerLimits(max_json_depth=1), "<api>")
    Traceback (most recent call last):
    graylane.errors.ValidationError: values are nested deeper than 1 levels
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_json_values:
            raise PayloadTooLarge(f"the request holds more than {limits.max_json_values} values", where=where,
                                  hint="raise GRAYLANE_MAX_JSON_VALUES on the server if this is intended")
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limits.max_json_depth:
            raise ValidationError(f"values are nested deeper than {limits.max_json_depth} levels", where=where,
                                  hint="flatten the document, or raise GRAYLANE_MAX_JSON_DEPTH on the server")
        stack.extend((child, depth + 1) for child in children)


def parse_json(raw: bytes | str, limits: ServerLimits, where: str = "<api>") -> Any:
    """JSON from a request body, as a ValidationError (422) when it is not JSON or too deep."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValidationError(f"the JSON is nested deeper than {limits.max_json_depth} levels", where=where,
                              hint="flatten the document, or raise GRAYLANE_MAX_JSON_DEPTH on the server") from None
    except UnicodeDecodeError as exc:
        raise ValidationError(f"the request body is not UTF-8 (byte {exc.start})", where=where) from None
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        line = getattr(exc, "lineno", None)
        raise ValidationError(f"request body is not JSON: {msg}", where=f"{where}:{line}" if line else where) from None
    check_shape(data, limits, where)
    return data
