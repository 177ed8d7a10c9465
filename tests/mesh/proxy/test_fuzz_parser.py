"""Fuzzing the proxy's request parser: bytes thrown at a real listener (hypothesis, a few dozen examples).

Whatever arrives, the proxy answers well-formed HTTP/1.1 (a 4xx of its own, or the proxied answer), closes when it
should, logs no error, and serves the next good request.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import Mesh, free_port, running_mesh, sidecar, svc, vs

GOOD = b"GET http://reviews:9080/ok HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n"
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*\r\n")


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Mesh, int, Errors]]:
    # Tiny timeouts: every connection ends quickly, by the proxy's own decision (answer, 408, or idle close).
    with running_mesh(idle_timeout_s=0.2, header_timeout_s=0.2, request_timeout_s=0.5,
                      stream_idle_timeout_s=0.2) as mesh:
        up = mesh.upstream("fuzz")
        port = free_port()
        snap = compile_snapshot([svc("reviews"), vs("reviews", ["reviews"], [
            {"route": [{"destination": {"host": "reviews"}}]}])], [mesh.endpoint(up, "reviews", "v1")],
            [sidecar(port)], MeshOptions(), 1)
        snap["options"]["outbound_traffic_policy"] = "REGISTRY_ONLY"  # no DNS look-ups for fuzzed hosts
        mesh.put(snap)
        errors = Errors()
        logging.getLogger().addHandler(errors)
        try:
            yield mesh, port, errors
        finally:
            logging.getLogger().removeHandler(errors)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy refused early and closed: its answer is still readable
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            except TimeoutError:
                raise AssertionError(f"the proxy neither answered nor closed; got {out[:300]!r}") from None
            if not chunk:
                return out
            out += chunk


def responses(data: bytes) -> list[int]:
    """Status codes of the HTTP/1.1 responses in `data`; fails on anything malformed (HEAD is never sent)."""
    codes, pos = [], 0
    while pos < len(data):
        m = STATUS_LINE.match(data, pos)
        assert m, f"not a status line at {pos}: {data[pos:pos + 80]!r}"
        end = data.find(b"\r\n\r\n", m.end() - 2)
        assert end >= 0, f"unterminated head: {data[pos:pos + 300]!r}"
        headers = {}
        for line in data[m.end():end].split(b"\r\n"):
            if line:
                name, sep, value = line.partition(b":")
                assert sep and name and name == name.strip(), f"bad header line {line!r}"
                headers[name.lower()] = value.strip()
        code = int(m.group(1))
        pos = end + 4
        if code < 200 or code in (204, 304):
            codes.append(code)
            continue
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2 + size + 2
                if size == 0:
                    break
        else:
            assert b"content-length" in headers or headers.get(b"connection") == b"close", headers
            length = int(headers.get(b"content-length", len(data) - pos))
            assert pos + length <= len(data), "truncated body"
            pos += length
        codes.append(code)
    return codes


methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"get", b"G ET", b""])
spaces = st.sampled_from([b" ", b" ", b" ", b"  ", b"\t", b""])
targets = st.one_of(st.sampled_from([b"http://reviews:9080/", b"/", b"*", b"http://reviews:9080/echo",
                                     b"http://reviews:9080/%zz?x=\xff", b"http://other:1/", b"reviews:9080"]),
                    st.binary(max_size=12))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"HTTP/9", b""])
eols = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
header_names = st.one_of(st.sampled_from([b"host", b"content-length", b"transfer-encoding", b"connection",
                                          b"expect", b"x-a", b"host ", b" x"]), st.binary(max_size=8))
header_values = st.one_of(st.sampled_from([b"reviews", b"0", b"3", b"-1", b"chunked", b"gzip, chunked", b"close",
                                           b"100-continue", b"99999999999999999999", b"a\x00b"]),
                          st.binary(max_size=8))
headers = st.lists(st.tuples(header_names, st.sampled_from([b": ", b":", b" : "]), header_values, eols),
                   max_size=6)
bodies = st.one_of(st.binary(max_size=16), st.sampled_from([b"3\r\nabc\r\n0\r\n\r\n", b"zz\r\n", b"0\r\n\r\n"]))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(methods) + draw(spaces) + draw(targets) + draw(spaces) + draw(versions) + draw(eols)
    head = b"".join(n + sep + v + e for n, sep, v, e in draw(headers))
    return line + head + draw(eols) + draw(bodies)


@st.composite
def valid_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"OPTIONS"]))
    target = draw(st.sampled_from([b"http://reviews:9080/", b"http://reviews:9080/echo", b"/echo", b"/x?y=1"]))
    body = draw(st.binary(max_size=20))
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    head = [method + b" " + target + b" HTTP/1.1", b"host: reviews:9080"]
    if framing == "length":
        head.append(b"content-length: %d" % len(body))
    elif framing == "chunked":
        head.append(b"transfer-encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        body = b""
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid pipeline of 1-3 requests with a few bytes inserted, deleted or replaced."""
    data = bytearray(b"".join(draw(st.lists(valid_requests(), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from([b" ", b"\r", b"\n", b"\r\n", b":", b"\x00", b"0", b"9", b";", b"\t"])
                     | st.binary(min_size=1, max_size=3))
        if what == "insert":
            data[at:at] = piece
        elif what == "delete":
            del data[at:at + len(piece)]
        else:
            data[at:at + len(piece)] = piece
    return bytes(data)


inputs = st.one_of(st.lists(valid_requests(), min_size=1, max_size=3).map(b"".join), mutated_requests(),
                   mutated_requests(), requests(), st.binary(max_size=120))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=inputs)
def test_any_bytes_get_well_formed_answers_and_the_proxy_keeps_serving(fuzzed, data):
    mesh, port, errors = fuzzed
    codes = responses(exchange(port, data))
    assert all(100 <= c <= 599 for c in codes)
    assert exchange(port, GOOD).startswith(b"HTTP/1.1 200 ")
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert not mesh.proxy_errors()
