"""The respond layer: every answer the client gets is written here. Local replies (a `ProxyError` becomes its
status, Envoy's body and response flag in one place, as linkerd's `ServerRescue` does), redirects, direct
responses, CORS preflights, and upstream responses streamed back with the route's header operations.

Hands each finished request to the report layer. Knows the downstream connection, not the pools' policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from graylane.mesh.proxy import grpc
from graylane.mesh.proxy.connect import Upstream
from graylane.mesh.proxy.errors import ClusterNotFound, FaultAbort, NoHealthyUpstream, NoRoute, ProxyError
from graylane.mesh.proxy.listener import SERVER_HEADER, DownstreamProtocol, Request, status_line
from graylane.mesh.proxy.pool import RESPONSE_HOP, Exchange, Pools, UpstreamConnection
from graylane.mesh.proxy.telemetry import Ctx, Telemetry
from graylane.mesh.routing import Cluster, Cors, Outcome, RequestView, RouteDecision, redirect_location

__all__ = ["RESPONSE_HOP", "Responder", "cors_headers", "preflight"]  # RESPONSE_HOP: pool.py's, for h2_exchange
_OUTCOME_ERRORS: Final[dict[Outcome, type[ProxyError]]] = {
    Outcome.NO_ROUTE: NoRoute, Outcome.CLUSTER_NOT_FOUND: ClusterNotFound,
    Outcome.NO_HEALTHY_UPSTREAM: NoHealthyUpstream}


def cors_headers(cors: Cors, origin: str, preflight: bool) -> list[tuple[str, str]]:
    out = [("access-control-allow-origin", origin)]
    if cors.allow_credentials:
        out.append(("access-control-allow-credentials", "true"))
    if preflight:
        if cors.allow_methods:
            out.append(("access-control-allow-methods", cors.allow_methods))
        if cors.allow_headers:
            out.append(("access-control-allow-headers", cors.allow_headers))
        if cors.max_age:
            out.append(("access-control-max-age", cors.max_age))
    elif cors.expose_headers:
        out.append(("access-control-expose-headers", cors.expose_headers))
    return out


def preflight(d: RouteDecision, req: Request) -> list[tuple[str, str]] | None:
    """Envoy's cors filter answers a preflight locally (200) when the origin is allowed, or when unmatched
    preflights are not forwarded; the headers to answer with, or None to forward the request."""
    cors = d.rule.cors if d.rule is not None else None
    origin = req.hmap.get("origin")
    if cors is None or not origin or req.method != "OPTIONS" or "access-control-request-method" not in req.hmap:
        return None
    if cors.is_allowed(origin):
        return cors_headers(cors, origin, preflight=True)
    return None if cors.forward_unmatched else []


class Responder:
    def __init__(self, report: Telemetry, pools: Pools) -> None:
        self.report = report
        self.pools = pools

    def send(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, status: int, body: bytes,
                   headers: list[tuple[str, str]]) -> bool:
        """A local reply; returns whether the connection may be kept alive."""
        keep = req.keep_alive and req.body.done
        head = [status_line(status), SERVER_HEADER]
        for k, v in headers:
            if k != "server":  # Envoy's HCM overwrites it on every response (server_header_transformation)
                head.append(f"{k}: {v}\r\n".encode("latin-1"))
        head.append(b"content-length: %d\r\n" % len(body))
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        proto.write(b"".join(head) + (b"" if req.method == "HEAD" else body))
        ctx.status = status
        ctx.response_bytes = len(body)
        ctx.request_bytes = req.body.received
        self.report.report(ctx)
        return keep

    def error(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, err: ProxyError) -> bool:
        """The one place a failure becomes a response: status, Envoy's body, its flag and extra headers."""
        if err.flag:
            ctx.flags.append(err.flag)
        if grpc.is_grpc(req.hmap.get("content-type")):  # a gRPC client: Envoy's trailers-only answer
            return self.grpc_error(proto, req, ctx, err)
        headers = [("content-type", "text/plain")] if err.body else []
        headers += err.headers
        status = err.abort_status if isinstance(err, FaultAbort) else err.status
        return self.send(proto, req, ctx, status, err.body.encode(), headers)

    def grpc_error(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, err: ProxyError) -> bool:
        keep = req.keep_alive and req.body.done
        code = grpc.local_reply_status(err)
        proto.write(grpc.h1_trailers_only(code, err.body, err.headers, keep))
        ctx.status, ctx.grpc_status, ctx.response_bytes = 200, str(code), 0
        ctx.request_bytes = req.body.received
        self.report.report(ctx)
        return keep

    def decision(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision,
                       view: RequestView) -> bool:
        """A request the route answers itself: redirect, direct response, or no route / cluster / healthy host."""
        rule = d.rule
        if d.outcome is Outcome.REDIRECT and rule is not None:
            match = rule.matches[d.match_index] if d.match_index is not None else None
            return self.send(proto, req, ctx, d.status, b"",
                                   [("location", redirect_location(rule, match, view))])
        if d.outcome is Outcome.DIRECT_RESPONSE and rule is not None and rule.direct_response is not None:
            extra = list(rule.headers_response.set) + list(rule.headers_response.add)
            return self.send(proto, req, ctx, d.status, rule.direct_response.body,
                                   [("content-type", "text/plain"), *extra])
        return self.error(proto, req, ctx, _OUTCOME_ERRORS[d.outcome](d.detail))

    async def stream(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision, up: Upstream,
                     cluster: Cluster) -> bool:
        """Pass the upstream response on (headers rewritten only when the route says so); release or drop the
        connection after it. Returns whether the downstream connection may be kept alive."""
        conn, ex = up.conn, up.exchange
        keep, chunked = self.start(proto, req, ctx, d, conn, ex, cluster)
        try:
            await ex.complete()
        except asyncio.CancelledError:
            conn.abort()
            raise
        except ProxyError:
            # The upstream went away mid-body: the client sees a truncated response and a closed connection.
            ctx.flags.append("UC")
            ctx.response_bytes = ex.response_bytes
            conn.abort()
            self.report.report(ctx)
            return False
        return self.end(proto, req, ctx, conn, ex, up.sender, cluster, keep, chunked)

    def whole(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision, conn: UpstreamConnection,
              ex: Exchange, cluster: Cluster) -> bool:
        """`stream` for a response that is complete already (an inline try's): written and reported now."""
        keep, chunked = self.start(proto, req, ctx, d, conn, ex, cluster)
        return self.end(proto, req, ctx, conn, ex, None, cluster, keep, chunked)

    def start(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, d: RouteDecision, conn: UpstreamConnection,
              ex: Exchange, cluster: Cluster) -> tuple[bool, bool]:
        """Write the response head (and the body so far); the rest follows the upstream's bytes as they come.
        Returns (whether the connection may be kept alive, whether the body is re-chunked)."""
        dest, rule = d.destination, d.rule
        status = ex.status
        origin = req.hmap.get("origin")
        rewrite = (dest is not None and not dest.headers_response.empty) or (rule is not None and (
            not rule.headers_response.empty or (rule.cors is not None and origin is not None))) or bool(
            d.set_cookie and cluster.policy.lb.hash_cookie) or d.sticky_cookie is not None
        no_body = req.method == "HEAD" or status in (204, 304) or status < 200
        keep = req.keep_alive
        service_ms = int((time.perf_counter() - ctx.upstream_start) * 1000)
        head = [status_line(status), SERVER_HEADER, b"x-envoy-upstream-service-time: %d\r\n" % service_ms]
        if not rewrite:
            # Fast path: the upstream's header lines as they came, minus hop-by-hop ones (sorted out while parsing).
            has_length = ex.content_length
            head += ex.passed
            headers: list[tuple[str, str]] = []
        else:
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in ex.headers
                       if k.lower() not in RESPONSE_HOP]
            has_length = any(k == "content-length" for k, _ in headers)
            if dest is not None:
                headers = dest.headers_response.apply(headers)
            if rule is not None:
                headers = rule.headers_response.apply(headers)
                if rule.cors is not None and origin and rule.cors.is_allowed(origin):
                    headers += cors_headers(rule.cors, origin, preflight=False)
            headers += [("set-cookie", v) for v in route_cookie_values(d, cluster)]
            headers = [(k, v) for k, v in headers if k != "server"]
        chunked = False
        if not no_body and not has_length:
            if req.version == "1.1":
                chunked = True
                headers.append(("transfer-encoding", "chunked"))
            else:
                keep = False
        if headers:
            head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in headers]
        if not keep:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        ctx.status = status
        if ex.finished and ex.error is None and not chunked:
            # The whole response is already here (the common small-JSON case): one write, one syscall.
            proto.write(b"".join(head) + b"".join(ex.held))
            ex.held.clear()
        else:
            proto.write(b"".join(head))
            ex.attach(_sink(proto, conn.transport, chunked))
        return keep, chunked

    def end(self, proto: DownstreamProtocol, req: Request, ctx: Ctx, conn: UpstreamConnection, ex: Exchange,
            sender: asyncio.Task[None] | None, cluster: Cluster, keep: bool, chunked: bool) -> bool:
        """The upstream's response is complete: end the body, give the connection back, report."""
        status = ex.status
        if chunked:
            proto.write(b"0\r\n\r\n")
        ctx.response_bytes = ex.response_bytes
        ctx.request_bytes = req.body.received
        sent_all = sender is None or sender.done()
        if sender is not None and not sender.done():
            sender.cancel()
        self.pools.release(conn, cluster, ex.keep_alive and sent_all and not ex.no_body or
                           (ex.keep_alive and sent_all and status in (204, 304)))
        self.report.report(ctx)
        return keep and req.body.done


def route_cookie_values(d: RouteDecision, cluster: Cluster | None) -> list[str]:
    """The Set-Cookie values routing asked for, on HTTP/1.1 and h2 answers alike: the consistent-hash `httpCookie`
    a request came without (Envoy's hash policy cookie) and a sticky canary's subset cookie (routing/sticky.py)."""
    out: list[str] = []
    c = cluster.policy.lb.hash_cookie if cluster is not None else None
    if d.set_cookie and c is not None:
        cookie = f"{c.name}=\"{d.set_cookie}\"; Max-Age={int(c.ttl_s)}"
        if c.path:
            cookie += f"; Path={c.path}"
        out.append(cookie + "; HttpOnly")
    if d.sticky_cookie is not None:
        out.append(d.sticky_cookie)
    return out


def _sink(proto: DownstreamProtocol, transport: asyncio.Transport, chunked: bool) -> Callable[[bytes], None]:
    """Where the upstream's body bytes go as they come: to the client (re-chunked when needed), pausing the
    upstream while the client does not read (counted as the listener counts a reply held back)."""

    def sink(chunk: bytes) -> None:
        if chunked:
            proto.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            proto.write(chunk)
        if proto.writing_paused and transport not in proto.on_resume:
            transport.pause_reading()
            proto.on_resume.append(transport)
            proto.server.stats.bump("graylane_proxy_downstream_flow_control_paused_writing_total")

    return sink
