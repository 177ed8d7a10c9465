"""Where Graylane keeps its state and how its processes find each other (env-driven)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def state_dir() -> Path:
    """`$GRAYLANE_STATE`, default `~/.local/state/graylane`; created on first use."""
    raw = os.environ.get("GRAYLANE_STATE")
    path = Path(raw) if raw else Path.home() / ".local" / "state" / "graylane"
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """`$GRAYLANE_DATABASE_URL` (e.g. postgresql+psycopg://...), default SQLite in the state folder."""
    return os.environ.get("GRAYLANE_DATABASE_URL") or f"sqlite:///{state_dir() / 'graylane.db'}"


@dataclass(frozen=True)
class ServerAddress:
    host: str = "127.0.0.1"
    port: int = 7380

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def server_address() -> ServerAddress:
    """The control plane's API address: `$GRAYLANE_SERVER` (host:port), default 127.0.0.1:7380."""
    raw = os.environ.get("GRAYLANE_SERVER", "")
    if raw:
        raw = raw.removeprefix("http://")
        host, _, port = raw.rpartition(":")
        return ServerAddress(host or "127.0.0.1", int(port))
    return ServerAddress()


def current_user() -> str:
    """Who the CLI acts as (recorded in history and audit): `$GRAYLANE_USER`, else the OS user."""
    return os.environ.get("GRAYLANE_USER") or os.environ.get("USER") or "cli"
