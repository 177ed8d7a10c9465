"""Artifacts: bind expectedArtifacts at trigger time, and fetch artifact text (git/file, embedded/base64, http/file).

git/file: `reference` is a repository URL or local path, `version` a branch/tag/commit (default HEAD), and
`name` (or `location`/`metadata.path`) the file's path. Read with the system git; cached per commit.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx

from graylane import settings
from graylane.errors import GraylaneError, ValidationError

SUPPORTED_TYPES = ("git/file", "embedded/base64", "http/file")


def _matches(expected: dict[str, Any], artifact: dict[str, Any]) -> bool:
    """Spinnaker's ArtifactMatcher: every field set on the expected artifact matches (strings as regexes)."""
    for key in ("type", "name", "version", "location", "reference", "artifactAccount"):
        want = expected.get(key)
        if want in (None, ""):
            continue
        have = artifact.get(key)
        if have is None:
            return False
        if isinstance(want, str):
            try:
                if re.fullmatch(want, str(have)) is None:
                    return False
            except re.error:
                if want != str(have):
                    return False
        elif want != have:
            return False
    return True


def bind_expected(expected: list[dict[str, Any]], received: list[dict[str, Any]],
                  prior: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`resolvedExpectedArtifacts`: each expected artifact with its `boundArtifact`, or a ValidationError."""
    out: list[dict[str, Any]] = []
    prior_by_id = {p.get("id"): p.get("boundArtifact") for p in prior or []}
    for ea in expected:
        match = ea.get("matchArtifact") or {}
        bound = next((a for a in received if _matches(match, a)), None)
        if bound is None and ea.get("usePriorArtifact") and prior_by_id.get(ea.get("id")):
            bound = prior_by_id[ea["id"]]
        if bound is None and ea.get("useDefaultArtifact", ea.get("defaultArtifact") is not None) \
                and ea.get("defaultArtifact"):
            bound = dict(ea["defaultArtifact"])
        if bound is None:
            raise ValidationError(f"Unmatched expected artifact {ea.get('displayName') or ea.get('id')!r} could not "
                                  f"be resolved (match: {match})",
                                  hint="send a matching artifact, or give it a defaultArtifact / usePriorArtifact")
        out.append({**ea, "boundArtifact": bound})
    return out


def bound_artifact(execution: dict[str, Any], expected_id: str | None,
                   inline: dict[str, Any] | None = None) -> dict[str, Any] | None:
    if inline:
        return inline
    trigger = execution.get("trigger") or {}
    for ea in trigger.get("resolvedExpectedArtifacts") or []:
        if ea.get("id") == expected_id:
            return ea.get("boundArtifact")
    for st in execution.get("stages") or []:  # artifacts produced by upstream stages
        for ea in (st.get("outputs") or {}).get("resolvedExpectedArtifacts") or []:
            if ea.get("id") == expected_id:
                return ea.get("boundArtifact")
    return None


async def _git(*args: str, cwd: Path | None = None) -> str:
    proc = await asyncio.create_subprocess_exec("git", *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise GraylaneError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def fetch_git_file(reference: str, version: str | None, path: str) -> str:
    """The file at `path` in `reference` at `version`; cached per commit under the state folder."""
    cache = settings.state_dir() / "artifacts" / "git"
    local = None if "://" in reference or reference.startswith("git@") else Path(reference)
    if local is not None and local.is_dir():
        try:
            bare = (await _git("-C", str(local), "rev-parse", "--is-bare-repository")).strip() == "true"
        except GraylaneError:
            if version:
                raise GraylaneError(f"{reference} is not a git repository, so version {version!r} cannot be read",
                                    hint="drop `version` to read the folder as it is") from None
            target = local / path.lstrip("/")
            if not target.is_file():
                raise GraylaneError(f"git/file artifact: no file {path!r} in {reference}") from None
            return target.read_text(encoding="utf-8")
        if not version and not bare:  # a working tree without a version: what is on disk, like `kubectl apply -f`
            target = local / path.lstrip("/")
            if target.is_file():
                return target.read_text(encoding="utf-8")
        repo = local
        git_dir: list[str] = ["-C", str(repo)]
        if not bare:
            path = "./" + path.lstrip("/")  # relative to the given folder, which may sit inside a larger repository
    else:
        repo = cache / "repos" / hashlib.sha256(reference.encode()).hexdigest()[:24]
        if not repo.exists():
            repo.parent.mkdir(parents=True, exist_ok=True)
            await _git("clone", "--quiet", "--bare", reference, str(repo))
        else:
            await _git("-C", str(repo), "fetch", "--quiet", "--prune", "origin",
                       "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
        git_dir = ["-C", str(repo)]
    ref = version or "HEAD"
    commit = (await _git(*git_dir, "rev-parse", "--verify", f"{ref}^{{commit}}")).strip()
    key = hashlib.sha256(f"{reference}\0{commit}\0{path}".encode()).hexdigest()
    cached = cache / "files" / key
    if cached.exists():
        return cached.read_text()
    text = await _git(*git_dir, "show", f"{commit}:{path.lstrip('/')}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(text)
    return text


async def fetch_text(artifact: dict[str, Any], services: Any = None) -> str:
    atype = artifact.get("type")
    if atype == "embedded/base64":
        try:
            return base64.b64decode(str(artifact.get("reference") or "")).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"embedded/base64 artifact {artifact.get('name')!r} is not base64 text: {exc}") \
                from None
    if atype == "http/file":
        url = str(artifact.get("reference") or "")
        async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
            resp = await client.get(url)
        if resp.status_code >= 400:
            raise GraylaneError(f"http/file artifact {url}: HTTP {resp.status_code}")
        return resp.text
    if atype in ("git/file", "git/repo", "github/file", "gitlab/file"):
        path = artifact.get("location") or (artifact.get("metadata") or {}).get("path") or artifact.get("name")
        if not path:
            raise ValidationError("git/file artifact needs the file path in `name` (or `location`)")
        return await fetch_git_file(str(artifact.get("reference") or ""), artifact.get("version"), str(path))
    raise ValidationError(f"unsupported artifact type {atype!r} (supported: {', '.join(SUPPORTED_TYPES)})")
