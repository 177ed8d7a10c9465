"""kmock's KubernetesEmulator taught the API-server semantics Graylane relies on.

kmock serves discovery, GET/LIST/WATCH over real HTTP; this subclass adds what a real kube-apiserver does and
kmock leaves out: server-side apply with field managers and conflicts (409), merge / strategic / json patches,
resourceVersion and generation, dryRun=All, namespaces that must exist, bearer-token auth (401/403), and a
tiny Deployment controller whose rollouts either finish or get stuck with ProgressDeadlineExceeded.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSONPATCH = "application/json-patch+json"

# Istio serves every networking kind at v1alpha3, v1beta1 and v1 (one stored object, any version).
ISTIO_VERSIONS = ("v1alpha3", "v1beta1", "v1")
ISTIO_RESOURCES = {
    "virtualservices": "VirtualService", "destinationrules": "DestinationRule",
    "gateways": "Gateway", "serviceentries": "ServiceEntry",
}
_NS_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?/?$")
Path = tuple[str, ...]


def respond(body: Any, status: int = 200) -> aiohttp.web.Response:
    """JSON exactly as kube-apiserver labels it (`application/json`, no charset parameter)."""
    return aiohttp.web.Response(body=json.dumps(body).encode(), status=status,
                                headers={"Content-Type": "application/json"})


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or {})


def leaf_paths(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Fields set by a document; lists are atomic (one owner for the whole list)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(leaf_paths(v, (*prefix, str(k))))
    elif prefix:
        out[prefix] = obj
    return out


def get_path(obj: Any, path: Path) -> Any:
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def del_path(obj: dict[str, Any], path: Path) -> None:
    parents = []
    cur: Any = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        parents.append((cur, p))
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    for parent, key in reversed(parents):  # prune emptied maps
        if parent[key] == {}:
            del parent[key]


def merge(base: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; `strategic` also merges lists of named maps by `name` (containers, ports, env)."""
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(base, list) and _named(patch) and _named(base):
            result = [copy.deepcopy(b) for b in base]
            index = {b["name"]: i for i, b in enumerate(result)}
            for item in patch:
                if item.get("$patch") == "delete":
                    result = [r for r in result if r["name"] != item["name"]]
                    index = {b["name"]: i for i, b in enumerate(result)}
                elif item["name"] in index:
                    result[index[item["name"]]] = merge(result[index[item["name"]]], item, strategic=True)
                else:
                    result.append(copy.deepcopy(item))
            return result
        return copy.deepcopy(patch)
    result = copy.deepcopy(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge(result.get(k), v, strategic=strategic)
    return result


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 (add, remove, replace, test, move, copy)."""
    doc = copy.deepcopy(doc)

    def split(pointer: str) -> list[str]:
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]

    def walk(pointer: str) -> tuple[Any, str]:
        parts = split(pointer)
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur, parts[-1]

    def read(pointer: str) -> Any:
        cur = doc
        for p in split(pointer):
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    for op in ops:
        kind, path = op["op"], op["path"]
        try:
            if kind == "test":
                if read(path) != op["value"]:
                    raise status(422, "Invalid", f"the json patch test at {path} failed")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(read(op["from"]))
                if kind == "move":
                    parent, last = walk(op["from"])
                    parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
                kind, op = "add", {"value": value}
            parent, last = walk(path)
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), op["value"])
                else:
                    parent[last] = op["value"]
            elif kind == "remove":
                parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    if last not in parent:
                        raise KeyError(last)
                    parent[last] = op["value"]
            else:
                raise status(422, "Invalid", f"unknown json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise status(422, "Invalid", f"the json patch cannot be applied at {path}: {exc!r}") from exc
    return doc


def _content(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for k in ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp"):
        meta.pop(k, None)
    return out


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """The emulated cluster. `tokens` maps bearer tokens to allowed verbs (None = all); empty = no auth."""

    tokens: dict[str, Any] = attrs.field(factory=dict)  # token -> None | {verbs} | {(group, plural): {verbs}}
    used: set[tuple[str, str, str]] = attrs.field(factory=set)  # (group, plural, verb) granted so far
    rollouts: dict[str, str] = attrs.field(factory=dict)  # deployment name -> healthy | stuck | manual
    rollout_step: float = 0.05
    deletions: list[dict[str, Any]] = attrs.field(factory=list)
    _owners: dict[Any, dict[str, dict[Path, Any]]] = attrs.field(factory=dict)
    _rv: int = 100
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()

    # ---- cluster set-up helpers for tests ----------------------------------------------------
    def install_istio(self) -> None:
        for version in ISTIO_VERSIONS:
            for plural, kind in ISTIO_RESOURCES.items():
                self.resources[f"networking.istio.io/{version}/{plural}"] = kmock.ResourceInfo(
                    kind=kind, namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"})

    def install_gateway_api(self) -> None:
        """The Gateway API CRDs (standard channel) as Istio's docs install them."""
        for res, kind in (("v1/gateways", "Gateway"), ("v1/httproutes", "HTTPRoute"), ("v1/grpcroutes", "GRPCRoute"),
                          ("v1beta1/gateways", "Gateway"), ("v1beta1/httproutes", "HTTPRoute"),
                          ("v1beta1/referencegrants", "ReferenceGrant")):
            self.resources[f"gateway.networking.k8s.io/{res}"] = kmock.ResourceInfo(
                kind=kind, namespaced=True, verbs={"get", "list", "watch", "create", "patch", "delete"})

    def add_namespace(self, name: str) -> None:
        self.objects["v1/namespaces", None, name] = self._stamp({"apiVersion": "v1", "kind": "Namespace",
                                                                  "metadata": {"name": name}}, None)

    def object(self, res: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(res), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    # ---- request handling ----------------------------------------------------------------------
    async def _serve_group(self, request: rendering.Request) -> rendering.Payload:
        """/apis/GROUP as kube-apiserver answers it: the preferred version is the stable one (kmock picks any)."""
        group = await super()._serve_group(request)
        versions = [v["version"] for v in group["versions"]]
        if "v1" in versions:
            group["preferredVersion"] = {"groupVersion": f"{group['name']}/v1", "version": "v1"}
        return group

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            return respond({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                            "code": exc.status, "reason": exc.reason, "message": exc.message,
                            "details": exc.details or {}}, status=exc.status)
        return await super()._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        request = self._fix_namespace_paths(request)
        self._authorize(request)
        if request.resource is None or request.resource.plural is None:  # discovery
            return await super()._handle(request)
        res = request.resource
        if res not in self.resources:
            raise status(404, "NotFound", "the server could not find the requested resource")
        if res.group == "networking.istio.io" and res.version != "v1":  # one storage version for all
            request = attrs.evolve(request, resource=kmock.resource(res.group, "v1", res.plural))
        if request.action == enums.action.UPDATE and request.subresource is None:
            return await self._patch(request)
        if request.action == enums.action.DELETE:
            return await self._delete(request)
        if request.action == enums.action.CREATE:
            return await self._create(request)
        if request.action == enums.action.FETCH and request.subresource is None:
            return self._fetch(request)
        if request.action == enums.action.LIST:
            return self._list(request)
        return await super()._handle(request)  # watches

    def _fetch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        namespace = request.namespace if self._info(request.resource).namespaced else None
        key = (request.resource, namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            res = request.resource
            raise status(404, "NotFound", f'{res.plural}{"." + res.group if res.group else ""} "{request.name}" '
                                          "not found", {"name": request.name, "kind": res.plural})
        return respond(self.objects[key].raw)

    def _list(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        items = [copy.deepcopy(o.raw) for (r, ns, _), o in self.objects.items()
                 if r == request.resource and not o.deleted and (request.namespace is None or ns == request.namespace)]
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        kind = self._info(request.resource).kind or "Object"
        return respond({"apiVersion": "v1", "kind": f"{kind}List", "metadata": {"resourceVersion": str(self._rv)},
                        "items": items})

    def _fix_namespace_paths(self, request: rendering.Request) -> rendering.Request:
        m = _NS_PATH.match(request.url.path)
        if not m:
            return request
        name = m.group(1)
        action = {("GET", True): enums.action.FETCH, ("GET", False): enums.action.LIST,
                  ("PATCH", True): enums.action.UPDATE, ("DELETE", True): enums.action.DELETE,
                  ("POST", False): enums.action.CREATE}.get((request.method.value, bool(name)))
        return attrs.evolve(request, resource=kmock.resource("", "v1", "namespaces"), namespace=None, name=name,
                            action=action)

    def _authorize(self, request: rendering.Request, verb: str | None = None) -> None:
        """Bearer-token authentication (401) and RBAC-like authorization per resource and verb (403)."""
        if not self.tokens:
            return
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is None or token not in self.tokens:
            raise status(401, "Unauthorized", "Unauthorized")
        verb = verb or {enums.action.FETCH: "get", enums.action.LIST: "list", enums.action.WATCH: "watch",
                        enums.action.CREATE: "create", enums.action.UPDATE: "patch",
                        enums.action.DELETE: "delete"}.get(request.action)  # type: ignore[arg-type]
        res = request.resource
        if verb is None or res is None or res.plural is None:
            return  # discovery: allowed to every authenticated user (system:discovery)
        allowed = self.tokens[token]
        if isinstance(allowed, dict):
            allowed = allowed.get((res.group or "", res.plural), set())
        if allowed is None or verb in allowed:
            self.used.add((res.group or "", str(res.plural), verb))
            return
        name = f"{res.plural}.{res.group}" if res.group else str(res.plural)
        where = f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
        raise status(403, "Forbidden",
                     f'{name} "{request.name or ""}" is forbidden: User "system:serviceaccount:graylane:graylane" '
                     f'cannot {verb} resource "{res.plural}" in API group "{res.group}"{where}',
                     {"name": request.name, "group": res.group, "kind": res.plural})

    def _namespace_exists(self, namespace: str | None) -> bool:
        if namespace is None:
            return True
        return self.object("v1/namespaces", None, namespace) is not None

    def _info(self, res: Any) -> Any:
        return self.resources[res]

    def _stamp(self, body: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        old_meta = (old or {}).get("metadata") or {}
        meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or \
            datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = int(old_meta.get("generation") or 0)
        if old is None or _content(old).get("spec") != _content(body).get("spec"):
            generation += 1
        meta["generation"] = generation
        if old is None or _content(old) != _content(body) or old.get("status") != body.get("status"):
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
        else:
            meta["resourceVersion"] = old_meta.get("resourceVersion")
        return body

    async def _store(self, request: rendering.Request, key: Any, body: dict[str, Any], event: str) -> None:
        if key in self.objects:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        await self._buses[request.resource].put({"type": event, "object": copy.deepcopy(body)})

    async def _create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        body = copy.deepcopy(request.data or {})
        meta = body.setdefault("metadata", {})
        namespace = request.namespace if self._info(request.resource).namespaced else None
        key = (request.resource, namespace, meta.get("name"))
        if key in self.objects and not self.objects[key].deleted:
            raise status(409, "AlreadyExists", f'{request.resource.plural} "{meta.get("name")}" already exists')
        if namespace is not None:
            meta["namespace"] = namespace
        body = self._stamp(body, None)
        if request.params.get("dryRun") != "All":
            await self._store(request, key, body, "ADDED")
            self._after_change(request, key, body)
        return respond(body, status=201)

    async def _patch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        info = self._info(request.resource)
        namespace = request.namespace if info.namespaced else None
        if info.namespaced and not self._namespace_exists(namespace):
            raise status(404, "NotFound", f'namespaces "{namespace}" not found',
                         {"name": namespace, "kind": "namespaces"})
        key = (request.resource, namespace, request.name)
        old = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else None
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        manager = request.params.get("fieldManager", "unknown")
        owners = copy.deepcopy(self._owners.get(key, {}))
        data = request.data
        if ctype == APPLY and old is None:
            self._authorize(request, "create")  # server-side apply that creates needs `create` too
        if ctype == APPLY:
            new = self._apply(old, data, manager, owners, force=request.params.get("force") == "true",
                              request=request)
        else:
            if old is None:
                raise status(404, "NotFound", f'{request.resource.plural} "{request.name}" not found',
                             {"name": request.name, "kind": request.resource.plural})
            if ctype == MERGE:
                new = merge(old, data)
            elif ctype == STRATEGIC and request.resource.group in ("", "apps"):
                new = merge(old, data, strategic=True)
            elif ctype == JSONPATCH:
                new = json_patch(old, data)
            else:
                raise status(415, "UnsupportedMediaType",
                             "the body of the request was in an unknown format - "
                             f"accepted media types include: {JSONPATCH}, {MERGE}, {APPLY}")
            changed = {p: v for p, v in leaf_paths(_content(new)).items()
                       if get_path(_content(old), p) != v}
            for m in owners:
                owners[m] = {p: v for p, v in owners[m].items() if p not in changed}
            owners.setdefault(manager, {}).update(changed)
        new = copy.deepcopy(new)
        new.setdefault("metadata", {})["name"] = request.name
        if namespace is not None:
            new["metadata"]["namespace"] = namespace
        if old is not None and "status" in old and "status" not in new:
            new["status"] = copy.deepcopy(old["status"])
        new = self._stamp(new, copy.deepcopy(old) if old else None)
        new["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply" if m == manager and ctype == APPLY else "Update",
             "fieldsType": "FieldsV1"} for m, paths in owners.items() if paths]
        if request.params.get("dryRun") != "All":
            self._owners[key] = owners
            if old is None or new["metadata"]["resourceVersion"] != old["metadata"].get("resourceVersion"):
                await self._store(request, key, new, "ADDED" if old is None else "MODIFIED")
                self._after_change(request, key, new)
        return respond(new, status=201 if old is None else 200)

    def _apply(self, old: dict[str, Any] | None, applied: dict[str, Any], manager: str,
               owners: dict[str, dict[Path, Any]], *, force: bool, request: rendering.Request) -> dict[str, Any]:
        if not isinstance(applied, dict) or not applied.get("kind") or not applied.get("apiVersion"):
            raise status(400, "BadRequest", "apply patches need apiVersion and kind")
        new_paths = leaf_paths(_content(applied))
        current = _content(old) if old else {}
        conflicts = [(m, p) for m, paths in owners.items() if m != manager
                     for p in paths if p in new_paths and get_path(current, p) != new_paths[p]]
        if conflicts and not force:
            lines = [f'conflict with "{m}": .{".".join(p)}' for m, p in conflicts]
            message = (f"Apply failed with 1 conflict: {lines[0]}" if len(lines) == 1 else
                       f"Apply failed with {len(lines)} conflicts: " + "\n".join(f"- {x}" for x in lines))
            raise status(409, "Conflict", message,
                         {"causes": [{"reason": "FieldManagerConflict", "field": ".".join(p),
                                      "message": f'conflict with "{m}"'} for m, p in conflicts]})
        result = copy.deepcopy(old) if old else {}
        previously = owners.get(manager, {})
        for p in previously:
            if p not in new_paths and not any(p in ps for m, ps in owners.items() if m != manager):
                del_path(result, p)
        result = merge(result, applied)
        if force:  # forced: the other managers lose the fields we now set
            for m in list(owners):
                if m != manager:
                    owners[m] = {p: v for p, v in owners[m].items() if p not in new_paths}
        owners[manager] = new_paths
        return result

    async def _delete(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        info = self._info(request.resource)
        namespace = request.namespace if info.namespaced else None
        key = (request.resource, namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            raise status(404, "NotFound", f'{request.resource.plural} "{request.name}" not found',
                         {"name": request.name, "kind": request.resource.plural})
        last = copy.deepcopy(self.objects[key].raw)
        self.deletions.append({"resource": str(request.resource.plural), "namespace": namespace,
                               "name": request.name, "propagationPolicy": request.params.get("propagationPolicy"),
                               "gracePeriodSeconds": request.params.get("gracePeriodSeconds")})
        if request.params.get("dryRun") != "All":
            self.objects[key].delete()
            self._owners.pop(key, None)
            await self._buses[request.resource].put({"type": "DELETED", "object": last})
        return respond({"kind": "Status", "apiVersion": "v1", "status": "Success",
                                          "details": {"name": request.name, "kind": request.resource.plural}})

    # ---- the Deployment controller ----------------------------------------------------------
    def _after_change(self, request: rendering.Request, key: Any, body: dict[str, Any]) -> None:
        if request.resource.plural != "deployments":
            return
        task = asyncio.get_running_loop().create_task(self._progress(key, int(body["metadata"]["generation"])))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_status(self, key: Any, generation: int, status_: dict[str, Any]) -> bool:
        if key not in self.objects or self.objects[key].deleted:
            return False
        body = copy.deepcopy(self.objects[key].raw)
        if int(body["metadata"]["generation"]) != generation:
            return False  # a newer spec superseded this rollout
        old = copy.deepcopy(body)
        body["status"] = status_
        self.objects[key].create(self._stamp(body, old))
        await self._buses[key[0]].put({"type": "MODIFIED", "object": copy.deepcopy(body)})
        return True

    async def _progress(self, key: Any, generation: int) -> None:
        name = key[2]
        mode = self.rollouts.get(name, "healthy")
        if mode == "manual":
            return
        body = self.objects[key].raw
        want = int((body.get("spec") or {}).get("replicas", 1))
        await asyncio.sleep(self.rollout_step)
        progressing = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                       "message": f'ReplicaSet "{name}-{generation}" is progressing.'}
        if not await self._set_status(key, generation, {"observedGeneration": generation, "replicas": want,
                                                        "updatedReplicas": 0, "availableReplicas": 0,
                                                        "conditions": [progressing]}):
            return
        await asyncio.sleep(self.rollout_step)
        if mode == "stuck":
            stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": f'ReplicaSet "{name}-{generation}" has timed out progressing.'}
            await self._set_status(key, generation, {"observedGeneration": generation, "replicas": want,
                                                     "updatedReplicas": 1, "availableReplicas": 0,
                                                     "unavailableReplicas": want, "conditions": [stuck]})
            return
        done = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{name}-{generation}" has successfully progressed.'}
        await self._set_status(key, generation, {"observedGeneration": generation, "replicas": want,
                                                 "updatedReplicas": want, "readyReplicas": want,
                                                 "availableReplicas": want,
                                                 "conditions": [{"type": "Available", "status": "True",
                                                                 "reason": "MinimumReplicasAvailable"}, done]})


def kubeconfig_text(server: str, *, token: str | None = None, namespace: str = "default",
                    context: str = "emulated") -> str:
    """A kubeconfig for the emulated cluster (what `kind get kubeconfig` would hand you)."""
    user: dict[str, Any] = {"token": token} if token else {}
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "graylane", "user": user}],
        "contexts": [{"name": context, "context": {"cluster": "emulated", "user": "graylane",
                                                   "namespace": namespace}}],
    })
