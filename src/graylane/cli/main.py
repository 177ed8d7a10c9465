"""The `graylane` entry point: assembles the command groups and turns user errors into one line.

Every exit code is decided here or named in `graylane.cli.exit_codes` (the scheme in docs/cli.md):
user errors by their class, usage errors (unknown option, missing argument) as refused input.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from graylane.cli import exit_codes
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
    "graylane.cli.canary",      # canary judge (offline NetflixACAJudge)
    "graylane.cli.release",     # release status/promote/abort/retry
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
        # Not standalone: typer would exit 2 on a usage error, which this scheme keeps for "not found".
        code = app(standalone_mode=False)
    except GraylaneError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exit_codes.for_error(exc))
    except typer.Abort:
        err.print("Aborted.", highlight=False)
        sys.exit(exit_codes.REFUSED)
    except typer.TyperException as exc:  # click's usage errors: unknown option, missing argument, bad value
        _show_usage_error(exc)
        sys.exit(exit_codes.REFUSED if getattr(exc, "exit_code", 1) else exit_codes.OK)
    except KeyboardInterrupt:
        sys.exit(exit_codes.INTERRUPTED)
    sys.exit(code if isinstance(code, int) else exit_codes.OK)


def _show_usage_error(exc: typer.TyperException) -> None:
    """Print a usage error as typer does in standalone mode (usage line, hint, message)."""
    from typer.rich_utils import rich_format_error  # rich is a dependency: typer always has it here

    rich_format_error(exc)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
