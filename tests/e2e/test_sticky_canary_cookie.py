"""Sticky canary by cookie, end to end on the local mesh (issue 15): `graylane up`, web v1 and v2 as real
processes, a canaryRollout that turns on a cookie-sticky route at 10% then moves to 50%, and HTTP clients with
cookie jars through the gateway. Every client pinned at 10% keeps its version after the move to 50%, and fresh
clients (no cookie) split exactly by the weights: with one data-plane worker the pick is exact per cycle of
`sum(weights)` = 100 requests (docs/dataplane.md, Splits), and returning clients take no part in it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.test_local_mesh import BASE, Mesh, deployment, fresh_mesh, virtual_service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
STICKY = {"cookie": {"name": "gl-canary", "maxAge": "1h", "path": "/", "sameSite": "Lax"}}
PIPELINE = {"application": "web", "name": "web-sticky", "stages": [
    {"refId": "1", "type": "canaryRollout", "name": "web canary", "account": "local", "service": "web",
     "virtualService": "web", "stableSubset": "v1", "canarySubset": "v2",
     "steps": [{"setWeight": 10, "sticky": STICKY}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}]}


def release(mesh: Mesh) -> dict[str, Any]:
    return json.loads(mesh.cli("release", "status", "web", "-o", "json").stdout)  # type: ignore[no-any-return]


def paused_at(mesh: Mesh, step: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = release(mesh)
        if s["phase"] == "Paused" and s["step"]["index"] == step:
            return s
        assert s["phase"] not in ("Aborted", "Degraded"), s
        assert time.monotonic() < deadline, s
        time.sleep(0.2)


def visit(client: httpx.Client, url: str) -> tuple[str, str | None]:
    """One page load: the version that answered and the gl-canary cookie the response set (None: none set)."""
    resp = client.get(url)
    assert resp.status_code == 200, resp.text[:200]
    set_cookie = [v for k, v in resp.headers.multi_items() if k == "set-cookie"]
    cookie = None
    for value in set_cookie:
        m = re.match(r"gl-canary=([^;]*)", value)
        if m:
            cookie = m.group(1)
            assert "Max-Age=3600" in value and "Path=/" in value and "SameSite=Lax" in value, value
    return resp.json()["version"], cookie


def fresh(url: str) -> str:
    """A first-time visitor (new client, empty jar): its version, which its new cookie must name."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        version, cookie = visit(client, url)
    assert cookie == version, (version, cookie)
    return version


def test_cookie_jar_clients_keep_their_version_from_10_to_50_and_fresh_ones_split_exactly(tmp_path: Path) -> None:
    with fresh_mesh(tmp_path) as mesh:
        mesh.apply(BASE + "---" + deployment("web-v1", "v1", 1) + "---" + deployment("web-v2", "v2", 1)
                   + "---" + virtual_service(100, 0), "app.yaml")
        (tmp_path / "p.json").write_text(json.dumps(PIPELINE))
        mesh.cli("pipeline", "import", str(tmp_path / "p.json"))
        mesh.cli("pipeline", "run", "web-sticky")
        s = paused_at(mesh, 1)
        assert s["weights"] == {"web": {"v1": 90, "v2": 10}}

        # 100 users arrive at 10%, each with its own cookie jar: exactly 90 on v1 and 10 on v2, each told its
        # subset by the cookie, and each kept there on its next visit (the cookie is sent, none is set again).
        jars = [httpx.Client(trust_env=False, timeout=10) for _ in range(100)]
        try:
            first: list[str] = []
            for jar in jars:
                version, cookie = visit(jar, mesh.url)
                assert cookie == version, (version, cookie)
                assert jar.cookies.get("gl-canary") == version
                first.append(version)
            assert Counter(first) == {"v1": 90, "v2": 10}
            assert [visit(jar, mesh.url) for jar in jars] == [(v, None) for v in first]

            mesh.cli("release", "promote", "web")  # end the pause: setWeight 50
            s = paused_at(mesh, 3)
            assert s["weights"] == {"web": {"v1": 50, "v2": 50}}

            # After the move every returning user keeps the version it had at 10% (no v1 user is moved to the
            # canary, none on the canary is moved back), while new users, arriving between them, follow the new
            # weights exactly: 50 and 50 over 100, as if the returning users were not there.
            returning: list[tuple[str, str | None]] = []
            newcomers: list[str] = []
            for jar in jars:
                returning.append(visit(jar, mesh.url))
                newcomers.append(fresh(mesh.url))
            assert returning == [(v, None) for v in first]
            assert Counter(newcomers) == {"v1": 50, "v2": 50}
            assert Counter(fresh(mesh.url) for _ in range(100)) == {"v1": 50, "v2": 50}  # and over the next 100
        finally:
            for jar in jars:
                jar.close()
