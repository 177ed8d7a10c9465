"""Downstream HTTP/1.1: one protocol object per accepted connection, parsing with httptools.

Layout follows uvicorn's protocol classes: constants at import, per-connection then per-request state,
no `await` inside parser callbacks, and flow control by named pause reasons. Requests on one connection are
served one at a time: the next pipelined request stays unparsed (reading paused) until the current response is
written and drained, as Envoy's HTTP/1 codec does (`framing.py` finds where each request ends). The handler
itself lives in `forward.py`; a connection reads only `ConnectionHost` from the data-plane process.

No task per connection (issue #17): once a request's head is parsed the forwarder is called from this
callback (`RequestHandler.serve`); it answers there, forwards from there (`inline.py`), or runs the request in
a task (`spawn`). Whichever way, it ends with `finished(keep)`, which lets the next request in.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, Protocol

import httptools

from graylane.mesh.proxy import heads
from graylane.mesh.proxy.errors import (
    BadRequest,
    HeadersTooLarge,
    ProxyError,
    RequestTimeout,
    StreamIdleTimeout,
    UriTooLong,
)
from graylane.mesh.proxy.framing import MAX_HEADERS, MAX_URL, Framer
from graylane.mesh.proxy.request import HEAD_PENDING, NO_BODY, PAUSE_BODY, PAUSE_PIPELINE, Request, RequestBody
from graylane.mesh.proxy.tcp import take_over_connect

if TYPE_CHECKING:
    from graylane.mesh.proxy.stats import Stats
    from graylane.mesh.routing import Listener

log = logging.getLogger(__name__)

MAX_HEADER_COUNT: Final = 100  # Envoy's max_headers_count default; HTTP/1 requests beyond it get 431
SERVER_HEADER: Final = b"server: istio-envoy\r\n"  # Istio's server_name on every listener
REASONS: Final = {s.value: s.phrase.encode() for s in http.HTTPStatus}
STATUS_LINES: Final = {code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()}
H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # the h2c prior-knowledge client preface (h2_downstream.py)
# Per request, builtins cost more than they look on 3.11: `float("inf")` parses a string and `min()` parses its
# arguments (~300 and ~700 instructions); the timers below use this constant and plain comparisons (issue #17).
_INF: Final = float("inf")

__all__ = ["MAX_HEADERS", "MAX_URL", "DownstreamProtocol", "Request", "RequestBody", "status_line"]


def status_line(code: int) -> bytes:
    return STATUS_LINES.get(code) or b"HTTP/1.1 %d Unknown\r\n" % code


class Inflight(Protocol):
    """What serves the current request and stops when the client goes away: a task, or an inline try."""

    def cancel(self) -> Any: ...


class RequestHandler(Protocol):
    """Serves parsed requests (`forward.Forwarder`)."""

    def serve(self, proto: DownstreamProtocol, req: Request) -> None:
        """Serve `req` (called from the parser's callback, no `await`): answer it now, or forward it and answer
        from a callback, or `proto.spawn` a task; in every case end with `proto.finished(keep)`."""
        ...

    def take_over_h2(self, proto: DownstreamProtocol, data: bytes) -> bool:
        """The connection opened with the HTTP/2 preface: serve it as h2c (h2_downstream.py) if it can."""
        ...


class ConnectionHost(Protocol):
    """What a downstream connection reads from the data-plane process (`ProxyServer` provides it)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def idle_timeout_s(self) -> float: ...
    @property
    def header_timeout_s(self) -> float: ...
    @property
    def request_timeout_s(self) -> float: ...
    @property
    def stream_idle_timeout_s(self) -> float: ...
    @property
    def connections(self) -> set[DownstreamProtocol]: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def forwarder(self) -> RequestHandler: ...
    # Read per request as plain attributes (a call into the uncompiled server costs ~1,500 instructions):
    @property
    def listeners_by_addr(self) -> dict[tuple[str, int], Listener]: ...  # replaced whole by each snapshot
    @property
    def draining_addrs(self) -> set[tuple[str, int]]: ...  # addresses of listeners a snapshot removed
    def listener_at(self, key: tuple[str, int]) -> Listener | None: ...


class DownstreamProtocol(asyncio.Protocol):
    def __init__(self, server: ConnectionHost, listener_key: tuple[str, int]) -> None:
        # -- connection state
        self.server = server
        self.loop = server.loop
        self.listener_key = listener_key
        self.listener = server.listener_at(listener_key)
        self.parser = httptools.HttpRequestParser(self)
        self.framer = Framer()
        self.unparsed = b""  # bytes of the next request(s), kept while the current one is answered
        self.opening: bytes | None = b""  # the first bytes while they may be a split h2 preface (`_opening`)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = 0  # PAUSE_* reasons
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.on_resume: list[asyncio.Transport] = []  # upstream transports paused on our behalf
        self.pipeline: deque[Request] = deque()  # the request being served (one at a time)
        self.inflight: Inflight | None = None  # what serves it (a task or an inline try), or waits for a drain
        self.starting = False  # inside `serve`: a request answered there lets the parsing loop go on by itself
        self.deadline = _INF  # idle/header/body timeout, checked by the server's sweeper
        self.request_deadline = _INF  # request_timeout of the request being received
        self.peer = ("127.0.0.1", 0)
        self.upgraded: bytes | None = None  # after a WebSocket upgrade request: the bytes past its head (websocket.py)
        # -- request state
        self.parsing: Request | None = None  # the request being received
        self.busy = False  # a response is being produced
        self.responded = False  # bytes of the current response were written

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or self.peer
        self.server.connections.add(self)
        self._arm(self.server.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.unparsed = b""
        self.server.connections.discard(self)
        self._disarm()
        if self.inflight is not None and self.busy:
            self.inflight.cancel()  # the client is gone: stop waiting on the upstream (Envoy's DC)
        if self.parsing is not None and self.parsing.body is not HEAD_PENDING:
            self.parsing.body._wake()
        for req in self.pipeline:
            req.body._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        for t in self.on_resume:
            t.resume_reading()
        self.on_resume.clear()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.opening is not None and not (data := self._opening(data)):
            return
        if self.unparsed:  # arrived while the next request was held back: keep the order
            self.unparsed += data
            return
        self._consume(data)

    def _opening(self, data: bytes) -> bytes:
        """The connection's first bytes: while they are a strict prefix of the h2 preface (a client that writes
        `PRI * HTTP/2.0...` in pieces) they are held, at most 23 bytes; what to parse once they are not."""
        data = self.opening + data if self.opening else data
        if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            self.opening = data
            return b""
        self.opening = None
        return data

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        for t in self.on_resume:
            t.resume_reading()
        self.on_resume.clear()

    # -- feeding the parser one request at a time ----------------------------------------------------
    def _consume(self, data: bytes) -> None:
        try:
            pos, n = 0, len(data)
            framer = self.framer
            while pos < n and not self.closed:
                if self.parsing is None and framer.between_requests:
                    if self.pipeline:
                        # A whole request waits for its response: the next one stays unparsed and we stop reading,
                        # so a client that pipelines without reading replies fills its own socket, not our memory.
                        self.unparsed = data[pos:]
                        self.pause_reading(PAUSE_PIPELINE)
                        return
                    end = data.find(b"\r\n\r\n", pos) + 4
                    req = heads.request(data, pos, end) if end > 3 else None
                    if req is not None:  # a plain bodyless head, whole in this read: httptools is not needed
                        pos = end
                        req.start = time.perf_counter()
                        if not self.busy:
                            self._disarm()  # no body to time: the header timeout ends here
                        self.pipeline.append(req)
                        if not self.busy:
                            self._start()
                        continue
                end = framer.advance(data, pos)
                self.parser.feed_data(data if pos == 0 and end == n else memoryview(data)[pos:end])
                pos = end
                if self.pipeline and not self.busy:
                    self._start()
        except ProxyError as exc:
            self.reject(exc)
        except httptools.HttpParserUpgrade:
            self._upgrade(data[end:])  # `end`: where the upgrade request's head ended
            if self.pipeline and not self.busy:
                self._start()
        except httptools.HttpParserError as exc:
            if data.startswith(b"PRI * HTTP/2.0") and not self.pipeline and self.server.forwarder.take_over_h2(
                    self, data):
                return  # h2c with prior knowledge: the connection speaks HTTP/2 from here on
            cause = exc.__context__
            self.reject(cause if isinstance(cause, ProxyError) else BadRequest(str(exc)))

    def _upgrade(self, rest: bytes) -> None:
        """An Upgrade (or CONNECT) request was parsed. `websocket`: the forwarder splices the connection and the
        bytes after the head wait for it; `h2c`: the upgrade is declined, the request served as HTTP/1.1 (Envoy
        does the same); CONNECT on a sidecar: the connection becomes a TCP tunnel (tcp.py); anything else is
        refused."""
        req = self.pipeline[-1] if self.pipeline else None
        kind = req.hmap.get("upgrade", "").strip().lower() if req is not None else ""
        if req is not None and kind == "websocket" and req.method == "GET" and req is self.pipeline[0]:
            self.upgraded = bytes(rest)
            req.keep_alive = False  # whatever the answer, this connection serves no further HTTP/1.1 request
            self.pause_reading(PAUSE_PIPELINE)
        elif req is not None and kind == "h2c" and not req.has_body:
            self.parser = httptools.HttpRequestParser(self)
            if rest:
                self._consume(bytes(rest))
        elif (req is not None and req.method == "CONNECT" and req is self.pipeline[0] and self.transport is not None
              and self.listener is not None and self.listener.kind == "sidecar"):
            self.closed = True  # from here on the connection is a TCP tunnel (tcp.py), no longer HTTP/1.1
            self.pipeline.clear()
            self.server.connections.discard(self)
            take_over_connect(self.server, self.listener_key, self.transport, req.target,  # type: ignore[arg-type]
                              bytes(rest))  # the server is a TcpHost too (ProxyServer)
        else:
            self.reject(BadRequest("upgrade/CONNECT is not supported"))

    def _next_request(self) -> None:
        """The current response is done: parse what the client sent meanwhile, then read again."""
        data, self.unparsed = self.unparsed, b""
        if data:
            self._consume(data)
        if not self.unparsed:
            self.resume_reading(PAUSE_PIPELINE)

    # -- httptools callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        req = self.parsing = Request()
        req.start = time.perf_counter()  # uvloop's loop.time() only has millisecond resolution
        now = self.loop.time()
        timeout = self.server.request_timeout_s
        self.request_deadline = now + timeout if timeout > 0 else _INF
        if not self.busy and not self.pipeline:
            self._arm(self.server.header_timeout_s)
            if self.request_deadline < self.deadline:  # the earlier of the two
                self.deadline = self.request_deadline

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        assert req is not None
        req.target += url.decode("latin-1")
        if len(req.target) > MAX_URL:
            raise UriTooLong("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        assert req is not None
        size = req.header_bytes = req.header_bytes + len(name) + len(value) + 4
        headers = req.headers
        if size > MAX_HEADERS:
            raise HeadersTooLarge("header block too large")
        if len(headers) >= MAX_HEADER_COUNT:
            raise HeadersTooLarge("too many headers")
        lname = heads.header_name(name)
        val = value.decode("latin-1")
        headers.append((lname, val))
        hmap = req.hmap
        if lname in hmap:
            hmap[lname] = f"{hmap[lname]},{val}"
        else:
            hmap[lname] = val

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        p = self.parser
        method = p.get_method()
        req.method = heads.METHODS.get(method) or method.decode("latin-1")
        version = self.framer.version  # the request line's, as httptools read it (framing.Framer.version)
        req.version = "1.1" if version == b"1.1" else version.decode("ascii")
        req.keep_alive = p.should_keep_alive()
        hmap = req.hmap
        if "content-length" not in hmap and "transfer-encoding" not in hmap:  # the common bodyless request
            req.body = NO_BODY  # (`has_body`, `chunked`: False from __init__)
            self.framer.start_body(0, False)
            if not self.busy:
                self._disarm()
            self.pipeline.append(req)  # served once `feed_data` returns (`_start`), outside the parser
            return
        cl = hmap.get("content-length")
        req.chunked = "chunked" in hmap.get("transfer-encoding", "").lower()
        if cl is not None:
            if req.chunked or not cl.isdigit():
                raise BadRequest("invalid content-length")
            req.content_length = int(cl)
        req.has_body = req.chunked or bool(req.content_length)
        req.body = RequestBody(self, done=False) if req.has_body else NO_BODY
        self.framer.start_body(req.content_length or 0, req.chunked)
        if req.has_body:
            self._arm_body()
        elif not self.busy:
            self._disarm()
        self.pipeline.append(req)  # served once `feed_data` returns (`_start`), outside the parser

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body.feed(body)
            self._arm_body()

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is not None:
            req.body.finish()
            self.parsing = None
            if req.has_body:
                self._disarm()

    # -- serving one request at a time -------------------------------------------------------------------
    def _start(self) -> None:
        """The head of the request at the front is parsed and nothing else is being served: serve it."""
        if self.closed or self.inflight is not None:
            return  # gone, or the previous response waits for the client to read (`_drained`)
        req = self.pipeline[0]
        self.busy = True
        self.responded = False
        # The listener may have been replaced by a newer snapshot: use the current one.
        self.listener = self.server.listeners_by_addr.get(self.listener_key) or self.listener
        self.starting = True
        try:
            self.server.forwarder.serve(self, req)
        except Exception:  # boundary: one connection's bug must not take down the listener
            log.exception("downstream connection failed")
            self.busy = False
            self.close()
        finally:
            self.starting = False

    def spawn(self, work: Coroutine[Any, Any, bool]) -> None:
        """Serve the current request in a task (`work` returns whether the connection may be kept alive)."""
        self.inflight = self.loop.create_task(self._serve(work))

    async def _serve(self, work: Coroutine[Any, Any, bool]) -> None:
        try:
            keep = await work
        except Exception:  # boundary, as in `_start`
            log.exception("downstream connection failed")
            self.inflight = None
            self.busy = False
            self.close()
            return
        except BaseException:  # cancelled: the client went away
            self.inflight = None
            self.busy = False
            raise
        self.finished(keep)

    def finished(self, keep: bool) -> None:
        """The current response is written: close, wait for the client to read it, or let the next request in."""
        self.inflight = None
        self.busy = False
        req = self.pipeline[0]
        if not keep or not req.keep_alive or not req.body.done or self.listener_key in self.server.draining_addrs:
            self.pipeline.popleft()
            self.close()
            return
        if self.writing_paused:
            # Write back-pressure: the client is not reading; answer nothing more until it does.
            self.server.stats.bump("graylane_proxy_downstream_flow_control_paused_writing_total")
            self._arm(self.server.idle_timeout_s)
            self.inflight = self.loop.create_task(self._drained())
            return
        self.pipeline.popleft()
        self._arm(self.server.idle_timeout_s)
        if not self.starting:  # inside `_start`, the parsing loop that called it goes on by itself
            self._next_request()

    async def _drained(self) -> None:
        await self.drain()
        self.inflight = None
        if self.closed:
            return
        self.pipeline.popleft()
        self._next_request()

    # -- writing -------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.responded = True
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def write_interim(self, data: bytes) -> None:
        """An interim response (100 Continue): not the start of the final response."""
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
            self.write(local_reply(err))
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def pause_reading(self, reason: int = PAUSE_BODY) -> None:
        was = self.paused
        self.paused |= reason
        if not was and self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self, reason: int = PAUSE_BODY) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- timers --------------------------------------------------------------------------------------
    # A deadline per connection and one sweeper per server: cheaper than a timer handle per request.
    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds if seconds > 0 else _INF

    def _arm_body(self) -> None:
        """While a body arrives: stream_idle_timeout since the last bytes, within the request's request_timeout."""
        idle = self.server.stream_idle_timeout_s
        idle_deadline = self.loop.time() + idle if idle > 0 else _INF
        rd = self.request_deadline
        self.deadline = idle_deadline if idle_deadline < rd else rd

    def _disarm(self) -> None:
        self.deadline = _INF

    def timeout(self) -> None:
        """Called by the server's sweeper when `deadline` has passed."""
        self.deadline = _INF
        req: Request | None = self.parsing  # annotated: mypyc infers None from the class's first assignment
        if req is not None and req.body is not HEAD_PENDING:
            self._body_timeout(req)
            return
        if not self.busy:
            self.server.stats.bump("graylane_proxy_downstream_cx_idle_timeout_total")
            if req is not None and not self.pipeline:
                self.write(local_reply(RequestTimeout("request header timeout")))
            self.close()

    def _body_timeout(self, req: Request) -> None:
        now = self.loop.time()
        late = now >= self.request_deadline
        if not late and self.paused & PAUSE_BODY:
            self._arm_body()  # we stopped reading (the upstream is slow): the client is not idle
            return
        self.server.stats.bump("graylane_proxy_downstream_rq_timeout_total")
        err = RequestTimeout("request timeout") if late else StreamIdleTimeout("stream timeout")
        if self.busy and not self.responded:
            req.body.fail(err)  # the forwarder answers 408 (Envoy's local reply) and the connection closes
        else:
            self.close()  # the response has started: Envoy resets the stream


def local_reply(err: ProxyError) -> bytes:
    """A protocol-level local reply (not routed): status, Envoy's body, `connection: close`."""
    body = err.body.encode()
    return (status_line(err.status) + SERVER_HEADER + b"content-type: text/plain\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body))
