"""HTTP/1.0 and HTTP/1.1 clients on one connection each: the response's framing follows the request's version, as
Envoy's HTTP/1 codec does (no chunked encoding to an HTTP/1.0 client: the body ends with the connection)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..helpers import Mesh, free_port, running_mesh, sidecar, svc, vs
from .support import raw_exchange


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running_mesh() as mesh:
        yield _push(mesh)


def _push(mesh: Mesh) -> int:
    up = mesh.upstream("versions")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    return port


def test_an_http10_client_gets_a_close_delimited_body_not_chunks(port: int) -> None:
    out = raw_exchange(port, b"GET http://reviews:9080/chunks/3 HTTP/1.0\r\nhost: reviews\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in head.lower()
    assert b"connection: close" in head.lower()
    assert body == b"x" * 3 * 1024  # the upstream's chunks, unframed: the closing connection ends the body


def test_an_http11_client_gets_the_chunks_reframed_and_a_second_request_on_the_same_connection(port: int) -> None:
    request = b"GET http://reviews:9080/chunks/2 HTTP/1.1\r\nhost: reviews\r\n\r\n"
    last = b"GET http://reviews:9080/ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"
    out = raw_exchange(port, request + last)
    first, _, rest = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in first.lower()
    assert rest.startswith(b"400\r\n" + b"x" * 1024 + b"\r\n400\r\n")
    assert rest.count(b"HTTP/1.1 200 ") == 1  # the second answer followed on the kept-alive connection
