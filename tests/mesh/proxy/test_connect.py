"""The connect layer through real sockets: bodies both ways, Expect: 100-continue, pool limits and keep-alive."""

from __future__ import annotations

import concurrent.futures

from ..helpers import dr, series, sidecar, svc, vs
from .support import client, to


def test_bodies_stream_both_ways_chunked_and_content_length(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    payload = b"y" * (3 * 1024 * 1024 + 7)

    def gen():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    with client(port) as c:
        assert len(c.post("http://reviews:9080/echo", content=gen()).content) == len(payload)
        assert c.post("http://reviews:9080/echo", content=payload).content == payload
        r = c.get("http://reviews:9080/chunks/2048")
        assert len(r.content) == 2048 * 1024 and r.headers["transfer-encoding"] == "chunked"
        assert c.head("http://reviews:9080/").status_code == 200
        assert c.get("http://reviews:9080/status/204").status_code == 204
        assert c.get("http://reviews:9080/x").status_code == 200  # connection still usable


def test_connection_pool_overflow_is_503_uo(mesh, reviews):
    push, port, _ = reviews
    policy = {"connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
              [mesh.endpoint(mesh.upstreams["reviews-v1"], "reviews", "v1")], [sidecar(port)])
    before = series(mesh, reporter="source", response_flags="UO")

    def call(_):
        with client(port) as c:
            r = c.get("http://reviews:9080/delay/1")
            return r.status_code, r.text

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    codes = sorted(code for code, _ in results)
    assert 200 in codes and 503 in codes
    assert any(text.endswith("reset reason: overflow") for code, text in results if code == 503)
    assert series(mesh, reporter="source", response_flags="UO") - before == codes.count(503)


def test_expect_100_continue_is_answered_by_the_proxy(mesh, reviews):
    import socket

    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 5\r\n"
                  b"expect: 100-continue\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = b""
        while not data.endswith(b"hello"):
            data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200 ")


def test_max_requests_per_connection_one_disables_upstream_keep_alive(mesh, reviews):
    push, port, ups = reviews
    up = mesh.upstream("fresh")
    policy = {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    with client(port) as c:
        for _ in range(5):
            assert c.get("http://reviews:9080/").status_code == 200
    assert up.connections == 5
