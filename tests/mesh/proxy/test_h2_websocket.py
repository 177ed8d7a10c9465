"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) through the real proxy: a raw h2 client speaking WebSocket
frames on its stream, the `websockets` echo servers of test_websocket behind the sidecar (HTTP/1.1 upgrades)."""

from __future__ import annotations

import os
import struct
import time

import h2.events
import h2.settings

from ..helpers import free_port, running_mesh, series
from .support import to
from .test_h2 import raw_h2
from .test_websocket import ws_upstreams

HEAD = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":authority", "chat:9080"),
        ("sec-websocket-version", "13")]


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (RFC 6455)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class H2Ws:
    """A raw h2 connection with one extended CONNECT stream on it: WebSocket messages in and out."""

    def __init__(self, port: int) -> None:
        self.s, self.conn = raw_h2(port)
        self.s.settimeout(10)
        self.buf = b""
        self.ended = False
        self.settings: dict[int, int] = {}
        self.events: list = []
        while h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL not in self.settings:
            self._pump()

    def _pump(self) -> None:
        data = self.s.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection")
        for ev in self.conn.receive_data(data):
            self.events.append(ev)
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings.update({k: v.new_value for k, v in ev.changed_settings.items()})
            elif isinstance(ev, h2.events.DataReceived):
                self.buf += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded | h2.events.StreamReset):
                self.ended = True
        self.s.sendall(self.conn.data_to_send())

    def open(self, path: str) -> dict[str, str]:
        self.conn.send_headers(1, [*HEAD[:3], (":path", path), *HEAD[3:]])
        self.s.sendall(self.conn.data_to_send())
        while not any(isinstance(e, h2.events.ResponseReceived) for e in self.events):
            self._pump()
        resp = next(e for e in self.events if isinstance(e, h2.events.ResponseReceived))
        return dict(resp.headers)

    def send(self, payload: bytes, opcode: int = 1) -> None:
        data = ws_frame(payload, opcode)
        while data:
            n = min(len(data), self.conn.local_flow_control_window(1), self.conn.max_outbound_frame_size)
            if n <= 0:
                self._pump()  # wait for the proxy's WINDOW_UPDATE
                continue
            self.conn.send_data(1, data[:n])
            self.s.sendall(self.conn.data_to_send())
            data = data[n:]

    def recv(self) -> bytes:
        """The next server frame's payload (unmasked, RFC 6455)."""
        while True:
            if len(self.buf) >= 2:
                n, at = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, at = struct.unpack(">H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
                if (n < 126 or at > 2) and len(self.buf) >= at + n:
                    payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
                    return payload
            self._pump()

    def close(self) -> None:
        self.s.close()


def test_websocket_over_h2_is_spliced_with_flow_control_and_counted_once(mesh):
    port = free_port()
    ups = ws_upstreams(mesh, port, [
        {"match": [{"uri": {"prefix": "/v2"}}], "route": [to("v2", host="chat")], "timeout": "0.3s"},
        {"route": [to("v1", host="chat")], "timeout": "0.3s",
         "headers": {"response": {"add": {"x-route": "chat"}}}}])
    labels = {"reporter": "source", "destination_service_name": "chat", "response_code": "200"}
    before = series(mesh, **labels)
    ws = H2Ws(port)
    try:
        assert ws.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1  # RFC 8441, advertised
        head = ws.open("/chat")
        assert head[":status"] == "200" and head["server"] == "istio-envoy" and head["x-route"] == "chat"
        assert "sec-websocket-accept" not in head and "upgrade" not in head
        for i in range(5):
            ws.send(b"hello %d" % i)
            assert ws.recv() == b"chat-v1:hello %d" % i
        big = bytes(range(256)) * 1024  # 256 KiB each way: beyond every h2 window on the way
        ws.send(big, opcode=2)
        assert ws.recv() == big
        time.sleep(0.6)  # twice the route timeout, quiet: the tunnel stays up
        ws.send(b"still there")
        assert ws.recv() == b"chat-v1:still there"
        ws.send(struct.pack(">H", 1000), opcode=8)  # close: the server answers close and ends the connection
        assert ws.recv()[:2] == struct.pack(">H", 1000)
        while not ws.ended:
            ws._pump()
        assert any(isinstance(e, h2.events.StreamEnded) for e in ws.events)  # ended cleanly, not reset
    finally:
        ws.close()
    assert ups["v1"].paths == ["/chat"]
    deadline = time.monotonic() + 5
    while series(mesh, **labels) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # reported when the tunnel closes
    assert series(mesh, **labels) == before + 1


def test_refused_websocket_over_h2_is_passed_on(mesh):
    port = free_port()
    ups = ws_upstreams(mesh, port, [{"route": [to("v1", host="chat")]}])
    ups["v1"].refuse = True
    before = series(mesh, reporter="source", destination_service_name="chat", response_code="403")
    ws = H2Ws(port)
    try:
        head = ws.open("/chat")
        assert head[":status"] == "403"
        while not ws.ended:
            ws._pump()
        assert ws.buf == b"not here\n"
    finally:
        ws.close()
    assert series(mesh, reporter="source", destination_service_name="chat", response_code="403") - before == 1


def test_other_extended_connect_protocols_are_refused(mesh):
    port = free_port()
    ws_upstreams(mesh, port, [{"route": [to("v1", host="chat")]}])
    s, conn = raw_h2(port)
    with s:
        s.settimeout(10)
        events: list = []
        while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in events):
            events += conn.receive_data(s.recv(65536))
        conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "bytestream"), (":scheme", "http"),
                              (":path", "/x"), (":authority", "chat:9080")])
        s.sendall(conn.data_to_send())
        while not any(isinstance(e, h2.events.ResponseReceived) for e in events):
            events += conn.receive_data(s.recv(65536))
        resp = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        assert dict(resp.headers)[":status"] == "400"



def test_stream_idle_timeout_ends_a_quiet_h2_tunnel():
    with running_mesh(stream_idle_timeout_s=0.3) as mesh:
        port = free_port()
        ws_upstreams(mesh, port, [{"route": [to("v1", host="chat")]}])
        ws = H2Ws(port)
        try:
            assert ws.open("/chat")[":status"] == "200"
            ws.send(b"a")
            assert ws.recv() == b"chat-v1:a"
            while not ws.ended:  # nothing moves either way: the proxy resets the stream
                ws._pump()
            assert any(isinstance(e, h2.events.StreamReset) for e in ws.events)
        finally:
            ws.close()
        deadline = time.monotonic() + 5
        while series(mesh, reporter="source", response_code="200", response_flags="SI") < 1 and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert series(mesh, reporter="source", response_code="200", response_flags="SI") == 1


def test_a_client_that_does_not_read_stalls_the_upstream_through_the_h2_windows(mesh):
    """Back-pressure through the h2 splice: without WINDOW_UPDATEs from the client the proxy sends a window's
    worth and stops reading the upstream, whose sends then block; everything flows once the client reads."""
    from .test_websocket import flooded_chat

    port, flood = flooded_chat(mesh)
    ws = H2Ws(port)
    try:
        assert ws.open("/chat")[":status"] == "200"  # from here on the client neither reads nor acknowledges
        stalled_at = flood.stalled()
        got = 0
        while got < 64:
            assert len(ws.recv()) == 2**20
            got += 1
    finally:
        ws.close()
    assert stalled_at < 32 * 2**20  # held back by the windows and the paused socket, not 64 MiB in the proxy
    assert flood.sent == 64 * 2**20
