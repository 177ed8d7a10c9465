"""The data plane's admin port: PUT /config (ACK/NACK), /ready, /config_dump, /stats/prometheus, /clusters, /spans.

A deliberately tiny HTTP/1.1 server (one request per connection) so the admin path shares nothing with the
proxy's hot path. Its callers are programs (the control plane, the supervisor, `curl`), never a browser page:
a request a browser marks as coming from a page (`Origin`, `Sec-Fetch-Site` other than `none`) or naming a host
that is not an IP literal or `localhost` (DNS rebinding) is refused with 403 before anything is read or changed,
and a snapshot must come as JSON (no form or text/plain body a page could send without a preflight). Private
keys of gateway TLS credentials are redacted in `/config_dump` (as Envoy's config dump does).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httptools

from graylane.mesh import native
from graylane.mesh.proxy.listener import status_line
from graylane.mesh.snapshot import SnapshotError

if TYPE_CHECKING:
    from graylane.mesh.proxy.server import ProxyServer

log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024 * 1024


Reply = tuple[int, str, bytes]  # status, content type, body
Handler = Callable[[str, str, bytes], Awaitable[Reply]]
JSON = "application/json"


def _json(status: int, payload: Any) -> Reply:
    return status, JSON, json.dumps(payload, separators=(",", ":")).encode()


async def respond(srv: ProxyServer, method: str, url: str, body: bytes) -> Reply:
    """One admin request against one ProxyServer (this process's, or a worker's: `workers.py`)."""
    parts = urlsplit(url)
    path, query = parts.path, parse_qs(parts.query)
    try:
        if path == "/config" and method in ("PUT", "POST"):
            try:
                snapshot = json.loads(body)
            except ValueError as exc:
                return _json(400, {"nack": None, "reason": f"snapshot is not JSON: {exc}"})
            version = snapshot.get("version") if isinstance(snapshot, dict) else None
            if not isinstance(snapshot, dict):
                return _json(400, {"nack": None, "reason": "snapshot must be a JSON object"})
            try:
                decoded = srv.decode(snapshot)
            except SnapshotError as exc:
                ok, reason = srv.reject(str(exc))
            else:
                ok, reason = await srv.apply(decoded)
            return _json(200, {"ack": version}) if ok else _json(400, {"nack": version, "reason": reason})
        if method != "GET":
            return _json(405, {"error": f"{method} not allowed on {path}"})
        if path == "/ready":
            compiled, how = native.status()
            return _json(200, {"ready": True, "version": srv.table.version, "acked": srv.acked,
                               "last_nack": srv.last_nack or None, "compiled": compiled, "code": how})
        if path == "/config_dump":
            return _json(200, {"version": srv.table.version, "snapshot": redacted(srv.snapshot.document)})
        if path == "/stats/prometheus":
            return 200, "text/plain; version=0.0.4", srv.stats.render().encode()
        if path == "/clusters":
            return _json(200, srv.clusters_view())
        if path == "/listeners":
            return _json(200, {"version": srv.table.version, "listeners": srv.listeners_view()})
        if path == "/spans":
            since = int((query.get("since") or ["0"])[0] or 0)
            return _json(200, srv.spans.since(since))
        if path == "/access_log":
            entries = list(srv.access_log or ())
            return _json(200, {"enabled": srv.access_log is not None, "entries": entries[-1000:]})
        if path == "/connections":  # open downstream connections, per listener port
            per_port: dict[int, int] = {}
            for conn in list(srv.connections):
                per_port[conn.listener_key[1]] = per_port.get(conn.listener_key[1], 0) + 1
            return _json(200, {"connections": {str(k): v for k, v in sorted(per_port.items())}})
        return _json(404, {"error": f"no admin endpoint {path}"})
    except Exception as exc:  # boundary: report, keep the admin port alive
        log.exception("admin request %s %s failed", method, path)
        return _json(500, {"error": str(exc)})


def redacted(document: Any) -> Any:
    """The snapshot document with every TLS credential's private key replaced (certificates and CAs stay)."""
    creds = document.get("tls_credentials") if isinstance(document, dict) else None
    if not isinstance(creds, dict) or not creds:
        return document
    hidden = {name: {**c, "key": "<redacted>"} if isinstance(c, dict) and "key" in c else c
              for name, c in creds.items()}
    return {**document, "tls_credentials": hidden}


def _host_ok(host: str) -> bool:
    """An IP literal or localhost, with or without a port: what a program uses; a DNS name is what a rebinding
    page would send."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:port
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def refusal(headers: dict[bytes, bytes], method: str) -> Reply | None:
    """403/415 for a request no program of ours sends (see the module docstring), else None."""
    if b"origin" in headers or headers.get(b"sec-fetch-site", b"none") != b"none":
        return _json(403, {"error": "the data plane's admin port does not serve web pages"})
    host = headers.get(b"host")
    if host is not None and not _host_ok(host.decode("latin-1")):
        return _json(403, {"error": "Host must be an IP address or localhost"})
    ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if method in ("PUT", "POST") and ctype not in (b"", b"application/json"):
        return _json(415, {"error": "send the snapshot as application/json"})
    return None


class AdminProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(*_json(400, {"error": "malformed request"}))

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > 8192:
            self._send(*_json(414, {"error": "URL too long"}))

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) < 64:
            self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if (refused := refusal(self.headers, self.parser.get_method().decode("latin-1"))) is not None:
            self._send(*refused)

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self.size += len(body)
        if self.size > MAX_BODY:
            self._send(*_json(413, {"error": "body too large"}))
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done:
            return
        self.done = True
        method = self.parser.get_method().decode()
        asyncio.get_running_loop().create_task(self._dispatch(method, self.url.decode("latin-1"), b"".join(self.body)))

    async def _dispatch(self, method: str, url: str, body: bytes) -> None:
        try:
            reply = await self.handler(method, url, body)
        except Exception as exc:  # boundary: report, keep the admin port alive
            log.exception("admin request %s %s failed", method, url)
            reply = _json(500, {"error": str(exc)})
        self._send(*reply)

    def _send(self, status: int, ctype: str, data: bytes) -> None:
        self.done = True
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(status_line(status) + f"content-type: {ctype}\r\ncontent-length: {len(data)}\r\n"
                             "connection: close\r\n\r\n".encode() + data)
        self.transport.close()


async def serve_admin(server: ProxyServer | Handler, host: str, port: int) -> asyncio.AbstractServer:
    """The admin port for one ProxyServer, or for any handler (the workers' primary: `workers.py`)."""
    handler: Handler = server if callable(server) else functools.partial(respond, server)
    return await asyncio.get_running_loop().create_server(lambda: AdminProtocol(handler), host, port,
                                                          reuse_address=True)


async def run(admin_host: str, admin_port: int, state_dir: str | None = None, ready_file: str | None = None,
              **timeouts: float) -> None:
    """Run the data plane until SIGTERM/SIGINT. `timeouts`: ProxyServer's downstream *_timeout_s settings."""
    import os
    import signal

    from graylane.mesh.proxy.handoff import Handoff
    from graylane.mesh.proxy.server import ProxyServer

    server = ProxyServer(state_dir=state_dir, handoff=Handoff.from_environ(os.environ), **timeouts)
    await server.restore()
    admin = await serve_admin(server, admin_host, admin_port)
    log.info("data plane admin on %s:%s; hot path %s", admin_host, admin_port, native.status()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    admin.close()
    await server.close()
