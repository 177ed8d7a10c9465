"""An upstream that answers badly: Envoy's codec limits on the response head (100 headers, 60 KiB) and malformed
responses end the request as an upstream protocol error (502 UPE, Envoy's wording), and the proxy drops that
connection instead of buffering whatever the upstream keeps sending."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from ..helpers import free_port, series, sidecar, svc


class ScriptedUpstream(asyncio.Protocol):
    """Answers each request with `answer` (written in `pieces` writes); notes when the proxy closes on it."""

    answer: bytes = b""
    pieces = 1
    closed: threading.Event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            step = -(-len(self.answer) // self.pieces)
            for i in range(0, len(self.answer), step):
                if self.transport.is_closing():
                    return
                self.transport.write(self.answer[i:i + step])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@pytest.fixture
def upstream(mesh):
    """(set(answer, pieces), proxy port, closed): one upstream behind a productpage sidecar; `closed` is set when
    a connection to it ends (in the upstream's loop, after the proxy closed it)."""
    closes = threading.Event()
    proto = type("Up", (ScriptedUpstream,), {"closed": closes})

    async def start() -> int:
        srv = await asyncio.get_running_loop().create_server(proto, "127.0.0.1", 0)
        return srv.sockets[0].getsockname()[1]

    up = type("Up", (), {"name": "scripted", "port": mesh.lt.run(start())})()
    port = free_port()
    mesh.push([svc("reviews")], [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])

    def answer(data: bytes, pieces: int = 1) -> None:
        proto.answer, proto.pieces = data, pieces

    return answer, port, closes


def _head(n_headers: int, value: bytes = b"x") -> bytes:
    lines = b"".join(b"x-h%d: %s\r\n" % (i, value) for i in range(n_headers - 1))
    return b"HTTP/1.1 200 OK\r\n" + lines + b"content-length: 2\r\n\r\nok"


def _get(port: int) -> httpx.Response:
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
        return c.get("http://reviews:9080/reviews/0")


def _is_upe(r: httpx.Response) -> bool:
    return r.status_code == 502 and r.text == (
        "upstream connect error or disconnect/reset before headers. reset reason: protocol error")


def test_a_response_with_envoys_100_headers_passes_and_101_is_a_protocol_error(mesh, upstream):
    answer, port, _ = upstream
    answer(_head(100))
    ok = _get(port)
    assert ok.status_code == 200 and ok.text == "ok" and ok.headers["x-h98"] == "x"
    before = series(mesh, reporter="source", response_code="502", response_flags="UPE")
    answer(_head(101))
    assert _is_upe(_get(port))
    assert series(mesh, reporter="source", response_code="502", response_flags="UPE") - before == 1


def test_a_response_head_over_60_kib_is_a_protocol_error_and_the_connection_is_dropped(mesh, upstream):
    answer, port, closes = upstream
    answer(_head(30, b"v" * 1500))  # ~45 KiB of head: within the limit
    assert _get(port).status_code == 200
    answer(_head(42, b"v" * 1500))  # ~62 KiB of head in 42 headers, in one write
    assert _is_upe(_get(port))
    assert closes.wait(10), "the proxy kept the connection of an upstream whose head it refused"
    closes.clear()
    answer(_head(42, b"v" * 1500) * 2, pieces=64)  # and trickled over many writes, then more of it
    assert _is_upe(_get(port))
    assert closes.wait(10)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: other\r\nconnection: upgrade\r\n\r\nbytes of another protocol",
], ids=["bad-status", "length-and-chunked", "two-lengths", "unasked-101"])
def test_a_malformed_response_is_a_protocol_error_not_a_connection_termination(mesh, upstream, answer, caplog):
    set_answer, port, _ = upstream
    set_answer(answer)
    assert _is_upe(_get(port))
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no "Fatal error on transport"


def test_trailers_of_a_chunked_response_are_dropped_not_promoted_to_headers(mesh, upstream):
    answer, port, _ = upstream
    answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-trailer: late\r\n\r\n")
    r = _get(port)
    assert r.status_code == 200 and r.text == "ok"
    assert "x-trailer" not in r.headers  # Envoy's HTTP/1 codec drops trailers unless enable_trailers is set


def test_endless_trailers_end_the_response_and_the_connection(mesh, upstream):
    answer, port, closes = upstream
    trailers = b"".join(b"x-t%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))  # ~80 KiB, never ended
    answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + trailers, pieces=16)
    with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c, pytest.raises(httpx.HTTPError):
        c.get("http://reviews:9080/reviews/0").read()
    assert closes.wait(10), "the proxy kept reading trailers past Envoy's limits"


@pytest.mark.parametrize("spelling", ["lower", "UPPER"])
def test_hop_by_hop_response_headers_are_dropped_in_any_letter_case_and_the_rest_pass_as_they_came(mesh, upstream,
                                                                                                  spelling):
    answer, port, _ = upstream
    head = (b"HTTP/1.1 200 OK\r\nServer: upstream\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
            b"Proxy-Connection: x\r\nX-Custom: a\r\nContent-Length: 2\r\n\r\nok")
    answer(head.upper().replace(b"\r\nOK", b"\r\nok") if spelling == "UPPER" else head)
    for _ in range(2):  # the second time, each name's kind comes from the proxy's cache of spellings
        r = _get(port)
        names = [n for n, _ in r.headers.raw]
        assert r.status_code == 200 and r.text == "ok"
        assert r.headers["server"] == "istio-envoy" and r.headers.get_list("server") == ["istio-envoy"]
        assert not {b"connection", b"keep-alive", b"proxy-connection"} & {n.lower() for n in names}
        custom = b"X-Custom" if spelling == "lower" else b"X-CUSTOM"
        assert custom in names and r.headers["x-custom"].lower() == "a"
        assert (b"Content-Length" if spelling == "lower" else b"CONTENT-LENGTH") in names


def test_a_chunked_response_in_capitals_is_read_as_chunked(mesh, upstream):
    answer, port, _ = upstream
    answer(b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n")
    for _ in range(2):
        r = _get(port)
        assert r.status_code == 200 and r.text == "ok!!!"
        assert r.headers.get_list("transfer-encoding") == ["chunked"]
