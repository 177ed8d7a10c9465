"""How a person opens the console: the one-time link the CLI asks for with the operator's token."""

from __future__ import annotations

import re
from typing import Any

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def login_link(client: Any, token: str) -> str:
    """What `graylane status` prints: POST /api/v1/auth/login-links with the CLI token."""
    resp = client.post("/api/v1/auth/login-links", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["url"])


def sign_in(client: Any) -> dict[str, str]:
    """Open the link in a TestClient (cookie jar = the browser) and return the CSRF header its pages carry."""
    opened = client.get(login_link(client, client.app.state.cli_token), follow_redirects=False)
    assert opened.status_code == 303, opened.text
    match = CSRF_META.search(client.get("/").text)
    assert match, "the console page carries no CSRF token"
    return {"X-CSRF-Token": match.group(1)}
