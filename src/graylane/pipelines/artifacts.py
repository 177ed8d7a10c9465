"""Artifacts: bind expectedArtifacts at trigger time, check their types at import, and fetch artifact text.

Types (docs/pipelines.md "Artifact types"): git/file (and git/repo) via the system git; github/file, gitlab/file,
bitbucket/file and http/file over HTTP in Spinnaker's clouddriver formats; embedded/base64 (and remote/base64).

git/file: `reference` is a repository URL or local path, `version` a branch/tag/commit (default HEAD), and
`name` (or `location`/`metadata.path`) the file's path. Read with the system git; cached per commit.

Credentials: the artifact's `artifactAccount` names a Secret in the store (`name` in namespace default, or
`namespace/name`) labelled `graylane.io/artifact-account: "true"`, with `token` or `username`/`password` and
optional `hosts`; they are sent only to those hosts (default: the type's public API host), over https or to a
network the operator trusts, and never after a redirect to another origin.

Trust (docs/security.md): paths are normalised and confined to the checkout (symbolic links too); git gets
https and ssh repositories only, references after `--`, never one starting with `-`; local folders only under
`<state>/demo` and $GRAYLANE_ARTIFACT_FILE_ROOTS; every HTTP fetch and git host follows `graylane.addresses`
(public addresses, plus $GRAYLANE_ARTIFACT_NETWORKS), each redirect re-checked, bounded in size and time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

import httpx

from graylane import addresses, settings
from graylane.errors import GraylaneError, ValidationError
from graylane.resources import yamlsafe
from graylane.resources.document import ResourceKey

GIT_TYPES = ("git/file", "git/repo")
HTTP_TYPES = ("github/file", "gitlab/file", "bitbucket/file", "http/file")
EMBEDDED_TYPES = ("embedded/base64", "remote/base64")
SUPPORTED_TYPES = tuple(sorted(GIT_TYPES + HTTP_TYPES + EMBEDDED_TYPES))
ACCOUNT_LABEL = "graylane.io/artifact-account"
# Where a Secret without `hosts` may send its credentials (http/file has no default: it needs `hosts`).
DEFAULT_HOSTS = {"github/file": "api.github.com", "gitlab/file": "gitlab.com", "bitbucket/file": "api.bitbucket.org"}
_FORMATS = {
    "github/file": "reference: https://api.github.com/repos/ORG/REPO/contents/PATH, version: branch, tag or commit",
    "gitlab/file": "reference: https://gitlab.com/api/v4/projects/ORG%2FREPO/repository/files/PATH/raw, version: "
                   "branch, tag or commit",
    "bitbucket/file": "reference: https://api.bitbucket.org/2.0/repositories/ORG/REPO/src/VERSION/PATH",
    "http/file": "reference: the file's http(s) URL",
}
MAX_REDIRECTS = 5
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
                  prior: list[dict[str, Any]] | None = None, *, optional: bool = False) -> list[dict[str, Any]]:
    """`resolvedExpectedArtifacts`: each expected artifact with its `boundArtifact`, or a ValidationError
    (`optional`: one that cannot be bound is left out instead)."""
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
        if bound is None and optional:
            continue
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
    """An http/file URL without credentials: the address rules, bounded in size and time, redirects re-checked."""
    return await fetch_http_artifact({"type": "http/file", "reference": url})


def decode_embedded(artifact: dict[str, Any]) -> str:
    """embedded/base64 (and remote/base64): `reference` holds the content, at most HTTP_MAX_BYTES once decoded."""
    atype, reference = artifact.get("type"), str(artifact.get("reference") or "")
    what = f"{atype} artifact {artifact.get('name') or ''!r}"
    if len(reference) > HTTP_MAX_BYTES * 4 // 3 + 4:
        raise ArtifactRefused(f"{what} is larger than {HTTP_MAX_BYTES} bytes")
    try:
        raw = base64.b64decode("".join(reference.split()), validate=True)
    except ValueError as exc:
        raise ValidationError(f"{what} is not base64 text: {exc}") from None
    return yamlsafe.decode_utf8(raw, what)


# -- HTTP artifact types: credentials from a Secret, Spinnaker's URL formats, one bounded fetch ------------------

@dataclass(frozen=True)
class Credentials:
    """An artifact account's Secret: a token or a username and password, and the hosts they may be sent to."""

    secret: str
    token: str | None
    username: str | None
    password: str | None
    hosts: tuple[str, ...]


def _secret_value(body: dict[str, Any], key: str, secret: str) -> str | None:
    string_data = body.get("stringData") or {}
    if key in string_data:
        return str(string_data[key]).strip() or None
    data = body.get("data") or {}
    if key not in data:
        return None
    try:
        return base64.b64decode(str(data[key]), validate=True).decode("utf-8").strip() or None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"Secret {secret}: data.{key} is not base64 of UTF-8 text") from None


def account_credentials(artifact: dict[str, Any], store: Any) -> Credentials | None:
    """The credentials of the Secret the artifact's `artifactAccount` names, or None when there is no such Secret.

    `artifactAccount` is `name` (namespace default) or `namespace/name`. The Secret must carry the label
    ACCOUNT_LABEL="true", so that a pipeline cannot send any Secret of the store to a host it chooses.
    """
    account = str(artifact.get("artifactAccount") or "").strip()
    atype = str(artifact.get("type"))
    if not account or store is None:
        return None
    namespace, _, name = account.rpartition("/")
    namespace = namespace or "default"
    secret = f"{namespace}/{name}"
    stored = store.get(ResourceKey("", "Secret", namespace, name))
    if stored is None:
        return None
    body = stored.body
    labels = (body.get("metadata") or {}).get("labels") or {}
    if str(labels.get(ACCOUNT_LABEL, "")).lower() != "true":
        raise ArtifactRefused(f"{atype} artifact: Secret {secret} (artifactAccount {account!r}) is not marked as "
                              "artifact credentials", hint=f'label the Secret {ACCOUNT_LABEL}: "true" to let '
                                                           "artifacts send it")
    token = _secret_value(body, "token", secret)
    username = _secret_value(body, "username", secret)
    password = _secret_value(body, "password", secret)
    if not token and not (username and password):
        raise ArtifactRefused(f"{atype} artifact: Secret {secret} holds neither `token` nor `username` and "
                              "`password`")
    hosts_text = _secret_value(body, "hosts", secret) or DEFAULT_HOSTS.get(atype, "")
    hosts = tuple(h.strip().lower().rstrip(".") for h in hosts_text.split(",") if h.strip())
    return Credentials(secret, token, username, password, hosts)


def auth_headers(atype: str, creds: Credentials | None) -> dict[str, str]:
    """The header each provider reads (clouddriver's): GitHub `token`, GitLab PRIVATE-TOKEN, others Bearer/Basic."""
    if creds is None:
        return {}
    if atype == "gitlab/file":
        if not creds.token:
            raise ArtifactRefused(f"gitlab/file artifact: Secret {creds.secret} needs a `token` (GitLab's "
                                  "PRIVATE-TOKEN); username/password is not accepted by the GitLab API")
        return {"PRIVATE-TOKEN": creds.token}
    if creds.token:
        return {"Authorization": f"{'token' if atype == 'github/file' else 'Bearer'} {creds.token}"}
    basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}


def download_url(artifact: dict[str, Any]) -> str:
    """The URL to GET: `reference`, plus `?ref=<version>` for github/file and gitlab/file (as clouddriver)."""
    atype, reference = str(artifact.get("type")), str(artifact.get("reference") or "").strip()
    parts = urlsplit(reference)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{atype} artifact: reference {reference!r} is not an http(s) URL",
                              hint=_FORMATS.get(atype))
    if atype == "github/file" and parts.hostname.lower() in ("github.com", "www.github.com"):
        raise ValidationError(f"github/file artifact: reference {reference!r} is a repository page, not the "
                              "contents API", hint=f"{_FORMATS[atype]}; for a repository URL use type git/file")
    version = str(artifact.get("version") or "").strip()
    if atype in ("github/file", "gitlab/file") and version:
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ref"]
        reference = parts._replace(query=urlencode([*query, ("ref", version)])).geturl()
    return reference


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower().rstrip("."), parts.port


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in networks)


def _get_once(url: str, address: str, headers: dict[str, str], deadline: float) -> tuple[int, str | None, bytes]:
    """One GET to the checked `address`: (status, Location of a redirect, body within HTTP_MAX_BYTES)."""
    parts = urlsplit(url)
    netloc = (f"[{address}]" if ":" in address else address) + (f":{parts.port}" if parts.port else "")
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise addresses.FetchFailed(f"took longer than {HTTP_TIMEOUT_S:g}s")
    send = {"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "*/*", **headers}
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.Client(timeout=remaining, follow_redirects=False, trust_env=False) as client, \
                client.stream("GET", parts._replace(netloc=netloc).geturl(), headers=send,
                              extensions={"sni_hostname": parts.hostname}) as response:
            if response.is_redirect:
                return response.status_code, response.headers.get("location"), b""
            if response.status_code >= 300:
                return response.status_code, None, b""
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > HTTP_MAX_BYTES:
                raise addresses.FetchFailed(f"the response is larger than {HTTP_MAX_BYTES} bytes")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > HTTP_MAX_BYTES:
                    raise addresses.FetchFailed(f"the response is larger than {HTTP_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise addresses.FetchFailed(f"took longer than {HTTP_TIMEOUT_S:g}s")
                chunks.append(chunk)
            return response.status_code, None, b"".join(chunks)
    except httpx.TimeoutException:
        raise addresses.FetchFailed(f"took longer than {HTTP_TIMEOUT_S:g}s") from None
    except httpx.HTTPError as exc:
        raise addresses.FetchFailed(f"{type(exc).__name__}: {exc}") from None


def http_get(url: str, what: str, headers: dict[str, str], auth: dict[str, str],
             creds: Credentials | None = None) -> bytes:
    """GET `url` under the address rules; up to MAX_REDIRECTS redirects, each re-checked; `auth` headers go
    only to the first URL's origin, on a host the credentials allow, over https or to a trusted network."""
    networks = allowed_networks()
    deadline = time.monotonic() + HTTP_TIMEOUT_S
    first = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        scheme, host, _ = _origin(url)
        if scheme not in ("http", "https") or not host:
            raise ArtifactRefused(f"{what}: {url!r} is not an http(s) URL")
        try:
            address = addresses.check_host(host, networks)
        except addresses.AddressNotAllowed as exc:
            raise ArtifactRefused(f"{what} {url}: {exc.message}",
                                  hint=f"an operator can trust a network with {NETWORKS_ENV}") from None
        send = dict(headers)
        if auth and _origin(url) == first:
            if creds is not None and host not in creds.hosts:
                allowed = ", ".join(creds.hosts) or "no host"
                raise ArtifactRefused(f"{what}: Secret {creds.secret} may be sent to {allowed}, not {host}",
                                      hint="list the host in the Secret's `hosts` key (comma-separated)")
            if scheme != "https" and not _in_networks(address, networks):
                raise ArtifactRefused(f"{what}: credentials are sent over https only ({url})",
                                      hint=f"or to a network listed in {NETWORKS_ENV}")
            send.update(auth)
        status, location, body = _get_once(url, address, send, deadline)
        if location is not None:
            url = urljoin(url, location)
            continue
        if status >= 300:
            hint = None
            if status in (401, 403, 404):
                hint = (f"credentials from Secret {creds.secret} were sent" if creds and auth else
                        "no credentials were sent: name a Secret with artifactAccount (docs/pipelines.md)")
            raise GraylaneError(f"{what} {url}: HTTP {status}", hint=hint)
        return body
    raise ArtifactRefused(f"{what}: more than {MAX_REDIRECTS} redirects")


async def fetch_http_artifact(artifact: dict[str, Any], store: Any = None) -> str:
    """github/file, gitlab/file, bitbucket/file or http/file: the file's text, fetched as clouddriver does."""
    atype = str(artifact.get("type"))
    url = download_url(artifact)
    what = f"{atype} artifact"
    creds = account_credentials(artifact, store)
    headers = {"Accept": "application/vnd.github.v3.raw"} if atype == "github/file" else {}
    try:
        body = await asyncio.to_thread(http_get, url, what, headers, auth_headers(atype, creds), creds)
    except addresses.FetchFailed as exc:
        raise GraylaneError(f"{what} {url}: {exc.message}") from None
    return yamlsafe.decode_utf8(body, url)


async def fetch_text(artifact: dict[str, Any], store: Any = None) -> str:
    """The text of a bound artifact of any type in SUPPORTED_TYPES (`store` holds the account Secrets)."""
    atype = artifact.get("type")
    if atype in EMBEDDED_TYPES:
        return decode_embedded(artifact)
    if atype in HTTP_TYPES:
        return await fetch_http_artifact(artifact, store)
    if atype in GIT_TYPES:
        path = artifact.get("location") or (artifact.get("metadata") or {}).get("path") or artifact.get("name")
        if not path:
            raise ValidationError("git/file artifact needs the file path in `name` (or `location`)")
        return await fetch_git_file(str(artifact.get("reference") or ""), artifact.get("version"), str(path))
    raise ValidationError(f"unsupported artifact type {atype!r} (supported: {', '.join(SUPPORTED_TYPES)})")


class ArtifactFetcher:
    """The artifacts service tasks get (pipelines/services.py): fetches with the store's account Secrets."""

    def __init__(self, secrets: Any = None) -> None:
        self._secrets = secrets  # a graylane.store.Store, read for labelled account Secrets only

    async def fetch_text(self, artifact: dict[str, Any]) -> str:
        return await fetch_text(artifact, self._secrets)


# -- import: refuse artifact types Graylane cannot fetch (called from model.find_problems) -----------------------

def _unfetchable(atype: Any, *, regex: bool) -> str | None:
    """Why an artifact of `atype` (a matchArtifact's is a regex) cannot be fetched, or None when it can."""
    if not isinstance(atype, str) or not atype.strip() or "${" in atype:
        return None
    if regex:
        try:
            if any(re.fullmatch(atype, t) for t in SUPPORTED_TYPES):
                return None
        except re.error:
            pass
    if atype in SUPPORTED_TYPES:
        return None
    return f"has type {atype!r}, which Graylane cannot fetch (supported: {', '.join(SUPPORTED_TYPES)})"


def type_problems(body: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(JSON path, message) for each artifact a `source: artifact` stage would fetch whose type is unsupported."""
    stages = body.get("stages") if isinstance(body.get("stages"), list) else []
    declared: dict[str, tuple[tuple[str | int, ...], dict[str, Any]]] = {}
    owners: list[tuple[tuple[str | int, ...], Any]] = [((), body)]
    owners += [(("stages", i), st) for i, st in enumerate(stages)]
    for prefix, owner in owners:
        eas = owner.get("expectedArtifacts") if isinstance(owner, dict) else None
        for j, ea in enumerate(eas if isinstance(eas, list) else []):
            if isinstance(ea, dict) and isinstance(ea.get("id"), str):
                declared.setdefault(ea["id"], ((*prefix, "expectedArtifacts", j), ea))
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or st.get("source") != "artifact":
            continue
        label = f"stages[{i}] ({st['name']!r})" if isinstance(st.get("name"), str) else f"stages[{i}]"
        inline = st.get("manifestArtifact")
        if isinstance(inline, dict) and inline:
            why = _unfetchable(inline.get("type"), regex=False)
            if why:
                out.append((("stages", i, "manifestArtifact", "type"), f"{label}: manifestArtifact {why}"))
            continue
        found = declared.get(st.get("manifestArtifactId")) if isinstance(st.get("manifestArtifactId"), str) else None
        if found is None:
            continue
        path, ea = found
        for key in ("matchArtifact", "defaultArtifact"):
            art = ea.get(key)
            why = _unfetchable(art.get("type"), regex=key == "matchArtifact") if isinstance(art, dict) else None
            if why:
                out.append(((*path, key, "type"), f"{label}: expected artifact "
                                                  f"{ea.get('displayName') or ea['id']!r} ({key}) {why}"))
    return out
