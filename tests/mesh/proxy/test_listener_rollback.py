"""A NACKed snapshot leaves every listener as it was: a port whose protocol the refused snapshot would have changed
(closed to be bound anew) listens again with its old protocol, so a rejected change never takes a port down."""

from __future__ import annotations

import socket

import httpx

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import free_port, svc, vs
from .l4support import gateway


def test_a_refused_protocol_change_keeps_the_port_serving_http(mesh):
    up = mesh.upstream("productpage-v1")
    port = free_port()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        def snapshot(servers, version, routes):
            return compile_snapshot(
                [svc("productpage"), gateway("gw", servers),
                 vs("edge", ["*"], routes, gateways=["gw"]) if routes else
                 {**vs("edge", ["*"], [], gateways=["gw"]),
                  "spec": {"hosts": ["*"], "gateways": ["gw"],
                           "tcp": [{"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}}],
                [mesh.endpoint(up, "productpage")], [],
                MeshOptions(gateway_port_map={80: port, 8081: busy.getsockname()[1]}), version)
        http = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
        mesh.put(snapshot([http], 2000, [{"route": [{"destination": {"host": "productpage"}}]}]))
        assert httpx.get(f"http://127.0.0.1:{port}/productpage", timeout=5).json()["name"] == "productpage-v1"

        tcp = {"port": {"number": 80, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}
        on_busy = {"port": {"number": 8081, "name": "tcp-busy", "protocol": "TCP"}, "hosts": ["*"]}
        refused = httpx.put(f"{mesh.admin}/config", json=snapshot([tcp, on_busy], 2001, None), timeout=10)
        assert refused.status_code == 400 and "cannot bind" in refused.json()["reason"]
        assert "no longer listening" not in refused.json()["reason"]
        # still the HTTP listener of the served snapshot, on the same port
        assert httpx.get(f"http://127.0.0.1:{port}/productpage", timeout=5).json()["name"] == "productpage-v1"
        assert mesh.get("/ready").json()["version"] == 2000
    finally:
        busy.close()
