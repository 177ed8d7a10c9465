"""HTTP/1.1 clients to Services whose port speaks HTTP/2 (grpcio servers behind the sidecar, as in test_grpc):
the request goes upstream as an h2 stream and the answer comes back as HTTP/1.1; Set-Cookie of sticky canaries
and consistent-hash cookies on h2 answers; the h2c preface split across reads."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Iterator

import h2.events
import httpx
from h2.config import H2Configuration
from h2.connection import H2Connection

from graylane.mesh.state import MeshOptions

from ..helpers import dr, free_port, running_mesh, series, sidecar, svc, vs
from .support import raw_exchange, to
from .test_grpc import echo, grpc_svc  # noqa: F401  # echo: the grpcio upstreams fixture
from .test_grpc_mirror import wait_for
from .test_h2 import h2_client, read_events

GRPC = {"host": "echo:9080", "content-type": "application/grpc", "te": "trailers"}


def frame(msg: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def h1(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False)


def test_http1_request_goes_upstream_as_h2_and_back_as_http1(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}], options=MeshOptions(access_log="json"))
    port = channel.port
    before = series(mesh, reporter="source", destination_service_name="echo", request_protocol="grpc",
                    grpc_response_status="0", response_code="200")
    with h1(port) as c:
        r = c.post("/demo.Echo/Say", headers=GRPC, content=frame(b"hello"))
        assert r.http_version == "HTTP/1.1" and r.status_code == 200
        assert r.content == frame(b"echo-v1:hello") and r.headers["content-type"] == "application/grpc"
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
        assert r.headers["server"] == "istio-envoy" and "x-envoy-upstream-service-time" in r.headers
        assert servers["v1"].calls == ["Say"] and servers["v1"].authorities == ["echo:9080"]  # Host -> :authority
        assert servers["v1"].metadata[-1]["x-request-id"] and servers["v1"].bodies == [b"hello"]
        # A body beyond every flow-control window on the way (and the 64 KiB the listener holds): streamed.
        big = b"x" * (3 * 2**20)
        r = c.post("/demo.Echo/Say", headers=GRPC, content=frame(big))
        assert r.content == frame(b"echo-v1:" + big) and servers["v1"].bodies[-1] == big
        # A client-streaming body sent chunked, message by message; a server-streaming answer, chunk by chunk.

        def messages() -> Iterator[bytes]:
            for i in range(5):
                yield frame(b"m%d" % i)

        r = c.post("/demo.Echo/Chat", headers=GRPC, content=messages())
        assert r.content == b"".join(frame(b"echo-v1:m%d" % i) for i in range(5))
        assert servers["v1"].bodies[-1] == b"m0|m1|m2|m3|m4"
        r = c.post("/demo.Echo/Count", headers=GRPC, content=frame(b"30"))
        assert r.content == b"".join(frame(b"echo-v1:%d" % i) for i in range(30))
    assert series(mesh, reporter="source", destination_service_name="echo", request_protocol="grpc",
                  grpc_response_status="0", response_code="200") - before == 4
    entries = [e for e in mesh.get("/access_log").json()["entries"] if e["authority"] == "echo:9080"]
    assert [(e["path"], e["status"], e["flags"], e["grpc_status"]) for e in entries[-4:]] == [
        *[("/demo.Echo/Say", 200, "-", "0")] * 2, ("/demo.Echo/Chat", 200, "-", "0"),
        ("/demo.Echo/Count", 200, "-", "0")]  # each once, also when the client closes as soon as it has all


class H2Web(asyncio.Protocol):
    """A plain HTTP/2 (h2c) server: records each request (`up.requests`: headers, body) and answers by path:
    /trailers: "abc" without content-length, then the trailer `x-sum: 42`; /len: "12345" with content-length;
    /empty: 200 ending at headers; /flaky: 503 while `up.fail` > 0, then 200; /echo: the body back."""

    def __init__(self, up: H2Up) -> None:
        self.up = up
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.bodies: dict[int, bytes] = {}
        self.heads: dict[int, dict[str, str]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.heads[ev.stream_id], self.bodies[ev.stream_id] = dict(ev.headers), b""
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies[ev.stream_id] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.answer(ev.stream_id)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def answer(self, sid: int) -> None:
        head, body = self.heads.pop(sid), self.bodies.pop(sid)
        self.up.requests.append({"headers": head, "body": body})
        path, c = head[":path"], self.conn
        if head[":method"] == "HEAD":
            c.send_headers(sid, [(":status", "200"), ("content-length", "5")], end_stream=True)
        elif path == "/trailers":
            c.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            c.send_data(sid, b"abc")
            c.send_headers(sid, [("x-sum", "42")], end_stream=True)
        elif path == "/len":
            c.send_headers(sid, [(":status", "200"), ("content-length", "5")])
            c.send_data(sid, b"12345", end_stream=True)
        elif path == "/flaky" and self.up.fail > 0:
            self.up.fail -= 1
            c.send_headers(sid, [(":status", "503")], end_stream=True)
        elif path == "/echo":
            c.send_headers(sid, [(":status", "200")])
            for i in range(0, len(body), 16_384):  # the test keeps bodies within the default windows
                c.send_data(sid, body[i:i + 16_384])
            c.end_stream(sid)
        else:
            c.send_headers(sid, [(":status", "200")], end_stream=True)


class H2Up:
    def __init__(self) -> None:
        self.name = "h2web"
        self.port = 0
        self.fail = 0
        self.requests: list[dict] = []

    async def start(self) -> None:
        server = await asyncio.get_running_loop().create_server(lambda: H2Web(self), "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]


def test_plain_http_over_h2_headers_framing_trailers_and_retries(mesh):
    up = H2Up()
    mesh.lt.run(up.start())
    port = free_port()
    mesh.push([grpc_svc("h2web", "http2-web"), dr("h2web", ["v1"]),
               vs("h2web", ["h2web"], [{"route": [to("v1", host="h2web")], "retries": {"attempts": 2,
                                                                                     "retryOn": "5xx"}}])],
              [mesh.endpoint(up, "h2web", "v1")], [sidecar(port)])
    with h1(port) as c:
        r = c.get("/len", headers={"host": "h2web:9080", "x-custom": "1", "te": "trailers"})
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"12345", "5")
        seen = up.requests[-1]["headers"]
        assert (seen[":authority"], seen[":scheme"], seen[":method"], seen[":path"]) == (
            "h2web:9080", "http", "GET", "/len")
        assert seen["x-custom"] == "1" and seen["te"] == "trailers" and seen["x-request-id"]
        assert not {"host", "connection", "keep-alive", "transfer-encoding"} & set(seen)
        r = c.get("/empty", headers={"host": "h2web:9080"})
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")
        r = c.head("/len", headers={"host": "h2web:9080"})
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "5")
        r = c.post("/echo", headers={"host": "h2web:9080"}, content=b"e" * 30_000)
        assert r.content == b"e" * 30_000 and up.requests[-1]["body"] == b"e" * 30_000
        assert up.requests[-1]["headers"]["content-length"] == "30000"
        up.fail = 1  # 503, then 200: retried on 5xx
        r = c.get("/flaky", headers={"host": "h2web:9080"})
        assert r.status_code == 200 and [q["headers"][":path"] for q in up.requests[-2:]] == ["/flaky", "/flaky"]
        assert up.requests[-1]["headers"]["x-envoy-attempt-count"] == "2"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # Expect: answered here, not forwarded
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: h2web:9080\r\nexpect: 100-continue\r\ncontent-length: 3\r\n"
                  b"connection: close\r\n\r\n")
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert "expect" not in up.requests[-1]["headers"] and up.requests[-1]["body"] == b"abc"
    get = b"GET /trailers HTTP/1.1\r\nHost: h2web:9080\r\nconnection: close\r\n"
    asked = raw_exchange(port, get + b"te: trailers\r\n\r\n")
    assert asked.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked\r\n" in asked
    assert asked.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 42\r\n\r\n")
    plain = raw_exchange(port, get + b"\r\n")  # trailers dropped: the client did not ask for them
    assert plain.endswith(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    old = raw_exchange(port, b"GET /trailers HTTP/1.0\r\nHost: h2web:9080\r\n\r\n")  # no chunked in HTTP/1.0
    assert old.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in old
    assert b"transfer-encoding" not in old and old.endswith(b"\r\n\r\nabc")


def test_grpc_trailers_are_chunked_trailers(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v2", host="echo")]}])
    body = frame(b"t")
    head = (b"POST /demo.Echo/Say HTTP/1.1\r\nHost: echo:9080\r\ncontent-type: application/grpc\r\n"
            b"connection: close\r\ncontent-length: %d\r\n" % len(body))
    with_te = raw_exchange(channel.port, head + b"te: trailers\r\n\r\n" + body)
    assert with_te.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked\r\n" in with_te
    tail = with_te[with_te.rindex(b"\r\n0\r\n") + 2:]
    assert b"grpc-status: 0\r\n" in tail and b"x-served-by: echo-v2\r\n" in tail and tail.endswith(b"\r\n\r\n")


def test_retries_and_timeouts_apply_to_http1_requests_over_h2(mesh, echo):  # noqa: F811
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")], "timeout": "0.3s",
           "retries": {"attempts": 2, "retryOn": "unavailable"}}])
    servers["v1"].fail = 1  # the first try answers UNAVAILABLE (trailers-only): retried on the same version
    timed_out = series(mesh, reporter="source", destination_service_name="echo", response_code="200",
                       response_flags="UT", grpc_response_status="4")
    with h1(channel.port) as c:
        r = c.post("/demo.Echo/Flaky", headers=GRPC, content=frame(b""))
        assert r.status_code == 200 and r.content == frame(b"echo-v1:ok")
        assert servers["v1"].calls == ["Flaky", "Flaky"]
        started = time.monotonic()
        r = c.post("/demo.Echo/Slow", headers=GRPC, content=frame(b"2"))
        # Envoy's gRPC local reply, trailers-only in the HTTP/1.1 head: DEADLINE_EXCEEDED.
        assert (r.status_code, r.headers["grpc-status"], r.headers["grpc-message"], r.content) == (
            200, "4", "upstream request timeout", b"")
        assert time.monotonic() - started < 1.5
        # The connection stays usable for the next request.
        assert c.post("/demo.Echo/Say", headers=GRPC, content=frame(b"again")).content == frame(b"echo-v1:again")
    assert series(mesh, reporter="source", destination_service_name="echo", response_code="200",
                  response_flags="UT", grpc_response_status="4") - timed_out == 1


def sticky(doc: dict) -> dict:
    doc["metadata"]["annotations"] = {"graylane.io/sticky": json.dumps({"cookie": {"name": "gl-canary"}})}
    return doc


def test_sticky_canary_cookie_on_h2_answers(mesh, echo, reviews):  # noqa: F811
    push, channel, servers = echo
    # An HTTP/1.1 client to the h2 upstream: the answer carries the subset's cookie, which then keeps the subset.
    routes = [{"route": [to("v1", 50, host="echo"), to("v2", 50, host="echo")]}]
    mesh.push([grpc_svc("echo"), dr("echo", ["v1", "v2"]), sticky(vs("echo", ["echo"], routes))],
              [mesh.endpoint(s, "echo", v) for v, s in servers.items()], [sidecar(channel.port)])
    with h1(channel.port) as c:
        r = c.post("/demo.Echo/Say", headers=GRPC, content=frame(b"s"))
        served = r.content[5:].split(b":")[0].decode().removeprefix("echo-")
        assert r.headers["set-cookie"].startswith(f"gl-canary={served};")
        for _ in range(4):
            r = c.post("/demo.Echo/Say", headers=GRPC, content=frame(b"s"))  # the jar sends the cookie back
            assert r.content[5:].startswith(b"echo-" + served.encode()) and "set-cookie" not in r.headers
    # An h2 client (to HTTP/1.1 and to h2 upstreams): the same cookie on the h2 answer.
    rpush, rport, _ = reviews
    rpush([sticky(vs("reviews", ["reviews"], [{"route": [to("v1", 50), to("v2", 50)]}]))])
    with h2_client(rport) as c:
        r = c.get("/", headers={"host": "reviews:9080"})
        assert r.http_version == "HTTP/2"
        name = r.json()["name"].removeprefix("reviews-")
        assert r.headers["set-cookie"].startswith(f"gl-canary={name};")
        r = c.get("/", headers={"host": "reviews:9080", "cookie": f"gl-canary={name}"})
        assert r.json()["name"] == f"reviews-{name}" and "set-cookie" not in r.headers


def test_consistent_hash_cookie_on_h2_answers(mesh, reviews):
    push, port, _ = reviews
    extra = [mesh.endpoint(mesh.upstream(f"v1-{i}"), "reviews", "v1") for i in range(3)]
    policy = {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "3600s", "path": "/"}}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])], extra, [sidecar(port)])
    with h2_client(port) as c:
        first = c.get("/", headers={"host": "reviews:9080"})
        assert first.http_version == "HTTP/2"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith('user="') and "Max-Age=3600" in cookie and "Path=/" in cookie
        value = cookie.split('"')[1]
        c.cookies.clear()
        names = set()
        for _ in range(10):
            r = c.get("/", headers={"host": "reviews:9080", "cookie": f"user={value}"})
            assert "set-cookie" not in r.headers
            names.add(r.json()["name"])
    assert names == {first.json()["name"]}


def test_h2_preface_split_across_reads(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v2")]}])])
    for cut in ((2, 9), (5, 14), (14, 18), (18, 23)):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        with s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "GET"), (":path", "/x"), (":scheme", "http"),
                                  (":authority", "reviews:9080")], end_stream=True)
            data = conn.data_to_send()
            a, b = cut
            for piece in (data[:a], data[a:b], data[b:]):
                s.sendall(piece)
                time.sleep(0.05)  # separate reads on the proxy's side (nothing to await: it answers nothing yet)
            events = read_events(s, conn, h2.events.StreamEnded)
            head = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
            assert dict(head.headers)[":status"] == "200", cut
            body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            assert json.loads(body)["name"] == "reviews-v2"
    # An HTTP/1.1 request whose first read is a prefix of the preface ("P" of POST/PUT) is parsed as before.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"P")
        time.sleep(0.05)
        s.sendall(b"OST /echo HTTP/1.1\r\nHost: reviews:9080\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhi")


def test_mirror_of_an_http1_request_to_an_h2_service(mesh):
    ups = {v: H2Up() for v in ("v1", "v2")}
    for up in ups.values():
        mesh.lt.run(up.start())
    port = free_port()
    rule = {"route": [to("v1", host="h2web")], "mirror": {"host": "h2web", "subset": "v2"},
            "mirrorPercentage": {"value": 100}}
    mesh.push([grpc_svc("h2web", "h2c-web"), dr("h2web", ["v1", "v2"]), vs("h2web", ["h2web"], [rule])],
              [mesh.endpoint(up, "h2web", v) for v, up in ups.items()], [sidecar(port)])
    with h1(port) as c:
        r = c.post("/echo", headers={"host": "h2web:9080"}, content=b"copy me")
        assert r.content == b"copy me" and [q["body"] for q in ups["v1"].requests] == [b"copy me"]
    wait_for(lambda: len(ups["v2"].requests) == 1)
    copy = ups["v2"].requests[0]
    assert copy["body"] == b"copy me" and copy["headers"][":path"] == "/echo"
    assert copy["headers"]["x-request-id"] == ups["v1"].requests[0]["headers"]["x-request-id"]


def test_a_request_body_that_stops_is_answered_408():
    with running_mesh(stream_idle_timeout_s=0.3) as mesh:
        up = H2Up()
        mesh.lt.run(up.start())
        port = free_port()
        mesh.push([grpc_svc("h2web", "http2"), dr("h2web", ["v1"]),
                   vs("h2web", ["h2web"], [{"route": [to("v1", host="h2web")]}])],
                  [mesh.endpoint(up, "h2web", "v1")], [sidecar(port)])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: h2web:9080\r\ncontent-length: 10\r\n\r\nab")  # 8 bytes short
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and data.endswith(b"\r\n\r\nstream timeout")
        assert up.requests == []  # the upstream never saw the end of the stream (it was reset)
        with h1(port) as c:  # a request whose body arrives is served
            assert c.post("/echo", headers={"host": "h2web:9080"}, content=b"whole").content == b"whole"
