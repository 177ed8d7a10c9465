"""HTTP/2 cleartext through the real proxy: httpx (prior knowledge) and raw h2 clients against a sidecar whose
upstreams speak HTTP/1.1 (the Bookinfo reviews fixture). Routing, header operations, local replies, multiplexing,
flow control, `Upgrade: h2c` declined, and hostile peers bounded."""

from __future__ import annotations

import asyncio
import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx

from ..helpers import dr, free_port, running_mesh, series, sidecar, svc, vs
from .support import to


def h2_client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=10, trust_env=False)


def test_prior_knowledge_routes_streams_with_the_route_and_its_header_operations(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")],
         "headers": {"request": {"set": {"x-canary": "yes"}}, "response": {"add": {"x-route": "jason"}}}},
        {"route": [to("v1")]}])])
    before = series(mesh, reporter="source", destination_service_name="reviews", response_code="200")
    with h2_client(port) as c:
        r = c.get("/reviews/0", headers={"host": "reviews:9080", "end-user": "jason"})
        assert r.http_version == "HTTP/2" and r.status_code == 200
        assert r.json()["name"] == "reviews-v2" and r.json()["path"] == "/reviews/0"
        assert r.json()["headers"]["x-canary"] == "yes" and r.headers["x-route"] == "jason"
        assert r.headers["server"] == "istio-envoy"
        r = c.post("/echo", headers={"host": "reviews:9080"}, content=b"a" * 100_000)
        assert r.content == b"a" * 100_000 and ups["v1"].requests[-1]["body_len"] == 100_000
        r = c.post("/echo", headers={"host": "reviews:9080"}, content=b"a" * (2 * 2**20))
        assert (r.status_code, r.text) == (413, "Payload Too Large")  # an HTTP/1.1 upstream gets bodies whole
        r = c.get("/", headers={"host": "nowhere.invalid:9080"})  # passthrough to a host that is not there
        assert (r.status_code, r.text) == (503, "upstream connect error or disconnect/reset before headers. "
                                                "reset reason: connection failure")
    assert series(mesh, reporter="source", destination_service_name="reviews", response_code="200") - before == 2


def test_streams_are_multiplexed_and_flow_controlled(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=10,
                                     trust_env=False) as c:
            # One connection, 20 concurrent streams, one of them slow and one a 2 MiB response.
            rs = await asyncio.gather(c.get("/delay/0.3", headers={"host": "reviews:9080"}),
                                      c.get("/chunks/2048", headers={"host": "reviews:9080"}),
                                      *(c.get(f"/r/{i}", headers={"host": "reviews:9080"}) for i in range(18)))
            assert len(rs[1].content) == 2048 * 1024
            return [r.status_code for r in rs]

    connections = ups["v1"].connections
    assert asyncio.run(run()) == [200] * 20
    assert ups["v1"].connections - connections >= 1


def test_h2c_upgrade_is_declined_and_served_as_http1(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v3")]}])])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: reviews:9080\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
                  b"GET /y HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert b"101" not in data.split(b"\r\n")[0] and b'"name": "reviews-v3"' in data


def raw_h2(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def read_events(s: socket.socket, conn: h2.connection.H2Connection, until: type) -> list:
    """Events until one of type `until`, or the proxy closed the connection (a timeout raises)."""
    events: list = []
    try:
        while not any(isinstance(e, until) for e in events):
            data = s.recv(65536)
            if not data:
                break
            events += conn.receive_data(data)
            s.sendall(conn.data_to_send())
    except (ConnectionResetError, BrokenPipeError):  # our reply (an ACK) after the proxy closed: what came counts
        events.append(ConnectionResetError())
    return events


def test_hostile_peers_are_bounded(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    head = [(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "reviews:9080")]
    # A header list beyond 60 KiB: refused.
    s, conn = raw_h2(port)
    with s:
        conn.send_headers(1, [*head, ("x-big", "b" * 70_000)], end_stream=True)
        s.sendall(conn.data_to_send())
        events = read_events(s, conn, h2.events.ConnectionTerminated)
        assert any(isinstance(e, h2.events.ConnectionTerminated | h2.events.StreamReset) for e in events)
    # More concurrent streams than SETTINGS_MAX_CONCURRENT_STREAMS (100): a protocol error ends the connection.
    s, conn = raw_h2(port)
    with s:
        read_events(s, conn, h2.events.RemoteSettingsChanged)
        assert conn.remote_settings.max_concurrent_streams == 100
        conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000  # pretend we did not hear it
        conn.remote_settings.acknowledge()
        for sid in range(1, 2 * 150, 2):
            conn.send_headers(sid, [(":method", "GET"), (":path", "/delay/0.5"), (":scheme", "http"),
                                    (":authority", "reviews:9080")], end_stream=True)
        s.sendall(conn.data_to_send())
        events = read_events(s, conn, h2.events.ConnectionTerminated)
        assert any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 1 for e in events)
    # A client flooding SETTINGS (each one costs the proxy an ACK to write) is told to calm down.
    s, conn = raw_h2(port)
    with s:
        frame = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"  # SETTINGS max streams 100
        try:
            s.sendall(frame * 2000)
        except OSError:
            pass
        events = read_events(s, conn, h2.events.ConnectionTerminated)
        assert any(isinstance(e, ConnectionResetError) or (isinstance(e, h2.events.ConnectionTerminated)
                                                            and e.error_code == 11) for e in events)


def test_stream_idle_timeout_ends_a_quiet_stream_not_a_busy_one():
    with running_mesh(stream_idle_timeout_s=0.3) as mesh:
        up = mesh.upstream("reviews-v1")
        port = free_port()
        mesh.push([svc("reviews"), dr("reviews", ["v1"]), vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
                  [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
        s, conn = raw_h2(port)
        with s:
            # Stream 1 sends its head and never its body: 408 after the stream idle timeout.
            conn.send_headers(1, [(":method", "POST"), (":path", "/echo"), (":scheme", "http"),
                                  (":authority", "reviews:9080")], end_stream=False)
            s.sendall(conn.data_to_send())
            events = read_events(s, conn, h2.events.StreamEnded)
            head = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
            assert dict(head.headers)[":status"] == "408"
            body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            assert body == b"stream timeout"
        with h2_client(port) as c:  # streams that move are untouched
            r = c.get("/chunks/512", headers={"host": "reviews:9080"})
            assert r.status_code == 200 and len(r.content) == 512 * 1024
        assert series(mesh, reporter="source", response_code="408", response_flags="SI") == 1


def test_rapid_reset_is_told_to_calm_down(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    s, conn = raw_h2(port)
    with s:
        head = [(":method", "GET"), (":path", "/delay/1"), (":scheme", "http"), (":authority", "reviews:9080")]
        for sid in range(1, 2 * 1100, 2):  # open and cancel at once (CVE-2023-44487)
            conn.send_headers(sid, head, end_stream=True)
            conn.reset_stream(sid)
        try:
            s.sendall(conn.data_to_send())
        except OSError:
            pass
        events = read_events(s, conn, h2.events.ConnectionTerminated)
        assert any(isinstance(e, ConnectionResetError) or (isinstance(e, h2.events.ConnectionTerminated)
                                                            and e.error_code == 11) for e in events)
