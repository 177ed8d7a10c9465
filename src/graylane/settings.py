"""Where Graylane keeps its state and how its processes find each other (env-driven)."""

from __future__ import annotations

import json
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
    """The control plane's API address: `$GRAYLANE_SERVER` (host:port), else where `graylane up` started it
    (recorded in the state folder's server.json), else 127.0.0.1:7380."""
    raw = os.environ.get("GRAYLANE_SERVER", "")
    if raw:
        raw = raw.removeprefix("http://")
        host, _, port = raw.rpartition(":")
        return ServerAddress(host or "127.0.0.1", int(port))
    try:
        recorded = json.loads((state_dir() / "server.json").read_text())
        host = str(recorded.get("host") or "127.0.0.1")
        return ServerAddress("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(recorded["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ServerAddress()


def current_user() -> str:
    """Who the CLI acts as (recorded in history and audit): `$GRAYLANE_USER`, else the OS user."""
    return os.environ.get("GRAYLANE_USER") or os.environ.get("USER") or "cli"
