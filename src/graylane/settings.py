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


def job_backoff_s() -> float:
    """The base of a local Job's back-off (`$GRAYLANE_JOB_BACKOFF_S`, default 10 s, as the Job controller's): a
    failed pod's successor starts after 1, 2, 4 ... times it (capped at 6 min), a failed container of an
    `OnFailure` pod restarts after 0, 1, 2 ... times it (capped at 5 min). Read at each failure."""
    raw = os.environ.get("GRAYLANE_JOB_BACKOFF_S", "").strip()
    if not raw:
        return 10.0
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"$GRAYLANE_JOB_BACKOFF_S={raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise ValueError(f"$GRAYLANE_JOB_BACKOFF_S={raw!r} is negative")
    return value


# -- the local operator's token ----------------------------------------------------------------

CLI_TOKEN_FILE = "cli-token"


def cli_token_path(state: Path | None = None) -> Path:
    return (state or state_dir()) / CLI_TOKEN_FILE


def read_cli_token(state: Path | None = None) -> str | None:
    """The token `graylane server` wrote to the state folder, if this user may read it.

    A file that is readable by the group or others (or owned by someone else) is ignored: the token
    in it may be known to other local users."""
    path = cli_token_path(state)
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def ensure_cli_token(state: Path | None = None) -> str:
    """Reuse the state folder's token when it is private, else write a new one (mode 0600)."""
    existing = read_cli_token(state)
    if existing:
        return existing
    import secrets

    path = cli_token_path(state)
    token = "glcli_" + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{CLI_TOKEN_FILE}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)  # atomic: a CLI never reads a half-written token
    return token


# -- what the HTTP server accepts (docs/security.md lists each with its default) ------------------

def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r} is not a whole number") from None


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 8 * 1024 * 1024
    max_documents: int = 1000
    max_document_bytes: int = 1024 * 1024
    max_json_depth: int = 100
    max_json_values: int = 1_000_000
    webhook_window_s: int = 300
    login_link_ttl_s: int = 300
    allowed_hosts: tuple[str, ...] = ()


def server_limits() -> ServerLimits:
    """Bounds for requests, from `$GRAYLANE_MAX_BODY_BYTES`, `$GRAYLANE_MAX_DOCUMENTS`,
    `$GRAYLANE_MAX_DOCUMENT_BYTES`, `$GRAYLANE_MAX_JSON_DEPTH`, `$GRAYLANE_MAX_JSON_VALUES`,
    `$GRAYLANE_WEBHOOK_WINDOW_S`, `$GRAYLANE_LOGIN_LINK_TTL_S` and `$GRAYLANE_ALLOWED_HOSTS`
    (comma-separated extra host names, `*` for any)."""
    d = ServerLimits()
    hosts = tuple(h.strip().lower() for h in os.environ.get("GRAYLANE_ALLOWED_HOSTS", "").split(",") if h.strip())
    return ServerLimits(
        max_body_bytes=_env_int("GRAYLANE_MAX_BODY_BYTES", d.max_body_bytes),
        max_documents=_env_int("GRAYLANE_MAX_DOCUMENTS", d.max_documents),
        max_document_bytes=_env_int("GRAYLANE_MAX_DOCUMENT_BYTES", d.max_document_bytes),
        max_json_depth=_env_int("GRAYLANE_MAX_JSON_DEPTH", d.max_json_depth),
        max_json_values=_env_int("GRAYLANE_MAX_JSON_VALUES", d.max_json_values),
        webhook_window_s=_env_int("GRAYLANE_WEBHOOK_WINDOW_S", d.webhook_window_s),
        login_link_ttl_s=_env_int("GRAYLANE_LOGIN_LINK_TTL_S", d.login_link_ttl_s),
        allowed_hosts=hosts,
    )
