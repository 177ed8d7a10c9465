"""The `local` target: resources go into the store; the runtime and the mesh make them real.

Patches follow the Kubernetes API: strategic merge (built-in kinds only, merging lists such as
containers by their merge key), JSON merge patch (RFC 7386) and JSON patch (RFC 6902).
Knows the store; reaches the runtime and mesh only through the `wait_ready`/`wait_acked` they expose.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections.abc import Sequence
from typing import Any

import jsonpatch
import jsonpointer

from graylane.errors import Conflict, GraylaneError, NotFound, ValidationError
from graylane.promql import TrafficSample, is_error, window_seconds
from graylane.resources.document import Document, ResourceKey, Source
from graylane.store.bodies import user_view
from graylane.targets.base import Applied, ManifestRevision, PatchType

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"
# API groups whose types carry strategic-merge metadata; the API server refuses strategic patches
# on custom resources (415), and so do we, so a pipeline behaves the same on both targets.
_STRATEGIC_GROUPS = frozenset({"", "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io"})
_PATCH_RETRIES = 5


# -- strategic merge patch ---------------------------------------------------------------------

def _merge_key(path: tuple[str, ...], field: str) -> str | None:
    """`patchMergeKey` of a list field (k8s.io/api types), judged from the field and its parent."""
    if field == "ports":
        return "port" if path == ("spec",) else "containerPort"  # Service vs container ports
    return {
        "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
        "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
        "imagePullSecrets": "name", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
        "conditions": "type", "ownerReferences": "uid", "resourceClaims": "name",
    }.get(field)


_MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})  # patchStrategy: merge on a list of strings


class _Delete:
    """Marker: this map was deleted by `$patch: delete`."""


def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch to `original` (a new value; the inputs are not changed).

    >>> strategic_merge({"containers": [{"name": "a", "image": "x:1"}, {"name": "b"}]},
    ...                 {"containers": [{"name": "a", "image": "x:2"}]})
    {'containers': [{'name': 'a', 'image': 'x:2'}, {'name': 'b'}]}
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return _Delete()
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive is not None:
        raise ValidationError(f"{'.'.join(path) or 'patch'}: unknown $patch directive {directive!r}",
                              hint="use delete or replace")
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k == _RETAIN_KEYS:
            continue
        if k.startswith(_SET_ORDER):
            orders[k[len(_SET_ORDER):]] = v if isinstance(v, list) else []
            continue
        if k.startswith(_DELETE_PRIMITIVES):
            field = k[len(_DELETE_PRIMITIVES):]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = [x for x in result[field] if x not in v]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, list):
            result[k] = _merge_list(result.get(k), v, path, k)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v, (*path, k))
            if isinstance(merged, _Delete):
                result.pop(k, None)
            else:
                result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    retain = patch.get(_RETAIN_KEYS)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        result[field] = _reorder(result.get(field), order, _merge_key(path, field))
    return result


def _merge_list(original: Any, patch: list[Any], path: tuple[str, ...], field: str) -> list[Any]:
    current = copy.deepcopy(original) if isinstance(original, list) else []
    key = _merge_key(path, field)
    if key is None:
        if field in _MERGED_PRIMITIVE_LISTS:
            return current + [copy.deepcopy(v) for v in patch if v not in current]
        return copy.deepcopy(patch)  # no merge key: the list is replaced, as for atomic lists
    if any(isinstance(p, dict) and p.get(_DIRECTIVE) == "replace" for p in patch):
        return [{k: v for k, v in p.items() if k != _DIRECTIVE} for p in patch
                if isinstance(p, dict) and p.get(_DIRECTIVE) != "replace"]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ValidationError(f"{'.'.join((*path, field))}: every element of a strategic patch needs its "
                                  f"merge key {key!r}", hint=f"add {key}: ... to each element")
        idx = next((i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get(_DIRECTIVE) == "delete":
            if idx is not None:
                current.pop(idx)
            continue
        if idx is None:
            current.append({k: copy.deepcopy(v) for k, v in item.items() if k != _DIRECTIVE})
        else:
            current[idx] = strategic_merge(current[idx], item, (*path, field))
    return current


def _reorder(items: Any, order: list[Any], key: str | None) -> Any:
    if not isinstance(items, list):
        return items

    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) if isinstance(o, dict) else o for o in order]
    ranked = sorted(items, key=lambda x: wanted.index(ident(x)) if ident(x) in wanted else len(wanted))
    return ranked


# -- RFC 7386 / RFC 6902 -----------------------------------------------------------------------

def json_merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def json_patch(original: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """RFC 6902 (add, remove, replace, move, copy, test); a failed op changes nothing."""
    try:
        return jsonpatch.JsonPatch(operations).apply(original, in_place=False)  # type: ignore[no-any-return]
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Conflict(f"json patch test failed: {exc}", hint="the object changed; read it again") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise ValidationError(f"invalid json patch: {exc}", hint="operations are {op, path, value}") from None


def patch_body(body: dict[str, Any], patch: Any, patch_type: PatchType, key: ResourceKey) -> dict[str, Any]:
    """The body after `patch`; checks the patch's shape and that it leaves the object's identity alone."""
    if patch_type == "json":
        if not isinstance(patch, list):
            raise ValidationError("a json patch is a list of operations ([{op, path, value}, ...])")
        new = json_patch(body, patch)
    elif patch_type in ("merge", "strategic"):
        if not isinstance(patch, dict):
            raise ValidationError(f"a {patch_type} patch is a map")
        if patch_type == "strategic" and key.group not in _STRATEGIC_GROUPS:
            raise ValidationError(f"strategic merge patch is not supported for {key.kind} (a custom resource)",
                                  where=str(key), hint="use a merge or json patch, as the Kubernetes API requires")
        new = strategic_merge(body, patch) if patch_type == "strategic" else json_merge_patch(body, patch)
    else:
        raise ValidationError(f"unknown patch type {patch_type!r}; use strategic, merge or json")
    if not isinstance(new, dict):
        raise ValidationError(f"patching {key} must leave an object")
    md = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
    group = str(new.get("apiVersion", "")).rpartition("/")[0]
    if (new.get("kind"), group, md.get("name")) != (key.kind, key.group, key.name) or (
            key.namespace and md.get("namespace", key.namespace) != key.namespace):
        raise ValidationError(f"a patch may not change the kind, API group, namespace or name of {key}")
    return new


# -- the target --------------------------------------------------------------------------------

async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class LocalTarget:
    """Target `local`: the store plus, when running, the local runtime and the mesh control."""

    account = "local"

    def __init__(self, store: Any, runtime: Any = None, mesh: Any = None, telemetry: Any = None,
                 jobs: Any = None) -> None:
        self.store = store
        self.runtime = runtime
        self.mesh = mesh
        self.telemetry = telemetry  # graylane.mesh.telemetry.component.Telemetry: the mesh's scraped counters
        # graylane.targets.local_jobs.LocalJobs: the control plane's (which re-adopted running jobs at start), or
        # one made on the first Job
        self._jobs: Any = jobs

    def _job_runner(self) -> Any:
        if self._jobs is None:
            from graylane.settings import state_dir
            from graylane.targets.local_jobs import LocalJobs

            self._jobs = LocalJobs(self.store, state_dir(), self.account, runtime=self.runtime)
        return self._jobs

    async def run_job(self, doc: Document, *, actor: str, namespace_override: str | None = None) -> ResourceKey:
        """Run a Job's containers as processes with the pod's environment; idempotent by namespace/name."""
        return await self._job_runner().run(doc, namespace_override)  # type: ignore[no-any-return]

    async def job_status(self, key: ResourceKey) -> Any:
        """The Job's graylane.targets.jobs.JobStatus: Running, Succeeded or Failed, with its logs."""
        return self._job_runner().status(key)

    async def cancel_job(self, key: ResourceKey) -> None:
        await self._job_runner().cancel(key)

    async def live_status(self, key: ResourceKey) -> dict[str, Any] | None:
        """A Deployment's Kubernetes-shaped `status` as the runtime sees it (None without a runtime)."""
        if self.runtime is None or key.kind != "Deployment" or not hasattr(self.runtime, "deployment_status"):
            return None
        return await _maybe_await(self.runtime.deployment_status(key.namespace, key.name))  # type: ignore[no-any-return]

    async def apply(self, docs: Sequence[Document], *, actor: str,
                    namespace_override: str | None = None, dry_run: bool = False) -> list[Applied]:
        """Validate every document, then apply all of them in one store transaction."""
        batch = [d.with_namespace(namespace_override) if namespace_override else d for d in docs]
        results = await asyncio.to_thread(self.store.apply, batch, actor, dry_run)
        return [Applied(r.key, str(r.action), r.resource_version, r.body) for r in results]  # type: ignore[arg-type]

    async def applied_by(self, docs: Sequence[Document], *, actor: str,
                         namespace_override: str | None = None) -> list[Applied | None]:
        """For each document (placed as `apply` places it), what `actor` last wrote to its resource, from the
        store's history: None where it wrote nothing (or last deleted it). An apply and its history rows commit
        together, so this says whether an apply by `actor` happened, even one whose caller never saw the answer."""
        batch = [d.with_namespace(namespace_override) if namespace_override else d for d in docs]
        written = await asyncio.to_thread(self.store.written_by, [d.key for d in batch], actor)
        out: list[Applied | None] = []
        for d in batch:
            rev = written.get(d.key)
            out.append(None if rev is None or rev.deleted else
                       Applied(rev.key, str(rev.action), rev.resource_version, rev.body))  # type: ignore[arg-type]
        return out

    async def delete(self, keys: Sequence[ResourceKey], *, actor: str, cascade: bool = True,
                     grace_period_seconds: int | None = None) -> list[ResourceKey]:
        """Delete; the runtime stops what belonged to them. Missing keys are not an error."""
        return list(await asyncio.to_thread(self.store.delete, list(keys), actor))

    async def get(self, key: ResourceKey) -> dict[str, Any] | None:
        got = await asyncio.to_thread(self.store.get, key)
        return got.body if got is not None else None

    async def list(self, kind: str, namespace: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        kind, group = _canonical_kind(kind, group)
        items = await asyncio.to_thread(self.store.list, kind, namespace, group)
        return [r.body for r in items]

    async def history(self, key: ResourceKey) -> list[ManifestRevision]:
        """The store's revisions of the resource, oldest first (deleted states left out)."""
        revisions = await asyncio.to_thread(self.store.history, key)
        return [ManifestRevision(r.revision, r.body) for r in revisions if not r.deleted]

    async def traffic(self, namespace: str | None = None, *, window: str = "1m",
                      reporter: str | None = "destination", at: float | None = None) -> list[TrafficSample]:
        """istio_requests_total's increase over `window` from the local mesh's telemetry (scraped from the data
        plane), the same labels and error rule a Kubernetes account's Prometheus gives."""
        seconds = window_seconds(window)
        if self.telemetry is None:
            raise GraylaneError("the local mesh's telemetry is not running", where=f"account {self.account}",
                                hint="start the local mesh with `graylane up`")
        if at is None:
            await self.telemetry.refresh()
        increase, _covered = self.telemetry.recorder.increase("istio_requests_total", seconds, at)
        samples = []
        for key, value in increase.items():
            labels = dict(key)
            if reporter and labels.get("reporter") != reporter:
                continue
            if namespace and labels.get("destination_service_namespace") != namespace:
                continue
            samples.append(TrafficSample(labels=labels, requests=value, errors=value if is_error(labels) else 0.0))
        return samples

    async def patch(self, key: ResourceKey, patch: Any, patch_type: PatchType, *, actor: str) -> dict[str, Any]:
        """Read, patch, write with the read resourceVersion; retried when someone else wrote between."""
        return await asyncio.to_thread(self._patch, key, patch, patch_type, actor)

    def _patch(self, key: ResourceKey, patch: Any, patch_type: PatchType, actor: str) -> dict[str, Any]:
        for attempt in range(_PATCH_RETRIES):
            current = self.store.get(key)
            if current is None:
                raise NotFound(f"{key} not found", where=f"account {self.account}")
            # Patch the full object, so JSON patch paths such as /metadata/resourceVersion resolve.
            patched = patch_body(copy.deepcopy(current.body), patch, patch_type, key)
            given = str((patched.get("metadata") or {}).get("resourceVersion") or "")
            pinned = bool(given) and given != current.resource_version  # the patch carries a precondition
            new = user_view(patched)
            new.setdefault("metadata", {})["resourceVersion"] = given if pinned else current.resource_version
            doc = Document(body=new, source=Source(f"<{patch_type} patch of {key}>", 1, 0))
            try:
                [result] = self.store.apply([doc], actor)
                return result.body  # type: ignore[no-any-return]
            except Conflict:
                if pinned or attempt == _PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_ready(self, keys: Sequence[ResourceKey], *, timeout: float) -> None:
        """Wait for Deployments to roll out (runtime) and for the data plane to ACK this revision (mesh); raise
        GraylaneError naming any of `keys` the mesh left out because it could not be compiled."""
        deadline = time.monotonic() + timeout
        missing = [k for k in keys if await self.get(k) is None]
        if missing:
            raise NotFound(f"cannot wait for {', '.join(map(str, missing))}: not found",
                           where=f"account {self.account}")
        if self.runtime is not None:
            await _maybe_await(self.runtime.wait_ready(list(keys), max(0.0, deadline - time.monotonic())))
        if self.mesh is not None:
            revision = await asyncio.to_thread(self.store.revision)
            # With the keys, a resource the mesh left out (it cannot be compiled) fails the wait, named.
            wait = self.mesh.wait_acked
            named = {"keys": list(keys)} if "keys" in inspect.signature(wait).parameters else {}
            await _maybe_await(wait(revision, max(0.0, deadline - time.monotonic()), **named))


def _canonical_kind(kind: str, group: str | None) -> tuple[str, str | None]:
    """`vs` or `virtualservices` -> (`VirtualService`, group); exact kinds pass through."""
    if kind[:1].isupper():
        return kind, group
    try:
        from graylane.resources.kinds import resolve_kind
        info = resolve_kind(kind)
    except (ImportError, GraylaneError):
        return kind, group
    return info.kind, group if group is not None else info.group
