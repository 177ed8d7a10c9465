"""`graylane account add|list|remove|check`: where stages deploy (the local mesh or Kubernetes clusters)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from graylane.targets import accounts as store


def _check(name: str) -> dict[str, Any]:
    """Connect to the account's API server (and its Prometheus) and report what is there."""
    acc = store.get_account(name)
    if acc.type == "local":
        return {"server": "local mesh", "version": "-", "istio": True}

    async def run() -> dict[str, Any]:
        target = store.kubernetes_target(acc)
        try:
            info = await target.check()
        finally:
            await target.close()
        if acc.prometheus:
            from graylane.promql import PrometheusClient

            info["prometheus"] = await PrometheusClient(acc.prometheus, account=acc.name).ready()
        return info

    return asyncio.run(run())


def register(app: typer.Typer) -> None:
    """Add the `account` group to the root app."""
    group = typer.Typer(help="Accounts: the built-in `local` mesh and Kubernetes clusters stages can deploy to.",
                        no_args_is_help=True)

    @group.command("add")
    def add(
        name: str = typer.Argument(..., help="Account name, as stages name it in `account`."),
        kubeconfig: Path = typer.Option(None, "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                                        "~/.kube/config or the in-cluster service account)."),
        context: str = typer.Option(None, "--context", help="kubeconfig context (default: current-context)."),
        namespace: str = typer.Option(None, "--namespace", "-n", help="Default namespace of the account."),
        prometheus: str = typer.Option(None, "--prometheus", help="Prometheus URL with Istio's metrics."),
        force_conflicts: bool = typer.Option(False, "--force-conflicts",
                                             help="Server-side apply takes over fields other managers own."),
        replace: bool = typer.Option(False, "--replace", help="Overwrite an existing account."),
        check: bool = typer.Option(False, "--check", help="Connect now and report the server and Istio."),
    ) -> None:
        """Add a Kubernetes account."""
        acc = store.add_account(name, kubeconfig=kubeconfig, context=context, namespace=namespace,
                                prometheus=prometheus, force_conflicts=force_conflicts, replace=replace)
        console = Console()
        console.print(f"account [bold]{acc.name}[/] added ({acc.kubeconfig or 'default kubeconfig'}"
                      f"{', context ' + acc.context if acc.context else ''})", highlight=False)
        if check:
            with console.status(f"connecting to {acc.name}..."):
                info = _check(acc.name)
            _print_check(console, acc.name, info)

    @group.command("list")
    def list_(
        output: str = typer.Option("table", "--output", "-o", help="table | json"),
        check: bool = typer.Option(False, "--check", help="Also connect to every account."),
    ) -> None:
        """List accounts (`local` is built in)."""
        rows = [a.public() for a in store.list_accounts()]
        if check:
            for row in rows:
                try:
                    row["check"] = _check(row["name"])
                except Exception as exc:  # report, keep listing
                    row["check"] = {"error": str(exc)}
        if output == "json":
            typer.echo(json.dumps(rows, indent=2))
            return
        columns = ["NAME", "TYPE", "KUBECONFIG", "CONTEXT", "NAMESPACE", "PROMETHEUS"] + (["STATUS"] if check else [])
        table = Table(*columns)
        for row in rows:
            status = []
            if check:
                info = row["check"]
                status = [info.get("error") or f"{info.get('version')} istio={'yes' if info.get('istio') else 'no'}"]
            table.add_row(row["name"], row["type"], row["kubeconfig"] or "-", row["context"] or "-",
                          row["namespace"] or "-", row["prometheus"] or "-", *status)
        Console().print(table)

    @group.command("remove")
    def remove(name: str = typer.Argument(..., help="Account to forget.")) -> None:
        """Forget a Kubernetes account (nothing in the cluster changes)."""
        store.remove_account(name)
        typer.echo(f"account {name} removed")

    @group.command("check")
    def check_(name: str = typer.Argument(..., help="Account to check.")) -> None:
        """Connect to an account: API server version, Istio installed, Prometheus ready."""
        console = Console()
        with console.status(f"connecting to {name}..."):
            info = _check(name)
        _print_check(console, name, info)

    app.add_typer(group, name="account")


def _print_check(console: Console, name: str, info: dict[str, Any]) -> None:
    istio = "installed" if info.get("istio") else "NOT installed (istioctl install --set profile=demo -y)"
    console.print(f"{name}: API server {info.get('server')} ({info.get('version')}), Istio {istio}", highlight=False)
    if "prometheus" in info:
        console.print(f"{name}: Prometheus {'ready' if info['prometheus'] else 'NOT reachable'}", highlight=False)
