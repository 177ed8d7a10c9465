"""Accounts: the `graylane account` CLI (a real subprocess), get_target, the HTTP API and live_context."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from graylane_k8s_emulator import kubeconfig_text  # loaded by conftest.py

from graylane.cli import exit_codes
from graylane.errors import Conflict, GraylaneError, NotFound, ValidationError
from graylane.resources.document import Document
from graylane.server.api import accounts as accounts_api
from graylane.targets import accounts
from graylane.targets.kubernetes import KubernetesTarget

GRAYLANE = [sys.executable, "-m", "graylane.cli.main"]


async def cli(*args: str, state: Path) -> tuple[int, str, str]:
    env = dict(os.environ, GRAYLANE_STATE=str(state), COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(*GRAYLANE, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_account_cli_round_trip(cluster: Any, state_dir: Path) -> None:
    code, out, err = await cli("account", "add", "staging", "--kubeconfig", str(cluster.kubeconfig),
                               "--namespace", "bookinfo", "--prometheus", "http://127.0.0.1:9090", "--check",
                               state=state_dir)
    assert code == 0, err
    assert "account staging added" in out
    assert "Istio installed" in out and cluster.url in out

    code, out, _ = await cli("account", "list", "-o", "json", state=state_dir)
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["local", "staging"]
    assert rows[1]["namespace"] == "bookinfo" and rows[1]["kubeconfig"] == str(cluster.kubeconfig.resolve())
    assert rows[1]["prometheus"] == "http://127.0.0.1:9090"

    code, _, err = await cli("account", "add", "staging", "--kubeconfig", str(cluster.kubeconfig), state=state_dir)
    assert code == exit_codes.WRONG_STATE  # an account that exists: the CLI's scheme for a conflict
    assert "already exists" in err and len(err.strip().splitlines()) == 1

    code, out, _ = await cli("account", "remove", "staging", state=state_dir)
    assert code == 0
    assert [a.name for a in accounts.list_accounts()] == ["local"]
    with pytest.raises(NotFound):
        accounts.remove_account("staging")
    with pytest.raises(ValidationError, match="built in"):
        accounts.remove_account("local")
    with pytest.raises(ValidationError, match="does not exist"):
        accounts.add_account("prod", kubeconfig="/nonexistent/kubeconfig")


@pytest.mark.asyncio
async def test_account_check_reports_missing_istio(bare_cluster: Any, state_dir: Path) -> None:
    from typer.testing import CliRunner

    from graylane.cli.main import app

    accounts.add_account("bare", kubeconfig=bare_cluster.kubeconfig)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["account", "check", "bare"])
    assert result.exit_code == 0, result.output
    assert "Istio NOT installed" in result.output and "istioctl install" in result.output


def test_add_account_validation(state_dir: Path, tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubeconfig_text("http://127.0.0.1:1", context="kind-graylane"))
    with pytest.raises(ValidationError, match="DNS label"):
        accounts.add_account("Prod_1", kubeconfig=kc)
    with pytest.raises(ValidationError, match="built-in"):
        accounts.add_account("local", kubeconfig=kc)
    with pytest.raises(ValidationError, match="context 'nope'"):
        accounts.add_account("prod", kubeconfig=kc, context="nope")
    with pytest.raises(ValidationError, match="--prometheus"):
        accounts.add_account("prod", kubeconfig=kc, prometheus="prometheus:9090")
    assert [a.name for a in accounts.list_accounts()] == ["local"]  # nothing stored
    acc = accounts.add_account("prod", kubeconfig=kc, context="kind-graylane", force_conflicts=True)
    assert accounts.get_account("prod") == acc
    assert (state_dir / "accounts.yaml").exists()
    with pytest.raises(NotFound, match="graylane account add"):
        accounts.get_account("qa")


def test_get_target_for_kubernetes_accounts(state_dir: Path, tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubeconfig_text("http://127.0.0.1:1", namespace="team-a"))
    accounts.add_account("prod", kubeconfig=kc, force_conflicts=True)
    target = accounts.get_target("prod")
    assert isinstance(target, KubernetesTarget)
    assert target.account == "prod" and target.namespace == "team-a" and target.force_conflicts
    assert accounts.get_target("prod", namespace="canary").namespace == "canary"  # namespaceOverride

    class CP:
        settings: dict[str, Any] = {}

    cp = CP()
    assert accounts.get_target("prod", cp) is accounts.get_target("prod", cp)  # one connection pool per account
    assert accounts.get_target("prod", cp, namespace="x") is not accounts.get_target("prod", cp)
    with pytest.raises(NotFound):
        accounts.get_target("nope", cp)


@pytest.mark.asyncio
async def test_live_context_lists_what_manifests_refer_to(cluster: Any, state_dir: Path) -> None:
    accounts.add_account("staging", kubeconfig=cluster.kubeconfig)
    async with KubernetesTarget("staging", kubeconfig=cluster.kubeconfig) as t:
        await t.apply([
            Document({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "bookinfo"},
                      "spec": {"ports": [{"port": 9080, "name": "http"}], "selector": {"app": "reviews"}}}),
            Document({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                      "metadata": {"name": "reviews", "namespace": "bookinfo"},
                      "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
            Document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "bookinfo"},
                      "data": {"a": "b"}}),
        ], actor="user:alice")
    live = await accounts.alive_context("staging")
    assert sorted((d["kind"], d["metadata"]["name"]) for d in live) == [
        ("DestinationRule", "reviews"), ("Service", "reviews")]

    # `graylane validate --account`: the analyzers judge references against the live cluster
    from graylane.resources.validate import validate

    def vs(subset: str) -> Document:
        return Document({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                         "metadata": {"name": "reviews", "namespace": "bookinfo"},
                         "spec": {"hosts": ["reviews"], "http": [{"route": [
                             {"destination": {"host": "reviews", "subset": subset}}]}]}})

    assert any("IST0101" in str(f) and "host not found" in str(f) for f in validate([vs("v1")], None))
    assert [str(f) for f in validate([vs("v1")], live)] == []
    assert any("IST0101" in str(f) and "v3" in str(f) for f in validate([vs("v3")], live))


@pytest.mark.asyncio
async def test_live_context_without_istio(bare_cluster: Any, state_dir: Path) -> None:
    accounts.add_account("bare", kubeconfig=bare_cluster.kubeconfig)
    assert await accounts.alive_context("bare") == []


@pytest.mark.asyncio
async def test_accounts_http_api(cluster: Any, state_dir: Path) -> None:
    app = FastAPI()
    app.include_router(accounts_api.router, prefix="/api/v1")

    @app.exception_handler(GraylaneError)
    async def _err(request: Any, exc: GraylaneError) -> Any:
        from fastapi.responses import JSONResponse

        code = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
        return JSONResponse({"error": {"message": exc.message, "where": exc.where, "hint": exc.hint}}, code)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        resp = await http.post("/api/v1/accounts", json={"name": "staging", "kubeconfig": str(cluster.kubeconfig),
                                                        "namespace": "bookinfo"})
        assert resp.status_code == 201, resp.text
        items = (await http.get("/api/v1/accounts")).json()["items"]
        assert [i["name"] for i in items] == ["local", "staging"]
        check = (await http.get("/api/v1/accounts/staging/check")).json()
        assert check["istio"] is True and check["server"] == cluster.url
        resp = await http.post("/api/v1/accounts", json={"name": "staging", "kubeconfig": str(cluster.kubeconfig)})
        assert resp.status_code == 409
        resp = await http.get("/api/v1/accounts/staging/traffic")
        assert resp.status_code == 400 or "no Prometheus" in resp.text
        assert (await http.delete("/api/v1/accounts/staging")).status_code == 200
        assert (await http.get("/api/v1/accounts/staging")).status_code == 404


@pytest.mark.asyncio
async def test_local_account_is_the_local_mesh(state_dir: Path) -> None:
    from graylane.server.context import ControlPlane
    from graylane.store import Store

    cp = ControlPlane(store=Store.open())
    target = accounts.get_target("local", cp)
    assert target.account == "local" and target.store is cp.store
    assert accounts.get_target("", cp).account == "local"  # a stage without `account`
    cp.store.apply([Document({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": "reviews", "namespace": "default"},
                              "spec": {"ports": [{"port": 9080, "name": "http"}], "selector": {"app": "reviews"}}})],
                   actor="user:alice")
    live = await accounts.alive_context("local", cp=cp)
    assert [(d["kind"], d["metadata"]["name"]) for d in live] == [("Service", "reviews")]
