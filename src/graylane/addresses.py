"""Where Graylane may connect on a user's behalf: public addresses only, unless an operator trusts a network.

One policy for everything that fetches a URL a pipeline names (`#fromUrl`, http/file and git artifacts), so
no pipeline can read the control plane's own API on 127.0.0.1, a cloud metadata endpoint on 169.254.169.254
or a service on a private network. `fetch` resolves the host once, checks every address, and connects to
the checked address (no DNS rebinding between check and use); redirects are not followed.

Bottom layer: imports only `graylane.errors`.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from graylane.errors import GraylaneError

_BLOCKED_SUFFIXES = (".local", ".localdomain", ".internal", ".localhost")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressNotAllowed(GraylaneError):
    """A host that is local, internal or private, and not in a network the operator trusts."""


class FetchFailed(GraylaneError):
    """A URL could not be fetched within the rules (scheme, status, size, time)."""


def is_public(address: Address) -> bool:
    """Globally routable unicast: not loopback, link-local, private, multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


def parse_networks(cidrs: Sequence[str] | str) -> tuple[str, ...]:
    """CIDRs from a list or a comma-separated setting, each checked (a typo must not silently trust nothing)."""
    items = [c.strip() for c in (cidrs.split(",") if isinstance(cidrs, str) else cidrs) if c.strip()]
    for cidr in items:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise GraylaneError(f"{cidr!r} is not a network (expected CIDR notation such as 10.0.0.0/8)") from None
    return tuple(items)


def check_host(host: str, allowed_networks: Sequence[str] = ()) -> str:
    """Resolve `host`; return one address to connect to, or raise if any of its addresses is not allowed.

    >>> check_host("127.0.0.1")
    Traceback (most recent call last):
    graylane.addresses.AddressNotAllowed: host '127.0.0.1' resolves to 127.0.0.1, a loopback, ...
    """
    allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in allowed_networks]
    lowered = host.lower().rstrip(".").strip("[]")
    if lowered == "localhost" or lowered.endswith(_BLOCKED_SUFFIXES):
        raise AddressNotAllowed(f"host {host!r} is not allowed (local and internal names are blocked)")
    try:
        infos = socket.getaddrinfo(lowered, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressNotAllowed(f"cannot resolve host {host!r}: {getattr(exc, 'strerror', None) or exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise AddressNotAllowed(f"host {host!r} has no address")
    for address in addresses:
        if any(address in net for net in allowed):
            continue
        if not is_public(address):
            raise AddressNotAllowed(f"host {host!r} resolves to {address}, a loopback, link-local or private "
                                    "address; only public addresses may be fetched",
                                    hint="an operator can trust a network explicitly")
    return str(addresses[0])


def fetch(url: str, *, allowed_networks: Sequence[str] = (), timeout_s: float = 30.0,
          max_bytes: int = 10_000_000) -> tuple[bytes, str | None]:
    """GET an http(s) URL on an allowed address: (body, charset or None), within the size and time limits."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchFailed("only http and https URLs are allowed")
    if not parts.hostname:
        raise FetchFailed("the URL has no host")
    address = check_host(parts.hostname, allowed_networks)
    host_for_url = f"[{address}]" if ":" in address else address
    netloc = host_for_url + (f":{parts.port}" if parts.port else "")
    target = parts._replace(netloc=netloc).geturl()
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "*/*"}
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", target, headers=headers,
                              extensions={"sni_hostname": parts.hostname}) as response:
            if response.status_code >= 300:
                raise FetchFailed(f"HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchFailed(f"the response is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchFailed(f"took longer than {timeout_s:g}s")
                chunks.append(chunk)
            charset = response.charset_encoding
    except httpx.TimeoutException:
        raise FetchFailed(f"took longer than {timeout_s:g}s") from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc}") from None
    return b"".join(chunks), charset
