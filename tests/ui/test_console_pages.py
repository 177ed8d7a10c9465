"""Console pages and access rules through the real app (no browser: see test_console_flow.py for that)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.ui.signin import sign_in

from graylane.server.app import create_app
from graylane.server.auth import create_token
from graylane.server.context import ControlPlane
from graylane.store import Store

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\ndata: {canary: 'on'}\n"
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n"


@pytest.fixture
def store(state_dir):
    s = Store.open()
    yield s
    s.close()


def client(store, bind: str, monkeypatch) -> TestClient:
    monkeypatch.setenv("GRAYLANE_BIND_HOST", bind)
    return TestClient(create_app(ControlPlane(store=store), start_components=False),
                      base_url="http://127.0.0.1:7380")


def test_pages_render_once_signed_in_with_the_one_time_link(store, monkeypatch):
    c = client(store, "127.0.0.1", monkeypatch)
    page = c.get("/resources", follow_redirects=False)  # loopback alone is not a login
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    sign_in(c)
    for path, text in [("/", "Mesh health"), ("/topology", "Edge labels"), ("/resources", "Apply YAML"),
                       ("/traces", "No traces yet")]:
        r = c.get(path)
        assert r.status_code == 200 and text in r.text, path


def test_apply_from_the_console_with_dry_run_then_history_and_no_secret_values(store, monkeypatch):
    c = client(store, "127.0.0.1", monkeypatch)
    csrf = sign_in(c)
    dry = c.post("/ui/apply", data={"manifest": CM, "dry_run": "1"}, headers=csrf)
    assert "Dry run: nothing was changed." in dry.text and "+  canary:" in dry.text
    assert c.get("/api/v1/resources/cm/flags").status_code == 404
    done = c.post("/ui/apply", data={"manifest": CM + "---\n" + SECRET}, headers=csrf)
    assert "Applied." in done.text
    page = c.get("/resources/ConfigMap/default/flags")
    assert "canary" in page.text and "user:" in page.text  # history shows who applied it
    secret = c.get("/resources/Secret/default/db")
    assert "hunter2" not in secret.text and "&lt;redacted&gt;" in secret.text


def test_bad_yaml_in_the_console_changes_nothing_and_says_where(store, monkeypatch):
    c = client(store, "127.0.0.1", monkeypatch)
    csrf = sign_in(c)
    bad = CM + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"
    r = c.post("/ui/apply", data={"manifest": bad}, headers=csrf)
    assert "Nothing was applied" in r.text and "console" in r.text
    assert store.list(kind="ConfigMap") == []


def test_csrf_token_and_origin_are_checked_for_console_posts(store, monkeypatch):
    c = client(store, "127.0.0.1", monkeypatch)
    csrf = sign_in(c)
    assert c.post("/ui/apply", data={"manifest": CM}).status_code == 403
    assert c.post("/ui/apply", data={"manifest": CM}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    evil = c.post("/ui/apply", data={"manifest": CM}, headers={"Origin": "http://evil.example", **csrf})
    assert evil.status_code == 403 and store.list(kind="ConfigMap") == []


def test_non_loopback_requires_tokens_and_roles(store, monkeypatch):
    c = client(store, "0.0.0.0", monkeypatch)
    assert c.get("/api/v1/resources").status_code == 401
    page = c.get("/resources", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    viewer = create_token(store.engine, "vera", "viewer")
    admin = create_token(store.engine, "ada", "admin")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert c.get("/api/v1/resources", headers=as_viewer).status_code == 200
    refused = c.post("/api/v1/apply", content=CM, headers=as_viewer)
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["error"]["message"]
    ok = c.post("/api/v1/apply", content=CM, headers={"Authorization": f"Bearer {admin}"})
    assert ok.status_code == 200
    assert store.history(store.list(kind="ConfigMap")[0].key)[0].actor == "user:ada"
    assert c.get("/api/v1/resources", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_console_login_with_a_token_sets_a_session(store, monkeypatch):
    c = client(store, "0.0.0.0", monkeypatch)
    token = create_token(store.engine, "ann", "approver")
    c.get("/login")
    csrf = c.cookies["graylane_csrf"]
    assert "not valid" in c.post("/login", data={"token": "wrong", "next": "/", "csrf_token": csrf}).text
    assert "form expired" in c.post("/login", data={"token": token, "next": "/traces"}).text  # no CSRF field
    r = c.post("/login", data={"token": token, "next": "/traces", "csrf_token": c.cookies["graylane_csrf"]},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/traces"
    assert "ann · approver" in c.get("/traces").text
