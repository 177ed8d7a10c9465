"""The route layer: what the client asked (request target, Host, request id, trace context), where it goes (the
route table's decision over the balancer state) and how it goes out (rewrites and the route's header operations).

Knows the route table, the balancer state and a random source; nothing of sockets or pools.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final, Protocol

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.connect import request_head
from graylane.mesh.proxy.errors import BadRequest
from graylane.mesh.proxy.listener import Request
from graylane.mesh.proxy.telemetry import Ctx
from graylane.mesh.proxy.tracing import TRACE_HEADERS, TraceContext, new_id, request_id
from graylane.mesh.routing import (
    PASSTHROUGH,
    Listener,
    RequestView,
    RouteDecision,
    RouteTable,
    rewritten_path,
    split_host_port,
)


class Downstream(Protocol):
    """What `Router.view` reads of the connection a request came on: HTTP/1.1's `DownstreamProtocol`, HTTP/2's
    `H2Server` (a structural type: the compiled build checks a class-typed argument at run time)."""

    @property
    def listener(self) -> Listener | None: ...
    @property
    def peer(self) -> tuple[str, int]: ...


# Request headers not passed upstream as they came (the proxy writes its own framing and Host).
HOP_BY_HOP: Final = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                               "upgrade", "proxy-authorization", "content-length", "host",
                               "x-envoy-upstream-rq-timeout-ms", "expect"))
# Headers the trace layer rewrites on each try (`tracestate` passes through as it came).
TRACE_REWRITTEN: Final = frozenset(TRACE_HEADERS) - {"tracestate"}
UNSAMPLED_HEADERS: Final = [("x-b3-sampled", "0")]


@dataclass(slots=True, init=False)
class Outbound:
    """The request as it goes upstream: path and authority after rewrites, headers after the header operations."""

    method: str
    path: str
    authority: str
    headers: list[tuple[str, str]]
    traced: bool  # the request came with trace headers (they are rewritten per try)

    # Written out: compiled (graylane.mesh.native), a dataclass's generated __init__ stays interpreted Python.
    def __init__(self, method: str, path: str, authority: str, headers: list[tuple[str, str]],
                 traced: bool = False) -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.headers = headers
        self.traced = traced

    def head(self, attempt: int, ctx: Ctx, req: Request, body: bytes | None) -> bytes:
        """One try's request head: trace headers for this try's span, `x-envoy-attempt-count` on retries."""
        return request_head(self.method, self.path, self.authority, self.try_headers(attempt, ctx), req, body)

    def try_headers(self, attempt: int, ctx: Ctx) -> list[tuple[str, str]]:
        """One try's headers (HTTP/1.1 head or h2 header block): this try's trace span, the attempt count."""
        trace = ctx.trace
        if trace is None:
            headers = self.headers
        elif trace.has_ids:
            ctx.server_span = new_id()  # this try's span (lazy: only a request with a trace has span ids)
            headers = trace.inject(self.headers, ctx.server_span, ctx.client_span)
        elif self.traced:
            headers = trace.inject(self.headers, "", None)
        else:  # the common case: not sampled, nothing to strip; only the decision travels
            headers = self.headers + UNSAMPLED_HEADERS
        if attempt > 1:
            headers = [*headers, ("x-envoy-attempt-count", str(attempt))]
        return headers


_PORTS: Final[dict[str, int]] = {}  # authority -> its port (80 when it names none), for sidecar listeners
_PORTS_MAX: Final = 1024  # Host values are the client's: the cache starts over when full


def _port_of(authority: str) -> int:
    port = split_host_port(authority, 80)[1]
    if len(_PORTS) >= _PORTS_MAX:
        _PORTS.clear()
    _PORTS[authority] = port
    return port


class Router:
    def __init__(self, rng: random.Random, load: LoadState) -> None:
        self.rng = rng
        self.load = load

    def view(self, table: RouteTable, proto: Downstream, req: Request, ctx: Ctx) -> RequestView:
        """What routing may look at; adds `x-request-id` when absent and continues or starts the trace."""
        listener = proto.listener
        target = req.target
        # `target[:1]`: startswith("/") without a call that parses its arguments (issue #17).
        if target[:1] == "/":  # https behind a terminated TLS server (scheme matches, x-forwarded-proto)
            scheme = "https" if listener.tls_servers else "http"  # type: ignore[union-attr]  # set when accepted
            authority, path = req.hmap.get("host", ""), target
        elif target.startswith(("http://", "https://")):
            scheme, _, rest = target.partition("://")
            slash = rest.find("/")
            authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        else:
            raise BadRequest("unsupported request target")
        if not authority:
            raise BadRequest("missing Host header")
        ctx.authority, ctx.path = authority, path
        if listener.kind == "gateway":  # type: ignore[union-attr]
            port = listener.server_port  # type: ignore[union-attr]
        elif (port := _PORTS.get(authority)) is None:  # most requests: one dict read for the authority's port
            port = _port_of(authority)
        hmap = req.hmap
        rid = hmap.get("x-request-id")
        if not rid:
            rid = hmap["x-request-id"] = request_id()
        ctx.rid = rid
        ctx.trace = trace = TraceContext.extract(hmap, table.trace_sampling, self.rng)
        if trace.has_ids:
            ctx.client_span = new_id()
        return RequestView(req.method, path, authority, hmap, scheme, port, proto.peer[0])

    def decide(self, table: RouteTable, view: RequestView, listener: Listener, ctx: Ctx, now: float) -> RouteDecision:
        d = table.route(view, listener, self.rng, self.load, now)
        ctx.decision = d
        # Istio labels traffic to hosts outside the registry with the PassthroughCluster as its service.
        ctx.service = d.host if d.cluster_name != PASSTHROUGH else PASSTHROUGH
        return d

    @staticmethod
    def outbound(d: RouteDecision, view: RequestView, req: Request, ctx: Ctx) -> Outbound:
        rule, dest = d.rule, d.destination
        match = rule.matches[d.match_index] if rule is not None and d.match_index is not None else None
        rw = rule.rewrite if rule is not None else None
        path = rewritten_path(rule, match, view.path) if rule is not None and rw is not None else view.path
        authority = rw.authority if rw is not None and rw.authority else view.authority
        headers = [(k, v) for k, v in req.headers if k not in HOP_BY_HOP and k != "x-request-id"]
        traced = not TRACE_REWRITTEN.isdisjoint(req.hmap)
        headers.append(("x-request-id", ctx.rid))
        if "x-forwarded-proto" not in req.hmap:
            headers.append(("x-forwarded-proto", view.scheme))
        if rule is not None and not rule.headers_request.empty:
            headers = rule.headers_request.apply(headers)
        if dest is not None and not dest.headers_request.empty:
            headers = dest.headers_request.apply(headers)
        return Outbound(req.method, path, authority, headers, traced)
