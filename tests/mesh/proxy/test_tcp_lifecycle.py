"""A TCP connection's life through the real proxy: half-close, a large transfer both ways, the idle timeout."""

from __future__ import annotations

import socket
import time

from graylane.mesh.state import MeshOptions

from ..helpers import dr, free_port, running_mesh
from .l4support import EchoServer, echo_endpoint, gateway, service

GATEWAY = gateway("tcp-gateway", [{"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}])
ROUTE = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "tcp-echo", "namespace": "default"},
         "spec": {"hosts": ["*"], "gateways": ["tcp-gateway"],
                  "tcp": [{"route": [{"destination": {"host": "tcp-echo", "port": {"number": 9000}}}]}]}}


def setup(mesh, policy=None):
    echo = mesh.lt.run(EchoServer("one").start())
    port = free_port()
    mesh.push([service("tcp-echo"), dr("tcp-echo", ["v1"], policy=policy), GATEWAY, ROUTE],
              [echo_endpoint(echo, "tcp-echo", "v1")], [], MeshOptions(gateway_port_map={31400: port}))
    return port, echo


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_half_close_still_delivers_the_answer(mesh):
    port, _ = setup(mesh)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"last words\n")
        s.shutdown(socket.SHUT_WR)  # FIN: the upstream answers, then the connection ends
        assert read_all(s) == b"one last words\n"


def test_a_megabyte_each_way_arrives_whole(mesh):
    port, echo = setup(mesh)
    lines = [b"%06d" % i + b"x" * 57 for i in range(16_000)]  # 64 bytes a line, ~1 MiB
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"\n".join(lines) + b"\n")
        s.shutdown(socket.SHUT_WR)
        got = read_all(s)
    assert got == b"".join(b"one " + line + b"\n" for line in lines)


def test_idle_connection_is_closed_after_the_pools_idle_timeout(mesh):
    port, _ = setup(mesh, policy={"connectionPool": {"tcp": {"idleTimeout": "0.3s"}}})
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hi\n")
        assert s.recv(100) == b"one hi\n"
        started = time.monotonic()
        assert s.recv(100) == b""  # closed by the proxy, not by us or the upstream
        assert 0.25 <= time.monotonic() - started < 3


def test_closing_the_data_plane_ends_its_tcp_connections():
    """A TCP tunnel has no request to finish: when the data plane closes (a restart, `graylane down`), its
    clients see the connection end rather than hang on a proxy that no longer serves it."""
    with running_mesh(idle_timeout_s=2.0, header_timeout_s=1.0) as own:
        port, _ = setup(own)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"hi\n")
        assert s.recv(100) == b"one hi\n"
    try:
        assert s.recv(100) == b""  # closed by the proxy's close, not by a timeout
    finally:
        s.close()
