"""heads.py reads a plain request head the way httptools does, and leaves every other head to httptools.

Each head heads.py takes is parsed by httptools too, and both readings must agree: method, target, header fields,
keep-alive. Hypothesis builds heads from the pieces that matter (odd methods and targets,
HTTP/1.0, whitespace, tabs, obs-text, control bytes, bare LF, repeated and framing headers); a head heads.py takes
must be one httptools accepts, with the same meaning (the subset is never wider), and the common heads must be
taken (else the fast path would be dead code).
"""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graylane.mesh.proxy import heads


class _Reading:
    """What httptools reports for one message head."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.keep_alive: bool | None = None
        self.parser: httptools.HttpRequestParser | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()  # as the proxy asks: at the end of the head


def _httptools_request(raw: bytes) -> tuple[_Reading, httptools.HttpRequestParser]:
    r = _Reading()
    p = r.parser = httptools.HttpRequestParser(r)
    p.feed_data(raw)
    return r, p


def _assert_same_request(raw: bytes) -> bool:
    """True if heads.py took the head `raw` starts with; then httptools must have read the same request from it."""
    end = raw.find(b"\r\n\r\n") + 4  # where the listener ends a head
    req = heads.request(raw, 0, end) if end >= 4 else None
    if req is None:
        return False
    reading, parser = _httptools_request(raw[:end])  # raises if httptools refuses what heads.py took
    assert reading.complete
    assert req.method == parser.get_method().decode()
    assert req.target == reading.url.decode("latin-1")
    assert req.headers == [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in reading.headers]
    assert req.keep_alive == reading.keep_alive
    assert req.version == "1.1" and not req.has_body and req.body is heads.NO_BODY
    assert "content-length" not in req.hmap and "transfer-encoding" not in req.hmap
    return True


BENCHMARK_GET = b"GET /reviews/0 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: wrk\r\n\r\n"
CLOSING_DELETE = b"DELETE /a/b;c=d@e:f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
COMMON_REQUESTS = [
    b"GET http://reviews:9080/reviews/0 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: python-httpx/0.27\r\n\r\n",
    BENCHMARK_GET,
    b"GET /productpage?u=normal HTTP/1.1\r\nhost: productpage\r\naccept: */*\r\nx-request-id: 1-2-3\r\n"
    b"x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7\r\nx-b3-spanid: e457b5a2e4d86bd1\r\nx-b3-sampled: 1\r\n\r\n",
    CLOSING_DELETE,
    b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\nX-Empty:\r\nX-Tab:\tv\t \r\n\r\n",
    b"OPTIONS /%20x?a=1&b=2 HTTP/1.1\r\nHost: x\r\nx-dup: 1\r\nX-Dup: 2\r\n\r\n",
]
OTHER_REQUESTS = [  # heads heads.py leaves to httptools (each for one reason)
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://[::1]:80/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://user@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /#frag HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"x-h: 1\r\n" * 101 + b"\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("raw", COMMON_REQUESTS)
def test_common_request_heads_are_read_here_as_httptools_reads_them(raw):
    assert _assert_same_request(raw)


@pytest.mark.parametrize("raw", OTHER_REQUESTS)
def test_other_request_heads_are_left_to_httptools(raw):
    assert heads.request(raw, 0, len(raw)) is None


def test_a_head_is_read_from_its_place_in_a_larger_read():
    first, second = BENCHMARK_GET, CLOSING_DELETE
    data = first + second
    req = heads.request(data, len(first), len(data))
    assert req is not None and req.method == "DELETE" and req.keep_alive is False
    assert heads.request(data, 0, len(data)) is None  # two heads are not one


# Mostly well-formed pieces (so that many heads are plain), with every kind of flaw among them.
_GOOD_NAMES = [b"Host", b"host", b"X-A", b"x_b", b"Accept", b"X-Request-Id"]
_names = st.sampled_from(_GOOD_NAMES * 6 + [b"Connection", b"Content-Length", b"Transfer-Encoding", b"Upgrade",
                                            b"Bad Name", b"", b"N\x80"])
_GOOD_BYTES = [b"a", b"B", b"1", b"a b", b"close", b"keep-alive", b"Keep-Alive", b"0", b"12", b",", b"/", b"=", b":",
               b" ", b"\t"]
_values = st.lists(st.sampled_from(_GOOD_BYTES * 16 + [b"\x80", b"\x00", b"\x7f", b"\r", b"\n", b"\xff"]),
                   max_size=4).map(b"".join)
_line_ends = st.sampled_from([b"\r\n"] * 20 + [b"\n", b"\r\n "])
_header = st.tuples(_names, st.sampled_from([b": "] * 8 + [b":", b":\t", b" :"]), _values, _line_ends).map(b"".join)
_connection = st.sampled_from([b""] * 3 + [b"Connection: close\r\n", b"connection: Keep-Alive\r\n",
                                           b"Connection: keep-alive, close\r\n", b"Connection:close \r\n"])
_targets = st.lists(st.sampled_from([b"/", b"a", b"b", b"%2F", b"?", b"=", b"&", b";", b"@", b"~"] * 3
                                    + [b"#", b"*", b"http://x", b"\x80", b" ", b"[", b'"', b"\\", b"{"]),
                    max_size=6).map(lambda parts: b"/" + b"".join(parts))
_authorities = st.lists(st.sampled_from([b"reviews", b"a.b", b":9080", b":", b"-", b"_", b"@", b"%", b"[::1]", b"x"]),
                        max_size=3).map(b"".join)
_targets = st.one_of(_targets, st.tuples(st.sampled_from([b"http://", b"http://", b"https://", b"HTTP://"]),
                                         _authorities, st.sampled_from([b""]) | _targets).map(b"".join))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([b"GET"] * 4 + [b"HEAD", b"POST", b"PURGE", b"get", b"OPTIONS", b"DELETE", b"PRI"]),
       _targets, st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"]),
       st.lists(_header, max_size=4), _connection)
def test_any_request_head_read_here_is_read_the_same_by_httptools(method, target, version, headers, connection):
    _assert_same_request(method + b" " + target + b" " + version + b"\r\n" + b"".join(headers) + connection + b"\r\n")
