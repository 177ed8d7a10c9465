"""HTTP/1.1 downstream requests to an upstream whose Service port speaks HTTP/2 (`grpc-*`, `http2-*`, `h2c-*`,
appProtocol `grpc`/`http2`/`kubernetes.io/h2c`), sent as h2 streams on the shared upstream connections as Envoy
does, instead of HTTP/1.1.

The HTTP/1.1 request is presented to `h2_exchange.Exchanges.run` as if it were an h2 stream: `Host` becomes
`:authority` (route.py drops Host and the hop-by-hop headers; `TE: trailers` is kept), the body is pulled from
the listener's `RequestBody` as the upstream's window takes it (so the client's socket is paused, not our memory
filled), and the h2 answer is written back as HTTP/1.1: chunked when it has no content-length (HTTP/1.0 clients:
closed at its end), trailers sent as chunked trailers when the client said `TE: trailers`, else dropped. Retries,
timeouts, mirrors and telemetry are the h2 exchange's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from graylane.mesh.proxy import grpc
from graylane.mesh.proxy.errors import ProxyError
from graylane.mesh.proxy.h2_upstream import Body, Headers
from graylane.mesh.proxy.listener import SERVER_HEADER, status_line

if TYPE_CHECKING:
    from graylane.mesh.proxy.h2_exchange import Exchanges
    from graylane.mesh.proxy.h2_mirror import Copy
    from graylane.mesh.proxy.listener import DownstreamProtocol, Request
    from graylane.mesh.proxy.respond import Responder
    from graylane.mesh.proxy.telemetry import Ctx, Telemetry
    from graylane.mesh.routing import RequestView, RouteDecision

SID = 1  # the one "stream" of an HTTP/1.1 request


class PulledBody(Body):
    """The HTTP/1.1 request body as an h2 stream's body: chunks are read from the listener only when the pump
    asks (flow control is the listener's pause/resume); a body failure (408) is handed to `failed`."""

    __slots__ = ("req", "ctx", "stream", "failed")

    def __init__(self, loop: asyncio.AbstractEventLoop, req: Request, ctx: Ctx, stream: H1Stream) -> None:
        super().__init__(loop, lambda n: None)
        self.req, self.ctx, self.stream = req, ctx, stream
        self.failed: asyncio.Future[ProxyError] = loop.create_future()
        self.ended = not req.has_body

    async def read(self) -> tuple[bytes, int] | None:
        if self.ended:
            return None
        try:
            chunk = await self.req.body.read()
        except ProxyError as err:  # the body timed out: the client is answered 408 (`forward_h1_to_h2`)
            if not self.failed.done():
                self.failed.set_result(err)
            raise
        copy = self.stream.copy
        if chunk is None:
            self.ended = True
            if copy is not None:
                copy.end(None)
            return None
        self.ctx.request_bytes += len(chunk)
        if copy is not None:
            copy.keep(chunk)
        return chunk, 0


class H1Stream:
    """The stream `Exchanges.run` serves (`h2_exchange.Stream`)."""

    __slots__ = ("sid", "body", "responded", "copy")

    def __init__(self, loop: asyncio.AbstractEventLoop, req: Request, ctx: Ctx) -> None:
        self.sid = SID
        self.responded = False
        self.copy: Copy | None = None
        self.body = PulledBody(loop, req, ctx, self)


class H1Downstream:
    """The downstream connection `Exchanges.run` answers on (`h2_exchange.Downstream`), writing HTTP/1.1."""

    def __init__(self, proto: DownstreamProtocol, req: Request, ds: H1Stream) -> None:
        self.proto = proto
        self.req = req
        self.streams = {SID: ds}
        self.chunked = False
        self.no_body = False
        self.keep = req.keep_alive
        self.broken = False  # reset: the client saw a truncated answer, the connection closes
        self.trailers = req.hmap.get("te", "").strip().lower() == "trailers"

    @property
    def closed(self) -> bool:
        return self.proto.closed

    def send_headers(self, ds: H1Stream, headers: Headers, end: bool) -> None:
        if self.proto.closed or ds.responded:
            return
        ds.responded = True
        status = 502
        lines: list[bytes] = []
        has_length = False
        for k, v in headers:
            if k == b":status":
                status = int(v) if v.isdigit() else 502
            elif k.startswith(b":") or k == b"server":
                continue
            else:
                has_length = has_length or k == b"content-length"
                lines.append(b"%s: %s\r\n" % (k, v))
        self.no_body = self.req.method == "HEAD" or status in (204, 304) or status < 200
        if not self.no_body and not has_length:
            if end:
                lines.append(b"content-length: 0\r\n")  # Envoy's HTTP/1 codec on a headers-only answer
            elif self.req.version == "1.1":
                self.chunked = True
                lines.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep = False  # HTTP/1.0: the end of the connection ends the body
        if not self.keep:
            lines.append(b"connection: close\r\n")
        self.proto.write(b"".join([status_line(status), SERVER_HEADER, *lines, b"\r\n"]))

    async def send_data(self, sid: int, data: bytes | memoryview, end: bool = False) -> None:
        if self.proto.closed:
            raise ConnectionResetError("client went away")
        if data and not self.no_body:
            self.proto.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else bytes(data))
        await self.proto.drain()  # the client's socket is the window: wait while it does not read
        if end:
            self.end_stream(sid, None)

    def end_stream(self, sid: int, trailers: Headers | None) -> None:
        if not self.chunked or self.proto.closed:
            return  # without chunked framing there is nowhere to put trailers: dropped
        self.chunked = False
        lines = [b"%s: %s\r\n" % (k, v) for k, v in trailers or () if not k.startswith(b":")] if self.trailers else []
        self.proto.write(b"".join([b"0\r\n", *lines, b"\r\n"]))

    def reset(self, sid: int, code: int = 8) -> None:
        self.broken = True
        self.proto.close()


async def forward_h1_to_h2(exchanges: Exchanges, respond: Responder, telemetry: Telemetry,
                           proto: DownstreamProtocol, req: Request, ctx: Ctx, view: RequestView,
                           d: RouteDecision) -> bool:
    """Serve a routed HTTP/1.1 request over h2; returns whether the downstream connection may be kept alive."""
    loop = proto.loop
    if req.has_body and not req.body.done and req.hmap.get("expect", "").lower() == "100-continue":
        proto.write_interim(b"HTTP/1.1 100 Continue\r\n\r\n")  # Envoy answers Expect itself
    is_grpc = grpc.is_grpc(req.hmap.get("content-type"))
    if is_grpc:
        ctx.grpc_status = "-"
    ds = H1Stream(loop, req, ctx)
    conn = H1Downstream(proto, req, ds)
    work = loop.create_task(exchanges.run(conn, ds, req, ctx, d, view, is_grpc))  # type: ignore[arg-type]
    failed = ds.body.failed
    try:
        await asyncio.wait((work, failed), return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the request body timed out while the upstream waited for it
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise failed.result()
        work.result()
    except ProxyError as err:
        if ds.responded:
            ctx.flags.append(err.flag or "UC")
            telemetry.report(ctx)
            proto.close()
            return False
        return respond.error(proto, req, ctx, err)
    except ConnectionResetError:  # the client went away mid-answer
        ctx.flags.append("DC")
        telemetry.report(ctx)
        proto.close()
        return False
    except asyncio.CancelledError:  # the client went away (the listener cancels the request's task)
        if work.done() and not work.cancelled() and work.exception() is None:
            raise  # it had its whole answer already (reported): it closed its connection before we woke up
        work.cancel()
        ctx.flags.append("DC")
        telemetry.report(ctx)
        raise
    return conn.keep and not conn.broken and req.body.done
