"""`graylane token create|list|revoke`: tokens for a control plane bound to a non-loopback address."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from graylane.server.auth import ROLES, create_token, list_tokens, revoke_token


def _engine():  # type: ignore[no-untyped-def]
    from graylane.store import Store

    return Store.open().engine


def register(app: typer.Typer) -> None:
    tokens = typer.Typer(help="API and console tokens (needed when the server listens beyond loopback).",
                         no_args_is_help=True)
    app.add_typer(tokens, name="token")

    @tokens.command("create")
    def create(user: str = typer.Option(..., "--user", help="Who the token acts as (recorded in audit)."),
               role: str = typer.Option("viewer", "--role", help=f"One of {', '.join(ROLES)}.")) -> None:
        """Create a token and print it once (only its hash is stored)."""
        token = create_token(_engine(), user, role)
        Console(stderr=True).print(f"token for [bold]{user}[/] ({role}); it is shown only once:")
        typer.echo(token)

    @tokens.command("list")
    def list_cmd() -> None:
        """Tokens with their user, role and state (never the token itself)."""
        table = Table("ID", "USER", "ROLE", "CREATED", "REVOKED", box=None)
        for t in list_tokens(_engine()):
            table.add_row(str(t["id"]), t["user"], t["role"], str(t["created"])[:19], "yes" if t["revoked"] else "")
        Console().print(table)

    @tokens.command("revoke")
    def revoke(token_id: int) -> None:
        """Revoke a token by its id."""
        revoke_token(_engine(), token_id)
        typer.echo(f"token {token_id} revoked")
