"""gRPC through the real proxy: grpcio servers (generic handlers, raw bytes: no codegen) behind a sidecar speaking
h2c, a grpcio client in front. Routing by :path, weights, retries on grpc-status, faults, deadlines, metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from graylane.mesh.state import MeshOptions

from ..helpers import dr, free_port, series, sidecar, vs
from .support import to


class GrpcServer:
    """A real grpcio server: demo.Echo/Say answers `<name>:<request>`; demo.Echo/Count streams N replies;
    demo.Echo/Flaky fails UNAVAILABLE while `fail` > 0; demo.Echo/Slow sleeps the request's seconds. Records each
    call's method and `:authority` (`calls`, `authorities`), Say's metadata and requests and Chat's messages
    (`bodies`: a Say request, or a Chat's messages joined by `|`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fail = 0
        self.calls: list[str] = []
        self.authorities: list[str] = []
        self.bodies: list[bytes] = []
        self.metadata: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("demo.Echo", {
            "Say": grpc.unary_unary_rpc_method_handler(self.say),
            "Count": grpc.unary_stream_rpc_method_handler(self.count),
            "Flaky": grpc.unary_unary_rpc_method_handler(self.flaky),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat)}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _called(self, what: str, context: Any) -> None:
        # grpcio has no public accessor for the call's :authority; its server context keeps it here.
        host = context._rpc_event.call_details.host
        with self.lock:
            self.calls.append(what)
            self.authorities.append(host.decode() if isinstance(host, bytes) else str(host))

    def say(self, request: bytes, context: Any) -> bytes:
        self._called("Say", context)
        self.metadata.append(dict(context.invocation_metadata()))
        self.bodies.append(request)
        context.set_trailing_metadata((("x-served-by", self.name),))
        return self.name.encode() + b":" + request

    def count(self, request: bytes, context: Any) -> Iterator[bytes]:
        self._called("Count", context)
        for i in range(int(request)):
            yield b"%s:%d" % (self.name.encode(), i)

    def flaky(self, request: bytes, context: Any) -> bytes:
        self._called("Flaky", context)
        with self.lock:
            failing = self.fail > 0
            self.fail -= 1
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return self.name.encode() + b":ok"

    def chat(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        self._called("Chat", context)
        got = []
        for msg in requests:
            got.append(msg)
            yield self.name.encode() + b":" + msg
        self.bodies.append(b"|".join(got))

    def slow(self, request: bytes, context: Any) -> bytes:
        self._called("Slow", context)
        time.sleep(float(request))
        return b"slept"


def grpc_svc(name: str, port_name: str = "grpc", app_protocol: str | None = None) -> dict:
    port: dict[str, Any] = {"port": 9080, "name": port_name, "targetPort": 9080}
    if app_protocol:
        port["appProtocol"] = app_protocol
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [port]}}


@pytest.fixture
def echo(mesh):
    """echo v1/v2 grpcio servers behind a productpage sidecar: returns (push(http), channel factory, servers)."""
    servers = {v: GrpcServer(f"echo-{v}") for v in ("v1", "v2")}
    port = free_port()
    eps = [mesh.endpoint(s, "echo", v) for v, s in servers.items()]
    channels: list[grpc.Channel] = []

    def push(http: list[dict], service: dict | None = None, options: MeshOptions | None = None,
             extra: tuple[dict, ...] = ()) -> None:
        mesh.push([service or grpc_svc("echo"), dr("echo", ["v1", "v2"]), vs("echo", ["echo"], http), *extra], eps,
                  [sidecar(port)], options)

    def channel() -> grpc.Channel:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", "echo:9080"),
                                                                 ("grpc.enable_http_proxy", 0),
                                                                 ("grpc.enable_retries", 0)])
        channels.append(ch)
        return ch

    channel.port = port  # type: ignore[attr-defined]  # the sidecar's, for raw h2 clients

    yield push, channel, servers
    for ch in channels:
        ch.close()
    for s in servers.values():
        s.server.stop(0)


def test_unary_and_server_streaming_routed_by_path(mesh, echo):
    push, channel, servers = echo
    push([{"match": [{"uri": {"prefix": "/demo.Echo/Count"}}], "route": [to("v2", host="echo")]},
          {"route": [to("v1", host="echo")]}])
    before = series(mesh, reporter="source", destination_service_name="echo", request_protocol="grpc",
                    grpc_response_status="0", response_code="200")
    ch = channel()
    say = ch.unary_unary("/demo.Echo/Say")
    reply, call = say.with_call(b"hello", timeout=5)
    assert reply == b"echo-v1:hello"
    seen = servers["v1"].metadata[-1]
    assert seen["x-request-id"] and seen["x-forwarded-proto"] == "http"
    assert dict(call.trailing_metadata())["x-served-by"] == "echo-v1"  # trailers passed through
    replies = list(ch.unary_stream("/demo.Echo/Count")(b"50", timeout=5))
    assert replies == [b"echo-v2:%d" % i for i in range(50)]
    big = b"x" * (3 * 2**20)  # larger than every flow-control window on the way: credit flows back as consumed
    assert say(big, timeout=10) == b"echo-v1:" + big
    assert series(mesh, reporter="source", destination_service_name="echo", request_protocol="grpc",
                  grpc_response_status="0", response_code="200") - before == 3


def test_weighted_split_is_exact_over_100_calls(mesh, echo):
    push, channel, servers = echo
    push([{"route": [to("v1", 80, host="echo"), to("v2", 20, host="echo")]}])
    say = channel().unary_unary("/demo.Echo/Say")
    replies = [say(b"x", timeout=5) for _ in range(100)]
    assert (replies.count(b"echo-v1:x"), replies.count(b"echo-v2:x")) == (80, 20)


def test_retry_on_unavailable_reaches_the_other_version(mesh, echo):
    push, channel, servers = echo
    push([{"route": [to("v1", 50, host="echo"), to("v2", 50, host="echo")],
           "retries": {"attempts": 2, "retryOn": "unavailable"}}])
    servers["v1"].fail = servers["v2"].fail = 1  # each fails once: the first try fails, the retry succeeds
    flaky = channel().unary_unary("/demo.Echo/Flaky")
    before = series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="0",
                    response_flags="-")
    assert flaky(b"", timeout=5) in (b"echo-v1:ok", b"echo-v2:ok")
    assert len(servers["v1"].calls) + len(servers["v2"].calls) == 2
    # Without unavailable in retryOn the failure is the caller's.
    push([{"route": [to("v1", host="echo")], "retries": {"attempts": 2, "retryOn": "internal"}}])
    servers["v1"].fail = 1
    unavailable = series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="14",
                         response_code="200")
    with pytest.raises(grpc.RpcError) as err:
        flaky(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and err.value.details() == "try again"
    assert series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="14",
                  response_code="200") - unavailable == 1
    # The retried call counts once, as its final answer.
    assert series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="0",
                  response_flags="-") - before == 1


def test_abort_fault_answers_the_grpc_status(mesh, echo):
    push, channel, servers = echo
    push([{"match": [{"uri": {"exact": "/demo.Echo/Say"}}], "route": [to("v1", host="echo")],
           "fault": {"abort": {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100}}}},
          {"route": [to("v1", host="echo")]}], options=MeshOptions(access_log="json"))
    ch = channel()
    aborted = series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="8",
                     response_flags="FI", response_code="200", request_protocol="grpc")
    with pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/demo.Echo/Say")(b"x", timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and err.value.details() == "fault filter abort"
    assert servers["v1"].calls == []  # the fault answered; nothing went upstream
    assert list(ch.unary_stream("/demo.Echo/Count")(b"2", timeout=5)) == [b"echo-v1:0", b"echo-v1:1"]
    assert series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="8",
                  response_flags="FI", response_code="200", request_protocol="grpc") - aborted == 1
    log = [e for e in mesh.get("/access_log").json()["entries"] if e["authority"] == "echo:9080"]
    assert [(e["path"], e["status"], e["flags"], e["grpc_status"]) for e in log[-2:]] == [
        ("/demo.Echo/Say", 200, "FI", "8"), ("/demo.Echo/Count", 200, "-", "0")]


def test_deadline_is_the_smaller_of_grpc_timeout_and_route_timeout(mesh, echo):
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")], "timeout": "0.3s"}])
    slow = channel().unary_unary("/demo.Echo/Slow")
    timed_out = series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="4",
                       response_flags="UT")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        slow(b"2", timeout=10)  # grpc-timeout 10 s, route 0.3 s: the proxy answers DEADLINE_EXCEEDED
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    assert series(mesh, reporter="source", destination_service_name="echo", grpc_response_status="4",
                  response_flags="UT") - timed_out == 1
    push([{"route": [to("v1", host="echo")]}])  # no route timeout: the client's grpc-timeout bounds the call
    assert slow(b"0.05", timeout=5) == b"slept"
    with pytest.raises(grpc.RpcError) as err:
        slow(b"2", timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("port_name,app_protocol", [("http2-echo", None), ("tcp", "kubernetes.io/h2c"),
                                                    ("web", "grpc")])
def test_service_port_protocol_selects_http2_upstream(mesh, echo, port_name, app_protocol):
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}], grpc_svc("echo", port_name, app_protocol))
    assert channel().unary_unary("/demo.Echo/Say")(b"p", timeout=5) == b"echo-v1:p"


def test_bidi_streaming_interleaves_both_ways(mesh, echo):
    push, channel, servers = echo
    push([{"route": [to("v2", host="echo")]}])
    chat = channel().stream_stream("/demo.Echo/Chat")
    sent: list[bytes] = []
    ready = threading.Event()

    def requests() -> Iterator[bytes]:
        for i in range(20):
            msg = b"m%d" % i + b"." * (i * 10_000)  # up to ~190 KB: windows are refilled as messages are taken
            sent.append(msg)
            yield msg
            ready.wait(5)  # the next message only after the reply to this one came back through the proxy
            ready.clear()

    replies = []
    for reply in chat(requests(), timeout=10):
        replies.append(reply)
        ready.set()
    assert replies == [b"echo-v2:" + m for m in sent] and len(replies) == 20


def test_grpc_through_the_ingress_gateway(mesh, echo):
    push, channel, servers = echo
    gw_port = free_port()
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "grpc-gateway", "namespace": "default"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "grpc", "protocol": "GRPC"}, "hosts": ["*"]}]}}
    edge = vs("edge", ["*"], [{"match": [{"uri": {"prefix": "/demo.Echo/"}}], "route": [to("v2", host="echo")]}],
              gateways=["grpc-gateway"])
    push([{"route": [to("v1", host="echo")]}], options=MeshOptions(gateway_port_map={80: gw_port}),
         extra=(gateway, edge))
    before = series(mesh, reporter="source", source_workload="istio-ingressgateway", request_protocol="grpc",
                    destination_version="v2", grpc_response_status="0")
    with grpc.insecure_channel(f"127.0.0.1:{gw_port}", options=[("grpc.enable_http_proxy", 0)]) as ch:
        assert ch.unary_unary("/demo.Echo/Say")(b"edge", timeout=5) == b"echo-v2:edge"
        with pytest.raises(grpc.RpcError) as err:
            ch.unary_unary("/other.Svc/Call")(b"", timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route: 404 NR, as gRPC's UNIMPLEMENTED
    assert series(mesh, reporter="source", source_workload="istio-ingressgateway", request_protocol="grpc",
                  destination_version="v2", grpc_response_status="0") - before == 1


def test_trace_continues_with_a_span_per_try(mesh, echo):
    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}])
    trace, span = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"
    say = channel().unary_unary("/demo.Echo/Say")
    say(b"t", timeout=5, metadata=(("x-b3-traceid", trace), ("x-b3-spanid", span), ("x-b3-sampled", "1")))
    seen = servers["v1"].metadata[-1]
    assert seen["x-b3-traceid"] == trace and seen["x-b3-sampled"] == "1"
    assert seen["x-b3-spanid"] != span and len(seen["x-b3-spanid"]) == 16  # the proxy's span for this try


def test_a_client_that_does_not_read_holds_only_its_own_stream(mesh, echo):
    """One upstream h2 connection carries both calls: the stalled stream's data stops at its own window."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    push, channel, servers = echo
    push([{"route": [to("v1", host="echo")]}])
    say = channel().unary_unary("/demo.Echo/Say")
    assert say(b"warm", timeout=5) == b"echo-v1:warm"  # the upstream connection exists
    s = socket.create_connection(("127.0.0.1", channel.port), timeout=5)
    with s:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        msg = b"20000"
        conn.send_headers(1, [(":method", "POST"), (":path", "/demo.Echo/Count"), (":scheme", "http"),
                              (":authority", "echo:9080"), ("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(1, b"\x00" + len(msg).to_bytes(4, "big") + msg, end_stream=True)
        s.sendall(conn.data_to_send())
        got = 0
        while got < 65_535:  # read what the window allows, and never acknowledge it
            data = s.recv(65536)
            assert data
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    got += len(ev.data)
        # The stalled stream holds its window's worth; another call on the same upstream connection goes through.
        assert say(b"still", timeout=5) == b"echo-v1:still"


def test_grpc_over_tls_at_the_gateway_negotiates_h2_by_alpn(mesh):
    """A grpcio client with TLS credentials (which insists on ALPN h2) calls through an HTTPS gateway server; an
    HTTP/1.1 client on the same port is offered h2 and http/1.1 and gets what it asks for."""
    from .l4support import CA, client_ssl, gateway, tls_secret
    ca, host = CA(), "grpc.example.com"
    cert, key = ca.issue(host)
    server = GrpcServer("echo-v1")
    port = free_port()
    try:
        https = {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": [host],
                 "tls": {"mode": "SIMPLE", "credentialName": "echo-cert"}}
        mesh.push([grpc_svc("echo"), tls_secret("echo-cert", cert, key), gateway("echo-gateway", [https]),
                   vs("echo", [host], [{"route": [{"destination": {"host": "echo"}}]}], gateways=["echo-gateway"])],
                  [mesh.endpoint(server, "echo", "v1")], [], MeshOptions(gateway_port_map={443: port}))
        creds = grpc.ssl_channel_credentials(root_certificates=ca.pem.encode())
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", host),
                                                                       ("grpc.enable_http_proxy", 0)]) as ch:
            reply, call = ch.unary_unary("/demo.Echo/Say").with_call(b"over tls", timeout=5)
            assert reply == b"echo-v1:over tls"
            assert dict(call.trailing_metadata())["x-served-by"] == "echo-v1"
            assert list(ch.unary_stream("/demo.Echo/Count")(b"3", timeout=5)) == [b"echo-v1:%d" % i for i in range(3)]
        assert server.metadata[-1]["x-forwarded-proto"] == "https"
        ctx = client_ssl(ca)
        ctx.set_alpn_protocols(["http/1.1"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname=host) as s:
            assert s.selected_alpn_protocol() == "http/1.1"
        ctx = client_ssl(ca)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname=host) as s:
            assert s.selected_alpn_protocol() == "h2"
    finally:
        server.server.stop(0)
