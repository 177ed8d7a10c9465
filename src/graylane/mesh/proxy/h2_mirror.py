"""Mirrors of h2 streams (VirtualService `mirror`/`mirrors`, Gateway API `RequestMirror`: one mirror policy): a copy
of the request, its head as routed (path and authority after rewrites, the route's header operations; the authority
unchanged, as for HTTP/1.1) and its whole body, sent once the client ended the stream, to each mirror whose
percentage came up (`mirror.Mirrors.choose`), fire-and-forget.

The body is copied as it arrives, independently of the original exchange (which streams it and may retry), up to
`REPLAY_LIMIT` as Envoy buffers it for shadows: a larger body, or a stream reset before its end, is not mirrored,
as the HTTP/1.1 mirror skips a body it cannot replay. A copy goes over h2 on the shared upstream pools
(`h2_upstream.H2Pools`) when the mirror's Service port speaks HTTP/2 (a gRPC service), else over HTTP/1.1
(`Mirrors.send_h1`); its answer is read and discarded, its success or failure counted, and it runs in
`Mirrors.start`'s bounded background tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import h2.exceptions

from graylane.mesh.proxy.connect import REPLAY_LIMIT
from graylane.mesh.proxy.errors import UpstreamReset
from graylane.mesh.proxy.h2_upstream import CONNECTION_SPECIFIC, Body, H2Pools, Headers

if TYPE_CHECKING:
    from graylane.mesh.proxy.mirror import Mirrors
    from graylane.mesh.proxy.route import Outbound
    from graylane.mesh.routing import Cluster, Mirror, RequestView, RouteTable


class Copy:
    """One mirrored stream's request body as the client sends it, handed to `send` when the stream ends; dropped
    (never sent) beyond REPLAY_LIMIT."""

    __slots__ = ("chunks", "size", "send")

    def __init__(self, send: Callable[[bytes, Headers | None], None]) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.send: Callable[[bytes, Headers | None], None] | None = send

    def keep(self, data: bytes) -> None:
        if self.send is not None:
            self.size += len(data)
            if self.size > REPLAY_LIMIT:
                self.send, self.chunks = None, []
            else:
                self.chunks.append(data)

    def end(self, trailers: Headers | None) -> None:
        send, self.send = self.send, None
        if send is not None:
            body, self.chunks = b"".join(self.chunks), []
            send(body, trailers)


class Mirrored(Protocol):
    """A downstream stream that can carry a copy (`h2_downstream.DStream` feeds it as data arrives)."""

    body: Body
    copy: Copy | None


class H2Mirrors:
    def __init__(self, mirrors: Mirrors, pools: H2Pools, speaks_h2: Callable[[Cluster], bool]) -> None:
        self.mirrors = mirrors
        self.pools = pools
        self.speaks_h2 = speaks_h2

    def attach(self, ds: Mirrored, table: RouteTable, mirrors: tuple[Mirror, ...], view: RequestView, out: Outbound,
               te: bool) -> None:
        """Roll the mirrors' percentages for this stream; when any comes up, copy its body from here on (nothing of
        it was read yet: the exchange starts after this) and send the copies when the client ends the stream."""
        chosen = self.mirrors.choose(mirrors)
        if not chosen:
            return

        def spawn(body: bytes, trailers: Headers | None) -> None:
            for m in chosen:
                self.mirrors.start(self.send(table, m, view, out, te, body, trailers))

        copy = ds.copy = Copy(spawn)
        for data, _ in ds.body.chunks:
            copy.keep(data)
        if ds.body.ended:
            copy.end(ds.body.trailers)

    async def send(self, table: RouteTable, m: Mirror, view: RequestView, out: Outbound, te: bool, body: bytes,
                   trailers: Headers | None) -> bool:
        to = self.mirrors.target(table, m, view)
        if to is None:
            return False
        cluster, ep = to
        if not self.speaks_h2(cluster):
            return await self.mirrors.send_h1(table, m, view, out.method, out.path, out.authority, out.headers, body)
        headers: Headers = [(b":method", out.method.encode()), (b":scheme", b"http"),
                            (b":authority", out.authority.encode("latin-1")), (b":path", out.path.encode("latin-1"))]
        headers += [(name, v.encode("latin-1")) for k, v in out.headers
                    if (name := k.lower().encode("latin-1")) not in CONNECTION_SPECIFIC]
        if te:
            headers.append((b"te", b"trailers"))
        uc = await self.pools.connection(ep.address, ep.host, ep.port, cluster.policy.pool.connect_timeout_s)
        try:
            us = uc.request(headers, end_stream=not body and not trailers)
        except h2.exceptions.H2Error as exc:
            raise UpstreamReset(f"mirror stream refused: {exc}") from None
        try:
            if body:
                await uc.send_data(us.sid, body, end=not trailers)
            if trailers:
                uc.end_stream(us.sid, trailers)
            await us.headers
            while (item := await us.body.read()) is not None:  # the answer is discarded, its window given back
                us.body.ack(item[1])
        except BaseException:
            uc.cancel(us)
            raise
        return True
