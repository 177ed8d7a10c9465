"""gRPC over the proxy's HTTP/2: what the proxy reads of a gRPC exchange, as Envoy does.

`grpc-timeout` parsed (the effective timeout is the smaller of it and the route's: Istio sets the route's
`grpc_timeout_header_max` to the route timeout), `grpc-status` read from response headers or trailers, the retry
reasons Envoy's `x-envoy-retry-grpc-on` knows (cancelled, deadline-exceeded, internal, resource-exhausted,
unavailable) judged from it, and local replies as gRPC trailers-only responses (Envoy's http-to-grpc status map;
a timeout is DEADLINE_EXCEEDED). Pure functions; nothing of sockets.
"""

from __future__ import annotations

from collections.abc import Iterable

from graylane.mesh.proxy.errors import FaultAbort, ProxyError, UpstreamTimeout

OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE = 0, 1, 2, 4, 8, 14
# Envoy's retry_grpc_on reasons and the status each retries.
RETRY_REASONS = {"cancelled": 1, "deadline-exceeded": 4, "internal": 13, "resource-exhausted": 8, "unavailable": 14}
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def is_grpc(content_type: str | None) -> bool:
    """Envoy's Grpc::Common::hasGrpcContentType: `application/grpc` exactly or `application/grpc+<codec>`
    (`application/grpc-web` is not gRPC: a gRPC-Web client would not understand a trailers-only answer)."""
    return content_type is not None and content_type.startswith("application/grpc") and (
        len(content_type) == 16 or content_type[16] == "+")


def parse_timeout(value: str | None) -> float | None:
    """`grpc-timeout` (1-8 digits and a unit H/M/S/m/u/n) in seconds; None when absent or malformed."""
    if not value or len(value) > 9 or value[-1] not in _UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _UNITS[value[-1]]


def effective_timeout(route_s: float | None, grpc_s: float | None) -> float | None:
    """The smaller of the route timeout and the request's grpc-timeout (either may be unset)."""
    if grpc_s is None:
        return route_s
    return grpc_s if not route_s else min(route_s, grpc_s)


def status_of(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """grpc-status in a header block (response headers of a trailers-only answer, or trailers)."""
    for k, v in headers:
        if k == b"grpc-status":
            return int(v) if v.isdigit() else UNKNOWN
    return None


def retries_status(retry_on: frozenset[str], status: int | None) -> bool:
    return status is not None and any(RETRY_REASONS.get(r) == status for r in retry_on)


def http_to_grpc(status: int) -> int:
    """Envoy's Grpc::Utility::httpToGrpcStatus, for local replies to gRPC requests."""
    return {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}.get(status, UNKNOWN)


def grpc_to_http(status: int) -> int:
    """Envoy's Grpc::Utility::grpcToHttpStatus: what outlier detection counts for a gRPC answer."""
    return {0: 200, 1: 499, 3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 12: 501, 14: 503,
            16: 401}.get(status, 500)


def local_reply_status(err: ProxyError) -> int:
    """The grpc-status of a local reply: the fault's own, DEADLINE_EXCEEDED for a timeout, else mapped."""
    if isinstance(err, FaultAbort) and err.grpc_status is not None:
        return err.grpc_status
    if isinstance(err, UpstreamTimeout):
        return DEADLINE_EXCEEDED
    return http_to_grpc(err.abort_status if isinstance(err, FaultAbort) else err.status)


def trailers_only(grpc_status: int, message: str) -> list[tuple[bytes, bytes]]:
    """A gRPC trailers-only response head (:status 200 as gRPC requires, whatever the HTTP-level code).

    Envoy records the status it encoded, so the request counts as `response_code="200"` with the
    grpc-status in `grpc_response_status` (its access log shows 200 with the flag, e.g. `UH`)."""
    out = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"%d" % grpc_status)]
    if message:
        out.append((b"grpc-message", _percent_encode(message)))
    return out


def h1_trailers_only(grpc_status: int, message: str, extra: Iterable[tuple[str, str]], keep: bool) -> bytes:
    """The trailers-only answer as Envoy's HTTP/1 codec writes it for an HTTP/1.1 gRPC client: `200`, the gRPC
    headers as response headers and `content-length: 0` (a head that ends the stream)."""
    lines = [b"HTTP/1.1 200 OK\r\nserver: istio-envoy\r\n"]
    lines += [b"%s: %s\r\n" % (k, v) for k, v in trailers_only(grpc_status, message)[1:]]
    lines += [f"{k}: {v}\r\n".encode("latin-1") for k, v in extra if k != "server"]
    lines.append(b"content-length: 0\r\n")
    if not keep:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _percent_encode(text: str) -> bytes:
    return "".join(c if " " <= c <= "~" and c != "%" else "".join(f"%{b:02X}" for b in c.encode())
                   for c in text).encode()
