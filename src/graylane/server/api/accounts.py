"""HTTP API for accounts: list/add/remove, connectivity checks, and a Kubernetes account's Istio traffic."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from graylane.targets import accounts as store

router = APIRouter(tags=["accounts"])


class AccountIn(BaseModel):
    name: str
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    prometheus: str | None = None
    forceConflicts: bool = Field(default=False)
    replace: bool = False


@router.get("/accounts")
def list_accounts() -> dict[str, Any]:
    return {"items": [a.public() for a in store.list_accounts()]}


@router.get("/accounts/{name}")
def get_account(name: str) -> dict[str, Any]:
    return store.get_account(name).public()


@router.post("/accounts", status_code=201)
def add_account(body: AccountIn) -> dict[str, Any]:
    acc = store.add_account(body.name, kubeconfig=body.kubeconfig, context=body.context, namespace=body.namespace,
                            prometheus=body.prometheus, force_conflicts=body.forceConflicts, replace=body.replace)
    return acc.public()


@router.delete("/accounts/{name}")
def remove_account(name: str) -> dict[str, Any]:
    return store.remove_account(name).public()


@router.get("/accounts/{name}/check")
async def check_account(name: str) -> dict[str, Any]:
    acc = store.get_account(name)
    if acc.type == "local":
        return {"server": "local mesh", "version": "-", "istio": True}
    target = store.kubernetes_target(acc)
    try:
        info = await target.check()
    finally:
        await target.close()
    if acc.prometheus:
        from graylane.promql import PrometheusClient

        info["prometheus"] = await PrometheusClient(acc.prometheus, account=acc.name).ready()
    return info


@router.get("/accounts/{name}/traffic")
async def account_traffic(name: str, request: Request, namespace: str | None = None, window: str = "1m",
                          reporter: str = "destination") -> dict[str, Any]:
    """Istio request counters over `window` from the account's Prometheus (labels per istio.md §3.2)."""
    target = store.get_target(name, getattr(request.app.state, "cp", None))
    samples = await target.traffic(namespace, window=window, reporter=reporter or None)
    return {"account": name, "window": window,
            "items": [{"labels": s.labels, "requests": s.requests, "errors": s.errors} for s in samples]}


@router.get("/accounts/{name}/live")
async def account_live(name: str, request: Request, namespace: str | None = None) -> dict[str, Any]:
    """Services, Deployments and Istio routing the account's cluster holds (for validation against it)."""
    return {"items": await store.alive_context(name, namespace, cp=request.app.state.cp)}
