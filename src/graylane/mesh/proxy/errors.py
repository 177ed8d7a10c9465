"""Typed data-plane failures, each mapped once to Envoy's status, body and response flag."""

from __future__ import annotations

from typing import ClassVar

_RESET = "upstream connect error or disconnect/reset before headers. reset reason: "


class ProxyError(Exception):
    """A local reply: `status`, Envoy's `flag` and Envoy's wording in `body` (+ `headers` to add)."""

    status: ClassVar[int] = 503
    flag: ClassVar[str] = ""
    body: ClassVar[str] = ""
    headers: tuple[tuple[str, str], ...] = ()


class UpstreamConnectFailure(ProxyError):
    status, flag, body = 503, "UF", _RESET + "connection failure"


class UpstreamReset(ProxyError):
    status, flag, body = 503, "UC", _RESET + "connection termination"


class UpstreamProtocolError(UpstreamReset):
    """A response Envoy's codec refuses (malformed, over 100 headers or 60 KiB of head): a reset for retries."""

    status, flag, body = 502, "UPE", _RESET + "protocol error"


class UpstreamOverflow(ProxyError):
    status, flag, body = 503, "UO", _RESET + "overflow"


class UpstreamTimeout(ProxyError):
    status, flag, body = 504, "UT", "upstream request timeout"


class PerTryTimeout(UpstreamTimeout):
    """One attempt's perTryTimeout expired (retried when retryOn allows, else 504 UT)."""


class NoHealthyUpstream(ProxyError):
    status, flag, body = 503, "UH", "no healthy upstream"


class NoRoute(ProxyError):
    status, flag, body = 404, "NR", ""


class ClusterNotFound(ProxyError):
    status, flag, body = 503, "NC", ""


class RateLimited(ProxyError):
    status, flag, body = 429, "RL", "local_rate_limited"

    def __init__(self, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__("local rate limit")
        self.headers = headers


class FaultAbort(ProxyError):
    """HTTPFaultInjection.abort: the fault filter answers with the rule's status."""

    flag, body = "FI", "fault filter abort"

    def __init__(self, status: int, grpc_status: int | None = None) -> None:
        super().__init__(f"fault abort {status}")
        self.abort_status = status
        self.grpc_status = grpc_status  # abort.grpcStatus (answered as gRPC trailers-only on h2)


class BadRequest(ProxyError):
    status, flag, body = 400, "DPE", "Bad Request"


class UriTooLong(BadRequest):
    status, body = 414, "URI Too Long"


class HeadersTooLarge(BadRequest):
    status, body = 431, "Request Header Fields Too Large"


class RequestTimeout(BadRequest):
    """The whole request (headers and body) did not arrive within request_timeout (Envoy's `request_timeout`)."""

    status, flag, body = 408, "", "request timeout"


class StreamIdleTimeout(BadRequest):
    """No request bytes for stream_idle_timeout while the body was incomplete (Envoy's `stream_idle_timeout`)."""

    status, flag, body = 408, "SI", "stream timeout"
