"""Who is calling, and what they may do. The trust model is described in docs/security.md.

Identities: the local operator's CLI token (`$GRAYLANE_STATE/cli-token`, admin), personal tokens
(`graylane token create`, stored hashed in `auth_tokens`), and console sessions opened by a one-time
login link (graylane.server.sessions). Without any, a server on loopback lets API reads through as
an anonymous viewer (Secret values redacted); nothing else. Roles: `viewer` reads; `approver` also
starts pipelines and judges; `admin` also changes resources, pipelines and tokens, deletes executions.
Every request's Host must be on the allow-list; browser writes need a same-origin, non-simple request
carrying the session's CSRF token (graylane.server.browser).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graylane.errors import GraylaneError, NotFound, ValidationError
from graylane.server.browser import host_problem, is_loopback, origin_problem
from graylane.server.sessions import ConsoleSessions
from graylane.settings import ServerLimits

log = logging.getLogger(__name__)

ROLES = ("viewer", "approver", "admin")
TOKEN_COOKIE, CSRF_COOKIE, SESSION_COOKIE = "graylane_token", "graylane_csrf", "graylane_session"
CSRF_HEADER = "x-csrf-token"
# Webhooks authenticate by their own HMAC signature; /metrics is for Prometheus, as in Istio.
PUBLIC_PREFIXES = ("/healthz", "/static/", "/vendor/", "/login", "/logout", "/metrics", "/api/v1/webhooks/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Machine APIs: no login redirect (401 instead), and loopback reads without a token. Prometheus' query API
# (server/api/prometheus.py) answers POSTed queries too, as Prometheus does: reads, for viewers.
API_PREFIXES = ("/api/", "/prometheus/api/")
QUERY_PREFIX = "/prometheus/api/v1/"

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
    token: bool = False  # a personal token or session: the name is fixed by it
    operator: bool = False  # the CLI token: the local operator, who may name the acting user (X-Graylane-User)
    cookie: bool = False  # authenticated by a browser cookie (writes need the CSRF token)

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def anonymous(self) -> bool:
        return not (self.token or self.operator)


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
_EXECUTION = re.compile(r"^/api/v1/executions/[^/]+/?$")


def required_role(method: str, path: str) -> str:
    """The least role a request needs: reads are for viewers; starting, judging, cancelling,
    pausing and restarting executions for approvers; changing resources, pipelines and tokens, and
    deleting executions (their audit trail), for admins. Anyone signed in may ask for a console
    link for themselves."""
    if method in SAFE_METHODS or path.startswith(QUERY_PREFIX):
        return "viewer"
    if path == "/api/v1/auth/login-links":
        return "viewer"
    if method == "DELETE" and _EXECUTION.match(path):
        return "admin"
    if _APPROVER_PATHS.match(path):
        return "approver"
    return "admin"


def operator_name() -> str:
    """The name the control plane's own user acts under (`$GRAYLANE_USER`, else the OS user)."""
    return os.environ.get("GRAYLANE_USER") or os.environ.get("USER") or "local"


_BROWSER_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cross-origin-resource-policy", b"same-origin")]


def _with_browser_headers(send: Send) -> Send:
    """Every answer tells browsers not to let other sites embed it (`<script src>` of our JSON, XSSI)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(n, v) for n, v in _BROWSER_HEADERS if n not in names]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def _refuse(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "where": None, "hint": hint}}, status_code=status)


_SIGN_IN_HINT = ("the CLI sends the token in $GRAYLANE_STATE/cli-token by itself; scripts send "
                 "Authorization: Bearer <token> (that file, or `graylane token create`); the console "
                 "signs in with the link `graylane status` prints")


class AuthMiddleware:
    """Sets `scope["state"]["user"]`; refuses what the caller may not do, with a JSON or redirect answer."""

    def __init__(self, app: ASGIApp, engine_getter: Any, sessions: ConsoleSessions, cli_token: str | None,
                 limits: ServerLimits) -> None:
        self.app = app
        self.engine_getter = engine_getter
        self.sessions = sessions
        self.cli_token = cli_token
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_browser_headers(send)
        request = Request(scope)
        path, method = scope["path"], scope["method"]
        server = scope.get("server")
        port = server[1] if server and isinstance(server[1], int) else None
        host = request.headers.get("host")
        problem = host_problem(host, server_port=port, bind_host=bind_host(scope), allowed=self.limits.allowed_hosts)
        if problem:
            log.warning("refused %s %s: %s", method, path, problem)
            await _refuse(403, problem, "reach Graylane at 127.0.0.1 or localhost, or add the name to "
                                        "GRAYLANE_ALLOWED_HOSTS on the server")(scope, receive, send)
            return
        unsafe = method not in SAFE_METHODS
        if unsafe:
            problem = origin_problem(request.headers.get("origin"), request.headers.get("sec-fetch-site"), host)
            if problem:
                await _refuse(403, problem)(scope, receive, send)
                return
        public = path.startswith(PUBLIC_PREFIXES)
        user, credential, error = self._identify(request)
        if error and not public:  # public paths ignore credentials meant for others (a scraper's, a CI's)
            await _refuse(401, error, _SIGN_IN_HINT)(scope, receive, send)
            return
        # A cookie rides along with any request the browser makes; the token in this custom header
        # (a non-simple request, which other sites cannot send without our CORS consent) proves intent.
        if (user is not None and user.cookie and unsafe and path != "/login"
                and not self.sessions.csrf_ok(credential or "", request.headers.get(CSRF_HEADER, ""))):
            await _refuse(403, "missing or wrong CSRF token",
                          "reload the page; the console sends the token in X-CSRF-Token")(scope, receive, send)
            return
        if user is None and not unsafe and path.startswith(API_PREFIXES) and is_loopback(bind_host(scope)):
            user = User("anonymous", "viewer")  # loopback reads: what any local page could not read anyway
        if user is None and not public:
            response: Response
            if path.startswith(API_PREFIXES) or unsafe:
                response = _refuse(401, "authentication required", _SIGN_IN_HINT)
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            await response(scope, receive, send)
            return
        if user is not None and not public:
            need = required_role(method, path)
            if not user.can(need):
                await _refuse(403, f"user {user.name!r} ({user.role}) may not do this; it needs the {need} role",
                              None if not user.anonymous else _SIGN_IN_HINT)(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["user"] = user
        if user is not None and user.cookie and credential:
            state["csrf"] = self.sessions.csrf_for(credential)  # the console renders it into its pages
            state["credential"] = credential
        await self.app(scope, receive, send)

    def _identify(self, request: Request) -> tuple[User | None, str | None, str | None]:
        """(user, cookie credential, error). A credential that is sent but wrong is an error: it never
        falls back to anonymous access."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                return None, None, "the Authorization header must be `Bearer <token>`"
            if self.cli_token and hmac.compare_digest(token.encode(), self.cli_token.encode()):
                claimed = request.headers.get("x-graylane-user", "").strip()
                return User(claimed or operator_name(), "admin", operator=True), None, None
            user = user_for_token(self.engine_getter(), token)
            if user is None:
                return None, None, "the token is not valid (revoked, or from another server)"
            return user, None, None
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            found = self.sessions.user(session)
            if found is not None:
                return User(found.name, found.role, token=True, cookie=True), session, None
        token = request.cookies.get(TOKEN_COOKIE)
        if token:
            user = user_for_token(self.engine_getter(), token)
            if user is not None:
                return User(user.name, user.role, token=True, cookie=True), token, None
        return None, None, None


def caller(request: Request) -> User | None:
    """The one reader of the caller's identity: the user `AuthMiddleware` put on the request, if any."""
    user = request.scope.get("state", {}).get("user")
    return user if isinstance(user, User) else None


def actor_of(request: Request) -> str:
    """Who to record in resource history and audit: `user:NAME`, or `user:anonymous`."""
    user = caller(request)
    return f"user:{user.name}" if user is not None and not user.anonymous else "user:anonymous"


def current_user(request: Request) -> User:
    user = caller(request)
    if user is None:
        raise GraylaneError("authentication required")
    return user
