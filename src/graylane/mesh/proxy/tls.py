"""TLS on gateway listeners: server contexts chosen by SNI (terminate), and the ClientHello's SNI (passthrough).

Terminate (SIMPLE/MUTUAL): each TLS listener address has one base `SSLContext` whose `sni_callback` switches the
handshake to the context of the server the SNI selects (`routing.l4.select_tls_server`), so a new snapshot's
certificates apply to the next handshake without re-binding. A handshake no server takes is refused
(unrecognized_name). MUTUAL requires a client certificate signed by the server's CA; OPTIONAL_MUTUAL checks one
when the client sends it and lets a client without one in.

Passthrough: `client_hello_sni` reads the server name from the first TLS records, bounded in size; the bytes are
then forwarded untouched (`tcp.py`).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from graylane.errors import ValidationError
from graylane.mesh.routing import Listener
from graylane.mesh.routing.l4 import TlsCredential, TlsServer, select_tls_server
from graylane.mesh.tlscred import server_context

log = logging.getLogger(__name__)

# Client certificates by mode: MUTUAL requires one signed by the server's CA; OPTIONAL_MUTUAL checks one if sent.
VERIFIES = {"MUTUAL": ssl.CERT_REQUIRED, "OPTIONAL_MUTUAL": ssl.CERT_OPTIONAL}
ALPN_HTTP = ["h2", "http/1.1"]  # what an HTTPS listener offers (Envoy's gateway default): gRPC and browsers pick h2
MAX_HELLO = 16 * 1024 + 5  # one TLS record: a ClientHello larger than this is refused (Envoy's tls_inspector: 64 KiB)


class TlsListeners:
    """Server contexts per TLS listener address, re-pointed on every snapshot."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, int], tuple[TlsServer, ...]] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}  # by `_context_key`
        self.base: dict[tuple[str, int], ssl.SSLContext] = {}
        self.http: set[tuple[str, int]] = set()  # addresses that serve HTTP behind TLS: they offer ALPN h2
        self._built: dict[str, tuple[str, ssl.SSLContext]] = {}  # context key -> (content hash, context)
        self._saved: tuple[Any, ...] = ({}, {}, {}, set())  # the state before the last `follow`, for `rollback`

    def follow(self, listeners: Iterable[Listener], credentials: Mapping[str, TlsCredential]) -> str:
        """Build the contexts a snapshot needs; '' or why it cannot be served (the snapshot is then NACKed)."""
        servers: dict[tuple[str, int], tuple[TlsServer, ...]] = {}
        contexts: dict[str, ssl.SSLContext] = {}
        built: dict[str, tuple[str, ssl.SSLContext]] = {}
        http: set[tuple[str, int]] = set()
        for lst in listeners:
            if not lst.tls_servers:
                continue
            servers[lst.address] = lst.tls_servers
            if lst.protocol == "http":
                http.add(lst.address)
            for s in lst.tls_servers:
                cred = credentials.get(s.credential)
                if cred is None:
                    return f"listener {lst.name}: credential {s.credential} is not in the snapshot"
                key = _context_key(s.credential, lst.protocol == "http")
                digest = hashlib.sha256(f"{cred.cert}\0{cred.key}\0{cred.ca}".encode()).hexdigest()
                old = self._built.get(key) or built.get(key)
                if old is not None and old[0] == digest:
                    ctx = old[1]
                else:
                    try:
                        ctx = server_context(cred.cert, cred.key, cred.ca if s.mode in VERIFIES else "",
                                             f"credential {s.credential}")
                    except ValidationError as exc:
                        return f"listener {lst.name}: {exc}"
                    if lst.protocol == "http":
                        ctx.set_alpn_protocols(ALPN_HTTP)
                built[key] = (digest, ctx)
                contexts[key] = ctx
        self._saved = (self.servers, self.contexts, self._built, self.http)
        self.servers, self.contexts, self._built, self.http = servers, contexts, built, http
        return ""

    def rollback(self) -> None:
        """The snapshot was NACKed after `follow` (a listener could not bind): serve the previous one's servers."""
        self.servers, self.contexts, self._built, self.http = self._saved

    def context_for(self, addr: tuple[str, int]) -> ssl.SSLContext | None:
        """The base context to bind `addr` with (None: not a TLS listener)."""
        servers = self.servers.get(addr)
        if not servers:
            return None
        ctx = self.base.get(addr)
        if ctx is None:
            ctx = self.base[addr] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.sni_callback = lambda obj, name, _ctx, a=addr: self._choose(a, obj, name)
        ctx.set_alpn_protocols(ALPN_HTTP if addr in self.http else [])  # the context chosen by SNI answers too
        # The verify mode stays the base context's when the callback switches contexts (OpenSSL); the compiler
        # keeps servers of different modes on separate ports, so the first server's mode is every server's.
        ctx.verify_mode = VERIFIES.get(servers[0].mode, ssl.CERT_NONE)
        return ctx

    def _choose(self, addr: tuple[str, int], obj: ssl.SSLObject | ssl.SSLSocket, name: str | None) -> int | None:
        server = select_tls_server(self.servers.get(addr, ()), name)
        ctx = self.contexts.get(_context_key(server.credential, addr in self.http)) if server is not None else None
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        obj.context = ctx
        return None

    def server_kwargs(self, addr: tuple[str, int], handshake_timeout_s: float) -> dict[str, Any]:
        """`create_server` keywords for `addr`: its context and handshake timeout when it terminates TLS."""
        ctx = self.context_for(addr)
        if ctx is None:
            return {}
        return {"ssl": ctx, "ssl_handshake_timeout": handshake_timeout_s or 60.0}


def _context_key(credential: str, http: bool) -> str:
    """One context per credential and use: an HTTPS listener's offers ALPN h2, a TLS-terminating TCP one's offers
    nothing (the bytes behind it are not ours to read)."""
    return credential + ("\0h2" if http else "")


class HelloError(ValueError):
    """Not a TLS ClientHello (or one larger than `MAX_HELLO`)."""


def client_hello_sni(data: bytes) -> str | None:
    """The SNI host of a ClientHello at the start of `data`; None when more bytes are needed.

    Raises `HelloError` for anything that is not a TLS handshake record carrying a ClientHello, or one longer than
    one record. Returns '' for a ClientHello without a server_name extension.
    """
    if len(data) < 5:
        return None
    if data[0] != 0x16 or data[1] != 0x03:
        raise HelloError("not a TLS handshake record")
    length = int.from_bytes(data[3:5], "big")
    if length > MAX_HELLO - 5:
        raise HelloError("TLS record too long")
    if len(data) < 5 + length:
        return None
    body = data[5:5 + length]
    if len(body) < 4 or body[0] != 0x01:
        raise HelloError("not a ClientHello")
    hello_len = int.from_bytes(body[1:4], "big")
    if hello_len > len(body) - 4:
        raise HelloError("ClientHello spans several records")
    hello = body[4:4 + hello_len]
    try:
        pos = 2 + 32  # version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + int.from_bytes(hello[pos:pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        if pos >= len(hello):
            return ""
        end = pos + 2 + int.from_bytes(hello[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= min(end, len(hello)):
            ext_type = int.from_bytes(hello[pos:pos + 2], "big")
            ext_len = int.from_bytes(hello[pos + 2:pos + 4], "big")
            ext = hello[pos + 4:pos + 4 + ext_len]
            pos += 4 + ext_len
            if ext_type != 0:
                continue
            # server_name_list: length, then (type, length, name) entries; host_name is type 0.
            i = 2
            while i + 3 <= len(ext):
                name_type, name_len = ext[i], int.from_bytes(ext[i + 1:i + 3], "big")
                name = ext[i + 3:i + 3 + name_len]
                i += 3 + name_len
                if name_type == 0:
                    text = name.decode("ascii")
                    if not text or len(text) > 253 or any(c.isspace() for c in text):
                        raise HelloError("malformed server name")
                    return text.lower().rstrip(".")
            return ""
    except (IndexError, UnicodeDecodeError):
        raise HelloError("malformed ClientHello") from None
    return ""
