"""Resources API: apply, delete, get, list, history, diff and restore over the store.

POST   /api/v1/apply?dryRun=All&namespace=NS&diff=false  body: YAML/JSON text (multi-document), a JSON list of
                                                documents, or {"files": [{"name", "text"}]} so errors
                                                name the user's file:line; -> {"results": [...]}
POST   /api/v1/delete                           same bodies; deletes those objects -> {"deleted", "notFound"}
GET    /api/v1/resources?namespace=NS           every object (namespace absent: all namespaces)
GET    /api/v1/resources/{kind}?namespace=NS&group=G   -> {"kind", "group", "items": [bodies]}
GET    /api/v1/resources/{kind}/{name}?namespace=NS    -> the body (namespace default: "default")
DELETE /api/v1/resources/{kind}/{name}?namespace=NS    -> 404 when missing
GET    /api/v1/resources/{kind}/{name}/history          -> {"items": [{revision, actor, time, action, ...}]}
GET    /api/v1/resources/{kind}/{name}/history/{rev}    -> that revision with its body
GET    /api/v1/resources/{kind}/{name}/history/{rev}/diff?against=N|current  (default: the revision before)
POST   /api/v1/resources/{kind}/{name}/restore?revision=N
GET    /api/v1/revision                                 -> {"revision": N} (the store's change counter)

`kind` is anything kubectl accepts: `vs`, `virtualservice`, `VirtualServices`,
`virtualservices.networking.istio.io`; kinds Graylane does not model match the stored kinds by name.
The actor recorded in history is the token's user (graylane.server.auth); for the operator's CLI
token it is `user:<X-Graylane-User header>` when the CLI sends one. Secret values (`data`,
`stringData`, the last-applied annotation) are shown to admins only, in bodies, history and diffs.
Bodies are bounded (graylane.settings.ServerLimits): document count (422), document size (413),
nesting depth (422). Route functions parse, call the store, and shape JSON; no SQL here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from graylane.errors import NotFound, ValidationError
from graylane.resources import kinds, secrets
from graylane.resources.document import CLUSTER_SCOPED_KINDS, Document, ResourceKey, Source
from graylane.resources.load import load_text
from graylane.resources.yamlsafe import decode_utf8
from graylane.server.auth import actor_of
from graylane.server.limits import PayloadTooLarge, check_shape, parse_json
from graylane.settings import ServerLimits
from graylane.store import ApplyResult, Revision, Store, StoredResource
from graylane.store.bodies import unified_diff

log = logging.getLogger(__name__)
router = APIRouter(tags=["resources"])

# -- helpers -----------------------------------------------------------------------------------

def _store(request: Request) -> Store:
    return request.app.state.cp.store  # type: ignore[no-any-return]


def _actor(request: Request) -> str:
    return actor_of(request)


def _limits(request: Request) -> ServerLimits:
    return request.app.state.limits  # type: ignore[no-any-return]


SECRET_KINDS = secrets.SECRET_KINDS
redact = secrets.redact


def _shown(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """What any caller sees of a body: Secret values never (resources/secrets.py); the mesh reads them itself."""
    return redact(body)


def _plural(kind: str) -> str:
    low = kind.lower()
    return low[:-1] + "ies" if low.endswith("y") else low + ("es" if low.endswith("s") else "s")


def resolve_kind(store: Store, name: str, group: str | None = None) -> tuple[str, str]:
    """What a user typed -> (API group, Kind); unknown names match the kinds already stored."""
    text = name.strip()
    try:
        info = kinds.resolve_kind(text)
    except ValidationError:
        info = None
    if info is not None and (group is None or info.group == group):
        return str(info.group), str(info.kind)
    low = text.lower()
    candidates = []
    for g, kind in store.kinds():
        names = {kind.lower(), _plural(kind)}
        if (low in names or (g and low in {f"{n}.{g}" for n in names})) and group in (None, g):
            candidates.append((g, kind))
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        groups = ", ".join(f"{_plural(k)}.{g}" if g else _plural(k) for g, k in candidates)
        raise ValidationError(f"kind {name!r} is served by several API groups", hint=f"use one of: {groups}")
    hint = "known kinds: " + ", ".join(kinds.known_kind_names())
    raise NotFound(f"the server doesn't have a resource type {name!r}", hint=hint)


def _key(store: Store, kind: str, name: str, namespace: str | None, group: str | None) -> ResourceKey:
    g, k = resolve_kind(store, kind, group)
    ns = "" if k in CLUSTER_SCOPED_KINDS or _cluster_scoped(g, k) else (namespace or "default")
    return ResourceKey(g, k, ns, name)


def _cluster_scoped(group: str, kind: str) -> bool:
    info = kinds.kind_info(group, kind)
    return info is not None and not info.namespaced


def _documents(raw: bytes, content_type: str, limits: ServerLimits) -> list[Document]:
    """Parse an apply/delete body (see the module docstring) into documents with sources, within limits."""
    text = decode_utf8(raw, "<request>")  # bad bytes are refused with their offset, never replaced
    if not text.strip():
        raise ValidationError("the request has no documents", hint="send YAML or JSON documents")
    if "json" in content_type:
        data = parse_json(text, limits, "<request>")
        if isinstance(data, dict) and isinstance(data.get("files"), list):
            docs: list[Document] = []
            for i, f in enumerate(data["files"]):
                if not isinstance(f, dict) or not isinstance(f.get("text"), str):
                    raise ValidationError(f"files[{i}] must be {{name, text}}", where="<request>")
                loaded = load_text(f["text"], str(f.get("name") or f"<file {i + 1}>"))
                if isinstance(f.get("dir"), str) and f["dir"]:
                    _remember_source_dir(loaded, f["dir"])
                docs.extend(loaded)
                _check_count(len(docs), limits)
            return _checked(docs, limits)
        if isinstance(data, dict) and isinstance(data.get("documents"), list):
            data = data["documents"]
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
            data = data["items"]
        items = data if isinstance(data, list) else [data]
        _check_count(len(items), limits)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValidationError("a document must be a mapping with apiVersion and kind",
                                      where=f"document {i + 1}")
            out.append(Document(body=item, source=Source("<api>", 1, i)))
        return _checked(out, limits)
    return _checked(load_text(text, "<request>"), limits)


def _check_count(n: int, limits: ServerLimits) -> None:
    if n > limits.max_documents:
        raise ValidationError(f"the request holds {n} documents; this server accepts at most {limits.max_documents}",
                              where="<request>",
                              hint="apply them in smaller batches, or raise GRAYLANE_MAX_DOCUMENTS on the server")


def _checked(docs: list[Document], limits: ServerLimits) -> list[Document]:
    """Count, nesting and size of each document (its compact JSON form, as the store keeps it)."""
    _check_count(len(docs), limits)
    for doc in docs:
        check_shape(doc.body, limits, doc.where())
        size = len(json.dumps(doc.body, separators=(",", ":"), default=str).encode())
        if size > limits.max_document_bytes:
            raise PayloadTooLarge(f"{doc.key} is {size} bytes; this server accepts documents up to "
                                  f"{limits.max_document_bytes} bytes", where=doc.where(),
                                  hint="split the data, or raise GRAYLANE_MAX_DOCUMENT_BYTES on the server")
    return docs


def _remember_source_dir(docs: list[Document], folder: str) -> None:
    """LocalImage paths (workingDir, command) and a Deployment's `image: local` or relative workingDir
    are relative to the applied file's folder: keep it."""
    from graylane.runtime.images import SOURCE_DIR_ANNOTATION, needs_source_dir

    for doc in docs:
        if doc.kind == "LocalImage" or (doc.kind == "Deployment" and needs_source_dir(doc.body)):
            annotations = doc.body.setdefault("metadata", {}).setdefault("annotations", {})
            if isinstance(annotations, dict):
                annotations.setdefault(SOURCE_DIR_ANNOTATION, folder)


def _override_namespace(docs: list[Document], namespace: str | None) -> list[Document]:
    """kubectl's `-n`: fills in a missing namespace, and refuses a document naming another one."""
    if not namespace:
        return docs
    out = []
    for doc in docs:
        given = doc.metadata.get("namespace")
        if given and given != namespace and doc.kind not in CLUSTER_SCOPED_KINDS:
            raise ValidationError(f"the namespace of {doc.key} ({given!r}) does not match the namespace "
                                  f"{namespace!r}", where=doc.where(("metadata", "namespace")),
                                  hint=f"pass --namespace={given} or drop metadata.namespace")
        out.append(doc.with_namespace(namespace))
    return out


def _warnings(docs: list[Document]) -> list[str]:
    out = []
    for doc in docs:
        info = kinds.kind_info(doc.group, doc.kind)
        if info is None or not info.acted_on_locally:
            out.append(f"{doc.where()}: {doc.kind} ({doc.api_version}) is stored, but the local target does "
                       "not act on it (a Kubernetes target applies it as it is)")
    return list(dict.fromkeys(out))


def _analyzer_warnings(store: Store, docs: list[Document]) -> list[str]:
    """istioctl-style analyzer findings on the applied documents, judged with the store (owned by
    graylane.resources.validate): returned as warnings, as the Istio webhook's are; nothing is refused."""
    from graylane.resources.validate import apply_warnings

    return apply_warnings(docs, context=[r.body for r in store.list()])


def key_json(key: ResourceKey) -> dict[str, str]:
    return {"group": key.group, "kind": key.kind, "namespace": key.namespace, "name": key.name}


def result_json(res: ApplyResult, with_diff: bool = True) -> dict[str, Any]:
    out = {**key_json(res.key), "apiVersion": res.body.get("apiVersion", ""), "action": str(res.action),
           "resourceVersion": res.resource_version, "generation": res.generation}
    if with_diff:  # a Secret's diff shows which values changed, never the values
        out["diff"] = unified_diff(*secrets.redact_pair(res.before, res.body), res.key) if secrets.is_secret(
            res.body) and str(res.action) != "unchanged" else res.diff
    return out


def revision_json(rev: Revision, with_body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        **key_json(rev.key), "revision": rev.revision, "actor": rev.actor,
        "time": rev.time.isoformat().replace("+00:00", "Z"), "action": str(rev.action), "deleted": rev.deleted,
        "resourceVersion": rev.resource_version, "generation": rev.generation, "uid": rev.uid,
        "restoredFrom": rev.restored_from}
    if with_body:
        out["body"] = rev.body
    return out


def _bodies(request: Request, items: list[StoredResource]) -> list[dict[str, Any]]:
    return [_shown(request, r.body) for r in items]


def _publish(request: Request, keys: list[ResourceKey], revision: int) -> None:
    bus = getattr(request.app.state.cp, "bus", None)
    if bus is not None and keys:
        bus.publish("resource", keys=[key_json(k) for k in keys], revision=revision)


# -- routes ------------------------------------------------------------------------------------

@router.post("/apply")
async def apply(request: Request, dryRun: str | None = None, namespace: str | None = None,
                diff: bool | None = None) -> dict[str, Any]:
    """Results carry a unified diff per object unless `diff=false` (diffs of large applies cost time)."""
    dry_run = (dryRun or "").lower() in ("true", "all", "1", "server")
    with_diff = True if diff is None else diff
    docs = _override_namespace(_documents(await request.body(), request.headers.get("content-type", ""),
                                          _limits(request)), namespace)
    store = _store(request)
    actor = _actor(request)
    results = await run_in_threadpool(store.apply, docs, actor, dry_run)
    revision = await run_in_threadpool(store.revision)
    if not dry_run:
        _publish(request, [r.key for r in results if r.action != "unchanged"], revision)
    shaped = await run_in_threadpool(lambda: [result_json(r, with_diff) for r in results])
    warnings = _warnings(docs) + await run_in_threadpool(_analyzer_warnings, store, docs)
    return {"dryRun": dry_run, "revision": revision, "results": shaped, "warnings": warnings}


@router.post("/delete")
async def delete_documents(request: Request, namespace: str | None = None) -> dict[str, Any]:
    docs = _override_namespace(_documents(await request.body(), request.headers.get("content-type", ""),
                                          _limits(request)), namespace)
    keys = list(dict.fromkeys(d.key for d in docs))
    store = _store(request)
    deleted = await run_in_threadpool(store.delete, keys, _actor(request))
    revision = await run_in_threadpool(store.revision)
    _publish(request, deleted, revision)
    gone = set(deleted)
    return {"revision": revision, "deleted": [key_json(k) for k in deleted],
            "notFound": [key_json(k) for k in keys if k not in gone]}


@router.get("/revision")
def revision(request: Request) -> dict[str, int]:
    return {"revision": _store(request).revision()}


@router.get("/resources")
def list_all(request: Request, namespace: str | None = None) -> dict[str, Any]:
    return {"items": _bodies(request, _store(request).list(namespace=namespace or None))}


@router.get("/resources/{kind}")
def list_kind(request: Request, kind: str, namespace: str | None = None, group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    g, k = resolve_kind(store, kind, group)
    items = store.list(kind=k, group=g, namespace=namespace or None)
    return {"group": g, "kind": k, "items": _bodies(request, items)}


@router.get("/resources/{kind}/{name}")
def get_one(request: Request, kind: str, name: str, namespace: str | None = None,
            group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    key = _key(store, kind, name, namespace, group)
    got = store.get(key)
    if got is None:
        raise NotFound(f"{key} not found", hint=f"list them with `graylane get {key.kind.lower()} -A`")
    return _shown(request, got.body)


@router.delete("/resources/{kind}/{name}")
async def delete_one(request: Request, kind: str, name: str, namespace: str | None = None,
                     group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    key = await run_in_threadpool(_key, store, kind, name, namespace, group)
    deleted = await run_in_threadpool(store.delete, [key], _actor(request))
    if not deleted:
        raise NotFound(f"{key} not found")
    revision = await run_in_threadpool(store.revision)
    _publish(request, deleted, revision)
    return {"revision": revision, "deleted": [key_json(k) for k in deleted], "notFound": []}


@router.get("/resources/{kind}/{name}/history")
def history(request: Request, kind: str, name: str, namespace: str | None = None,
            group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    key = _key(store, kind, name, namespace, group)
    revisions = store.history(key)
    if not revisions:
        raise NotFound(f"{key} has no history", hint="check the kind, name and namespace")
    return {**key_json(key), "items": [revision_json(r) for r in revisions]}


@router.get("/resources/{kind}/{name}/history/{rev}")
def history_revision(request: Request, kind: str, name: str, rev: int, namespace: str | None = None,
                     group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    out = revision_json(store.revision_of(_key(store, kind, name, namespace, group), rev), with_body=True)
    out["body"] = _shown(request, out["body"])
    return out


@router.get("/resources/{kind}/{name}/history/{rev}/diff")
def history_diff(request: Request, kind: str, name: str, rev: int, namespace: str | None = None,
                 group: str | None = None, against: str | None = Query(None)) -> dict[str, Any]:
    """The change revision `rev` made (against the one before), or `rev` against `current` / revision N."""
    store = _store(request)
    key = _key(store, kind, name, namespace, group)
    new = store.revision_of(key, rev)
    new_raw = None if new.deleted else new.body  # redacted below, both sides together (a changed value shows)
    if against == "current":
        live = store.get(key)
        old_raw, old_label = new_raw, f"revision-{rev}"
        new_raw, new_label = (live.body if live else None), "current"
    else:
        if against is None:
            earlier = [r for r in store.history(key) if r.revision < rev]
            base = earlier[-1] if earlier else None
        else:
            try:
                base = store.revision_of(key, int(against))
            except ValueError:
                raise ValidationError(f"against: {against!r} is not a revision number or 'current'") from None
        old_raw = None if base is None or base.deleted else base.body
        old_label = f"revision-{base.revision}" if base else "none"
        new_label = f"revision-{rev}"
    return {**key_json(key), "revision": rev, "against": against,
            "diff": unified_diff(*secrets.redact_pair(old_raw, new_raw), key, old_label, new_label)}


@router.post("/resources/{kind}/{name}/restore")
async def restore(request: Request, kind: str, name: str, revision: int, namespace: str | None = None,
                  group: str | None = None) -> dict[str, Any]:
    store = _store(request)
    key = await run_in_threadpool(_key, store, kind, name, namespace, group)
    res = await run_in_threadpool(store.restore, key, revision, _actor(request))
    current = await run_in_threadpool(store.revision)
    if res.action != "unchanged":
        _publish(request, [key], current)
    return {"revision": current, "restoredFrom": revision, "result": result_json(res)}
