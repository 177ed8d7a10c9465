"""Mirrors of gRPC calls through the real proxy: a grpcio client in front of a sidecar, grpcio servers for echo v1
(the route) and v2 (the mirror), plus a mirror subset whose endpoint refuses connections and one that never
answers. The caller sees only v1; v2 gets a copy of each call's request (same path, authority, metadata, body)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import SimpleNamespace

import grpc
import pytest

from ..helpers import counter, dr, free_port, sidecar, vs
from .support import to
from .test_grpc import GrpcServer, grpc_svc

MIRRORED = "graylane_proxy_mirror_requests_total"
FAILED = "graylane_proxy_mirror_failures_total"


def wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def echo(mesh):
    """Subsets v1, v2 (grpcio servers), dead (a closed port) and hang (a socket that accepts nothing); returns
    (push(mirror subset, percentage), say-and-friends channel, servers)."""
    servers = {v: GrpcServer(f"echo-{v}") for v in ("v1", "v2")}
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    port = free_port()
    eps = [mesh.endpoint(s, "echo", v) for v, s in servers.items()]
    eps += [mesh.endpoint(SimpleNamespace(name="dead", port=free_port()), "echo", "dead"),
            mesh.endpoint(SimpleNamespace(name="hang", port=hang.getsockname()[1]), "echo", "hang")]
    channels: list[grpc.Channel] = []

    def push(mirror: str, percent: float = 100) -> None:
        rule = {"route": [to("v1", host="echo")], "mirror": {"host": "echo", "subset": mirror},
                "mirrorPercentage": {"value": percent}}
        mesh.push([grpc_svc("echo"), dr("echo", ["v1", "v2", "dead", "hang"]), vs("echo", ["echo"], [rule])], eps,
                  [sidecar(port)])

    def channel() -> grpc.Channel:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", "echo:9080"),
                                                                 ("grpc.enable_http_proxy", 0),
                                                                 ("grpc.enable_retries", 0)])
        channels.append(ch)
        return ch

    yield push, channel, servers
    for ch in channels:
        ch.close()
    for s in servers.values():
        s.server.stop(0)
    hang.close()


def test_every_unary_call_is_answered_by_v1_and_copied_to_v2(mesh, echo):
    push, channel, servers = echo
    push("v2")
    sent = counter(mesh, MIRRORED)
    say = channel().unary_unary("/demo.Echo/Say")
    for i in range(10):
        assert say(b"call-%d" % i, timeout=5, metadata=(("end-user", "jason"),)) == b"echo-v1:call-%d" % i
    wait_for(lambda: len(servers["v2"].calls) == 10)
    v1, v2 = servers["v1"], servers["v2"]
    assert v2.calls == ["Say"] * 10 and sorted(v2.bodies) == sorted(v1.bodies)
    # The copy is the routed request: same authority (no -shadow suffix, as current istiod), metadata, request id.
    assert set(v2.authorities) == {"echo:9080"}
    assert {m["end-user"] for m in v2.metadata} == {"jason"}
    assert {m["x-request-id"] for m in v2.metadata} == {m["x-request-id"] for m in v1.metadata[-10:]}
    wait_for(lambda: counter(mesh, MIRRORED) - sent == 10)


def test_streaming_calls_are_mirrored_once_the_client_ends_its_stream(mesh, echo):
    push, channel, servers = echo
    push("v2")
    ch = channel()
    assert list(ch.unary_stream("/demo.Echo/Count")(b"20", timeout=5)) == [b"echo-v1:%d" % i for i in range(20)]
    wait_for(lambda: "Count" in servers["v2"].calls)  # v2's 20 replies were read and dropped by the proxy
    msgs = [b"a", b"b" * 1000, b"c" * 20_000]
    assert list(ch.stream_stream("/demo.Echo/Chat")(iter(msgs), timeout=5)) == [b"echo-v1:" + m for m in msgs]
    wait_for(lambda: b"|".join(msgs) in servers["v2"].bodies)  # the whole stream, in one copy


def test_a_request_larger_than_the_buffer_limit_is_not_mirrored(mesh, echo):
    """Envoy keeps at most its buffer limit of a body for shadows; the HTTP/1.1 mirror's limit, 64 KiB, here."""
    push, channel, servers = echo
    push("v2")
    ch = channel()
    say, chat = ch.unary_unary("/demo.Echo/Say"), ch.stream_stream("/demo.Echo/Chat")
    big = b"x" * 100_000
    assert say(big, timeout=5) == b"echo-v1:" + big
    assert len(list(chat(iter([b"y" * 30_000] * 3), timeout=5))) == 3  # 90 KB over three messages
    assert say(b"small", timeout=5) == b"echo-v1:small"
    wait_for(lambda: b"small" in servers["v2"].bodies)
    time.sleep(0.2)
    assert servers["v2"].calls == ["Say"] and servers["v2"].bodies == [b"small"]


def test_a_mirror_that_refuses_or_never_answers_does_not_touch_the_call(mesh, echo, caplog):
    push, channel, servers = echo
    mark = mesh.log_mark()
    say = channel().unary_unary("/demo.Echo/Say")
    for subset in ("dead", "hang"):
        push(subset)
        failed = counter(mesh, FAILED)
        started = time.monotonic()
        reply, call = say.with_call(b"still", timeout=5)
        assert reply == b"echo-v1:still" and call.code() == grpc.StatusCode.OK
        assert [say(b"%d" % i, timeout=5) for i in range(10)] == [b"echo-v1:%d" % i for i in range(10)]
        assert time.monotonic() - started < 3
        if subset == "dead":
            wait_for(lambda f=failed: counter(mesh, FAILED) - f == 11)  # counted as failed mirrors, nothing more
    assert servers["v2"].calls == []
    assert mesh.proxy_errors(mark) == [] and not [r for r in caplog.records if r.levelname == "ERROR"]


def test_mirror_percentage_zero_copies_nothing(mesh, echo):
    push, channel, servers = echo
    push("v2", 0)
    say = channel().unary_unary("/demo.Echo/Say")
    for _ in range(5):
        assert say(b"z", timeout=5) == b"echo-v1:z"
    time.sleep(0.2)
    assert servers["v2"].calls == []
