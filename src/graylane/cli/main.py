"""The `graylane` entry point: assembles the command groups and turns user errors into one line."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from graylane.errors import GraylaneError

# Each module owns its commands and exposes `register(app: typer.Typer) -> None`.
COMMAND_MODULES = (
    "graylane.cli.validate",    # graylane validate
    "graylane.cli.resources",   # apply, delete, get, describe, history, server
    "graylane.cli.lifecycle",   # up, down, status, logs, rollout
    "graylane.cli.route",       # route (offline explainer), proxy (data plane process)
    "graylane.cli.expr",        # expr
    "graylane.cli.pipelines",   # pipeline, execution, judge
    "graylane.cli.observe",     # graph, traces, trace
    "graylane.cli.demo",        # demo bookinfo
    "graylane.cli.accounts",    # account
    "graylane.cli.tokens",      # token
)

app = typer.Typer(
    name="graylane",
    help="Canary releases with Spinnaker-style pipelines over an Istio-semantics mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Graylane: deploy, route and release — locally with no cluster, or on Kubernetes + Istio."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    err = Console(stderr=True)
    try:
        app()
    except GraylaneError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
