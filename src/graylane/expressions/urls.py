"""Fetch a URL for `#fromUrl` and friends: http(s) only, public addresses only, bounded in size and time.

Off unless ExpressionOptions.allow_url_functions. The address rules and the fetch itself are
`graylane.addresses` (shared with http/file and git artifacts); this module turns their errors into
the helper's FunctionError.
"""

from __future__ import annotations

from graylane import addresses
from graylane.errors import GraylaneError
from graylane.expressions.context import ExpressionOptions
from graylane.expressions.errors import FunctionError


def check_address(host: str, options: ExpressionOptions) -> str:
    """Resolve `host`; return one address to connect to, or raise if any address is not allowed."""
    try:
        return addresses.check_host(host, options.url_allowed_networks)
    except GraylaneError as exc:
        raise FunctionError(exc.message) from None


def fetch_text(url: str, options: ExpressionOptions, function: str) -> str:
    """GET `url` and return its body as text, within the options' size and time limits."""
    if not options.allow_url_functions:
        raise FunctionError(f"#{function} is disabled; an operator can enable URL functions "
                            "(ExpressionOptions.allow_url_functions)")
    if not isinstance(url, str):
        raise FunctionError(f"#{function} needs a URL string")
    try:
        body, charset = addresses.fetch(url, allowed_networks=options.url_allowed_networks,
                                        timeout_s=options.url_timeout_s, max_bytes=options.url_max_bytes)
    except GraylaneError as exc:
        raise FunctionError(f"#{function}({url!r}): {exc.message}") from None
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")
