"""`graylane demo bookinfo`: start the mesh if needed, set up the article's repository and pipelines, run the
baseline, and say what to do next."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from graylane.errors import GraylaneError
from graylane.settings import server_address, state_dir

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STYLE = {"SUCCEEDED": "green", "RUNNING": "cyan", "TERMINAL": "red", "STOPPED": "yellow", "CANCELED": "yellow",
          "SKIPPED": "dim", "NOT_STARTED": "dim", "FAILED_CONTINUE": "yellow", "PAUSED": "magenta"}


def _control_plane_url() -> str | None:
    """The running control plane's URL, or None when it is not running (or not answering)."""
    from graylane.runtime import daemons

    cp = daemons.control_plane(state_dir())
    if cp is not None and cp.running and daemons.probe_http(f"{cp.url}/healthz") == 200:
        return cp.url
    url = server_address().url
    return url if daemons.probe_http(f"{url}/healthz") == 200 else None


def ensure_mesh(timeout: float, port: int | None = None, admin_port: int | None = None,
                gateway_ports: list[str] | None = None) -> str:
    url = _control_plane_url()
    if url is not None:
        err.print(f"[green]✓[/] the local mesh is running ({url})")
        return url
    from graylane.cli import lifecycle

    err.print("starting the local mesh (graylane up) ...")
    lifecycle.up(False, None, port, admin_port, list(gateway_ports or []), None, timeout)
    url = _control_plane_url()
    if url is None:
        raise GraylaneError("the local mesh did not start", hint=f"see {state_dir() / 'logs'}")
    return url


def launcher() -> str:
    """How to type `graylane` in a new shell opened here: `graylane` when that is on PATH and is this program,
    otherwise this program's path (e.g. `.venv/bin/graylane` after `make demo`, with no venv activated)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or program.name != "graylane" or not program.exists():
        return "graylane"
    program = program.absolute()
    on_path = shutil.which("graylane")
    if on_path and Path(on_path).absolute() == program:
        return "graylane"
    try:
        return str(program.relative_to(Path.cwd().absolute()))
    except ValueError:
        return str(program)


def _stage_table(execution: dict[str, Any]) -> Table:
    table = Table(title=f"{execution.get('name', 'pipeline')} — {execution.get('status', '')}", box=None,
                  title_justify="left")
    table.add_column("STAGE")
    table.add_column("TYPE")
    table.add_column("STATUS")
    for stage in execution.get("stages") or []:
        status = str(stage.get("status") or "NOT_STARTED")
        style = _STYLE.get(status, "white")
        table.add_row(escape(str(stage.get("name") or stage.get("refId"))), escape(str(stage.get("type", ""))),
                      f"[{style}]{status}[/]")
    return table


def demo_bookinfo(repo: Path | None, timeout: float, no_up: bool, port: int | None = None,
                  admin_port: int | None = None, gateway_ports: list[str] | None = None) -> None:
    from graylane.cli.client import ApiClient
    from graylane.demos.bookinfo import demo

    started = time.monotonic()
    url = _control_plane_url() if no_up else ensure_mesh(min(timeout, 120), port, admin_port, gateway_ports)
    if url is None:
        raise GraylaneError("the local mesh is not running", hint="start it with `graylane up`")
    repo = (repo or state_dir() / "demo" / "bookinfo").resolve()
    client = ApiClient(url)
    err.print(f"  (mesh ready in {time.monotonic() - started:.1f} s)")
    started = time.monotonic()
    with Live(Table(), console=err, refresh_per_second=8, transient=False) as live:
        result = demo.run_demo(client, repo, lambda execution: live.update(_stage_table(execution)), timeout)
    err.print()
    out.print(f"[green]✓[/] baseline deployed in {time.monotonic() - started:.1f} s "
              f"(execution {result.baseline_execution})")
    out.print(f"  demo repository: {result.repository} (branch {demo.BRANCH}, commit {result.commit[:12]})")
    if result.productpage_url:
        out.print(f"  productpage:     [bold]{result.productpage_url}[/]")
    else:
        out.print("  productpage:     [yellow]no gateway listener found[/] (see `graylane status`)")
    out.print(f"  console:         {result.console_url}")
    out.print("\nNext, the canary release of reviews v2 (as in the article):")
    program = launcher()
    for line in result.next_commands:
        if program != "graylane" and line.startswith("graylane "):
            line = program + line[len("graylane"):]
        out.print(f"  {escape(line)}")
    if program != "graylane":
        out.print(f"  (or `source {Path(program).parent}/activate` once, then type `graylane ...`)")


def register(app: typer.Typer) -> None:
    """Add `graylane demo bookinfo` to the root app."""
    demo_app = typer.Typer(help="Ready-made demos.", no_args_is_help=True)

    @demo_app.command("bookinfo")
    def bookinfo_cmd(
        repo: Path | None = typer.Option(None, "--repo", help="Where to create the demo git repository "
                                                             "(default: <state>/demo/bookinfo)."),
        timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the baseline pipeline."),
        no_up: bool = typer.Option(False, "--no-up", help="Do not start the mesh; fail if it is not running."),
        port: int | None = typer.Option(None, "--port", help="Control plane port if the mesh must be started."),
        admin_port: int | None = typer.Option(None, "--admin-port", help="Data plane admin port, likewise."),
        gateway_port: list[str] = typer.Option([], "--gateway-port",
                                               help="Gateway port mapping PORT=HOSTPORT, e.g. 80=8080, likewise."),
    ) -> None:
        """Deploy Istio's Bookinfo baseline with the article's pipeline and print what to do next.

        Starts the local mesh first when it is not running (as `graylane up` would, with the options given).
        """
        demo_bookinfo(repo, timeout, no_up, port, admin_port, gateway_port)

    app.add_typer(demo_app, name="demo")
