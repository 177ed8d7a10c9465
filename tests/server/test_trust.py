"""Who may do what, over a real socket: the CLI token, the Host allow-list, cross-site requests, console
sessions and their CSRF token, Secret redaction, execution deletion. Every refusal also checks that
nothing changed."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.server.serve import Served, serving

from graylane.cli.client import ApiClient
from graylane.server.auth import create_token
from graylane.settings import cli_token_path, read_cli_token
from graylane.store import Store

DEPLOYMENT = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: pwned}\n"
              "spec:\n  selector: {matchLabels: {app: x}}\n"
              "  template:\n    metadata: {labels: {app: x}}\n    spec:\n      containers:\n"
              "      - {name: x, image: local, command: [touch, /tmp/pwned]}\n")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\ndata: {canary: 'on'}\n"
SECRET = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: hunter2}\n"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def served(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("GRAYLANE_BIND_HOST", raising=False)
    monkeypatch.delenv("GRAYLANE_TOKEN", raising=False)
    monkeypatch.setenv("GRAYLANE_ALLOWED_HOSTS", "graylane.internal")
    store = Store.open()
    try:
        with serving(store) as s:
            monkeypatch.setenv("GRAYLANE_SERVER", f"127.0.0.1:{s.port}")
            yield s
    finally:
        store.close()


def nothing_stored(s: Served) -> bool:
    return s.store.list() == []


def error_of(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body["error"]) >= {"message", "where", "hint"}, body
    return str(body["error"]["message"])


def sign_in(s: Served, browser: httpx.Client) -> str:
    """Open the one-time link (as from `graylane status`) in `browser`; return its pages' CSRF token."""
    link = s.operator().post("/api/v1/auth/login-links").json()["url"]
    opened = browser.get(link, follow_redirects=False)
    assert opened.status_code == 303 and "code=" not in opened.headers["location"]
    page = browser.get("/resources")
    assert page.status_code == 200, page.text
    match = CSRF_META.search(page.text)
    assert match
    return match.group(1)


# -- the CLI token ---------------------------------------------------------------------------------

def test_the_cli_token_is_a_private_file_the_cli_reads_by_itself(served: Served, state_dir: Path) -> None:
    path = cli_token_path(state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_cli_token(state_dir) == served.token
    applied = ApiClient().post("/api/v1/apply", content=CM, headers={"X-Graylane-User": "alice"})
    assert applied["results"][0]["action"] == "created"
    [cm] = served.store.list(kind="ConfigMap")
    assert served.store.history(cm.key)[0].actor == "user:alice"


def test_a_token_file_others_can_read_is_not_used(served: Served, state_dir: Path) -> None:
    cli_token_path(state_dir).chmod(0o644)
    assert read_cli_token(state_dir) is None
    refused = httpx.post(f"{served.url}/api/v1/apply", content=CM, headers={"content-type": "application/yaml"})
    assert refused.status_code == 401 and nothing_stored(served)


def test_loopback_without_a_token_reads_the_api_but_changes_nothing(served: Served) -> None:
    anon = served.client()
    assert anon.get("/api/v1/resources").status_code == 200
    for method, path in [("POST", "/api/v1/apply"), ("POST", "/api/v1/pipelines"), ("POST", "/ui/apply"),
                         ("POST", "/api/v1/auth/login-links")]:
        resp = anon.request(method, path, content=DEPLOYMENT, headers={"content-type": "application/yaml"})
        assert resp.status_code == 401, (path, resp.text)
        assert "cli-token" in resp.json()["error"]["hint"]
    page = anon.get("/resources", follow_redirects=False)  # the console wants a session, not an address
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert nothing_stored(served) and anon.get("/api/v1/pipelines").json() == []


def test_answers_may_not_be_embedded_by_other_sites(served: Served) -> None:
    for resp in (served.client().get("/api/v1/resources"), served.client().get("/login"),
                 served.client().get("/api/v1/resources", headers={"host": "attacker.example"})):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cross-origin-resource-policy"] == "same-origin"


def test_a_wrong_token_is_refused_not_downgraded(served: Served) -> None:
    resp = served.client("gl_not-a-token").get("/api/v1/resources")
    assert resp.status_code == 401 and "not valid" in error_of(resp)
    # Public paths ignore credentials meant for something else (a scraper's basic auth).
    assert served.client().get("/healthz", headers={"Authorization": "Basic eDp5"}).status_code == 200


# -- cross-site requests and DNS rebinding ----------------------------------------------------------

@pytest.mark.parametrize("headers", [
    pytest.param({"content-type": "text/plain", "origin": "null"}, id="text-plain-origin-null"),
    pytest.param({"content-type": "text/plain", "origin": "http://evil.example"}, id="text-plain-other-origin"),
    pytest.param({"content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "cross-site"},
                 id="form-cross-site"),
    pytest.param({"content-type": "text/plain", "origin": "http://127.0.0.1:3000"}, id="another-localhost-port"),
])
def test_cross_site_posts_never_reach_apply(served: Served, headers: dict[str, str]) -> None:
    anon = served.client()
    for path in ("/api/v1/apply", "/ui/apply"):
        resp = anon.post(path, content=DEPLOYMENT, headers=headers)
        assert resp.status_code == 403 and "cross-site request refused" in error_of(resp), resp.text
    # Even a page that somehow had the operator's token cannot use it cross-site.
    resp = served.operator().post("/api/v1/apply", content=DEPLOYMENT, headers=headers)
    assert resp.status_code == 403
    assert nothing_stored(served)


def test_dns_rebinding_host_is_refused_for_reads_and_writes(served: Served) -> None:
    rebound = {"host": f"attacker.example:{served.port}", "origin": f"http://attacker.example:{served.port}"}
    read = served.client().get("/api/v1/resources", headers=rebound)
    assert read.status_code == 403
    assert f"Host 'attacker.example:{served.port}' is not an address this server answers to" == error_of(read)
    write = served.operator().post("/api/v1/apply", content=DEPLOYMENT,
                                   headers={**rebound, "content-type": "application/yaml"})
    assert write.status_code == 403 and nothing_stored(served)
    other_port = served.client().get("/healthz", headers={"host": "127.0.0.1:1"})
    assert other_port.status_code == 403 and "port 1" in error_of(other_port)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "graylane.internal"])
def test_the_addresses_graylane_serves_are_allowed(served: Served, host: str) -> None:
    resp = served.operator().get("/api/v1/resources", headers={"host": f"{host}:{served.port}"})
    assert resp.status_code == 200, resp.text


# -- console sessions -------------------------------------------------------------------------------

def test_console_writes_need_the_sessions_csrf_token(served: Served) -> None:
    browser = served.client()
    csrf = sign_in(served, browser)
    same_origin = {"origin": served.url, "sec-fetch-site": "same-origin"}
    plain = browser.post("/ui/apply", data={"manifest": CM}, headers=same_origin)
    assert plain.status_code == 403 and "CSRF" in error_of(plain)
    other = served.client()
    other_csrf = sign_in(served, other)
    forged = browser.post("/ui/apply", data={"manifest": CM}, headers={**same_origin, "x-csrf-token": other_csrf})
    assert forged.status_code == 403 and nothing_stored(served)
    done = browser.post("/ui/apply", data={"manifest": CM}, headers={**same_origin, "x-csrf-token": csrf})
    assert done.status_code == 200 and "Applied." in done.text
    assert [r.key.name for r in served.store.list(kind="ConfigMap")] == ["flags"]


def test_a_login_link_works_once(served: Served) -> None:
    link = served.operator().post("/api/v1/auth/login-links").json()["url"]
    assert served.client().get(link, follow_redirects=False).status_code == 303
    again = served.client().get(link, follow_redirects=False)
    assert again.status_code == 200 and "used already or has expired" in again.text
    assert "graylane_session" not in again.cookies


# -- roles ------------------------------------------------------------------------------------------

def test_secret_values_are_redacted_everywhere_for_every_role(served: Served) -> None:
    admin = served.operator()
    first = admin.post("/api/v1/apply", content=SECRET, headers={"content-type": "application/yaml"})
    second = admin.post("/api/v1/apply", content=SECRET.replace("hunter2", "hunter3"),
                        headers={"content-type": "application/yaml"})
    for resp in (first, second):  # the apply's own diff names the changed key, never a value
        assert resp.status_code == 200 and "hunter" not in resp.text, resp.text
    assert "<redacted: changed>" in second.json()["results"][0]["diff"]
    viewer = served.client(create_token(served.store.engine, "vera", "viewer"))
    approver = served.client(create_token(served.store.engine, "ann", "approver"))
    paths = ["/api/v1/resources/secrets/db", "/api/v1/resources/secret", "/api/v1/resources",
             "/api/v1/resources/secrets/db/history", "/api/v1/resources/secrets/db/history/1",
             "/api/v1/resources/secrets/db/history/2", "/api/v1/resources/secrets/db/history/2/diff",
             "/api/v1/resources/secrets/db/history/1/diff?against=current"]
    for client in (viewer, approver, served.client(), admin):
        for path in paths:
            resp = client.get(path)
            assert resp.status_code == 200, (path, resp.text)
            assert "hunter" not in resp.text, path
    assert viewer.get("/api/v1/resources/secrets/db").json()["stringData"] == {"password": "<redacted>"}
    assert admin.get("/api/v1/resources/secrets/db").json()["stringData"] == {"password": "<redacted>"}
    diff = admin.get("/api/v1/resources/secrets/db/history/2/diff").json()["diff"]
    assert "+  password: '<redacted: changed>'" in diff


def test_only_admins_delete_executions_and_the_deletion_is_audited(served: Served) -> None:
    admin = served.operator()
    pipeline = {"application": "shop", "name": "quick",
                "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}
    assert admin.post("/api/v1/pipelines", json=pipeline).status_code == 200
    eid = admin.post("/api/v1/pipelines/quick/start", json={}).json()["id"]
    wait_complete(admin, eid)
    approver = served.client(create_token(served.store.engine, "ann", "approver"))
    refused = approver.delete(f"/api/v1/executions/{eid}")
    assert refused.status_code == 403 and "needs the admin role" in error_of(refused)
    kept = admin.get(f"/api/v1/executions/{eid}")
    assert kept.status_code == 200 and kept.json()["audit"] is not None
    assert admin.get("/api/v1/audit").json()["items"] == []
    assert admin.delete(f"/api/v1/executions/{eid}", headers={"X-Graylane-User": "ada"}).status_code == 200
    assert admin.get(f"/api/v1/executions/{eid}").status_code == 404
    [entry] = admin.get("/api/v1/audit").json()["items"]
    assert entry["action"] == "delete-execution" and entry["subject"] == eid and entry["actor"] == "user:ada"
    assert entry["detail"]["pipeline"] == "quick" and entry["detail"]["status"] == "SUCCEEDED"


def wait_complete(client: httpx.Client, eid: str) -> None:
    with client.stream("GET", f"/api/v1/executions/{eid}/events") as events:
        if client.get(f"/api/v1/executions/{eid}").json()["status"] == "SUCCEEDED":
            return
        for line in events.iter_lines():
            if line.startswith("data:") and '"SUCCEEDED"' in line and '"execution"' in line:
                return
    raise AssertionError(f"execution {eid} did not succeed")
