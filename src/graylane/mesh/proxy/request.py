"""One downstream HTTP/1.1 request as the listener hands it on: its head (`Request`) and its body (`RequestBody`).

A bodyless request shares `NO_BODY`; until its head is complete a request's body is `HEAD_PENDING` (tested by
identity). Split from listener.py, which parses and serves; heads.py builds a plain request here too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Protocol

from graylane.mesh.proxy.errors import ProxyError

BODY_HIGH: Final = 64 * 1024
BODY_LOW: Final = 16 * 1024
# Why the listener pauses reading (reading resumes when no reason is left).
PAUSE_BODY: Final = 1  # a request body is held faster than the upstream takes it
PAUSE_PIPELINE: Final = 2  # the next request waits (unparsed) for the current response


class BodySource(Protocol):
    """What a request body reads of the connection it arrives on (listener.DownstreamProtocol): a structural type,
    so that this module does not import the listener, which imports it."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def closed(self) -> bool: ...
    def pause_reading(self, reason: int = PAUSE_BODY) -> None: ...
    def resume_reading(self, reason: int = PAUSE_BODY) -> None: ...


class RequestBody:
    """Request body chunks from the parser to the forwarding task, pausing the socket when too much is held."""

    __slots__ = ("chunks", "held", "done", "waiter", "protocol", "received", "error")

    def __init__(self, protocol: BodySource, done: bool) -> None:
        self.chunks: deque[bytes] = deque()
        self.held = 0
        self.done = done
        self.waiter: asyncio.Future[None] | None = None
        self.protocol = protocol
        self.received = 0
        self.error: ProxyError | None = None  # set when the body timed out: readers get it raised

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.held += len(chunk)
        self.received += len(chunk)
        if self.held > BODY_HIGH:
            self.protocol.pause_reading(PAUSE_BODY)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, err: ProxyError) -> None:
        self.error = err
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end of the body. Raises the body's timeout, if it had one."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            if self.protocol.closed:
                raise ConnectionResetError("client went away during the request body")
            self.waiter = self.protocol.loop.create_future()
            await self.waiter
        if self.error is not None:
            raise self.error
        chunk = self.chunks.popleft()
        self.held -= len(chunk)
        if self.held < BODY_LOW:
            self.protocol.resume_reading(PAUSE_BODY)
        return chunk


class _NoBody(RequestBody):
    """The body of every bodyless request: one shared, always done, never fed (nothing to allocate per request)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> None:
        raise AssertionError("a bodyless request was fed a body")

    def fail(self, err: ProxyError) -> None:
        pass  # no body to time out


NO_BODY: Final[RequestBody] = _NoBody(None, done=True)  # type: ignore[arg-type]  # never reads its protocol
# A request's body until its head is complete: a real object, never None, so that compiled code (which trusts
# the declared type, graylane.mesh.native) can never call a method on None; tested by identity.
HEAD_PENDING: Final[RequestBody] = _NoBody(None, done=True)  # type: ignore[arg-type]  # nor does this one


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
        self.body: RequestBody = HEAD_PENDING  # replaced when the head is complete
