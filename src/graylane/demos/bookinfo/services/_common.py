"""What the Bookinfo services share: env lookups, header propagation lists, outbound HTTP client, serving."""

from __future__ import annotations

import functools
import json
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from starlette.responses import Response

# details and reviews copy exactly these request headers to their upstream calls (Istio's lists).
FORWARD_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)


def env(name: str, default: str) -> str:
    """The originals treat an unset variable as the default (an empty one is kept as is)."""
    value = os.environ.get(name)
    return default if value is None else value


def services_domain() -> str:
    """`SERVICES_DOMAIN` unset -> "", else "." + value, appended to every upstream host name."""
    domain = os.environ.get("SERVICES_DOMAIN")
    return "" if domain is None else "." + domain


def service_url(service: str) -> str:
    """`http://<NAME_HOSTNAME or name><domain>:<NAME_SERVICE_PORT or 9080>` as productpage/reviews build it."""
    upper = service.upper()
    host = env(f"{upper}_HOSTNAME", service)
    port = env(f"{upper}_SERVICE_PORT", "9080")
    return f"http://{host}{services_domain()}:{port}"


def pick_headers(incoming: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Copy the listed headers that are present (header names are case-insensitive)."""
    out: dict[str, str] = {}
    for name in names:
        value = incoming.get(name)
        if value is not None:
            out[name] = value
    return out


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: building one per client (loading the CA bundle) costs ~30 ms a call."""
    return ssl.create_default_context()


def outbound_client(timeout: float, *, pooled: bool = False) -> httpx.AsyncClient:
    """Calls go to other services by name; `trust_env` makes them go through `$HTTP_PROXY` (the sidecar).

    By default no keep-alive pooling, like productpage's `requests.get` per call: every call is a fresh
    request that the mesh load-balances on its own.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        trust_env=True,
        verify=_tls(),
        limits=httpx.Limits() if pooled else httpx.Limits(max_keepalive_connections=0),
    )


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def serve(app: Any, default_port: int = 9080) -> None:
    """Listen on `$PORT` (default 9080) like the originals; bind all interfaces inside a cluster, loopback locally."""
    import uvicorn

    port = int(env("PORT", str(default_port)) or default_port)
    in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ
    host = os.environ.get("BIND_ADDRESS") or ("0.0.0.0" if in_cluster else "127.0.0.1")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        access_log=os.environ.get("ACCESS_LOG", "true").lower() != "false",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
