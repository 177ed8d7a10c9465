"""A Gateway API GRPCRoute carrying real gRPC: grpcio servers per version (their own Services, as Istio's
bookinfo-versions.yaml does it) behind a sidecar (GAMMA: the route's parent is the Service) and behind a Gateway
listener, a grpcio client in front. Method matches, exact weights over 100 calls, header matches from metadata,
RequestMirror."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from ..helpers import free_port, sidecar
from .test_grpc import GrpcServer

G = "gateway.networking.k8s.io/v1"


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": selector, "ports": [{"port": 9080, "name": "grpc", "targetPort": 9080}]}}


def backend(name: str, weight: int | None = None) -> dict[str, Any]:
    return {"name": name, "port": 9080, **({"weight": weight} if weight is not None else {})}


@pytest.fixture
def echo(mesh):
    """echo-v1 / echo-v2 grpcio servers, Services echo, echo-v1, echo-v2; returns (push(routes, gateway_port),
    channel(port, authority), servers)."""
    servers = {v: GrpcServer(f"echo-{v}") for v in ("v1", "v2")}
    eps = [mesh.endpoint(s, "echo", v) for v, s in servers.items()]
    sc_port = free_port()
    channels: list[grpc.Channel] = []
    base = [service("echo", {"app": "echo"}), service("echo-v1", {"app": "echo", "version": "v1"}),
            service("echo-v2", {"app": "echo", "version": "v2"})]

    def push(resources: list[dict[str, Any]], gw_port: int | None = None) -> dict[str, Any]:
        from graylane.mesh.state import MeshOptions

        options = MeshOptions(gateway_port_map={80: gw_port}) if gw_port else None
        return mesh.push([*base, *resources], eps, [sidecar(sc_port)], options)

    def channel(port: int = sc_port, authority: str = "echo:9080") -> grpc.Channel:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.default_authority", authority),
                                                                 ("grpc.enable_http_proxy", 0),
                                                                 ("grpc.enable_retries", 0)])
        channels.append(ch)
        return ch

    yield push, channel, servers
    for ch in channels:
        ch.close()
    for s in servers.values():
        s.server.stop(0)


def grpc_route(rules: list[dict[str, Any]], parents: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": G, "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": "default"},
            "spec": {"parentRefs": parents, "rules": rules, **spec}}


MESH_PARENT = [{"group": "", "kind": "Service", "name": "echo", "port": 9080}]


def test_mesh_grpcroute_weights_are_exact_and_method_matches_route(mesh, echo):
    push, channel, _ = echo
    push([grpc_route([{"matches": [{"method": {"service": "demo.Echo", "method": "Count"}}],
                       "backendRefs": [backend("echo-v2")]},
                      {"backendRefs": [backend("echo-v1", 70), backend("echo-v2", 30)]}], MESH_PARENT)])
    ch = channel()
    say = ch.unary_unary("/demo.Echo/Say")
    replies = [say(b"x", timeout=5) for _ in range(100)]
    assert (replies.count(b"echo-v1:x"), replies.count(b"echo-v2:x")) == (70, 30)
    count = ch.unary_stream("/demo.Echo/Count")
    assert list(count(b"3", timeout=5)) == [b"echo-v2:0", b"echo-v2:1", b"echo-v2:2"]


def test_header_match_from_grpc_metadata_sends_a_tester_to_the_canary(mesh, echo):
    push, channel, _ = echo
    push([grpc_route([{"matches": [{"headers": [{"name": "end-user", "value": "jason"}]}],
                       "backendRefs": [backend("echo-v2")]},
                      {"backendRefs": [backend("echo-v1")]}], MESH_PARENT)])
    say = channel().unary_unary("/demo.Echo/Say")
    assert say(b"a", timeout=5) == b"echo-v1:a"
    assert say(b"b", timeout=5, metadata=(("end-user", "jason"),)) == b"echo-v2:b"


def test_grpcroute_on_a_gateway_listener(mesh, echo):
    push, channel, _ = echo
    gw_port = free_port()
    gateway = {"apiVersion": G, "kind": "Gateway", "metadata": {"name": "edge", "namespace": "default"},
               "spec": {"gatewayClassName": "istio",
                        "listeners": [{"name": "grpc", "port": 80, "protocol": "HTTP"}]}}
    push([gateway, grpc_route([{"matches": [{"method": {"service": "demo.Echo"}}],
                                       "backendRefs": [backend("echo-v2")]}],
                                     [{"name": "edge"}], hostnames=["grpc.example.com"])], gw_port)
    ch = channel(gw_port, "grpc.example.com")
    assert ch.unary_unary("/demo.Echo/Say")(b"edge", timeout=5) == b"echo-v2:edge"
    with pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/other.Svc/Call")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route: 404 NR, seen by gRPC as UNIMPLEMENTED


def test_request_mirror_copies_each_call_to_the_mirror_backend(mesh, echo):
    push, channel, servers = echo
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "echo-v2", "port": 9080}}}
    push([grpc_route([{"filters": [mirror], "backendRefs": [backend("echo-v1")]}], MESH_PARENT)])
    ch = channel()
    say = ch.unary_unary("/demo.Echo/Say")
    assert [say(b"m%d" % i, timeout=5) for i in range(5)] == [b"echo-v1:m%d" % i for i in range(5)]
    assert list(ch.unary_stream("/demo.Echo/Count")(b"3", timeout=5)) == [b"echo-v1:%d" % i for i in range(3)]
    deadline = time.monotonic() + 10
    while len(servers["v2"].calls) < 6:
        assert time.monotonic() < deadline, servers["v2"].calls
        time.sleep(0.02)
    assert sorted(servers["v2"].calls) == ["Count"] + ["Say"] * 5
    assert sorted(servers["v2"].bodies) == [b"m%d" % i for i in range(5)]
    assert set(servers["v2"].authorities) == {"echo:9080"}
