"""The common file artifact types: github/file, gitlab/file, bitbucket/file, http/file, embedded/base64.

A real HTTP server on loopback (trusted the way test_artifact_trust.py trusts it, with
$GRAYLANE_ARTIFACT_NETWORKS) emulates the GitHub contents API, GitLab's raw file API and Bitbucket's src API,
and answers only when the provider's auth header carries the token of the stored Secret that
`artifactAccount` names. Pipelines run through the API (real app, executor and local target). Refusals:
an unknown type at import, an oversize download, a redirect to a forbidden address, a Secret sent to a host
it does not list, credentials across a redirect to another origin.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from graylane.pipelines import artifacts
from graylane.resources.document import ResourceKey
from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store

TOKEN = "t0k3n-for-tests"
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  from: {name}\n"
GITHUB_PATH = "/repos/org/repo/contents/manifests/cm.yaml"
GITLAB_PATH = "/api/v4/projects/org%2Frepo/repository/files/manifests%2Fcm.yaml/raw"
BITBUCKET_PATH = "/2.0/repositories/org/repo/src/main/manifests/cm.yaml"


class _Api(BaseHTTPRequestHandler):
    """GitHub, GitLab and Bitbucket file endpoints, a plain file, an oversize file and redirects."""

    seen: list[dict[str, Any]] = []
    other: str = ""  # the second server's base URL (another origin)

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        type(self).seen.append({"path": parts.path, "query": query, "headers": headers})
        ref = (query.get("ref") or [""])[0]
        if parts.path == GITHUB_PATH:  # Accept: application/vnd.github.v3.raw gives the raw file
            ok = headers.get("authorization") == f"token {TOKEN}" and \
                headers.get("accept") == "application/vnd.github.v3.raw" and ref == "main"
            return self._send(200, CM.format(name="from-github").encode()) if ok else self._send(404)
        if parts.path == GITLAB_PATH:
            ok = headers.get("private-token") == TOKEN and ref == "main"
            return self._send(200, CM.format(name="from-gitlab").encode()) if ok else self._send(401)
        if parts.path == BITBUCKET_PATH:
            basic = base64.b64encode(b"me:app-password").decode()
            ok = headers.get("authorization") in (f"Bearer {TOKEN}", f"Basic {basic}")
            return self._send(200, CM.format(name="from-bitbucket").encode()) if ok else self._send(401)
        if parts.path == "/plain.yaml":
            return self._send(200, CM.format(name="from-http").encode())
        if parts.path == "/big.yaml":
            return self._send(200, b"# " + b"x" * 4096 + b"\n")
        if parts.path == "/moved.yaml":
            return self._send(302, headers={"Location": "/plain.yaml"})
        if parts.path == "/to-metadata":
            return self._send(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        if parts.path == "/to-localhost":
            return self._send(301, headers={"Location": f"http://localhost:{self.server.server_address[1]}/x"})
        if parts.path == "/to-file":
            return self._send(302, headers={"Location": "file:///etc/passwd"})
        if parts.path == "/to-other-origin":
            return self._send(307, headers={"Location": f"{type(self).other}/plain.yaml"})
        return self._send(404)


def _serve() -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def api(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The emulated APIs on 127.0.0.1 (trusted for this test), plus a second origin for redirects."""
    monkeypatch.setenv(artifacts.NETWORKS_ENV, "127.0.0.0/8")
    _Api.seen = []
    first, base = _serve()
    second, _Api.other = _serve()
    yield base
    for httpd in (first, second):
        httpd.shutdown()
        httpd.server_close()


def secret(name: str, hosts: str | None = "127.0.0.1", label: bool = True, **data: str) -> dict[str, Any]:
    """A Secret as an operator stores it for an artifact account (values base64 in `data`)."""
    if hosts is not None:
        data["hosts"] = hosts
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if label:
        meta["labels"] = {artifacts.ACCOUNT_LABEL: "true"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def run(tmp: Path, artifact: dict[str, Any], secrets: tuple[dict[str, Any], ...] = ()) -> tuple[dict, Store]:
    """Store the Secrets, run a one-stage deployManifest pipeline of `artifact` (bound through an expected
    artifact, as a trigger sends it) through the API; (the finished execution, the store)."""
    async def go() -> dict[str, Any]:
        store = Store.open(f"sqlite:///{tmp / 'api.db'}")
        if secrets:
            store.apply(list(secrets), actor="user:operator")
        cp = ControlPlane(store=store)
        app = create_app(cp, start_components=False)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                   headers={"Authorization": f"Bearer {app.state.cli_token}"})
        pipeline = {"application": "types", "name": "artifact",
                    "expectedArtifacts": [{"id": "m", "matchArtifact": {"type": artifact["type"]}}],
                    "stages": [{"refId": "1", "type": "deployManifest", "name": "deploy", "account": "local",
                                "source": "artifact", "manifestArtifactId": "m", "requisiteStageRefIds": []}]}
        try:
            saved = await client.post("/api/v1/pipelines", json=pipeline)
            assert saved.status_code == 200, saved.text
            started = await client.post("/api/v1/pipelines/artifact/start", json={"artifacts": [artifact]})
            assert started.status_code == 200, started.text
            for _ in range(500):
                exe = (await client.get(f"/api/v1/executions/{started.json()['id']}")).json()
                if exe["status"] not in ("NOT_STARTED", "RUNNING"):
                    return exe
                await asyncio.sleep(0.02)
            raise AssertionError(f"the execution is still {exe['status']}")
        finally:
            await client.aclose()
            comp = cp.components.get("pipelines")
            if comp is not None:
                await comp.executor.stop()

    exe = asyncio.run(go())
    return exe, Store.open(f"sqlite:///{tmp / 'api.db'}")


def deployed(tmp: Path, artifact: dict[str, Any], name: str, secrets: tuple[dict[str, Any], ...] = ()) -> None:
    exe, store = run(tmp, artifact, secrets)
    try:
        assert exe["status"] == "SUCCEEDED", exe["stages"][0]["context"].get("exception")
        assert store.get(ResourceKey("", "ConfigMap", "default", name)) is not None
        assert TOKEN not in json.dumps(exe, ensure_ascii=False)  # the token is never shown
    finally:
        store.close()


def failed(tmp: Path, artifact: dict[str, Any], message: str, secrets: tuple[dict[str, Any], ...] = ()) -> str:
    exe, store = run(tmp, artifact, secrets)
    try:
        assert exe["status"] == "TERMINAL", exe["status"]
        error = json.dumps(exe["stages"][0]["context"].get("exception"), ensure_ascii=False)
        assert message in error, error
        assert TOKEN not in json.dumps(exe, ensure_ascii=False)  # the token is never shown
        assert store.list(kind="ConfigMap") == []  # nothing applied
        return error
    finally:
        store.close()


# -- the providers, with the auth header each one reads ---------------------------------------------------------

def test_github_file_uses_the_contents_api_with_a_token(tmp_path: Path, api: str) -> None:
    artifact = {"type": "github/file", "reference": f"{api}{GITHUB_PATH}", "version": "main",
                "name": "manifests/cm.yaml", "artifactAccount": "github-ci"}
    deployed(tmp_path, artifact, "from-github", (secret("github-ci", token=TOKEN),))
    (req,) = _Api.seen
    assert req["headers"]["authorization"] == f"token {TOKEN}"
    assert req["headers"]["accept"] == "application/vnd.github.v3.raw"
    assert req["query"] == {"ref": ["main"]}


def test_gitlab_file_sends_private_token_and_ref(tmp_path: Path, api: str) -> None:
    artifact = {"type": "gitlab/file", "reference": f"{api}{GITLAB_PATH}", "version": "main",
                "name": "manifests/cm.yaml", "artifactAccount": "ops/gitlab"}  # namespace/name
    ops_secret = {**secret("gitlab", token=TOKEN), "metadata": {"name": "gitlab", "namespace": "ops",
                                                                "labels": {artifacts.ACCOUNT_LABEL: "true"}}}
    deployed(tmp_path, artifact, "from-gitlab", (ops_secret,))
    (req,) = _Api.seen
    assert req["headers"]["private-token"] == TOKEN and "authorization" not in req["headers"]
    assert req["path"] == GITLAB_PATH  # the %2F-encoded project and file path reach the server as written


@pytest.mark.parametrize(("data", "header"), [
    pytest.param({"token": TOKEN}, f"Bearer {TOKEN}", id="token-bearer"),
    pytest.param({"username": "me", "password": "app-password"},
                 "Basic " + base64.b64encode(b"me:app-password").decode(), id="app-password-basic"),
])
def test_bitbucket_file_with_bearer_or_basic(tmp_path: Path, api: str, data: dict[str, str], header: str) -> None:
    artifact = {"type": "bitbucket/file", "reference": f"{api}{BITBUCKET_PATH}", "name": "manifests/cm.yaml",
                "artifactAccount": "bitbucket"}
    deployed(tmp_path, artifact, "from-bitbucket", (secret("bitbucket", **data),))
    assert [r["headers"]["authorization"] for r in _Api.seen] == [header]


def test_http_file_follows_a_redirect_on_an_allowed_address(tmp_path: Path, api: str) -> None:
    deployed(tmp_path, {"type": "http/file", "reference": f"{api}/moved.yaml", "name": "x"}, "from-http")
    assert [r["path"] for r in _Api.seen] == ["/moved.yaml", "/plain.yaml"]


def test_embedded_base64_is_decoded(tmp_path: Path, state_dir: Path) -> None:
    text = CM.format(name="from-embedded") + "  note: 灰度\n"
    artifact = {"type": "embedded/base64", "name": "cm", "reference": base64.b64encode(text.encode()).decode()}
    deployed(tmp_path, artifact, "from-embedded")


def test_embedded_base64_that_is_not_base64_fails_the_stage(tmp_path: Path, state_dir: Path) -> None:
    failed(tmp_path, {"type": "embedded/base64", "name": "cm", "reference": "not base64!"}, "is not base64 text")


# -- credentials: only where the operator said, never across origins -------------------------------------------

def test_without_a_secret_nothing_is_sent_and_the_error_says_so(tmp_path: Path, api: str) -> None:
    artifact = {"type": "github/file", "reference": f"{api}{GITHUB_PATH}", "version": "main", "name": "x",
                "artifactAccount": "github-ci"}
    failed(tmp_path, artifact, "no credentials were sent")
    assert "authorization" not in _Api.seen[0]["headers"]


def test_a_secret_without_the_label_is_never_used(tmp_path: Path, api: str) -> None:
    artifact = {"type": "github/file", "reference": f"{api}{GITHUB_PATH}", "version": "main", "name": "x",
                "artifactAccount": "db-password"}
    failed(tmp_path, artifact, "is not marked as artifact credentials",
           (secret("db-password", label=False, token=TOKEN),))
    assert _Api.seen == []


def test_a_secret_goes_only_to_the_hosts_it_lists(tmp_path: Path, api: str) -> None:
    # no `hosts`: a github/file account's token goes to api.github.com only, not to an address a pipeline picks
    artifact = {"type": "github/file", "reference": f"{api}{GITHUB_PATH}", "version": "main", "name": "x",
                "artifactAccount": "github-ci"}
    failed(tmp_path, artifact, "may be sent to api.github.com, not 127.0.0.1",
           (secret("github-ci", hosts=None, token=TOKEN),))
    assert _Api.seen == []


def test_credentials_are_not_sent_across_a_redirect_to_another_origin(tmp_path: Path, api: str) -> None:
    artifact = {"type": "http/file", "reference": f"{api}/to-other-origin", "name": "x", "artifactAccount": "web"}
    deployed(tmp_path, artifact, "from-http", (secret("web", token=TOKEN),))
    first, second = _Api.seen
    assert first["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in second["headers"]


# -- refusals: size, redirects, unknown types at import --------------------------------------------------------

def test_an_oversize_download_is_refused(tmp_path: Path, api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "HTTP_MAX_BYTES", 1024)
    failed(tmp_path, {"type": "http/file", "reference": f"{api}/big.yaml", "name": "x"}, "larger than 1024 bytes")


def test_an_oversize_embedded_artifact_is_refused(tmp_path: Path, state_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "HTTP_MAX_BYTES", 1024)
    reference = base64.b64encode(b"# " + b"x" * 4096).decode()
    failed(tmp_path, {"type": "embedded/base64", "name": "cm", "reference": reference}, "larger than 1024 bytes")


@pytest.mark.parametrize(("path", "message"), [
    pytest.param("/to-metadata", "resolves to 169.254.169.254", id="link-local-metadata"),
    pytest.param("/to-localhost", "host 'localhost' is not allowed", id="localhost-name"),
    pytest.param("/to-file", "is not an http(s) URL", id="file-scheme"),
])
def test_a_redirect_to_a_forbidden_address_is_refused(tmp_path: Path, api: str, path: str, message: str) -> None:
    failed(tmp_path, {"type": "http/file", "reference": f"{api}{path}", "name": "x"}, message)
    assert [r["path"] for r in _Api.seen] == [path]  # the redirect was not followed


def test_a_repository_page_as_github_reference_says_what_github_file_expects(tmp_path: Path, state_dir: Path) -> None:
    artifact = {"type": "github/file", "reference": "https://github.com/org/repo", "name": "manifests/cm.yaml"}
    error = failed(tmp_path, artifact, "is a repository page, not the contents API")
    assert "https://api.github.com/repos/ORG/REPO/contents/PATH" in error


def _import(tmp: Path, pipeline: dict[str, Any]) -> httpx.Response:
    async def go() -> httpx.Response:
        store = Store.open(f"sqlite:///{tmp / 'api.db'}")
        app = create_app(ControlPlane(store=store), start_components=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                     headers={"Authorization": f"Bearer {app.state.cli_token}"}) as client:
            return await client.post("/api/v1/pipelines", json=pipeline)

    return asyncio.run(go())


@pytest.mark.parametrize(("expected", "stage", "where"), [
    pytest.param([{"id": "img", "displayName": "chart", "matchArtifact": {"type": "helm/chart"}}],
                 {"manifestArtifactId": "img"}, "expected artifact 'chart' (matchArtifact) has type 'helm/chart'",
                 id="expected-artifact"),
    pytest.param([{"id": "m", "matchArtifact": {"type": "github/.*"},
                   "defaultArtifact": {"type": "s3/object", "reference": "s3://b/k"}}],
                 {"manifestArtifactId": "m"}, "expected artifact 'm' (defaultArtifact) has type 's3/object'",
                 id="default-artifact"),
    pytest.param([], {"manifestArtifact": {"type": "gcs/object", "reference": "gs://b/k"}},
                 "manifestArtifact has type 'gcs/object'", id="inline"),
])
def test_a_type_graylane_cannot_fetch_is_refused_at_import(tmp_path: Path, state_dir: Path,
                                                           expected: list[dict[str, Any]], stage: dict[str, Any],
                                                           where: str) -> None:
    pipeline = {"application": "types", "name": "unfetchable", "expectedArtifacts": expected,
                "stages": [{"refId": "1", "type": "deployManifest", "name": "deploy", "account": "local",
                            "source": "artifact", **stage}]}
    answer = _import(tmp_path, pipeline)
    assert answer.status_code == 422, answer.text
    assert "stages[0] ('deploy')" in answer.text and where in answer.text, answer.text
    assert "which Graylane cannot fetch (supported: " + ", ".join(artifacts.SUPPORTED_TYPES) in answer.text


def test_types_that_are_never_fetched_still_import(tmp_path: Path, state_dir: Path) -> None:
    # a docker/image expected artifact (bound into manifests, not fetched) and a regex that can match a
    # fetchable type are fine
    pipeline = {"application": "types", "name": "fine",
                "expectedArtifacts": [{"id": "img", "matchArtifact": {"type": "docker/image"}},
                                      {"id": "m", "matchArtifact": {"type": ".*/file"}}],
                "stages": [{"refId": "1", "type": "deployManifest", "name": "deploy", "account": "local",
                            "source": "artifact", "manifestArtifactId": "m", "requiredArtifactIds": ["img"]}]}
    answer = _import(tmp_path, pipeline)
    assert answer.status_code == 200, answer.text
