"""Graceful stop of the control plane on SIGTERM (a rolling update, `kubectl delete pod`, `graylane down`).

Owns the drain state of one process (`Drain`), the ASGI middleware that counts requests in flight, refuses new
ones with 503 once draining and answers 503 (not uvicorn's 500) to those still unfinished at the drain deadline,
the SSE wrapper that ends event streams with a `reconnect` event, and the uvicorn `Server` the CLI runs, which
drains before uvicorn's own shutdown (closing the socket, then the lifespan: executor, leases) begins.

Order on SIGTERM: draining starts at once (new requests and `/healthz` answer 503 with `Connection: close`;
SSE streams send `event: reconnect` with `retry: 1000` and end; long-polls answer 503); requests in flight get
up to `GRAYLANE_DRAIN_S` (default 15 s) to finish; those left are canceled and answered 503; then uvicorn closes
the listening socket and the lifespan stops the background parts. docs/operations.md, "Stopping a control plane".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import suppress
from types import FrameType
from typing import Any, TypeVar

import anyio
import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_DRAIN_S = 15.0
RECONNECT_MS = 1000  # what an SSE client is told to wait before it connects again (to another replica)
_T = TypeVar("_T")


def drain_period() -> float:
    """`$GRAYLANE_DRAIN_S`: how long requests in flight may take to finish after SIGTERM (0 to 600)."""
    raw = os.environ.get("GRAYLANE_DRAIN_S", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_DRAIN_S
    except ValueError:
        raise ValueError(f"GRAYLANE_DRAIN_S: expected seconds (a number), got {raw[:40]!r}") from None
    if not 0 <= value <= 600:
        raise ValueError(f"GRAYLANE_DRAIN_S: expected 0 to 600 seconds, got {value:g}")
    return value


class Drain:
    """Whether this process is stopping, and the requests it still serves."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.draining = False
        self.since: float | None = None
        self._begun: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._active: set[anyio.CancelScope] = set()

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._begun is None or self._idle is None:
            self._begun, self._idle = asyncio.Event(), asyncio.Event()
            if self.draining:
                self._begun.set()
            if not self._active:
                self._idle.set()
        return self._begun, self._idle

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def begin(self) -> None:
        """Start draining (idempotent); called on the event loop."""
        if not self.draining:
            self.draining, self.since = True, time.monotonic()
            log.info("draining: %d request(s) in flight; new requests answer 503", len(self._active))
        self._events()[0].set()

    async def wait_begun(self) -> None:
        await self._events()[0].wait()

    async def wait_idle(self, timeout: float) -> bool:
        """True when no request is in flight within `timeout` seconds."""
        idle = self._events()[1]
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await idle.wait()
        return idle.is_set()

    def cancel_all(self) -> int:
        for scope in list(self._active):
            scope.cancel()
        return len(self._active)

    def enter(self, scope: anyio.CancelScope) -> None:
        self._active.add(scope)
        self._events()[1].clear()

    def leave(self, scope: anyio.CancelScope) -> None:
        self._active.discard(scope)
        if not self._active:
            self._events()[1].set()

    async def unless_draining(self, awaitable: Awaitable[_T]) -> _T:
        """The awaitable's result, or `Stopping` once draining begins first (for long-polls)."""
        work = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self.wait_begun())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            raise Stopping("this control plane is stopping; send the request again (another replica answers)")
        finally:
            for task in (work, stop):
                if not task.done():
                    task.cancel()
                    with suppress(asyncio.CancelledError, Exception):
                        await task


class Stopping(Exception):
    """A long-poll ended because the process is stopping; answered 503 with Retry-After."""


def stopping_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "where": None,
                                 "hint": "retry: another control plane replica answers"}}).encode()


async def send_503(send: Send, message: str) -> None:
    body = stopping_body(message)
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class DrainMiddleware:
    """Outermost: counts HTTP requests in flight; 503 to new ones while draining; 503 to those canceled at the
    drain deadline before their response started (one already started is ended by closing the connection)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if drain.draining:
            await send_503(send, "this control plane is stopping and takes no new requests")
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if drain.draining:  # the client's next request opens a connection to another replica
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        with anyio.CancelScope() as cancel:
            drain.enter(cancel)
            try:
                await self.app(scope, receive, tracked_send)
            finally:
                drain.leave(cancel)
        if cancel.cancelled_caught and not started:
            await send_503(send, f"this control plane stopped before the request finished (it had "
                                 f"{drain.period_s:g} s, GRAYLANE_DRAIN_S); it may have taken effect in part: "
                                 "check, then send it again")


def event_stream(request: Request, source: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    """An SSE response that, when the process starts draining, sends `event: reconnect` (with `retry:`) and
    ends: an EventSource connects again by itself, through the Service to a replica that is not stopping."""
    drain: Drain | None = getattr(request.app.state, "drain", None)
    return EventSourceResponse(_until_drained(drain, source), shutdown_grace_period=2.0)


async def _until_drained(drain: Drain | None, source: AsyncIterator[dict[str, Any]]
                         ) -> AsyncIterator[dict[str, Any]]:
    if drain is None:
        async for item in source:
            yield item
        return
    stop = asyncio.ensure_future(drain.wait_begun())
    nxt: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(anext(source))
            await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                break
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield item
        yield {"event": "reconnect", "retry": RECONNECT_MS,
               "data": json.dumps({"reason": "this control plane is stopping; connect again"})}
    finally:
        for task in (nxt, stop):
            if task is not None and not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                    await task
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with suppress(Exception):
                await aclose()


class GracefulServer(uvicorn.Server):
    """uvicorn's Server, draining (see the module docstring) before its own shutdown starts."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # a signal handler: wake the loop rather than touch its events from here
            self._loop.call_soon_threadsafe(self.drain.begin)

    async def shutdown(self, sockets: Any = None) -> None:
        self.drain.begin()
        deadline = time.monotonic() + self.drain.period_s
        while not self.force_exit and time.monotonic() < deadline:  # a second Ctrl-C stops waiting
            if await self.drain.wait_idle(min(0.2, max(0.0, deadline - time.monotonic()))):
                break
        if self.drain.in_flight:
            log.warning("drain deadline (%g s): canceling %d request(s) still in flight; they answer 503",
                        self.drain.period_s, self.drain.cancel_all())
            await self.drain.wait_idle(2.0)
        await super().shutdown(sockets)


def run(app: Any, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` (from graylane.server.app.create_app) until SIGTERM/SIGINT, draining first."""
    drain: Drain = app.state.drain
    # uvicorn's own limit is a backstop: the drain above has ended every request before it starts counting.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
    GracefulServer(config, drain).run()
