"""What a browser may send: the Host allow-list (DNS rebinding) and the Origin / Fetch-Metadata rules
for state-changing requests (cross-site requests, `Origin: null`).

Pure functions over header values; graylane.server.auth applies them to every request.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def split_host(value: str) -> tuple[str, int | None]:
    """`Host` header -> (lower-case name without IPv6 brackets, port or None).

    >>> split_host("[::1]:7380")
    ('::1', 7380)
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port_text = value.partition(":")
    else:
        name, port_text = value, ""
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        port = -1  # never equal to a real port
    return name.rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_problem(host_header: str | None, *, server_port: int | None, bind_host: str | None,
                 allowed: tuple[str, ...]) -> str | None:
    """Why this Host is refused, or None. Allowed: loopback names and addresses, `*.localhost`, the
    configured names (`GRAYLANE_ALLOWED_HOSTS`, `*` = any), and, when the server listens beyond
    loopback, IP literals and the bind address. A DNS-rebinding page can only send a host *name*
    it controls, so IP literals are safe; its name is never on the list. A port in the Host must be
    the one the server listens on (names given with a port in the list match that port)."""
    if "*" in allowed:
        return None
    if not host_header:
        return "the request has no Host header"
    name, port = split_host(host_header)
    if f"{name}:{port}" in allowed:
        return None
    if port is not None and server_port is not None and port != server_port:
        return f"Host {host_header!r} names port {port}, but this server listens on {server_port}"
    if name in LOOPBACK_NAMES or name.endswith(".localhost") or name in allowed:
        return None
    if _is_ip(name) and (ipaddress.ip_address(name).is_loopback or not is_loopback(bind_host)):
        return None
    if bind_host and name == bind_host.strip("[]").lower():
        return None
    return f"Host {host_header!r} is not an address this server answers to"


def origin_problem(origin: str | None, fetch_site: str | None, host_header: str | None) -> str | None:
    """Why a state-changing request from a browser is refused, or None.

    `Origin: null` (sandboxed frames, redirects) and other origins are refused; so are requests the
    browser marks `Sec-Fetch-Site: cross-site` or `same-site` (another port of localhost is the same
    site). Clients that send neither header (the CLI, scripts) pass: they carry no ambient cookies."""
    if fetch_site and fetch_site.lower() not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    if origin is None:
        return None
    if origin.strip().lower() == "null":
        return "cross-site request refused (Origin: null)"
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"cross-site request refused (Origin {origin})"
    if host_header is None or split_host(parts.netloc) != split_host(host_header):
        return f"cross-site request refused (Origin {origin})"
    return None
