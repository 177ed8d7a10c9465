"""Who is calling: no login on loopback; bearer tokens (or the console's cookie) on any other address.

Roles: `viewer` reads; `approver` also starts pipelines and judges; `admin` also changes resources,
pipelines and tokens. Tokens are stored hashed (sha256) in the store's `auth_tokens` table.
Browser posts are protected against CSRF with a double-submit token (cookie + header or form field)
and by refusing unsafe requests whose Origin is another site.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from graylane.errors import GraylaneError, NotFound, ValidationError

ROLES = ("viewer", "approver", "admin")
TOKEN_COOKIE, CSRF_COOKIE = "graylane_token", "graylane_csrf"
# Webhooks authenticate by their own HMAC signature; /metrics is for Prometheus, as in Istio.
PUBLIC_PREFIXES = ("/healthz", "/static/", "/vendor/", "/login", "/metrics", "/api/v1/webhooks/")

metadata = sa.MetaData()
tokens_table = sa.Table(
    "auth_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False),
)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    token: bool = False  # authenticated by token (vs. loopback trust)

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, user: str, role: str = "viewer") -> str:
    if role not in ROLES:
        raise ValidationError(f"--role: unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
    if not user.strip():
        raise ValidationError("--user: a user name is required")
    token = "gl_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(tokens_table.insert().values(user_name=user, role=role, token_hash=_hash(token),
                                                  created_at=datetime.now(UTC), revoked=False))
    return token


def list_tokens(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tokens_table).order_by(tokens_table.c.id)).mappings().all()
    return [{"id": r["id"], "user": r["user_name"], "role": r["role"], "created": r["created_at"],
             "revoked": r["revoked"]} for r in rows]


def revoke_token(engine: Engine, token_id: int) -> None:
    with engine.begin() as conn:
        done = conn.execute(tokens_table.update().where(tokens_table.c.id == token_id).values(revoked=True))
    if not done.rowcount:
        raise NotFound(f"no token with id {token_id}")


def user_for_token(engine: Engine, token: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tokens_table).where(tokens_table.c.token_hash == _hash(token),
                                                         tokens_table.c.revoked.is_(False))).mappings().first()
    return User(row["user_name"], row["role"], token=True) if row else None


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_host(scope: Scope) -> str | None:
    """The address the server listens on: `GRAYLANE_BIND_HOST` (set by `graylane server --host`), else the
    connection's local address when it is an IP; in-process transports (tests, the console's own API
    calls) have a host name there and count as loopback."""
    env = os.environ.get("GRAYLANE_BIND_HOST")
    if env:
        return env
    server = scope.get("server")
    if not server:
        return None
    try:
        ipaddress.ip_address(str(server[0]).strip("[]"))
    except ValueError:
        return None
    return str(server[0])


_APPROVER_PATHS = re.compile(r"^/(api/v1|ui)/(executions(/|$)|pipelines/[^/]+/(start|run|executions)$)")


def required_role(method: str, path: str) -> str:
    """The least role a request needs: reads are for viewers; starting, judging, cancelling,
    pausing and restarting executions for approvers; changing resources, pipelines and tokens for admins."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return "viewer"
    if _APPROVER_PATHS.match(path):
        return "approver"
    return "admin"


class AuthMiddleware:
    """Sets `scope["state"]["user"]`; refuses what the caller may not do, with a JSON or redirect answer."""

    def __init__(self, app: ASGIApp, engine_getter: Any) -> None:
        self.app = app
        self.engine_getter = engine_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path, method = scope["path"], scope["method"]
        user: User | None = None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
        if token:
            user = user_for_token(self.engine_getter(), token)
        if user is None and is_loopback(bind_host(scope)):
            user = User(os.environ.get("GRAYLANE_USER") or os.environ.get("USER") or "local", "admin")
        if method not in ("GET", "HEAD", "OPTIONS") and path != "/login":  # /login checks its form field
            problem = _csrf_problem(request, bearer=header.lower().startswith("bearer "))
            if problem:
                await JSONResponse({"error": {"message": problem}}, status_code=403)(scope, receive, send)
                return
        if user is None and not path.startswith(PUBLIC_PREFIXES):
            response: Response
            if path.startswith("/api/") or method != "GET":
                response = JSONResponse({"error": {"message": "authentication required",
                                                   "hint": "send Authorization: Bearer <token> "
                                                           "(graylane token create --user NAME)"}},
                                        status_code=401)
            else:
                response = RedirectResponse(f"/login?next={path}", status_code=303)
            await response(scope, receive, send)
            return
        if user is not None and not path.startswith(PUBLIC_PREFIXES):
            need = required_role(method, path)
            if not user.can(need):
                await JSONResponse({"error": {"message": f"user {user.name!r} ({user.role}) may not do this; "
                                                         f"it needs the {need} role"}},
                                   status_code=403)(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["user"] = user
        if user is not None:
            state["actor"] = f"user:{user.name}"  # recorded in resource history and execution audit
        await self.app(scope, receive, send)


def _csrf_problem(request: Request, *, bearer: bool) -> str | None:
    """Unsafe requests: refuse another site's Origin; a console session (CSRF cookie) must echo the token."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        return f"cross-site request refused (Origin {origin})"
    cookie = request.cookies.get(CSRF_COOKIE)
    if bearer or cookie is None:
        return None  # a CLI or script: no ambient browser credentials to abuse
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        return "missing CSRF token"
    return None if secrets.compare_digest(sent, cookie) else "bad CSRF token"


def current_user(request: Request) -> User:
    user = request.scope.get("state", {}).get("user")
    if user is None:
        raise GraylaneError("authentication required")
    return user
