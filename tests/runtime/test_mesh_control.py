"""Mesh control pushes compiled snapshots on every change, tracks ACK/NACK, and re-pushes after a restart.

The data plane here is a minimal admin endpoint speaking the contract (`PUT /config` of a whole document or a delta
against the served version -> 2xx ACK or 4xx NACK, `GET /ready` with the served version); the real proxy is
exercised in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from graylane.errors import GraylaneError
from graylane.mesh.control import DATAPLANE_FILE, MeshControl, gateway_urls, load_compiler, read_options, save_options
from graylane.mesh.snapshot_delta import DeltaError, apply_delta, is_delta
from graylane.mesh.state import MeshOptions
from graylane.runtime.reconciler import Runtime
from graylane.store import Store

from .conftest import deployment, eventually

pytestmark = pytest.mark.asyncio


class AdminServer:
    def __init__(self) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.nack: str | None = None
        self.version: int = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if outer.nack:  # the real proxy's NACK (mesh/proxy/admin.py): the version and the reason
                    self._send(400, {"nack": int(body["version"]), "reason": outer.nack})
                    return
                if is_delta(body):  # an incremental push: applied to the document served, as the proxy does
                    try:
                        body = apply_delta(outer.snapshots[-1] if outer.version else {}, body)
                    except DeltaError as exc:
                        self._send(400, {"nack": int(body["version"]), "reason": str(exc)})
                        return
                outer.snapshots.append(body)
                outer.version = int(body["version"])
                self._send(200, {"ack": outer.version})

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"version": outer.version})

            def _send(self, code: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forget(self) -> None:
        """What a restarted data plane looks like: no snapshot."""
        self.version = 0


@pytest.fixture
def admin(state_dir: Path) -> Iterator[AdminServer]:
    srv = AdminServer()
    (state_dir / DATAPLANE_FILE).write_text(json.dumps({"admin_port": srv.port, "pid": 1}))
    yield srv
    srv.server.shutdown()


@pytest.fixture
def store(state_dir: Path) -> Iterator[Store]:
    s = Store.open()
    yield s
    s.close()


@pytest_asyncio.fixture
async def mesh(store: Store, state_dir: Path, admin: AdminServer) -> Any:
    rt = Runtime(store, state_dir, tick_s=0.05)
    await rt.start()
    mc = MeshControl(store, rt, state_dir, compiler=load_compiler(), resync_s=0.1)
    await mc.start()
    yield mc, rt
    await mc.stop()
    await rt.shutdown_workloads()


VS = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": {"name": "echo"},
      "spec": {"hosts": ["echo"], "http": [{"route": [{"destination": {"host": "echo"}}]}]}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
       "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 9080}]}}


async def test_store_change_is_pushed_and_acked(store: Store, mesh: Any, admin: AdminServer) -> None:
    mc, _ = mesh
    store.apply([SVC, VS], actor="user:test")
    seconds = await mc.wait_acked(store.revision(), timeout=10)
    assert seconds >= 0
    last = admin.snapshots[-1]
    assert last["version"] == mc.status.acked_version
    assert "echo.default.svc.cluster.local" in json.dumps(last)


async def test_ready_replicas_become_endpoints_in_the_snapshot(store: Store, mesh: Any, admin: AdminServer) -> None:
    mc, rt = mesh
    store.apply([SVC, deployment(replicas=2)], actor="user:test")
    from graylane.resources.document import ResourceKey

    await rt.wait_ready([ResourceKey("apps", "Deployment", "default", "echo")], timeout=20)
    ports = sorted(p["port"] for p in rt.pods())

    def endpoint_ports() -> list[int]:
        cluster = admin.snapshots[-1]["clusters"].get("outbound|9080||echo.default.svc.cluster.local", {})
        return sorted(e["port"] for e in cluster.get("endpoints", []) if e.get("ready"))

    await eventually(lambda: endpoint_ports() == ports, what="endpoints pushed")
    sidecar_ports = {p["sidecarPort"] for p in rt.pods()}
    assert sidecar_ports <= {lst["port"] for lst in admin.snapshots[-1]["listeners"]}


async def test_nack_keeps_waiting_and_names_the_reason(store: Store, mesh: Any, admin: AdminServer) -> None:
    mc, _ = mesh
    store.apply([SVC], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    acked = mc.status.acked_version
    admin.nack = "listener 0.0.0.0:8080: address in use"
    store.apply([VS], actor="user:test")
    with pytest.raises(GraylaneError, match="address in use"):
        await mc.wait_acked(store.revision(), timeout=1)
    assert mc.status.acked_version == acked
    admin.nack = None
    store.apply([{**VS, "spec": {**VS["spec"], "http": [{"route": [{"destination": {"host": "echo"}}],
                                                          "timeout": "3s"}]}}], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)


async def test_restarted_data_plane_gets_the_snapshot_again(store: Store, mesh: Any, admin: AdminServer) -> None:
    mc, _ = mesh
    store.apply([SVC, VS], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    pushes = len(admin.snapshots)
    admin.forget()
    await eventually(lambda: len(admin.snapshots) > pushes and admin.version == mc.status.acked_version,
                     what="re-push after data plane restart")


async def test_gateway_urls_follow_the_port_map(state_dir: Path) -> None:
    save_options(state_dir, MeshOptions(gateway_bind="0.0.0.0", gateway_port_map={80: 18080}))
    options = read_options(state_dir)
    gw = {"kind": "Gateway", "metadata": {"name": "bookinfo-gateway", "namespace": "default"},
          "spec": {"servers": [{"port": {"number": 80, "protocol": "HTTP"}, "hosts": ["*"]},
                               {"port": {"number": 9443, "protocol": "HTTPS"}, "hosts": ["*"]}]}}
    urls = [u["url"] for u in gateway_urls([gw], options)]
    assert urls == ["http://127.0.0.1:18080/", "https://127.0.0.1:9443/"]
    await asyncio.sleep(0)


async def test_convergence_metrics_count_acks_and_nacks(store: Store, mesh: Any, admin: AdminServer) -> None:
    mc, _ = mesh
    store.apply([SVC], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    admin.nack = "bad snapshot"
    store.apply([VS], actor="user:test")
    await eventually(lambda: mc.status.last is not None and mc.status.last.nack, what="NACK")
    families = {f.name: f for f in mc.collect_metrics()}
    pushes = {s.labels["type"]: s.value for s in families["pilot_xds_pushes"].samples}
    assert pushes["ack"] >= 1 and pushes["nack"] >= 1
    inf = next(s for s in families["pilot_proxy_convergence_time"].samples
               if s.name.endswith("_bucket") and s.labels["le"] == "+Inf")
    assert inf.value == pushes["ack"]


async def test_new_gateway_options_are_pushed_without_a_resource_change(store: Store, mesh: Any, admin: AdminServer,
                                                                       state_dir: Path) -> None:
    mc, _ = mesh
    gw = {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway", "metadata": {"name": "gw"},
          "spec": {"selector": {"istio": "ingressgateway"},
                   "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
    store.apply([SVC, gw], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    save_options(state_dir, MeshOptions(gateway_port_map={80: 18181}))

    def gateway_ports() -> set[int]:
        return {lst["port"] for lst in admin.snapshots[-1]["listeners"] if lst.get("kind") == "gateway"}

    await eventually(lambda: gateway_ports() == {18181}, what="gateway listener moved to 18181")
