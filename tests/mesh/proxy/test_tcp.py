"""TCP through the real proxy: Istio's TCP traffic shifting task (tcp-echo v1/v2 at 80/20) on a gateway TCP server,
connection limits, and the istio_tcp_* metrics."""

from __future__ import annotations

import socket
import time

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import dr, free_port, proxy_workers
from .l4support import EchoServer, echo_endpoint, gateway, service, talk


def tcp_vs(weights: tuple[int, int] = (80, 20), port: int = 31400) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "tcp-echo", "namespace": "default"},
            "spec": {"hosts": ["*"], "gateways": ["tcp-echo-gateway"], "tcp": [{
                "match": [{"port": port}],
                "route": [{"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v1"},
                           "weight": weights[0]},
                          {"destination": {"host": "tcp-echo", "port": {"number": 9000}, "subset": "v2"},
                           "weight": weights[1]}]}]}}


TCP_GATEWAY = gateway("tcp-echo-gateway", [{"port": {"number": 31400, "name": "tcp", "protocol": "TCP"},
                                            "hosts": ["*"]}])


def setup(mesh, weights=(80, 20), policy=None):
    v1 = mesh.lt.run(EchoServer("one").start())
    v2 = mesh.lt.run(EchoServer("two").start())
    port = free_port()
    mesh.push([service("tcp-echo"), dr("tcp-echo", ["v1", "v2"], policy=policy), TCP_GATEWAY, tcp_vs(weights)],
              [echo_endpoint(v1, "tcp-echo", "v1"), echo_endpoint(v2, "tcp-echo", "v2")], [],
              MeshOptions(gateway_port_map={31400: port}))
    return port, v1, v2


def tcp_series(mesh, name: str, **labels: str) -> float:
    total = 0.0
    for line in mesh.get("/stats/prometheus").text.splitlines():
        if not line.startswith(name + "{"):
            continue
        body, value = line[len(name) + 1:].rsplit("} ", 1)
        pairs = {k: v.strip('"') for k, v in (p.split("=", 1) for p in body.split('",') if "=" in p)}
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_tcp_traffic_shifting_80_20_is_exact_over_100_connections(mesh):
    port, v1, v2 = setup(mesh)
    replies = [talk(port, f"hello {i}".encode()) for i in range(100)]
    # Exact with one worker; with N, each worker is exact over its own connections: at most one off per worker
    # (docs/dataplane.md, Workers).
    off = proxy_workers() - 1
    assert abs(sum(r.startswith(b"one hello") for r in replies) - 80) <= off
    assert abs(sum(r.startswith(b"two hello") for r in replies) - 20) <= off
    assert replies[0] in (b"one hello 0\n", b"two hello 0\n")
    assert abs(v1.connections - 80) <= off and v1.connections + v2.connections == 100


def test_tcp_route_change_shifts_new_connections(mesh):
    port, v1, v2 = setup(mesh, (100, 0))
    assert {talk(port)[:4] for _ in range(5)} == {b"one "}
    mesh.push([service("tcp-echo"), dr("tcp-echo", ["v1", "v2"]), TCP_GATEWAY, tcp_vs((0, 100))],
              [echo_endpoint(v1, "tcp-echo", "v1"), echo_endpoint(v2, "tcp-echo", "v2")], [],
              MeshOptions(gateway_port_map={31400: port}))
    assert {talk(port)[:4] for _ in range(5)} == {b"two "}


def test_tcp_metrics_with_istio_labels(mesh):
    port, v1, v2 = setup(mesh)
    src = {"reporter": "source", "source_workload": "istio-ingressgateway", "request_protocol": "tcp",
           "destination_service": "tcp-echo.default.svc.cluster.local", "destination_service_name": "tcp-echo",
           "destination_app": "tcp-echo"}
    dst = {**src, "reporter": "destination", "connection_security_policy": "none"}
    names = ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
             "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")
    before = {(n, v, r): tcp_series(mesh, n, **labels, **({"destination_version": v} if v else {}))
              for n in names for v in ("", "v1", "v2") for r, labels in (("s", src), ("d", dst))}

    def delta(name: str, version: str = "", reporter: str = "s") -> float:
        labels = {**(src if reporter == "s" else dst), **({"destination_version": version} if version else {})}
        return tcp_series(mesh, name, **labels) - before[(name, version, reporter)]

    message = b"x" * 99  # 100 bytes with the newline; each reply is "one " or "two " + those 100
    for _ in range(10):
        talk(port, message)
    wait_for(lambda: delta("istio_tcp_connections_closed_total") == 10)
    assert delta("istio_tcp_connections_opened_total") == 10
    off = proxy_workers() - 1  # the split is exact per worker (docs/dataplane.md, Workers)
    assert abs(delta("istio_tcp_connections_opened_total", "v1") - 8) <= off
    assert abs(delta("istio_tcp_connections_opened_total", "v2") - 2) <= off
    assert delta("istio_tcp_received_bytes_total") == 10 * 100
    assert delta("istio_tcp_sent_bytes_total") == 10 * 104
    assert delta("istio_tcp_received_bytes_total", reporter="d") == 10 * 100
    assert delta("istio_tcp_connections_closed_total", reporter="d") == 10
    text = mesh.get("/stats/prometheus").text
    assert "# TYPE istio_tcp_sent_bytes_total counter" in text
    tcp_line = next(line for line in text.splitlines() if line.startswith("istio_tcp_sent_bytes_total{"))
    assert "response_code" not in tcp_line and 'response_flags="-"' in tcp_line


def test_tcp_max_connections_overflow_closes_and_is_counted(mesh):
    port, v1, v2 = setup(mesh, (100, 0), policy={"connectionPool": {"tcp": {"maxConnections": 2}}})
    uo = tcp_series(mesh, "istio_tcp_connections_opened_total", response_flags="UO")
    closed = tcp_series(mesh, "istio_tcp_connections_closed_total", reporter="source", response_flags="-")
    # The limit holds per worker (docs/dataplane.md, Workers): with one, the third connection overflows; with N,
    # one does among the first 2N + 1, once some worker holds 2.
    workers = proxy_workers()
    held: list[socket.socket] = []
    try:
        for _ in range(2 * workers + 1):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"hold\n")
            if (reply := s.recv(100)) == b"":  # closed by the proxy: upstream overflow
                s.close()
                break
            assert reply == b"one hold\n"  # connected through to v1
            held.append(s)
        assert 2 <= len(held) <= 2 * workers  # one worker: exactly 2 held, the third overflowed
        wait_for(lambda: tcp_series(mesh, "istio_tcp_connections_opened_total", response_flags="UO") == uo + 1)
    finally:
        for s in held:
            s.close()
    wait_for(lambda: tcp_series(mesh, "istio_tcp_connections_closed_total", reporter="source",
                                response_flags="-") == closed + len(held))
    assert talk(port) == b"one hello\n"  # the limit frees as connections close


def test_tcp_without_route_or_endpoint_closes(mesh):
    port = free_port()
    uh = tcp_series(mesh, "istio_tcp_connections_opened_total", response_flags="UH")
    mesh.push([service("tcp-echo"), dr("tcp-echo", ["v1", "v2"]), TCP_GATEWAY, tcp_vs((100, 0))], [], [],
              MeshOptions(gateway_port_map={31400: port}))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello\n")
        assert s.recv(100) == b""
    wait_for(lambda: tcp_series(mesh, "istio_tcp_connections_opened_total", response_flags="UH") == uh + 1)


def test_a_tcp_server_compiles_to_a_tcp_listener_and_its_route():
    snap = compile_snapshot([service("tcp-echo"), dr("tcp-echo", ["v1", "v2"]), TCP_GATEWAY, tcp_vs()], [], [],
                            MeshOptions(gateway_port_map={31400: 41400}), 1)
    listener = next(lst for lst in snap["listeners"] if lst["port"] == 41400)
    assert listener["protocol"] == "tcp" and listener["server_port"] == 31400
    assert listener["gateways"] == ["default/tcp-echo-gateway"]
    [route] = snap["l4_routes"]
    assert [d["weight"] for d in route["route"]] == [80, 20]
    assert not any("not served" in w for w in snap["warnings"])
