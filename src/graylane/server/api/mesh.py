"""HTTP API of the local runtime and mesh control: pods, Deployment status, endpoints, ACKs, gateways."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Query, Request

from graylane.errors import GraylaneError, NotFound
from graylane.mesh.control import gateway_urls, read_options

router = APIRouter(tags=["mesh"])


def _runtime(request: Request) -> Any:
    rt = request.app.state.cp.component("runtime")
    if rt is None:
        raise GraylaneError("the local runtime is not running in this control plane",
                            hint="start it with `graylane up`")
    return rt


def _mesh(request: Request) -> Any:
    mesh = request.app.state.cp.component("mesh")
    if mesh is None:
        raise GraylaneError("mesh control is not running in this control plane", hint="start it with `graylane up`")
    return mesh


@router.get("/pods")
def list_pods(request: Request, namespace: str | None = None) -> dict[str, Any]:
    """Every replica process, as `kubectl get pods` would show it."""
    return {"items": _runtime(request).pods(namespace)}


@router.get("/namespaces/{namespace}/pods")
def list_namespaced_pods(request: Request, namespace: str) -> dict[str, Any]:
    return {"items": _runtime(request).pods(namespace)}


@router.get("/deployments/status")
def deployment_statuses(request: Request, namespace: str | None = None) -> dict[str, Any]:
    """Kubernetes-shaped `status` of every Deployment the runtime runs."""
    return {"items": _runtime(request).deployments(namespace)}


@router.get("/namespaces/{namespace}/deployments/{name}/status")
def deployment_status(request: Request, namespace: str, name: str) -> dict[str, Any]:
    """One Deployment's `status`, with `spec_replicas` (what `rollout status` compares the replicas with)."""
    item: dict[str, Any] | None = _runtime(request).deployment(namespace, name)
    if item is None:
        raise NotFound(f"Deployment {namespace}/{name} not found", hint="graylane get deploy -A")
    return item


@router.post("/runtime/shutdown")
async def shutdown_workloads(request: Request) -> dict[str, Any]:
    """Stop every replica (SIGTERM, grace, SIGKILL); used by `graylane down`."""
    stopped = await _runtime(request).shutdown_workloads()
    return {"stopped": stopped}


@router.get("/mesh/status")
def mesh_status(request: Request) -> dict[str, Any]:
    mesh = _mesh(request)
    rt = request.app.state.cp.component("runtime")
    out = mesh.describe()
    out["endpoints"] = len(rt.endpoints()) if rt else 0
    out["sidecars"] = len(rt.sidecars()) if rt else 0
    return out


@router.get("/mesh/endpoints")
def mesh_endpoints(request: Request, namespace: str | None = None) -> dict[str, Any]:
    rt = _runtime(request)
    return {"items": [dataclasses.asdict(e) for e in rt.endpoints() if not namespace or e.namespace == namespace],
            "sidecars": [dataclasses.asdict(s) for s in rt.sidecars() if not namespace or s.namespace == namespace]}


@router.get("/mesh/ack")
async def mesh_ack(request: Request, revision: int = Query(..., ge=0),
                   timeout: float = Query(30.0, gt=0, le=600)) -> dict[str, Any]:
    """Wait until the data plane ACKed a snapshot holding store `revision` (`graylane apply --wait`)."""
    mesh = _mesh(request)
    seconds = await request.app.state.drain.unless_draining(mesh.wait_acked(revision, timeout))
    return {"revision": revision, "acked": True, "seconds": round(seconds, 6),
            "version": mesh.status.acked_version, "ackedRevision": mesh.status.acked_revision}


@router.get("/mesh/gateways")
def mesh_gateways(request: Request, namespace: str | None = None) -> dict[str, Any]:
    """Where each Gateway server listens on this host (`graylane get gw` URLs)."""
    store = request.app.state.cp.store
    mesh = request.app.state.cp.component("mesh")
    options = mesh.options() if mesh is not None else read_options_default()
    bodies = [item.body for item in store.list(kind="Gateway", namespace=namespace)]
    return {"items": gateway_urls(bodies, options)}


def read_options_default() -> Any:
    from graylane.settings import state_dir

    return read_options(state_dir())
