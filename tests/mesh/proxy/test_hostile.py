"""Hostile and odd clients on raw sockets: the proxy answers as Envoy would, closes, leaks nothing, keeps serving."""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from ..helpers import Mesh, counter, free_port, running_mesh, series, sidecar, svc, vs

GOOD = b"GET http://reviews:9080/ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    # Short downstream timeouts, each distinct, so every test below sees the one it is about (the client helper's
    # own timeout is 10 s: hitting it is a failure, never mistaken for the proxy closing).
    with running_mesh(idle_timeout_s=2.0, header_timeout_s=1.0, request_timeout_s=3.0,
                      stream_idle_timeout_s=1.0) as m:
        yield m


@pytest.fixture
def port(mesh):
    up = mesh.upstream("hostile")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    return port


@pytest.fixture
def no_tracebacks(caplog, mesh) -> Iterator[None]:
    """Fails the test if anything (the proxy, asyncio's exception handler) logged an error meanwhile (in this
    process, or in the proxy's when it runs as workers)."""
    caplog.set_level(logging.WARNING)
    mark = mesh.log_mark()
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert not mesh.proxy_errors(mark)


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` and read until the proxy closes the connection.

    Running out of our own `timeout` is a failure (the proxy neither answered nor closed), never an empty reply.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            except TimeoutError:
                raise AssertionError(f"the proxy did not close within {timeout} s; got {out[:300]!r}") from None
            if not chunk:
                return out
            out += chunk


def eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def serves(port: int) -> bool:
    return exchange(port, GOOD).startswith(b"HTTP/1.1 200 ")


def test_malformed_request_gets_400_and_close(port):
    out = exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"connection: close" in out
    assert serves(port)


@pytest.mark.parametrize("line", [
    pytest.param(b"GET  http://reviews:9080/ HTTP/1.1", id="two-spaces-before-target"),
    pytest.param(b"GET http://reviews:9080/  HTTP/1.1", id="two-spaces-before-version"),
    pytest.param(b"GET\thttp://reviews:9080/ HTTP/1.1", id="tab"),
    pytest.param(b" GET http://reviews:9080/ HTTP/1.1", id="leading-space"),
])
def test_request_line_with_extra_whitespace_gets_400_and_is_not_forwarded(mesh, port, line):
    up = mesh.upstreams["hostile"]
    seen = len(up.requests)
    out = exchange(port, line + b"\r\nhost: reviews\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert len(up.requests) == seen
    assert serves(port)


def test_ten_thousand_same_name_headers_get_431_and_are_not_forwarded(mesh, port):
    up = mesh.upstreams["hostile"]
    seen = len(up.requests)
    out = exchange(port, b"GET http://reviews:9080/ HTTP/1.1\r\nhost: reviews\r\n" + b"a: 1\r\n" * 10_000 + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert len(up.requests) == seen
    assert serves(port)


def test_header_count_limit_is_envoys_100(mesh, port):
    def with_headers(n: int) -> bytes:
        # host + (n - 2) x-h + connection: n headers in all
        return (b"GET http://reviews:9080/ HTTP/1.1\r\nhost: reviews\r\n" +
                b"".join(b"x-h%d: v\r\n" % i for i in range(n - 2)) + b"connection: close\r\n\r\n")

    assert exchange(port, with_headers(100)).startswith(b"HTTP/1.1 200 ")
    assert exchange(port, with_headers(101)).startswith(b"HTTP/1.1 431 ")


def test_oversized_header_block_gets_431(port):
    big = b"x-big: " + b"a" * (61 * 1024) + b"\r\n"
    out = exchange(port, b"GET http://reviews:9080/ HTTP/1.1\r\nhost: reviews\r\n" + big + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    assert serves(port)


def test_long_request_line_gets_414(port):
    out = exchange(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nhost: reviews\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414 ")
    assert serves(port)


def test_slow_client_is_timed_out_with_408_and_no_traceback(mesh, port, no_tracebacks):
    before = counter(mesh, "graylane_proxy_downstream_cx_idle_timeout_total")
    out = exchange(port, b"GET / HTTP/1.1\r\nhost: reviews\r\n")  # never finishes its headers
    assert out.startswith(b"HTTP/1.1 408 ") and out.endswith(b"request timeout")
    assert counter(mesh, "graylane_proxy_downstream_cx_idle_timeout_total") - before == 1
    assert serves(port)


def test_connection_closed_mid_headers_logs_no_traceback(mesh, port, no_tracebacks):
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET http://reviews:9080/ HTTP/1.1\r\nhost: rev")
    eventually(lambda: mesh.connections(port) == 0,
               "the proxy kept connections the clients closed")
    assert serves(port)


@pytest.mark.parametrize("length", [pytest.param(100, id="replayable-body"),
                                    pytest.param(100_000, id="streamed-body")])
def test_stalled_request_body_gets_408_stream_timeout(mesh, port, no_tracebacks, length):
    si = series(mesh, reporter="source", response_code="408", response_flags="SI")
    seen_by_destination = series(mesh, reporter="destination", response_code="408")
    head = b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: %d\r\n\r\n" % length
    out = exchange(port, head + b"x" * (length // 2))  # then nothing: idle past stream_idle_timeout
    assert out.startswith(b"HTTP/1.1 408 ") and out.endswith(b"stream timeout")
    assert b"connection: close" in out
    assert series(mesh, reporter="source", response_code="408", response_flags="SI") - si == 1
    assert series(mesh, reporter="destination", response_code="408") == seen_by_destination  # never reached it
    assert serves(port)


def test_body_trickled_one_byte_at_a_time_gets_408_request_timeout(mesh, port, no_tracebacks):
    before = series(mesh, reporter="source", response_code="408", response_flags="-")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 1000\r\n\r\n")
        out = b""
        sent = 0
        while True:
            # Never idle for stream_idle_timeout (1 s): one byte whenever the proxy has nothing to say for 0.3 s.
            readable, _, _ = select.select([s], [], [], 0.3)
            if not readable:
                assert sent < 100, "no answer after 30 s of trickling"
                s.sendall(b"x")
                sent += 1
                continue
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 408 ") and out.endswith(b"request timeout")
    assert series(mesh, reporter="source", response_code="408", response_flags="-") - before == 1
    assert serves(port)


def test_idle_keep_alive_connection_is_closed(mesh, port):
    before = counter(mesh, "graylane_proxy_downstream_cx_idle_timeout_total")
    assert exchange(port, b"") == b""
    assert counter(mesh, "graylane_proxy_downstream_cx_idle_timeout_total") - before == 1


def test_pipelined_requests_are_answered_in_order(port):
    reqs = b"".join(b"GET http://reviews:9080/p%d HTTP/1.1\r\nhost: reviews\r\n\r\n" % i for i in range(50))
    out = exchange(port, reqs + b"GET http://reviews:9080/last HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 ") == 51
    positions = [out.index(b'"/p%d"' % i) for i in range(50)] + [out.index(b'"/last"')]
    assert positions == sorted(positions)


def test_pipelined_requests_with_bodies_and_a_chunked_one(port):
    reqs = (b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 5\r\n\r\nhello"
            b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\ntrailer: x\r\n\r\n"
            b"\r\nGET http://reviews:9080/after HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    out = exchange(port, reqs)
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert out.index(b"hello") < out.index(b"abcde") < out.index(b'"/after"')


def test_a_bad_request_behind_a_good_one_is_answered_after_it(mesh, port):
    out = exchange(port, b"GET http://reviews:9080/first HTTP/1.1\r\nhost: reviews\r\n\r\nGET  / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b'"/first"' in out
    assert out.count(b"HTTP/1.1 400 ") == 1 and out.index(b'"/first"') < out.index(b"HTTP/1.1 400 ")


def test_client_vanishing_mid_body_does_not_hurt_the_proxy(mesh, port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 100000\r\n\r\nabc")
    assert serves(port)


def test_no_connections_are_leaked(mesh, port):
    for _ in range(20):
        exchange(port, b"BAD\r\n\r\n")
        exchange(port, GOOD)
    eventually(lambda: mesh.connections(port) == 0,
               "connections left open")


def test_client_vanishing_mid_body_frees_the_upstream_side(mesh, port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 100000\r\n\r\nabc")
        s.sendall(b"x" * 70_000)  # past the replay limit: the body streams, an upstream exchange is open

    def idle() -> bool:
        return not any(e["active"] for c in mesh.get("/clusters").json()["clusters"] for e in c["endpoints"])

    eventually(idle, "an upstream exchange outlived its client")


def test_client_vanishing_while_its_request_waits_frees_the_upstream_side(mesh, port):
    def active() -> int:
        return sum(e["active"] for c in mesh.get("/clusters").json()["clusters"] for e in c["endpoints"])

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # A first request leaves an idle upstream connection behind: the second goes out on it at once.
        s.sendall(b"GET http://reviews:9080/ok HTTP/1.1\r\nhost: reviews\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET http://reviews:9080/delay/5 HTTP/1.1\r\nhost: reviews\r\n\r\n")
        eventually(lambda: active() == 1, "the request never reached the upstream")
    eventually(lambda: active() == 0, "an upstream exchange outlived its client", within=3)
    assert serves(port)


def test_thousands_of_pipelined_requests_the_proxy_answers_itself(mesh, no_tracebacks):
    # Answered locally (no route matches: 404 NR), all from one read: in order, none lost, nothing overflows.
    up = mesh.upstream("pipelined")
    port = free_port()
    mesh.push([svc("reviews"), vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/only"}}], "route": [{"destination": {"host": "reviews"}}]}])],
        [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    n = 3000
    miss = b"GET http://reviews:9080/x HTTP/1.1\r\nhost: reviews\r\n\r\n"
    last = b"GET http://reviews:9080/only HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"
    out = exchange(port, miss * n + last, timeout=30)
    assert out.count(b"HTTP/1.1 404 ") == n
    assert out.rindex(b"HTTP/1.1 404 ") < out.index(b"HTTP/1.1 200 ") and b'"/only"' in out


def test_requests_arriving_one_byte_per_segment_are_framed_and_answered(port):
    data = (b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
            b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 2\r\n\r\nde"
            b"GET http://reviews:9080/end HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            s.send(data[i:i + 1])
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 200 ") == 3
    assert out.index(b"abc") < out.index(b"de") < out.index(b'"/end"')
