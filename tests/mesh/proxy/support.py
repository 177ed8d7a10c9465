"""Helpers shared by the proxy layer tests: an HTTP client through a sidecar, a route destination."""

from __future__ import annotations

import socket

import httpx


def client(port: int, **kw) -> httpx.Client:
    return httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10, **kw)


def to(subset: str = "", weight: int | None = None, host: str = "reviews") -> dict:
    d: dict = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        d["weight"] = weight
    return d


RL_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def envoy_filter(context: str, labels: dict, max_tokens: int = 3) -> dict:
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "rl", "namespace": "default"},
            "spec": {"workloadSelector": {"labels": labels}, "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": context, "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": "envoy.filters.http.local_ratelimit",
                    "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": RL_TYPE,
                        "value": {"stat_prefix": "http_local_rate_limiter",
                                  "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": max_tokens,
                                                   "fill_interval": "60s"},
                                  "filter_enabled": {"runtime_key": "e", "default_value": {
                                      "numerator": 100, "denominator": "HUNDRED"}},
                                  "filter_enforced": {"runtime_key": "f", "default_value": {
                                      "numerator": 100, "denominator": "HUNDRED"}},
                                  "response_headers_to_add": [{"append_action": "APPEND_IF_EXISTS_OR_ADD",
                                                               "header": {"key": "x-local-rate-limit",
                                                                          "value": "true"}}]}}}}}]}}


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection; everything the proxy answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data
