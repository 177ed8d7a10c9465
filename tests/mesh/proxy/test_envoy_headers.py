"""Headers Envoy puts on responses, through a gateway and a sidecar: `server: istio-envoy` (replacing the
upstream's own) and `x-envoy-upstream-service-time` on proxied responses."""

from __future__ import annotations

import asyncio

import httpx

from graylane.mesh.state import MeshOptions

from ..helpers import free_port, sidecar, svc, vs


class ServerHeaderUpstream(asyncio.Protocol):
    """Answers every request with its own `server` and a stale `x-envoy-upstream-service-time`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.transport.write(b"HTTP/1.1 200 OK\r\nserver: Werkzeug/3.0 Python/3.11\r\n"
                                 b"x-envoy-upstream-service-time: 999999\r\ncontent-length: 2\r\n\r\nok")


def test_gateway_and_sidecar_responses_carry_istio_envoy_server_and_upstream_service_time(mesh):
    async def start() -> int:
        srv = await asyncio.get_running_loop().create_server(ServerHeaderUpstream, "127.0.0.1", 0)
        return srv.sockets[0].getsockname()[1]

    up_port = mesh.lt.run(start())
    up = type("Up", (), {"name": "werkzeug", "port": up_port})()
    gw_port, sc_port = free_port(), free_port()
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
    mesh.push([svc("productpage"), gateway,
               vs("edge", ["*"], [{"match": [{"uri": {"prefix": "/p"}}],
                                   "route": [{"destination": {"host": "productpage"}}]}], gateways=["gw"])],
              [mesh.endpoint(up, "productpage", "v1")], [sidecar(sc_port, app="curl")],
              MeshOptions(gateway_port_map={80: gw_port}))
    with httpx.Client(base_url=f"http://127.0.0.1:{gw_port}") as c:
        via_gateway = c.get("/productpage")
        missing = c.get("/nothing-routes-here")
    with httpx.Client(proxy=f"http://127.0.0.1:{sc_port}") as c:
        via_sidecar = c.get("http://productpage:9080/productpage")
    for r in (via_gateway, via_sidecar):
        assert r.status_code == 200 and r.text == "ok"
        assert r.headers.get_list("server") == ["istio-envoy"]
        service_time = r.headers.get_list("x-envoy-upstream-service-time")
        assert len(service_time) == 1 and service_time[0].isdigit() and int(service_time[0]) < 999999
    # A local reply (404 NR) is Envoy's own: its server header, no upstream time.
    assert missing.status_code == 404 and missing.headers.get_list("server") == ["istio-envoy"]
    assert "x-envoy-upstream-service-time" not in missing.headers
