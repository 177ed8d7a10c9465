"""TCP from a pod through its sidecar: `CONNECT host:port` (what HTTP_PROXY clients send for raw TCP and https://)
becomes a tunnel routed by VirtualService `tcp` routes bound to mesh, else the whole Service, else (outside the
registry) the PassthroughCluster."""

from __future__ import annotations

import socket

from graylane.mesh.state import MeshOptions

from ..helpers import dr, free_port, proxy_workers, sidecar
from .l4support import EchoServer, echo_endpoint, service


def mesh_vs(weights=(80, 20)) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "tcp-echo", "namespace": "default"},
            "spec": {"hosts": ["tcp-echo"], "tcp": [{
                "match": [{"port": 9000}],
                "route": [{"destination": {"host": "tcp-echo", "subset": "v1"}, "weight": weights[0]},
                          {"destination": {"host": "tcp-echo", "subset": "v2"}, "weight": weights[1]}]}]}}


def tunnel(port: int, target: str, message: bytes = b"hello") -> tuple[bytes, bytes]:
    """(CONNECT response head, the echo's reply through the tunnel)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return head, b""
            head += chunk
        head, _, early = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return head, b""
        s.sendall(message + b"\n")
        data = early
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return head, data


def setup(mesh, resources):
    v1 = mesh.lt.run(EchoServer("one").start())
    v2 = mesh.lt.run(EchoServer("two").start())
    port = free_port()
    mesh.push([service("tcp-echo"), dr("tcp-echo", ["v1", "v2"]), *resources],
              [echo_endpoint(v1, "tcp-echo", "v1"), echo_endpoint(v2, "tcp-echo", "v2")],
              [sidecar(port)], MeshOptions())
    return port, v1, v2


def test_connect_through_the_sidecar_follows_the_mesh_tcp_route_80_20(mesh):
    port, v1, v2 = setup(mesh, [mesh_vs()])
    replies = [tunnel(port, "tcp-echo:9000", f"m{i}".encode()) for i in range(100)]
    assert all(head == b"HTTP/1.1 200 Connection established" for head, _ in replies)
    ones = sum(reply.startswith(b"one m") for _, reply in replies)
    assert ones + sum(reply.startswith(b"two m") for _, reply in replies) == 100
    assert abs(ones - 80) <= proxy_workers() - 1  # exact in one process
    assert replies[7][1].endswith(b" m7\n")


def test_without_a_tcp_route_the_whole_service_and_outside_the_registry_passthrough(mesh):
    port, v1, v2 = setup(mesh, [])
    head, reply = tunnel(port, "tcp-echo.default.svc.cluster.local:9000")
    assert head.startswith(b"HTTP/1.1 200") and reply[:4] in (b"one ", b"two ")
    outside = mesh.lt.run(EchoServer("outside").start())
    head, reply = tunnel(port, f"127.0.0.1:{outside.port}")  # ALLOW_ANY: where it says
    assert head.startswith(b"HTTP/1.1 200") and reply == b"outside hello\n"


def test_connect_that_cannot_be_served_is_answered_and_closed(mesh):
    port, v1, v2 = setup(mesh, [])
    head, _ = tunnel(port, f"127.0.0.1:{free_port()}")  # nothing listens there
    assert head.startswith(b"HTTP/1.1 503") and b"server: istio-envoy" in head
    head, _ = tunnel(port, "no-port-here")
    assert head.startswith(b"HTTP/1.1 404")
