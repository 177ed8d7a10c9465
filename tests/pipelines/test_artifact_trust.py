"""Artifacts cannot read outside their checkout, smuggle git options, or fetch from local addresses.

Each case runs a pipeline through the API (the real app, executor and local target) whose deployManifest
stage names a hostile artifact; the stage fails saying why, and nothing changed: no resource was applied,
no file outside the checkout was read, no request reached the address, no command ran. Issue #19.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from graylane.pipelines import artifacts
from graylane.resources.document import ResourceKey
from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store

SECRET = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\ndata:\n  token: s3cr3t\n"
GOOD = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata:\n  a: b\n"


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
           "HOME": str(repo.parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def layout(tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An allowed folder holding a git repository, and a secret beside it (outside every allowed folder)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    repo = allowed / "repo"
    (repo / "manifests").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.yaml").write_text(SECRET)
    (repo / "manifests" / "cm.yaml").write_text(GOOD)
    (repo / "manifests" / "link.yaml").symlink_to(outside / "secret.yaml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    monkeypatch.setenv(artifacts.FILE_ROOTS_ENV, str(allowed))
    monkeypatch.delenv(artifacts.NETWORKS_ENV, raising=False)
    return {"repo": repo, "outside": outside, "state": state_dir, "tmp": tmp_path}


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append(self.path)
        body = SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def loopback_server() -> Iterator[str]:
    """A stand-in for the control plane's own API on 127.0.0.1: it records every request it gets."""
    _Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def deploy(tmp: Path, artifact: dict[str, Any], *, expected: dict[str, Any] | None = None) -> tuple[dict, Store]:
    """Run a one-stage deployManifest pipeline through the API; (the finished execution, the store)."""
    async def go() -> dict[str, Any]:
        store = Store.open(f"sqlite:///{tmp / 'api.db'}")
        cp = ControlPlane(store=store)
        app = create_app(cp, start_components=False)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                                   headers={"Authorization": f"Bearer {app.state.cli_token}"})
        stage: dict[str, Any] = {"refId": "1", "type": "deployManifest", "name": "deploy", "account": "local",
                                 "source": "artifact", "requisiteStageRefIds": []}
        pipeline: dict[str, Any] = {"application": "trust", "name": "artifact", "stages": [stage]}
        start: dict[str, Any] = {"parameters": {}}
        if expected is None:
            stage["manifestArtifact"] = artifact
        else:  # the case: a trigger artifact matched by a regex on its name
            pipeline["expectedArtifacts"] = [{"id": "m", "matchArtifact": expected}]
            stage["manifestArtifactId"] = "m"
            start["artifacts"] = [artifact]
        try:
            assert (await client.post("/api/v1/pipelines", json=pipeline)).status_code == 200
            started = await client.post("/api/v1/pipelines/artifact/start", json=start)
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


def refused(layout: dict[str, Path], artifact: dict[str, Any], message: str, **kwargs: Any) -> str:
    exe, store = deploy(layout["tmp"], artifact, **kwargs)
    try:
        assert exe["status"] == "TERMINAL", exe["status"]
        error = json.dumps(exe["stages"][0]["context"].get("exception"), ensure_ascii=False)
        assert message in error, error
        assert "s3cr3t" not in json.dumps(exe, ensure_ascii=False)  # nothing of the secret anywhere
        assert store.list(kind="ConfigMap") == []  # nothing applied
        cached = layout["state"] / "artifacts" / "git" / "files"
        assert not cached.exists() or all("s3cr3t" not in f.read_text() for f in cached.iterdir())
        return error
    finally:
        store.close()


def git_file(reference: str, name: str, version: str | None = None) -> dict[str, Any]:
    artifact = {"type": "git/file", "reference": reference, "name": name}
    return artifact if version is None else {**artifact, "version": version}


@pytest.mark.parametrize("version", [None, "main"], ids=["working-tree", "committed"])
def test_a_matched_name_cannot_climb_out_of_the_checkout(layout: dict[str, Path], version: str | None) -> None:
    artifact = git_file(str(layout["repo"]), "manifests/../../../outside/secret.yaml", version)
    refused(layout, artifact, "leaves the repository",
            expected={"type": "git/file", "name": "manifests/.*"})


def test_a_symbolic_link_cannot_lead_out_of_the_checkout(layout: dict[str, Path]) -> None:
    refused(layout, git_file(str(layout["repo"]), "manifests/link.yaml"), "resolves outside the repository")


@pytest.mark.parametrize("reference", [
    pytest.param("--upload-pack=touch {marker}", id="upload-pack"),
    pytest.param("-u touch {marker}", id="short-option"),
])
def test_a_reference_git_would_read_as_an_option_is_refused(layout: dict[str, Path], reference: str) -> None:
    marker = layout["tmp"] / "pwned"
    refused(layout, git_file(reference.format(marker=marker), "manifests/cm.yaml"), "starts with '-'")
    assert not marker.exists()


def test_a_version_git_would_read_as_an_option_is_refused(layout: dict[str, Path]) -> None:
    refused(layout, git_file(str(layout["repo"]), "manifests/cm.yaml", "--output=/tmp/x"), "starts with '-'")


@pytest.mark.parametrize(("reference", "message"), [
    pytest.param("http://example.com/bookinfo.git", "transport that is not allowed", id="plain-http"),
    pytest.param("git://example.com/bookinfo.git", "transport that is not allowed", id="git-protocol"),
    pytest.param("ext::sh -c touch% {tmp}/pwned", "transport that is not allowed", id="ext-helper"),
    pytest.param("file://{tmp}/outside", "outside the folders artifacts may read", id="file-outside-roots"),
    pytest.param("{tmp}/outside", "outside the folders artifacts may read", id="path-outside-roots"),
    pytest.param("https://127.0.0.1:9/bookinfo.git", "resolves to 127.0.0.1", id="https-loopback"),
    pytest.param("ssh://git@169.254.169.254/x.git", "resolves to 169.254.169.254", id="ssh-link-local"),
    pytest.param("git@localhost:bookinfo.git", "host 'localhost' is not allowed", id="scp-localhost"),
])
def test_only_allowed_transports_and_hosts(layout: dict[str, Path], reference: str, message: str) -> None:
    refused(layout, git_file(reference.format(tmp=layout["tmp"]), "secret.yaml"), message)
    assert not (layout["tmp"] / "pwned").exists()


def test_the_state_folder_is_never_readable_even_under_an_allowed_root(layout: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.FILE_ROOTS_ENV, str(layout["tmp"]))  # a root that holds the state folder
    token = layout["state"] / "cli-token"
    token.write_text("s3cr3t")
    refused(layout, git_file(str(layout["tmp"]), "state/cli-token"), "in Graylane's state folder")
    refused(layout, git_file(str(layout["state"]), "cli-token"), "outside the folders artifacts may read")


def test_file_repositories_work_where_the_operator_allows_them(layout: dict[str, Path]) -> None:
    exe, store = deploy(layout["tmp"], git_file(f"file://{layout['repo']}", "manifests/cm.yaml", "main"))
    try:
        assert exe["status"] == "SUCCEEDED", exe["stages"][0]["context"].get("exception")
        assert store.get(ResourceKey("", "ConfigMap", "default", "fine")) is not None
    finally:
        store.close()


@pytest.mark.parametrize("url", [
    pytest.param("{server}/api/v1/resources/secrets/default/db", id="control-plane-api"),
    pytest.param("http://localhost:{port}/api/v1/resources/secrets/default/db", id="localhost"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/x", id="ipv4-mapped"),
])
def test_http_artifacts_cannot_reach_loopback(layout: dict[str, Path], loopback_server: str, url: str) -> None:
    port = loopback_server.rsplit(":", 1)[1]
    artifact = {"type": "http/file", "reference": url.format(server=loopback_server, port=port), "name": "x"}
    refused(layout, artifact, "not allowed" if "localhost" in url else "resolves to")
    assert _Recorder.seen == []  # no request reached the address


def test_http_artifacts_reach_networks_the_operator_trusts(layout: dict[str, Path], loopback_server: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.NETWORKS_ENV, "127.0.0.0/8")
    exe, store = deploy(layout["tmp"], {"type": "http/file", "reference": f"{loopback_server}/ok.yaml", "name": "x"})
    try:
        assert exe["status"] == "SUCCEEDED", exe["stages"][0]["context"].get("exception")
        assert _Recorder.seen == ["/ok.yaml"]
        assert store.get(ResourceKey("", "ConfigMap", "default", "stolen")) is not None  # it served the secret
    finally:
        store.close()
