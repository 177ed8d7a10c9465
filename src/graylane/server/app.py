"""The FastAPI application: routers per area, background components, errors as JSON."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from graylane import __version__
from graylane.errors import Conflict, Forbidden, GraylaneError, NotFound, ValidationError
from graylane.server.context import ControlPlane

# Each module exposes `router` (an APIRouter mounted at /api/v1 unless it sets `prefix` itself),
# and optionally `root_router` for paths outside /api/v1 (e.g. /metrics).
API_MODULES = (
    "graylane.server.api.resources",
    "graylane.server.api.mesh",
    "graylane.server.api.pipelines",
    "graylane.server.api.observe",
    "graylane.server.api.accounts",
)
# Modules exposing `async def start(cp: ControlPlane) -> Component | None`, started in this order.
COMPONENT_MODULES = (
    "graylane.runtime.component",
    "graylane.pipelines.component",
    "graylane.mesh.telemetry.component",
)
UI_MODULE = "graylane.server.ui"

_STATUS: dict[type[GraylaneError], int] = {NotFound: 404, Conflict: 409, ValidationError: 422, Forbidden: 403}


def _optional(module: str) -> Any | None:
    """Import an area's module; areas that have not landed yet are simply absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def create_app(cp: ControlPlane | None = None, *, start_components: bool = True) -> FastAPI:
    if cp is None:
        from graylane.store import Store

        cp = ControlPlane(store=Store.open())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started: list[Any] = []
        if start_components:
            for name in COMPONENT_MODULES:
                mod = _optional(name)
                if mod is not None:
                    comp = await mod.start(cp)
                    if comp is not None:
                        started.append(comp)
        try:
            yield
        finally:
            for comp in reversed(started):
                with contextlib.suppress(Exception):
                    await comp.stop()

    app = FastAPI(title="Graylane", version=__version__, lifespan=lifespan,
                  docs_url="/api/docs", redoc_url=None)
    app.state.cp = cp

    @app.exception_handler(GraylaneError)
    async def _user_error(request: Request, exc: GraylaneError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"error": {"message": exc.message, "where": exc.where, "hint": exc.hint}},
                            status_code=status)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for name in API_MODULES:
        mod = _optional(name)
        if mod is not None:
            app.include_router(mod.router, prefix=getattr(mod, "prefix", "/api/v1"))
            if hasattr(mod, "root_router"):  # endpoints outside /api/v1, e.g. /metrics
                app.include_router(mod.root_router)
    ui = _optional(UI_MODULE)
    if ui is not None:
        ui.mount(app)
    return app
