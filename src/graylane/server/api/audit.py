"""GET /api/v1/audit?limit=N: the admin audit log (graylane.server.audit), newest first."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from graylane.server import audit

router = APIRouter(tags=["audit"])


@router.get("/audit")
def list_audit(request: Request, limit: int = 100) -> dict[str, Any]:
    return {"items": audit.entries(request.app.state.cp.store.engine, max(1, min(limit, 1000)))}
