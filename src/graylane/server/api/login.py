"""Console sign-in links: POST /api/v1/auth/login-links -> {"url", "expiresInSeconds"}.

The link opens a console session for the caller (same name and role) once, within the TTL
(`GRAYLANE_LOGIN_LINK_TTL_S`). `graylane up` and `graylane status` ask for one with the CLI token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from graylane.server.auth import current_user

router = APIRouter(tags=["auth"])


@router.post("/auth/login-links")
def create_login_link(request: Request) -> dict[str, Any]:
    user = current_user(request)
    sessions = request.app.state.sessions
    code = sessions.new_code(user.name, user.role)
    base = str(request.base_url).rstrip("/")
    return {"url": f"{base}/login?code={code}", "expiresInSeconds": int(sessions.code_ttl_s), "user": user.name,
            "role": user.role}
