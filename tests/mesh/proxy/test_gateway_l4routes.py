"""Gateway API TCPRoute and TLSRoute through the real proxy: Istio's TCP traffic shifting task written as a TCPRoute
(tcp-echo-v1/v2 at 80/20, exact over 100 connections), TLS passthrough routed by SNI to two TLS upstreams, and the
statuses of routes a listener refuses or whose backends cannot be used."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from typing import Any

import pytest

from graylane.mesh import gateway_api
from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import free_port, proxy_workers
from .l4support import CA, EchoServer, client_ssl, echo_endpoint, server_ssl, service, talk, tls_secret

ALPHA = "gateway.networking.k8s.io/v1alpha2"


def k8s_gateway(listeners: list[dict[str, Any]], name: str = "gw", ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns}, "spec": {"gatewayClassName": "istio", "listeners": listeners}}


def l4_route(kind: str, name: str, backends: list[dict[str, Any]], parents: list[dict[str, Any]] | None = None,
             ns: str = "default", api: str = ALPHA, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"parentRefs": parents or [{"name": "gw"}], "rules": [{"backendRefs": backends}], **spec}}


def status_of(snapshot: dict, kind: str, name: str) -> dict:
    [entry] = [s for s in snapshot[gateway_api.STATUS_KEY] if s["kind"] == kind and s["name"] == name]
    return entry["status"]


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def push(mesh, resources: list[dict], endpoints: list, ports: dict[int, int]) -> dict:
    snap = compile_snapshot(resources, endpoints, [], MeshOptions(gateway_port_map=ports), next(mesh.version),
                            isolate=True)
    mesh.put(snap)
    return snap


@pytest.fixture
def tcp_echo(mesh):
    """tcp-echo v1 and v2 (Services tcp-echo-v1 / tcp-echo-v2, port 9000) and gateway host ports for 31400 and 8443;
    returns (apply(resources) -> snapshot, host port of 31400, v1, v2)."""
    v1 = mesh.lt.run(EchoServer("one").start())
    v2 = mesh.lt.run(EchoServer("two").start())
    base = [service("tcp-echo-v1"), service("tcp-echo-v2")]
    eps = [echo_endpoint(v1, "tcp-echo-v1", "v1"), echo_endpoint(v2, "tcp-echo-v2", "v2")]
    ports = {31400: free_port(), 8443: free_port()}
    return (lambda resources: push(mesh, [*base, *resources], eps, ports)), ports[31400], v1, v2


TCP_LISTENER = {"name": "tcp-31400", "port": 31400, "protocol": "TCP",
                "allowedRoutes": {"kinds": [{"kind": "TCPRoute"}]}}


def test_tcproute_80_20_is_exact_over_100_connections(tcp_echo):
    apply, port, v1, v2 = tcp_echo
    snap = apply([k8s_gateway([TCP_LISTENER]),
                  l4_route("TCPRoute", "tcp-echo", [{"name": "tcp-echo-v1", "port": 9000, "weight": 80},
                                                    {"name": "tcp-echo-v2", "port": 9000, "weight": 20}],
                           parents=[{"name": "gw", "sectionName": "tcp-31400"}])])
    parent = status_of(snap, "TCPRoute", "tcp-echo")["parents"][0]
    assert conditions(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    listener = status_of(snap, "Gateway", "gw")["listeners"][0]
    assert listener["attachedRoutes"] == 1
    assert listener["supportedKinds"] == [{"group": gateway_api.GROUP, "kind": "TCPRoute"}]
    assert conditions(listener)["Programmed"][0] == "True"
    replies = [talk(port, f"hello {i}".encode()) for i in range(100)]
    off = proxy_workers() - 1  # exact per worker (docs/dataplane.md, Workers)
    assert abs(sum(r.startswith(b"one hello") for r in replies) - 80) <= off
    assert abs(sum(r.startswith(b"two hello") for r in replies) - 20) <= off
    assert v1.connections + v2.connections == 100
    # The canary moved to 100%: new connections all go to v2.
    apply([k8s_gateway([TCP_LISTENER]),
           l4_route("TCPRoute", "tcp-echo", [{"name": "tcp-echo-v1", "port": 9000, "weight": 0},
                                             {"name": "tcp-echo-v2", "port": 9000, "weight": 100}])])
    assert {talk(port, b"x")[:4] for _ in range(5)} == {b"two "}


def test_tcproute_backend_without_grant_is_refused_and_gets_its_share(tcp_echo, mesh):
    """A backendRef in another namespace without a ReferenceGrant: ResolvedRefs RefNotPermitted, and its share of the
    connections is refused (never sent to that Service); with the grant the route resolves."""
    apply, port, v1, v2 = tcp_echo
    other = mesh.lt.run(EchoServer("other").start())
    ns_svc = {**service("tcp-echo-v2"), "metadata": {"name": "tcp-echo-v2", "namespace": "prod"}}
    route = l4_route("TCPRoute", "tcp-echo", [{"name": "tcp-echo-v1", "port": 9000, "weight": 1},
                                              {"name": "tcp-echo-v2", "namespace": "prod", "port": 9000, "weight": 1}])
    eps = [echo_endpoint(v1, "tcp-echo-v1", "v1"),
           dataclasses.replace(echo_endpoint(other, "tcp-echo-v2", "v2"), namespace="prod")]
    ports = {31400: port, 8443: free_port()}
    snap = push(mesh, [service("tcp-echo-v1"), ns_svc, k8s_gateway([TCP_LISTENER]), route], eps, ports)
    parent = status_of(snap, "TCPRoute", "tcp-echo")["parents"][0]
    assert conditions(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}
    replies = [talk(port, b"hi") for _ in range(10)]
    off = proxy_workers() - 1
    assert abs(replies.count(b"one hi\n") - 5) <= off and replies.count(b"") == 10 - replies.count(b"one hi\n")
    assert other.connections == 0
    grant = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "tcp", "namespace": "prod"},
             "spec": {"from": [{"group": gateway_api.GROUP, "kind": "TCPRoute", "namespace": "default"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    snap = push(mesh, [service("tcp-echo-v1"), ns_svc, k8s_gateway([TCP_LISTENER]), route, grant], eps, ports)
    assert conditions(status_of(snap, "TCPRoute", "tcp-echo")["parents"][0])["ResolvedRefs"] == \
        ("True", "ResolvedRefs")
    replies = [talk(port, b"hi") for _ in range(10)]
    assert abs(replies.count(b"other hi\n") - 5) <= off and other.connections == len([r for r in replies
                                                                                       if r == b"other hi\n"])


def test_refused_routes_status(tcp_echo):
    """NotAllowedByListeners (kind, namespace), NoMatchingListenerHostname, BackendNotFound, a Service parent."""
    apply, port, _, _ = tcp_echo
    snap = apply([
        k8s_gateway([TCP_LISTENER, {"name": "tls", "port": 8443, "protocol": "TLS", "hostname": "*.example.com",
                                    "tls": {"mode": "Passthrough"}}]),
        l4_route("TLSRoute", "on-tcp", [{"name": "tcp-echo-v1", "port": 9000}],
                 parents=[{"name": "gw", "sectionName": "tcp-31400"}], hostnames=["a.example.com"]),
        l4_route("TLSRoute", "other-host", [{"name": "tcp-echo-v1", "port": 9000}],
                 parents=[{"name": "gw", "sectionName": "tls"}], hostnames=["a.example.org"]),
        l4_route("TCPRoute", "elsewhere", [{"name": "tcp-echo-v1", "port": 9000}], ns="team",
                 parents=[{"name": "gw", "namespace": "default"}]),
        l4_route("TCPRoute", "missing", [{"name": "nope", "port": 9000}]),
        l4_route("TCPRoute", "mesh", [{"name": "tcp-echo-v1", "port": 9000}],
                 parents=[{"group": "", "kind": "Service", "name": "tcp-echo-v1", "port": 9000}])])
    on_tcp = status_of(snap, "TLSRoute", "on-tcp")["parents"][0]
    assert conditions(on_tcp)["Accepted"] == ("False", "NotAllowedByListeners")
    assert "does not allow TLSRoutes" in on_tcp["conditions"][0]["message"]
    assert conditions(status_of(snap, "TLSRoute", "other-host")["parents"][0])["Accepted"] == \
        ("False", "NoMatchingListenerHostname")
    elsewhere = status_of(snap, "TCPRoute", "elsewhere")["parents"][0]
    assert conditions(elsewhere)["Accepted"] == ("False", "NotAllowedByListeners")
    assert "namespace team" in elsewhere["conditions"][0]["message"]
    assert conditions(status_of(snap, "TCPRoute", "missing")["parents"][0]) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}
    assert conditions(status_of(snap, "TCPRoute", "mesh")["parents"][0])["Accepted"] == ("False", "NoMatchingParent")
    # The accepted route with a missing backend takes the TCP listener: its connections are closed, not served.
    assert talk(port, b"hi") == b""
    listeners = {x["name"]: x for x in status_of(snap, "Gateway", "gw")["listeners"]}
    assert listeners["tcp-31400"]["attachedRoutes"] == 1
    assert listeners["tls"]["supportedKinds"] == [{"group": gateway_api.GROUP, "kind": "TLSRoute"}]
    assert listeners["tls"]["attachedRoutes"] == 0


def test_listener_listing_a_kind_it_cannot_serve_has_invalid_route_kinds(tcp_echo):
    apply, *_ = tcp_echo
    snap = apply([k8s_gateway([{**TCP_LISTENER, "allowedRoutes": {"kinds": [{"kind": "TCPRoute"},
                                                                           {"kind": "HTTPRoute"}]}}])])
    listener = status_of(snap, "Gateway", "gw")["listeners"][0]
    assert conditions(listener)["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    assert listener["supportedKinds"] == [{"group": gateway_api.GROUP, "kind": "TCPRoute"}]


# --------------------------------------------------------------------------------------------- TLSRoute


@pytest.fixture(scope="module")
def ca():
    return CA()


def test_tlsroute_passthrough_routes_by_sni_to_two_backends(mesh, ca, tmp_path):
    alpha_ctx = server_ssl(*ca.issue("alpha.example.com"), tmp_path, "a")
    alpha_sni: list[str | None] = []
    alpha_ctx.sni_callback = lambda _sock, name, _ctx: alpha_sni.append(name)  # type: ignore[assignment,func-returns-value]
    alpha = mesh.lt.run(EchoServer("alpha").start(alpha_ctx))
    beta = mesh.lt.run(EchoServer("beta").start(server_ssl(*ca.issue("beta.example.com", "x.wild.example.com"),
                                                           tmp_path, "b")))
    port = free_port()
    listener = {"name": "tls", "port": 443, "protocol": "TLS", "hostname": "*.example.com",
                "tls": {"mode": "Passthrough"}, "allowedRoutes": {"namespaces": {"from": "All"}}}
    snap = push(mesh, [
        service("alpha", 9443, "tls"), service("beta", 9443, "tls"), k8s_gateway([listener]),
        l4_route("TLSRoute", "a-wild", [{"name": "beta", "port": 9443}], hostnames=["*.example.com"],
                 api="gateway.networking.k8s.io/v1alpha3"),
        l4_route("TLSRoute", "alpha", [{"name": "alpha", "port": 9443}], hostnames=["alpha.example.com"])],
        [echo_endpoint(alpha, "alpha", "v1", 9443), echo_endpoint(beta, "beta", "v1", 9443)], {443: port})
    for name in ("alpha", "a-wild"):
        assert conditions(status_of(snap, "TLSRoute", name)["parents"][0])["Accepted"] == ("True", "Accepted")
    # The exact hostname wins over the wildcard though the wildcard route comes first (same age: by name).
    for sni, who in (("alpha.example.com", "alpha"), ("beta.example.com", "beta"), ("x.wild.example.com", "beta"),
                     ("alpha.example.com", "alpha")):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with client_ssl(ca).wrap_socket(raw, server_hostname=sni) as s:  # the upstream's own certificate
            assert s.getpeercert()["subjectAltName"][0] == ("DNS", "alpha.example.com" if who == "alpha" else
                                                            "beta.example.com")
            s.sendall(b"ping\n")
            assert s.recv(100) == f"{who} ping\n".encode()
    assert (alpha.connections, beta.connections) == (2, 2)
    assert alpha_sni == ["alpha.example.com"] * 2  # the ClientHello reached the upstream untouched
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):  # outside the listener's hostname: closed
        client_ssl(ca).wrap_socket(raw, server_hostname="other.org")
    raw.close()


def test_tls_terminated_listener_takes_a_tcproute(tcp_echo, ca, tmp_path):
    """A TLS listener in Terminate mode (certificateRefs) decrypts and proxies the bytes as TCP to a TCPRoute's
    backends; a TLSRoute is not allowed there."""
    apply, _, v1, _ = tcp_echo
    cert, key = ca.issue("echo.example.com")
    secret = tls_secret("echo-cert", cert, key)
    listener = {"name": "tls", "port": 8443, "protocol": "TLS", "hostname": "echo.example.com",
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "echo-cert"}]}}
    snap = apply([secret, k8s_gateway([listener]),
                  l4_route("TCPRoute", "echo", [{"name": "tcp-echo-v1", "port": 9000}]),
                  l4_route("TLSRoute", "sni", [{"name": "tcp-echo-v1", "port": 9000}], hostnames=["echo.example.com"])])
    assert conditions(status_of(snap, "TCPRoute", "echo")["parents"][0])["Accepted"] == ("True", "Accepted")
    assert conditions(status_of(snap, "TLSRoute", "sni")["parents"][0])["Accepted"] == \
        ("False", "NotAllowedByListeners")
    port = next(x["port"] for x in snap["listeners"] if x.get("server_port") == 8443)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with client_ssl(ca).wrap_socket(raw, server_hostname="echo.example.com") as s:
        assert s.getpeercert()["subjectAltName"] == (("DNS", "echo.example.com"),)  # the listener's certificate
        s.sendall(b"secret\n")
        assert s.recv(100) == b"one secret\n"
    assert v1.connections == 1 and v1.sni == []  # the upstream got plain TCP


def test_a_second_protocol_on_a_port_is_conflicted(tcp_echo):
    apply, port, *_ = tcp_echo
    snap = apply([k8s_gateway([TCP_LISTENER, {"name": "http", "port": 31400, "protocol": "HTTP"}]),
                  l4_route("TCPRoute", "echo", [{"name": "tcp-echo-v1", "port": 9000}])])
    listeners = {x["name"]: x for x in status_of(snap, "Gateway", "gw")["listeners"]}
    assert conditions(listeners["http"])["Conflicted"] == ("True", "ProtocolConflict")
    assert conditions(listeners["http"])["Accepted"] == ("False", "ProtocolConflict")
    assert conditions(listeners["tcp-31400"])["Conflicted"] == ("False", "NoConflicts")
    assert talk(port, b"still tcp") == b"one still tcp\n"
