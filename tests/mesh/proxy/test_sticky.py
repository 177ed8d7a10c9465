"""Sticky canary through the real proxy: the graylane.io/sticky annotation on the reviews VirtualService."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graylane.errors import ValidationError
from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions

from ..helpers import proxy_workers, sidecar, vs
from .support import client, to

URL = "http://reviews:9080/"
COOKIE = {"cookie": {"name": "gl-canary", "maxAge": "24h", "path": "/", "sameSite": "Lax"}}


def sticky_vs(weights: dict[str, int], sticky: dict | str = COOKIE) -> dict:
    doc = vs("reviews", ["reviews"], [{"route": [to(s, w) for s, w in weights.items()]}])
    doc["metadata"]["annotations"] = {"graylane.io/sticky": sticky if isinstance(sticky, str) else json.dumps(sticky)}
    return doc


def version(r) -> str:
    return r.json()["name"].removeprefix("reviews-")


def test_cookie_jar_keeps_its_version_while_fresh_clients_follow_the_weights(mesh, reviews):
    push, port, _ = reviews
    push([sticky_vs({"v1": 90, "v2": 10})])
    jars = [client(port) for _ in range(20)]
    try:
        first = []
        for c in jars:
            r = c.get(URL)
            assert r.headers["set-cookie"] == \
                f"gl-canary={version(r)}; Max-Age=86400; Path=/; SameSite=Lax; HttpOnly"
            first.append(version(r))
        # Exact with one worker: 10% of 20 fresh users. 20 connections spread over N workers, each exact over its
        # own share: at most one request per worker off in all (docs/dataplane.md, Workers).
        assert abs(first.count("v2") - 2) <= proxy_workers() - 1
        for c, v in zip(jars, first, strict=True):
            r = c.get(URL)
            assert version(r) == v and "set-cookie" not in r.headers  # kept, cookie not rewritten
        push([sticky_vs({"v1": 50, "v2": 50})])
        for _ in range(3):
            assert [version(c.get(URL)) for c in jars] == first
        with client(port) as fresh:
            picks = []
            for _ in range(20):
                fresh.cookies.clear()
                picks.append(version(fresh.get(URL)))
        assert picks.count("v2") == 10  # exact: 50% of 20 fresh users
        assert [version(c.get(URL)) for c in jars] == first
    finally:
        for c in jars:
            c.close()


def test_cookie_is_rewritten_when_the_subset_goes_or_drops_to_zero(mesh, reviews):
    push, port, _ = reviews
    push([sticky_vs({"v1": 50, "v2": 50})])
    with client(port) as c:
        r = c.get(URL, headers={"cookie": "gl-canary=v2"})
        assert version(r) == "v2" and "set-cookie" not in r.headers
        push([sticky_vs({"v1": 100, "v2": 0})])
        r = c.get(URL, headers={"cookie": "gl-canary=v2"})
        assert version(r) == "v1" and r.headers["set-cookie"].startswith("gl-canary=v1;")
        push([sticky_vs({"v1": 100})])
        r = c.get(URL, headers={"cookie": "other=1; gl-canary=v2"})
        assert version(r) == "v1" and r.headers["set-cookie"].startswith("gl-canary=v1;")
        r = c.get(URL, headers={"cookie": "gl-canary=v1"})
        assert version(r) == "v1" and "set-cookie" not in r.headers


def test_header_identity_is_stable_across_weight_changes(mesh, reviews):
    push, port, _ = reviews
    users = [f"user-{i}" for i in range(200)]

    def assignment() -> dict[str, str]:
        with client(port) as c:
            out = {u: version(c.get(URL, headers={"x-user-id": u})) for u in users}
            assert all(version(c.get(URL, headers={"x-user-id": u})) == v for u, v in list(out.items())[:50])
            assert "set-cookie" not in c.get(URL, headers={"x-user-id": users[0]}).headers
        return out

    push([sticky_vs({"v1": 90, "v2": 10}, {"header": "x-user-id"})])
    at10 = assignment()
    push([sticky_vs({"v1": 50, "v2": 50}, {"header": "x-user-id"})])
    at50 = assignment()
    canary10 = {u for u, v in at10.items() if v == "v2"}
    canary50 = {u for u, v in at50.items() if v == "v2"}
    assert canary10 <= canary50  # nobody leaves the canary as it grows
    assert 5 <= len(canary10) <= 40 and 70 <= len(canary50) <= 130
    push([sticky_vs({"v1": 90, "v2": 10}, {"header": "x-user-id"})])
    assert assignment() == at10  # the same users, whatever happened in between


@pytest.mark.parametrize("bad", ['{"cookie": {"maxAge": "soon"}}', '{"cookie": {}, "header": "x"}', "not json",
                                 '{"cookie": {"name": "gl", "sameSite": "lax"}}', '{"header": "a b"}'])
def test_malformed_annotation_is_refused(bad, tmp_path: Path):
    from graylane.cli.main import app

    doc = sticky_vs({"v1": 90, "v2": 10}, bad)
    path = tmp_path / "vs.json"
    path.write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["validate", "-f", str(path), "--use-kube=false"])
    assert result.exit_code != 0
    assert "invalid graylane.io/sticky annotation" in result.output
    with pytest.raises(ValidationError, match="graylane.io/sticky"):
        compile_snapshot([doc], [], [sidecar(15001)], MeshOptions(), 1)


def test_graylane_route_explains_stickiness(tmp_path: Path):
    import yaml

    from graylane.cli.main import app

    from ..helpers import dr, svc
    from ..test_route_cli import deployment

    docs = [svc("reviews"), svc("productpage"), dr("reviews", ["v1", "v2"]),
            deployment("productpage-v1", "productpage", "v1"),
            *[deployment(f"reviews-{v}", "reviews", v) for v in ("v1", "v2")], sticky_vs({"v1": 50, "v2": 50})]
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump_all(docs))

    def route(*extra: str):
        r = CliRunner().invoke(app, ["route", "-f", str(path), "--from", "productpage-v1", URL, *extra])
        assert r.exit_code == 0, r.output
        return r.output if "-o" in extra else " ".join(r.output.split())  # text: the column's padding aside

    assert "sticky: cookie gl-canary=v2 kept" in route("-H", "cookie: gl-canary=v2")
    out = json.loads(route("-H", "cookie: gl-canary=v3", "-o", "json"))
    assert out["sticky"].startswith("cookie gl-canary=") and " set (cookie gl-canary=v3 is not live" in out["sticky"]
    assert out["sticky"].split("=")[1].split(" ")[0] == out["destination"]["subset"]
