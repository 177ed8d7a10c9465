"""Artifacts: bind expectedArtifacts at trigger time, and fetch artifact text (git/file, embedded/base64, http/file).

git/file: `reference` is a repository URL or local path, `version` a branch/tag/commit (default HEAD), and
`name` (or `location`/`metadata.path`) the file's path. Read with the system git; cached per commit.

Trust (docs/security.md): paths are normalised and confined to the checkout (symbolic links too); git gets
https and ssh repositories only, references after `--`, never one starting with `-`; local folders only under
`<state>/demo` and $GRAYLANE_ARTIFACT_FILE_ROOTS; http/file and git hosts follow `graylane.addresses` (public
addresses, plus $GRAYLANE_ARTIFACT_NETWORKS).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from graylane import addresses, settings
from graylane.errors import GraylaneError, ValidationError
from graylane.resources import yamlsafe

SUPPORTED_TYPES = ("git/file", "embedded/base64", "http/file")
FILE_ROOTS_ENV = "GRAYLANE_ARTIFACT_FILE_ROOTS"
NETWORKS_ENV = "GRAYLANE_ARTIFACT_NETWORKS"
HTTP_TIMEOUT_S = 30.0
HTTP_MAX_BYTES = 10_000_000
_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[\w.-]+|\[[0-9a-fA-F:.]+\]):(?!//)")  # git@host:path (ssh)
# Only these transports, whatever the repository's config or a redirect says; no redirects for https at all.
_GIT_SAFETY = ("-c", "protocol.allow=never", "-c", "protocol.https.allow=always", "-c", "protocol.ssh.allow=always",
               "-c", "protocol.file.allow=never", "-c", "http.followRedirects=false")


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


# -- trust: which references, transports, addresses and paths an artifact may name (issue #19) ------------------

class ArtifactRefused(ValidationError):
    """An artifact names something Graylane will not read: a path outside its checkout, a transport or an address
    the operator has not allowed, or a reference git would take for an option."""


def file_roots() -> list[Path]:
    """Folders local repositories may be read from: the demo's (`<state>/demo`) and `$GRAYLANE_ARTIFACT_FILE_ROOTS`."""
    roots = [settings.state_dir() / "demo"]
    roots += [Path(p) for p in os.environ.get(FILE_ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    return [r.expanduser().resolve() for r in roots]


def allowed_networks() -> tuple[str, ...]:
    """CIDRs artifacts may reach besides public addresses (`$GRAYLANE_ARTIFACT_NETWORKS`, comma-separated)."""
    return addresses.parse_networks(os.environ.get(NETWORKS_ENV, ""))


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _in_state_folder(path: Path) -> bool:
    """Inside the state folder (the CLI token, the database) and not in its demo repository: never readable."""
    state = settings.state_dir().resolve()
    return _is_within(path, state) and not _is_within(path, state / "demo")


def _refuse_option(what: str, value: str) -> None:
    if value.startswith("-"):
        raise ArtifactRefused(f"git/file artifact: the {what} {value!r} starts with '-', which git would read as an "
                              "option", hint=f"name the {what} without a leading '-'")


def _local_folder(reference: str) -> Path | None:
    """The folder of a local reference (a path or file:// URL), confined to the file roots; None for a remote one."""
    parts = urlsplit(reference)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
    elif "::" in reference or (parts.scheme and len(parts.scheme) > 1) or _SCP_LIKE.match(reference):
        return None
    else:
        path = Path(reference)
    folder = path.expanduser().resolve()
    roots = file_roots()
    if _in_state_folder(folder) or not any(_is_within(folder, root) for root in roots):
        raise ArtifactRefused(
            f"git/file artifact: local repository {reference!r} is outside the folders artifacts may read",
            hint=f"an operator allows folders with {FILE_ROOTS_ENV} (os.pathsep-separated); allowed now: "
                 + ", ".join(str(r) for r in roots))
    if not folder.is_dir():
        raise ValidationError(f"git/file artifact: no folder {reference!r}")
    return folder


def _check_remote(reference: str) -> None:
    """https and ssh (URL or scp-like `git@host:path`) only, to a host on an allowed address."""
    scp = _SCP_LIKE.match(reference)
    parts = urlsplit(reference)
    if "::" in reference or not (scp or parts.scheme in ("https", "ssh")):
        raise ArtifactRefused(f"git/file artifact: {reference!r} uses a transport that is not allowed",
                              hint="use an https:// or ssh:// repository (or git@host:path); local folders need "
                                   f"{FILE_ROOTS_ENV}")
    host = scp.group("host") if scp else parts.hostname
    if not host:
        raise ArtifactRefused(f"git/file artifact: {reference!r} names no host")
    try:
        addresses.check_host(host, allowed_networks())
    except addresses.AddressNotAllowed as exc:
        raise ArtifactRefused(f"git/file artifact {reference}: {exc.message}",
                              hint=f"an operator can trust a network with {NETWORKS_ENV}") from None


def confined_path(path: str, what: str = "git/file artifact") -> str:
    """`path` normalised relative to its checkout; a `..` that would climb out of it is refused.

    >>> confined_path("/manifests/./a/../b.yaml")
    'manifests/b.yaml'
    """
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part in ("/", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            raise ArtifactRefused(f"{what}: path {path!r} leaves the repository", hint="name a file inside it")
    if not parts:
        raise ArtifactRefused(f"{what}: path {path!r} names no file")
    return "/".join(parts)


def _read_inside(folder: Path, rel: str, reference: str) -> str | None:
    """The file at `rel` under `folder` (symlinks resolved, and still inside), or None when there is none."""
    target = (folder / rel).resolve()
    if _in_state_folder(target):
        raise ArtifactRefused(f"git/file artifact: {rel!r} in {reference} is in Graylane's state folder, which "
                              "artifacts never read")
    if not _is_within(target, folder):
        raise ArtifactRefused(f"git/file artifact: {rel!r} in {reference} resolves outside the repository "
                              "(a symbolic link)", hint="name a file inside it")
    if not target.is_file():
        return None
    return yamlsafe.read_text(target)


# -- fetching --------------------------------------------------------------------------------------------------------

async def _git(*args: str, cwd: Path | None = None, where: str = "git output") -> str:
    proc = await asyncio.create_subprocess_exec("git", *_GIT_SAFETY, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=_git_env())
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise GraylaneError(f"git {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return yamlsafe.decode_utf8(out, where)


def _git_env() -> dict[str, str]:
    # never prompt for credentials (a stage would hang); no system/global config can re-enable other transports
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PROTOCOL_FROM_USER": "0", "GIT_CONFIG_NOSYSTEM": "1"}


async def fetch_git_file(reference: str, version: str | None, path: str) -> str:
    """The file at `path` in `reference` at `version`; cached per commit under the state folder."""
    _refuse_option("reference", reference)
    if version:
        _refuse_option("version", version)
    path = confined_path(path)
    cache = settings.state_dir() / "artifacts" / "git"
    local = _local_folder(reference)
    if local is not None:
        try:
            bare = (await _git("-C", str(local), "rev-parse", "--is-bare-repository")).strip() == "true"
        except GraylaneError:
            if version:
                raise GraylaneError(f"{reference} is not a git repository, so version {version!r} cannot be read",
                                    hint="drop `version` to read the folder as it is") from None
            text = _read_inside(local, path, reference)
            if text is None:
                raise GraylaneError(f"git/file artifact: no file {path!r} in {reference}") from None
            return text
        if not version and not bare:  # a working tree without a version: what is on disk, like `kubectl apply -f`
            text = _read_inside(local, path, reference)
            if text is not None:
                return text
        repo = local
        git_dir: list[str] = ["-C", str(repo)]
        if not bare:
            path = "./" + path  # relative to the given folder, which may sit inside a larger repository
    else:
        _check_remote(reference)
        repo = cache / "repos" / hashlib.sha256(reference.encode()).hexdigest()[:24]
        if not repo.exists():
            repo.parent.mkdir(parents=True, exist_ok=True)
            await _git("clone", "--quiet", "--bare", "--", reference, str(repo))
        else:
            await _git("-C", str(repo), "fetch", "--quiet", "--prune", "origin",
                       "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
        git_dir = ["-C", str(repo)]
    ref = version or "HEAD"
    commit = (await _git(*git_dir, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")).strip()
    key = hashlib.sha256(f"{reference}\0{commit}\0{path}".encode()).hexdigest()
    cached = cache / "files" / key
    if cached.exists():
        return yamlsafe.read_text(cached)
    text = await _git(*git_dir, "show", f"{commit}:{path}", where=f"{reference}@{commit[:12]}:{path.lstrip('./')}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(text, encoding="utf-8")
    return text


async def fetch_http(url: str) -> str:
    """An http/file artifact: the same address rules as the URL helpers, bounded in size and time."""
    try:
        body, _ = await asyncio.to_thread(addresses.fetch, url, allowed_networks=allowed_networks(),
                                          timeout_s=HTTP_TIMEOUT_S, max_bytes=HTTP_MAX_BYTES)
    except addresses.AddressNotAllowed as exc:
        raise ArtifactRefused(f"http/file artifact {url}: {exc.message}",
                              hint=f"an operator can trust a network with {NETWORKS_ENV}") from None
    except addresses.FetchFailed as exc:
        raise GraylaneError(f"http/file artifact {url}: {exc.message}") from None
    return yamlsafe.decode_utf8(body, url)


async def fetch_text(artifact: dict[str, Any], services: Any = None) -> str:
    atype = artifact.get("type")
    if atype == "embedded/base64":
        try:
            return base64.b64decode(str(artifact.get("reference") or "")).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"embedded/base64 artifact {artifact.get('name')!r} is not base64 text: {exc}") \
                from None
    if atype == "http/file":
        return await fetch_http(str(artifact.get("reference") or ""))
    if atype in ("git/file", "git/repo", "github/file", "gitlab/file"):
        path = artifact.get("location") or (artifact.get("metadata") or {}).get("path") or artifact.get("name")
        if not path:
            raise ValidationError("git/file artifact needs the file path in `name` (or `location`)")
        return await fetch_git_file(str(artifact.get("reference") or ""), artifact.get("version"), str(path))
    raise ValidationError(f"unsupported artifact type {atype!r} (supported: {', '.join(SUPPORTED_TYPES)})")
