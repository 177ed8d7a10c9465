"""Hostile and odd clients on raw sockets: the proxy answers as Envoy would, closes, and leaks nothing."""

from __future__ import annotations

import socket
import time

import pytest

from .helpers import free_port, sidecar, svc, vs


@pytest.fixture
def port(mesh):
    up = mesh.upstream("hostile")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    return port


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, read until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
        return out


def test_malformed_request_gets_400_and_close(port):
    assert exchange(port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_oversized_header_block_gets_431(port):
    big = b"x-big: " + b"a" * (61 * 1024) + b"\r\n"
    out = exchange(port, b"GET http://reviews:9080/ HTTP/1.1\r\nhost: reviews\r\n" + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_long_request_line_gets_414(port):
    out = exchange(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nhost: reviews\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414 ")


def test_slow_client_is_timed_out_with_408(port):
    out = exchange(port, b"GET / HTTP/1.1\r\nhost: reviews\r\n")  # never finishes its headers
    assert out.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed(port):
    out = exchange(port, b"")
    assert out == b""


def test_pipelined_requests_are_answered_in_order(port):
    reqs = b"".join(b"GET http://reviews:9080/p%d HTTP/1.1\r\nhost: reviews\r\n\r\n" % i for i in range(3))
    out = exchange(port, reqs + b"GET http://reviews:9080/last HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 ") == 4
    assert out.index(b'"/p0"') < out.index(b'"/p1"') < out.index(b'"/p2"') < out.index(b'"/last"')


def test_client_vanishing_mid_body_does_not_hurt_the_proxy(mesh, port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 100000\r\n\r\nabc")
    out = exchange(port, b"GET http://reviews:9080/ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


def test_no_connections_are_leaked(mesh, port):
    for _ in range(20):
        exchange(port, b"BAD\r\n\r\n")
        exchange(port, b"GET http://reviews:9080/ HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    for _ in range(100):
        if not any(c.listener_key[1] == port for c in list(mesh.server.connections)):
            break
        time.sleep(0.05)
    assert not any(c.listener_key[1] == port for c in list(mesh.server.connections))


def test_client_vanishing_mid_body_frees_the_upstream_side(mesh, port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 100000\r\n\r\nabc")
        time.sleep(0.2)
    for _ in range(100):
        active = [e["active"] for c in mesh.get("/clusters").json()["clusters"] for e in c["endpoints"]]
        if not any(active):
            break
        time.sleep(0.05)
    assert not any(active)
