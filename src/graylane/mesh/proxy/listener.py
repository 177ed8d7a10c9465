"""Downstream HTTP/1.1: one protocol object per accepted connection, parsing with httptools.

Layout follows uvicorn's protocol classes: constants at import, per-connection then per-request state,
no `await` inside parser callbacks, and flow control in one small class. Requests on one connection are
handled in order (pipelining is queued); the handler itself lives in `forward.py`.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import httptools

from graylane.mesh.proxy.errors import BadRequest, HeadersTooLarge, ProxyError, UriTooLong

if TYPE_CHECKING:
    from graylane.mesh.proxy.server import ProxyServer

log = logging.getLogger(__name__)

MAX_URL = 16 * 1024  # request line beyond this gets 414
MAX_HEADERS = 60 * 1024  # Envoy's max_request_headers_kb default: 60 KiB, beyond it 431
BODY_HIGH = 64 * 1024
BODY_LOW = 16 * 1024
REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()}


def status_line(code: int) -> bytes:
    return STATUS_LINES.get(code) or b"HTTP/1.1 %d Unknown\r\n" % code


class RequestBody:
    """Request body chunks from the parser to the forwarding task, pausing the socket when too much is held."""

    __slots__ = ("chunks", "held", "done", "waiter", "protocol", "received")

    def __init__(self, protocol: DownstreamProtocol, done: bool) -> None:
        self.chunks: deque[bytes] = deque()
        self.held = 0
        self.done = done
        self.waiter: asyncio.Future[None] | None = None
        self.protocol = protocol
        self.received = 0

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.held += len(chunk)
        self.received += len(chunk)
        if self.held > BODY_HIGH:
            self.protocol.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end of the body."""
        while not self.chunks:
            if self.done:
                return None
            if self.protocol.closed:
                raise ConnectionResetError("client went away during the request body")
            self.waiter = self.protocol.loop.create_future()
            await self.waiter
        chunk = self.chunks.popleft()
        self.held -= len(chunk)
        if self.held < BODY_LOW:
            self.protocol.resume_reading()
        return chunk


class Request:
    __slots__ = ("method", "target", "version", "headers", "hmap", "body", "keep_alive", "start", "header_bytes",
                 "has_body", "chunked", "content_length")

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = "1.1"
        self.headers: list[tuple[str, str]] = []
        self.hmap: dict[str, str] = {}
        self.keep_alive = True
        self.start = 0.0
        self.header_bytes = 0
        self.has_body = False
        self.chunked = False
        self.content_length: int | None = None
        self.body: RequestBody


class DownstreamProtocol(asyncio.Protocol):
    def __init__(self, server: ProxyServer, listener_key: tuple[str, int]) -> None:
        # -- connection state
        self.server = server
        self.loop = server.loop
        self.listener_key = listener_key
        self.listener = server.listener_at(listener_key)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.on_resume: list[asyncio.Transport] = []  # upstream transports paused on our behalf
        self.pipeline: deque[Request] = deque()
        self.task: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None  # the request loop waiting for the next request
        self.deadline = float("inf")  # idle/header timeout, checked by the server's sweeper
        self.peer = ("127.0.0.1", 0)
        # -- request state (the request being parsed)
        self.parsing: Request | None = None
        self.busy = False  # a response is being produced

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or self.peer
        self.server.connections.add(self)
        self._arm(self.server.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._disarm()
        if self.task is not None and self.busy:
            self.task.cancel()  # the client is gone: stop waiting on the upstream (Envoy's DC)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        if self.parsing is not None:
            self.parsing.body._wake()
        for req in self.pipeline:
            req.body._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        for t in self.on_resume:
            t.resume_reading()
        self.on_resume.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except ProxyError as exc:
            self.reject(exc)
        except httptools.HttpParserUpgrade:
            self.reject(BadRequest("upgrade/CONNECT is not supported"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            self.reject(cause if isinstance(cause, ProxyError) else BadRequest(str(exc)))

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        for t in self.on_resume:
            t.resume_reading()
        self.on_resume.clear()

    # -- httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        req = self.parsing = Request()
        req.start = time.perf_counter()  # uvloop's loop.time() only has millisecond resolution
        if not self.busy and not self.pipeline:
            self._arm(self.server.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.target += url.decode("latin-1")
        if len(req.target) > MAX_URL:
            raise UriTooLong("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.header_bytes += len(name) + len(value) + 4
        if req.header_bytes > MAX_HEADERS:
            raise HeadersTooLarge("header block too large")
        lname = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        req.headers.append((lname, val))
        old = req.hmap.get(lname)
        req.hmap[lname] = val if old is None else f"{old},{val}"

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        p = self.parser
        req.method = p.get_method().decode("latin-1")
        req.version = p.get_http_version()
        req.keep_alive = p.should_keep_alive()
        cl = req.hmap.get("content-length")
        te = req.hmap.get("transfer-encoding", "")
        req.chunked = "chunked" in te.lower()
        if cl is not None:
            if req.chunked or not cl.isdigit():
                raise BadRequest("invalid content-length")
            req.content_length = int(cl)
        req.has_body = req.chunked or bool(req.content_length)
        req.body = RequestBody(self, done=not req.has_body)
        if not self.busy and not self.pipeline:
            self._disarm()
        self.pipeline.append(req)
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body.feed(body)

    def on_message_complete(self) -> None:
        if self.parsing is not None:
            self.parsing.body.finish()
            self.parsing = None

    # -- request loop --------------------------------------------------------------------------------
    async def _run(self) -> None:
        """One task per connection, serving its requests in order and idling between them."""
        try:
            while not self.closed:
                if not self.pipeline:
                    self._arm(self.server.idle_timeout_s)
                    self.waiter = self.loop.create_future()
                    await self.waiter
                    self.waiter = None
                    continue
                req = self.pipeline[0]
                self.busy = True
                # The listener may have been replaced by a newer snapshot: use the current one.
                self.listener = self.server.listener_at(self.listener_key) or self.listener
                keep = await self.server.forwarder.handle(self, req)
                self.pipeline.popleft()
                self.busy = False
                if not keep or not req.keep_alive or not req.body.done or self.server.draining(self.listener_key):
                    self.close()
                    return
        except Exception:  # boundary: one connection's bug must not take down the listener
            log.exception("downstream connection failed")
            self.close()
        finally:
            self.task = None
            self.busy = False

    # -- writing -------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self.writing_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def reject(self, err: ProxyError) -> None:
        """Answer a protocol error and close (malformed request, 414, 431)."""
        if self.closed:
            return
        self.server.stats.bump("graylane_proxy_downstream_rq_rejected_total")
        if not self.busy:
            body = err.body.encode()
            self.write(status_line(err.status) + b"content-type: text/plain\r\ncontent-length: %d\r\n"
                       b"connection: close\r\n\r\n%s" % (len(body), body))
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- timers --------------------------------------------------------------------------------------
    # A deadline per connection and one sweeper per server: cheaper than a timer handle per request.
    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds if seconds > 0 else float("inf")

    def _disarm(self) -> None:
        self.deadline = float("inf")

    def timeout(self) -> None:
        self.deadline = float("inf")
        if not self.busy:
            self.server.stats.bump("graylane_proxy_downstream_cx_idle_timeout_total")
            if self.parsing is not None and not self.pipeline:
                body = b"request timeout"
                self.write(status_line(408) + b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                           % (len(body), body))
            self.close()
