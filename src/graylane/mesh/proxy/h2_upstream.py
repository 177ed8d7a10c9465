"""HTTP/2 (cleartext, prior knowledge) to upstreams whose Service port speaks it (`grpc-*`, `http2-*`, appProtocol
`grpc`/`http2`/`kubernetes.io/h2c`): one multiplexed connection per endpoint, opened on first use and shared by
every stream to that endpoint, replaced when it goes away or runs out of stream ids.

Flow control is end to end: response data is acknowledged (WINDOW_UPDATE) only when the other side has taken it
(`Body.ack`), so a slow client slows the upstream instead of filling our memory. `send_data` waits for the peer's
window. Knows h2's state machine and sockets; nothing of routing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from graylane.mesh.proxy.errors import UpstreamConnectFailure, UpstreamProtocolError, UpstreamReset

MAX_WRITE_BUFFER = 4 * 2**20  # a peer that does not read its control frames (SETTINGS/PING acks) is dropped
STREAM_WINDOW = 65_535  # per stream (the protocol's default): what one stream may have in flight to us
CONNECTION_WINDOW = 100 * STREAM_WINDOW  # the connection's: one slow stream cannot starve the others
Headers = list[tuple[bytes, bytes]]
# Request headers HTTP/2 forbids (connection-specific) besides the HTTP/1 hop-by-hop ones route.py drops.
CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade", b"http2-settings"))


class Body:
    """One direction of a stream's data as it arrives: chunks, end, trailers; `ack` returns flow-control credit."""

    __slots__ = ("chunks", "ended", "trailers", "error", "waiter", "ack", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, ack: Callable[[int], None]) -> None:
        self.loop = loop
        self.chunks: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self.ended = False
        self.trailers: Headers | None = None
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.ack = ack

    def feed(self, data: bytes, flow_len: int) -> None:
        self.chunks.append((data, flow_len))
        self._wake()

    def end(self, trailers: Headers | None = None) -> None:
        if trailers is not None:
            self.trailers = trailers
        self.ended = True
        self._wake()

    def fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def read(self) -> tuple[bytes, int] | None:
        """The next (chunk, flow length), None at the end; raises the stream's failure."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.ended:
                return None
            self.waiter = self.loop.create_future()
            await self.waiter
        return self.chunks.popleft()


class H2Peer(asyncio.Protocol):
    """What both ends share: an h2 connection on a transport, writes, and waiting for send window."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: h2.config.H2Configuration) -> None:
        self.loop = loop
        self.conn = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.window_waiters: list[asyncio.Future[None]] = []
        self.writable: asyncio.Future[None] | None = None
        self.write_paused = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
            if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self.abort()

    def abort(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake_windows()

    def wake_windows(self) -> None:
        waiters, self.window_waiters = self.window_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def send_data(self, sid: int, data: bytes | memoryview, end: bool = False) -> None:
        """Send `data` on stream `sid` as the peer's windows and frame size allow (waits for WINDOW_UPDATE)."""
        view = memoryview(data)
        while True:
            if self.closed:
                raise ConnectionResetError("connection closed")
            if not view and not end:
                return
            try:
                window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            except h2.exceptions.H2Error:
                raise ConnectionResetError(f"stream {sid} is closed") from None
            if (window <= 0 and view) or self.write_paused:
                fut = self.loop.create_future()
                self.window_waiters.append(fut)
                await fut
                continue
            n = min(window, len(view))
            last = end and n == len(view)
            try:
                self.conn.send_data(sid, bytes(view[:n]), end_stream=last)
            except h2.exceptions.H2Error:
                raise ConnectionResetError(f"stream {sid} is closed") from None
            self.flush()
            view = view[n:]
            if last or (not view and not end):
                return

    def end_stream(self, sid: int, trailers: Headers | None) -> None:
        try:
            if trailers:
                self.conn.send_headers(sid, trailers, end_stream=True)
            else:
                self.conn.end_stream(sid)
        except h2.exceptions.H2Error:
            return  # the peer reset the stream meanwhile
        self.flush()

    def reset(self, sid: int, code: int = 8) -> None:  # 8: CANCEL
        try:
            self.conn.reset_stream(sid, code)
            self.flush()
        except h2.exceptions.H2Error:
            pass


class UpStream:
    """One request on an upstream h2 connection: its response headers (awaitable) and its body."""

    __slots__ = ("sid", "conn", "headers", "body")

    def __init__(self, conn: H2ClientConnection, sid: int) -> None:
        self.sid = sid
        self.conn = conn
        self.headers: asyncio.Future[tuple[Headers, bool]] = conn.loop.create_future()  # (headers, ended)
        self.body = Body(conn.loop, lambda n: conn.ack(sid, n))

    def fail(self, err: BaseException) -> None:
        if not self.headers.done():
            self.headers.set_exception(err)
            self.headers.exception()
        self.body.fail(err)


class H2ClientConnection(H2Peer):
    def __init__(self, pool: H2Pools, address: str) -> None:
        super().__init__(pool.loop, h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                               validate_inbound_headers=True))
        self.pool = pool
        self.address = address
        self.streams: dict[int, UpStream] = {}
        self.goaway = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0, h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024})
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - STREAM_WINDOW)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        for s in list(self.streams.values()):
            s.fail(UpstreamReset("upstream closed the connection"))
        self.streams.clear()
        self.wake_windows()

    def usable(self) -> bool:
        return not self.closed and not self.goaway and self.conn.open_outbound_streams < \
            self.conn.remote_settings.max_concurrent_streams and self.conn.highest_outbound_stream_id < 2**30

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error as exc:
            for s in list(self.streams.values()):
                s.fail(UpstreamProtocolError(f"upstream protocol error: {exc}"))
            self.abort()  # no GOAWAY of ours: a server going away sends PING after its GOAWAY, which h2 refuses
            return
        for ev in events:
            s = self.streams.get(getattr(ev, "stream_id", 0) or 0)
            if isinstance(ev, h2.events.ResponseReceived) and s is not None:
                if not s.headers.done():
                    s.headers.set_result((list(ev.headers), ev.stream_ended is not None))
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                continue
            elif isinstance(ev, h2.events.DataReceived):
                if s is not None:
                    s.body.feed(ev.data, ev.flow_controlled_length)
                else:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived) and s is not None:
                s.body.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded) and s is not None:
                s.body.end()
                self.streams.pop(s.sid, None)
            elif isinstance(ev, h2.events.StreamReset) and s is not None:
                s.fail(UpstreamReset(f"upstream reset the stream (error code {ev.error_code})"))
                self.streams.pop(s.sid, None)
            elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self.wake_windows()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = True
                self.pool.forget(self)
                for sid, st in list(self.streams.items()):
                    if ev.last_stream_id is None or sid > ev.last_stream_id:
                        st.fail(UpstreamReset("upstream refused the stream (GOAWAY)"))
                        self.streams.pop(sid, None)
        self.flush()
        if self.goaway and not self.streams and self.transport is not None:
            self.closed = True  # the upstream is going away and nothing is in flight: done with it
            self.transport.close()

    def ack(self, sid: int, n: int) -> None:
        """The other side took `n` flow-controlled bytes of stream `sid`: let the upstream send more."""
        if n and not self.closed:
            try:
                self.conn.acknowledge_received_data(n, sid)
            except h2.exceptions.H2Error:  # the stream is closed: only the connection window matters
                self.conn.increment_flow_control_window(n)
            self.flush()

    def request(self, headers: Headers, end_stream: bool) -> UpStream:
        sid = self.conn.get_next_available_stream_id()
        s = self.streams[sid] = UpStream(self, sid)
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return s

    def cancel(self, s: UpStream) -> None:
        if self.streams.pop(s.sid, None) is not None:
            self.reset(s.sid)


class H2Pools:
    """One shared connection per endpoint address (more when one runs out of concurrent streams)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.conns: dict[str, list[H2ClientConnection]] = {}
        self.connecting: dict[str, asyncio.Future[H2ClientConnection]] = {}

    def forget(self, conn: H2ClientConnection) -> None:
        lst = self.conns.get(conn.address)
        if lst is not None and conn in lst:
            lst.remove(conn)

    async def connection(self, address: str, host: str, port: int, connect_s: float) -> H2ClientConnection:
        for c in self.conns.get(address, ()):
            if c.usable():
                return c
        pending = self.connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[H2ClientConnection] = self.loop.create_future()
        self.connecting[address] = fut
        conn = H2ClientConnection(self, address)
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: conn, host, port), connect_s)
        except (TimeoutError, OSError) as exc:
            err = UpstreamConnectFailure(f"connect to {address}: {exc}")
            fut.set_exception(err)
            fut.exception()
            raise err from None
        except BaseException as exc:
            fut.set_exception(UpstreamConnectFailure(f"connect to {address}: {exc!r}"))
            fut.exception()
            raise
        finally:
            self.connecting.pop(address, None)
        self.conns.setdefault(address, []).append(conn)
        fut.set_result(conn)
        return conn

    def close_all(self) -> None:
        for lst in self.conns.values():
            for c in list(lst):
                if c.transport is not None:
                    c.transport.close()
        self.conns.clear()
