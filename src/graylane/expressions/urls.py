"""Fetch a URL for `#fromUrl` and friends: http(s) only, public addresses only, bounded in size and time.

Off unless ExpressionOptions.allow_url_functions. The host is resolved once, every address is
checked, and the connection goes to the checked address (no DNS rebinding between check and use).
Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx

from graylane.expressions.context import ExpressionOptions
from graylane.expressions.errors import FunctionError

_BLOCKED_SUFFIXES = (".local", ".localdomain", ".internal", ".localhost")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


def check_address(host: str, options: ExpressionOptions) -> str:
    """Resolve `host`; return one address to connect to, or raise if any address is not allowed."""
    allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in options.url_allowed_networks]
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(_BLOCKED_SUFFIXES):
        raise FunctionError(f"host {host!r} is not allowed (local and internal names are blocked)")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FunctionError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise FunctionError(f"host {host!r} has no address")
    for address in addresses:
        if any(address in net for net in allowed):
            continue
        if not _is_public(address):
            raise FunctionError(f"host {host!r} resolves to {address}, a loopback, link-local or private "
                                "address; URL functions may only reach public addresses")
    return str(addresses[0])


def fetch_text(url: str, options: ExpressionOptions, function: str) -> str:
    """GET `url` and return its body as text, within the options' size and time limits."""
    if not options.allow_url_functions:
        raise FunctionError(f"#{function} is disabled; an operator can enable URL functions "
                            "(ExpressionOptions.allow_url_functions)")
    if not isinstance(url, str):
        raise FunctionError(f"#{function} needs a URL string")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FunctionError(f"#{function}({url!r}): only http and https URLs are allowed")
    if not parts.hostname:
        raise FunctionError(f"#{function}({url!r}): the URL has no host")
    address = check_address(parts.hostname, options)
    host_for_url = f"[{address}]" if ":" in address else address
    netloc = host_for_url + (f":{parts.port}" if parts.port else "")
    target = parts._replace(netloc=netloc).geturl()
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "*/*"}
    deadline = time.monotonic() + options.url_timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.Client(timeout=options.url_timeout_s, follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", target, headers=headers,
                              extensions={"sni_hostname": parts.hostname}) as response:
            if response.status_code >= 300:
                raise FunctionError(f"#{function}({url!r}): HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > options.url_max_bytes:
                    raise FunctionError(f"#{function}({url!r}): the response is larger than "
                                        f"{options.url_max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FunctionError(f"#{function}({url!r}): took longer than {options.url_timeout_s}s")
                chunks.append(chunk)
            encoding = response.encoding or "utf-8"
    except httpx.TimeoutException:
        raise FunctionError(f"#{function}({url!r}): took longer than {options.url_timeout_s}s") from None
    except httpx.HTTPError as exc:
        raise FunctionError(f"#{function}({url!r}): {type(exc).__name__}: {exc}") from None
    return b"".join(chunks).decode(encoding, errors="replace")
