"""The FastAPI application: routers per area, background components, errors as JSON."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from graylane import __version__, assembly
from graylane.errors import Conflict, Forbidden, GraylaneError, NotFound, ValidationError
from graylane.server.auth import AuthMiddleware
from graylane.server.context import ControlPlane
from graylane.server.draining import Drain, DrainMiddleware, Stopping, drain_period, stopping_body
from graylane.server.limits import BodyLimitMiddleware, PayloadTooLarge
from graylane.server.sessions import ConsoleSessions
from graylane.settings import ensure_cli_token, server_limits

log = logging.getLogger(__name__)

# Each module exposes `router` (an APIRouter mounted at /api/v1 unless it sets `prefix` itself),
# and optionally `root_router` for paths outside /api/v1 (e.g. /metrics).
API_MODULES = (
    "graylane.server.api.resources",
    "graylane.server.api.mesh",
    "graylane.server.api.pipelines",
    "graylane.server.api.observe",
    "graylane.server.api.accounts",
    "graylane.server.api.login",
    "graylane.server.api.audit",
    "graylane.server.api.prometheus",
)
UI_MODULES = ("graylane.server.ui", "graylane.server.ui_pipelines")  # console pages, mounted in this order

_STATUS: dict[type[GraylaneError], int] = {PayloadTooLarge: 413, NotFound: 404, Conflict: 409, ValidationError: 422,
                                           Forbidden: 403}


def create_app(cp: ControlPlane | None = None, *, start_components: bool = True) -> FastAPI:
    """The app for one control plane. Writes the operator's CLI token to the state folder (mode 0600)
    when it is not there yet; `app.state.cli_token` holds it for in-process callers."""
    if cp is None:
        from graylane.store import Store

        cp = ControlPlane(store=Store.open())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The control plane's background parts (runtime + mesh control, executor, telemetry): see assembly.py.
        started = await assembly.start_components(cp) if start_components else []
        try:
            yield
        finally:
            await assembly.stop_components(started)

    app = FastAPI(title="Graylane", version=__version__, lifespan=lifespan,
                  docs_url="/api/docs", redoc_url=None)
    app.state.cp = cp
    app.state.limits = limits = server_limits()
    app.state.cli_token = ensure_cli_token()
    app.state.sessions = ConsoleSessions(code_ttl_s=limits.login_link_ttl_s)
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    app.add_middleware(AuthMiddleware, engine_getter=lambda: cp.store.engine, sessions=app.state.sessions,
                       cli_token=app.state.cli_token, limits=limits)  # Host check first
    app.state.drain = drain = Drain(drain_period())
    app.add_middleware(DrainMiddleware, drain=drain)  # outermost: 503 while stopping (graylane.server.draining)

    @app.exception_handler(GraylaneError)
    async def _user_error(request: Request, exc: GraylaneError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"error": {"message": exc.message, "where": exc.where, "hint": exc.hint}},
                            status_code=status)

    @app.exception_handler(Stopping)
    async def _stopping(request: Request, exc: Stopping) -> Response:
        return Response(stopping_body(str(exc)), status_code=503, media_type="application/json",
                        headers={"Retry-After": "1", "Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": {"message": str(first.get("msg", "invalid request")), "where": where or None,
                                       "hint": None}}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": {"message": str(exc.detail), "where": request.url.path, "hint": None}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        log.warning("%s %s: nesting too deep: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": {"message": "the request is nested too deeply to process", "where": "<request>",
                                       "hint": f"keep documents under {limits.max_json_depth} levels"}},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": {"message": f"internal error: {type(exc).__name__}", "where": None,
                                       "hint": "this is a bug in Graylane; the server log has the traceback"}},
                            status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for name in API_MODULES:
        mod = importlib.import_module(name)
        app.include_router(mod.router, prefix=getattr(mod, "prefix", "/api/v1"))
        if hasattr(mod, "root_router"):  # endpoints outside /api/v1, e.g. /metrics
            app.include_router(mod.root_router)
    for name in UI_MODULES:
        importlib.import_module(name).mount(app)
    return app
