"""Protocols the compiled snapshot names: which Service ports speak HTTP/2 to their endpoints (Istio's protocol
selection, for the proxy's h2 upstreams) and gRPC status names (a fault's `abort.grpcStatus`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graylane.errors import ValidationError

GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
              "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
              "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def grpc_status_code(value: Any, where: str) -> int | None:
    """A fault's `grpcStatus` (a status name as Istio documents it, or its number) as the grpc-status code."""
    if value is None:
        return None
    text = str(value).strip().upper()
    if text.isdigit() and int(text) < len(GRPC_CODES):
        return int(text)
    if text in GRPC_CODES:
        return GRPC_CODES.index(text)
    raise ValidationError(f"unknown gRPC status {value!r}", where=where)


def abort_codes(abort: Mapping[str, Any], where: str) -> tuple[int, int | None]:
    """(HTTP status, grpc-status) of a fault's abort: a `grpcStatus` abort answers HTTP 200 as gRPC does."""
    grpc = grpc_status_code(abort.get("grpcStatus"), f"{where}.grpcStatus")
    return (200 if grpc is not None else int(abort.get("httpStatus", 0) or 0)), grpc


def h2_protocol(port: Mapping[str, Any]) -> str:
    """"grpc" / "http2" when the port speaks HTTP/2 to its endpoints (appProtocol, else the name's prefix, as
    Istio selects it; `kubernetes.io/h2c` and `h2c` are HTTP/2), else "" (the proxy's h2_exchange.py reads it)."""
    for value in (str(port.get("appProtocol") or "").lower(), str(port.get("name") or "").lower().split("-", 1)[0]):
        if value in ("grpc", "http2"):
            return value
        if value in ("h2c", "kubernetes.io/h2c"):
            return "http2"
        if value:
            return ""
    return ""
