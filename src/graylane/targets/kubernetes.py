"""The `kubernetes` Target: server-side apply, patch, delete and rollout waits on a real cluster (lightkube)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericNamespacedResource,
    create_api_info,
)
from lightkube.types import CascadeType
from lightkube.types import PatchType as LkPatchType

from graylane.errors import Conflict, GraylaneError, NotFound, ValidationError
from graylane.promql import PrometheusClient, TrafficSample
from graylane.resources.document import CLUSTER_SCOPED_KINDS, Document, ResourceKey
from graylane.resources.order import apply_rank
from graylane.resources.validate import check_apply
from graylane.targets.base import Applied, ManifestRevision, PatchType, WriteGuard, fenced
from graylane.targets.kubernetes_history import rollout_history
from graylane.targets.rollout import rollout_status as rollout_status  # re-exported: tests and callers use it here

FIELD_MANAGER = "graylane"
# Graylane's own kinds (LocalImage: image -> local command) only steer the local target; a cluster runs images.
LOCAL_ONLY_GROUP = "graylane.io"

# API groups that only exist once Istio is installed (its CRDs).
ISTIO_GROUPS = frozenset({"networking.istio.io", "security.istio.io", "telemetry.istio.io",
                          "extensions.istio.io", "install.istio.io"})
ISTIO_HINT = "Istio is not installed in this cluster: run `istioctl install --set profile=demo -y` (docs/kubernetes.md)"

# Fallback API knowledge, used when discovery is not allowed or not needed: kind -> (group, version, plural).
KNOWN_KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("", "Namespace"): ("v1", "namespaces"),
    ("", "Service"): ("v1", "services"),
    ("", "ServiceAccount"): ("v1", "serviceaccounts"),
    ("", "ConfigMap"): ("v1", "configmaps"),
    ("", "Secret"): ("v1", "secrets"),
    ("", "Pod"): ("v1", "pods"),
    ("", "Endpoints"): ("v1", "endpoints"),
    ("", "PersistentVolumeClaim"): ("v1", "persistentvolumeclaims"),
    ("apps", "Deployment"): ("v1", "deployments"),
    ("apps", "StatefulSet"): ("v1", "statefulsets"),
    ("apps", "DaemonSet"): ("v1", "daemonsets"),
    ("apps", "ReplicaSet"): ("v1", "replicasets"),
    ("batch", "Job"): ("v1", "jobs"),
    ("autoscaling", "HorizontalPodAutoscaler"): ("v2", "horizontalpodautoscalers"),
    ("policy", "PodDisruptionBudget"): ("v1", "poddisruptionbudgets"),
    ("networking.istio.io", "VirtualService"): ("v1", "virtualservices"),
    ("networking.istio.io", "DestinationRule"): ("v1", "destinationrules"),
    ("networking.istio.io", "Gateway"): ("v1", "gateways"),
    ("networking.istio.io", "ServiceEntry"): ("v1", "serviceentries"),
    ("networking.istio.io", "Sidecar"): ("v1", "sidecars"),
    ("security.istio.io", "PeerAuthentication"): ("v1", "peerauthentications"),
    ("security.istio.io", "AuthorizationPolicy"): ("v1", "authorizationpolicies"),
    ("gateway.networking.k8s.io", "Gateway"): ("v1", "gateways"),
    ("gateway.networking.k8s.io", "HTTPRoute"): ("v1", "httproutes"),
    ("gateway.networking.k8s.io", "GRPCRoute"): ("v1", "grpcroutes"),
    ("gateway.networking.k8s.io", "TCPRoute"): ("v1alpha2", "tcproutes"),  # experimental channel: every release
    ("gateway.networking.k8s.io", "TLSRoute"): ("v1alpha2", "tlsroutes"),
    ("gateway.networking.k8s.io", "ReferenceGrant"): ("v1beta1", "referencegrants"),
}

# Groups the API server itself serves (strategic merge patch works there; custom resources only take
# merge/json patches, so a strategic patch of an Istio object is sent as a merge patch, as kubectl users do).
BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io",
                            "rbac.authorization.k8s.io", "storage.k8s.io", "coordination.k8s.io",
                            "discovery.k8s.io", "scheduling.k8s.io"})

# Fields the API server owns: never part of "did the object change" comparisons.
_SERVER_META = ("resourceVersion", "generation", "managedFields", "uid", "creationTimestamp",
                "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


# Kinds the API server needs before anything else of the batch can be admitted.
_PREREQUISITES = ("CustomResourceDefinition", "Namespace")


def _rank(kind: str) -> tuple[int, int]:
    """Make-before-break rank: prerequisites first, then the resources area's order (the local target's too)."""
    first = _PREREQUISITES.index(kind) if kind in _PREREQUISITES else len(_PREREQUISITES)
    return first, apply_rank(kind)


def order_for_apply(docs: Sequence[Document]) -> list[Document]:
    """What is referenced before what references it (Services, Deployments, DestinationRules, then routes)."""
    return sorted(docs, key=lambda d: _rank(d.kind))


def order_for_delete(keys: Sequence[ResourceKey]) -> list[ResourceKey]:
    """Break routes before what they point at: the reverse of the apply order."""
    return sorted(keys, key=lambda k: tuple(-x for x in _rank(k.kind)))


@dataclass(frozen=True)
class ApiResource:
    """Where a kind is served: group/version, plural and scope, plus the lightkube class for it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    cls: type

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def display(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _generic_class(group: str, version: str, kind: str, plural: str, namespaced: bool) -> type:
    """A lightkube generic resource class that is NOT put in lightkube's global registry (dicts in, dicts out)."""
    base = GenericNamespacedResource if namespaced else GenericGlobalResource
    return type(kind, (base,), {"_api_info": create_api_info(group, version, kind, plural)})


def _guess_plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    return low + "s"


def _api_error(exc: BaseException) -> ApiError | None:
    """lightkube raises ApiError only for `application/json` bodies; treat any Status body the same way."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, httpx2.HTTPStatusError):
        try:
            body = exc.response.json()
        except ValueError:
            return None
        if isinstance(body, dict) and body.get("kind") == "Status":
            return ApiError(request=exc.request, response=exc.response)
    return None


def _status_code(exc: BaseException) -> int:
    err = _api_error(exc)
    if err is not None:
        return int(getattr(err.status, "code", 0) or err.response.status_code)
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code
    return 0


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for k in _SERVER_META:
        meta.pop(k, None)
    return out


class KubernetesTarget:
    """Drives one cluster (a kubeconfig context) for one account; every call goes through lightkube's AsyncClient."""

    def __init__(self, account: str, *, kubeconfig: str | Path | None = None, context: str | None = None,
                 namespace: str | None = None, force_conflicts: bool = False,
                 config: SingleConfig | None = None, request_timeout: float = 10.0,
                 poll_interval: float = 0.5, prometheus: str | None = None) -> None:
        self.account = account
        self.prometheus = prometheus  # the Prometheus scraping the cluster's Istio sidecars (traffic metrics)
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self.context = context
        self.force_conflicts = force_conflicts
        self.poll_interval = poll_interval
        self._request_timeout = request_timeout
        self._config = config
        self._namespace = namespace
        self._client: AsyncClient | None = None
        self._resources: dict[tuple[str, str, str], ApiResource] = {}
        self._preferred: dict[str, str] = {}
        self._discovery: dict[str, dict[str, Any] | None] = {}
        self.before_write: WriteGuard | None = None  # a pipeline stage's lease check (graylane.pipelines.fencing)

    # ---- connection -------------------------------------------------------------------------
    def _load_config(self) -> SingleConfig:
        if self._config is not None:
            return self._config
        try:
            kc = KubeConfig.from_file(self.kubeconfig) if self.kubeconfig else KubeConfig.from_env()
            cfg = kc.get(context_name=self.context)
        except (ConfigError, OSError, KeyError, ValueError) as exc:
            raise GraylaneError(f"cannot load the kubeconfig for account {self.account!r}: {exc}",
                                where=self.kubeconfig or "$KUBECONFIG",
                                hint="check --kubeconfig and --context of `graylane account add`") from exc
        if cfg is None:
            raise GraylaneError(f"kubeconfig has no context {self.context!r}", where=self.kubeconfig)
        self._config = cfg
        return cfg

    @property
    def namespace(self) -> str:
        """The account's default namespace: --namespace, else the kubeconfig context's, else `default`."""
        if self._namespace:
            return self._namespace
        try:
            return self._load_config().namespace or "default"
        except GraylaneError:
            return "default"

    @property
    def server(self) -> str:
        return str(self._load_config().cluster.server)

    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient(self._load_config(), namespace=self.namespace,
                                       field_manager=FIELD_MANAGER, trust_env=False,
                                       timeout=httpx2.Timeout(self._request_timeout))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> KubernetesTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- errors -------------------------------------------------------------------------------
    def _translate(self, exc: Exception, *, verb: str, what: str, group: str = "",
                   where: str | None = None) -> GraylaneError:
        """One clear GraylaneError for anything the API server (or the network) said."""
        if isinstance(exc, GraylaneError):
            return exc
        exc = _api_error(exc) or exc
        if isinstance(exc, ApiError):
            code = int(getattr(exc.status, "code", 0) or exc.response.status_code)
            message = getattr(exc.status, "message", None) or str(exc)
            if code == 401:
                return GraylaneError(f"account {self.account!r}: the API server rejected the credentials "
                                     f"(401 Unauthorized) while trying to {verb} {what}", where=where,
                                     hint="refresh the token or client certificate in the account's kubeconfig")
            if code == 403:
                return GraylaneError(f"account {self.account!r} may not {verb} {what}: {message}", where=where,
                                     hint="bind the account to the ClusterRole in deploy/rbac.yaml")
            if code == 404 and group in ISTIO_GROUPS:
                return NotFound(f"the cluster of account {self.account!r} does not serve {group} "
                                f"(cannot {verb} {what})", where=where, hint=ISTIO_HINT)
            if code == 404:
                return NotFound(f"{what} not found in the cluster of account {self.account!r}: {message}",
                                where=where)
            if code == 409:
                return Conflict(f"conflict while trying to {verb} {what}: {message}", where=where,
                                hint="another field manager owns these fields; set the account's "
                                     "forceConflicts (or pass force) to take them over")
            if code in (400, 422):
                return ValidationError(f"the API server rejected {what}: {message}", where=where)
            return GraylaneError(f"API server error {code} while trying to {verb} {what}: {message}", where=where)
        if isinstance(exc, httpx2.TransportError):
            return GraylaneError(f"cannot reach the Kubernetes API server of account {self.account!r} at "
                                 f"{self.server}: {type(exc).__name__}: {exc}".rstrip(": "), where=where,
                                 hint="is the cluster running and the kubeconfig's server address right?")
        if isinstance(exc, ConfigError):
            return GraylaneError(f"account {self.account!r}: {exc}", where=where)
        return GraylaneError(f"{verb} {what} failed: {type(exc).__name__}: {exc}", where=where)

    # ---- discovery ----------------------------------------------------------------------------
    async def _raw_get(self, path: str) -> dict[str, Any] | None:
        """GET a discovery path: None on 404, {} when discovery is forbidden (403); other failures raise."""
        http = self.client()._client._client  # lightkube's configured httpx2 client (auth, TLS, base URL)
        try:
            resp = await http.get(path)
            if resp.status_code == 404:
                return None
            if resp.status_code == 403:
                return {}
            resp.raise_for_status()
        except httpx2.HTTPStatusError as exc:
            err: Exception = exc
            if exc.response.headers.get("content-type", "").startswith("application/json"):
                err = ApiError(request=exc.request, response=exc.response)
            raise self._translate(err, verb="discover", what=path) from exc
        except httpx2.TransportError as exc:
            raise self._translate(exc, verb="discover", what=path) from exc
        return dict(resp.json())

    async def _cached_get(self, path: str) -> dict[str, Any] | None:
        if path not in self._discovery:
            self._discovery[path] = await self._raw_get(path)
        return self._discovery[path]

    async def preferred_version(self, group: str) -> str:
        if not group:
            return "v1"
        if group in self._preferred:
            return self._preferred[group]
        info = await self._cached_get(f"/apis/{group}")
        if info is None:
            if group in ISTIO_GROUPS:
                raise NotFound(f"the cluster of account {self.account!r} does not serve the API group {group}",
                               hint=ISTIO_HINT)
            raise NotFound(f"the cluster of account {self.account!r} does not serve the API group {group}")
        version = ((info or {}).get("preferredVersion") or {}).get("version")
        if not version:
            version = next((v for (g, k), (v, _) in KNOWN_KINDS.items() if g == group), "v1")
        self._preferred[group] = version
        return version

    async def resource(self, group: str, kind: str, version: str | None = None,
                       *, where: str | None = None) -> ApiResource:
        """Resolve a kind to its plural and scope through discovery (with a built-in table as fallback).

        Without a version: the group's preferred one, or the first other served version that has the kind (the
        Gateway API serves ReferenceGrant at v1beta1 only, beside v1 for the routes)."""
        if version is None:
            version = await self.preferred_version(group)
            try:
                return await self._resource_at(group, kind, version, where)
            except NotFound:
                for other in await self._served_versions(group):
                    if other != version:
                        try:
                            return await self._resource_at(group, kind, other, where)
                        except NotFound:
                            continue
                raise
        return await self._resource_at(group, kind, version, where)

    async def _served_versions(self, group: str) -> list[str]:
        info = await self._cached_get(f"/apis/{group}") if group else None
        return [str(v.get("version")) for v in (info or {}).get("versions") or [] if v.get("version")]

    async def _resource_at(self, group: str, kind: str, version: str, where: str | None) -> ApiResource:
        cache_key = (group, version, kind)
        if cache_key in self._resources:
            return self._resources[cache_key]
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        listing = await self._cached_get(path)  # {} when discovery is forbidden: fall back to what we know
        if listing is None:
            gv = f"{group}/{version}" if group else version
            hint = ISTIO_HINT if group in ISTIO_GROUPS else "is the CustomResourceDefinition installed?"
            raise NotFound(f"the cluster of account {self.account!r} does not serve {gv} "
                           f"(needed for kind {kind})", where=where, hint=hint)
        found: ApiResource | None = None
        for item in (listing or {}).get("resources") or []:
            if item.get("kind") == kind and "/" not in str(item.get("name", "")):
                found = ApiResource(group, version, kind, str(item["name"]), bool(item.get("namespaced", True)),
                                    _generic_class(group, version, kind, str(item["name"]),
                                                   bool(item.get("namespaced", True))))
                break
        if found is None:
            if listing and (listing.get("resources") or []):
                gv = f"{group}/{version}" if group else version
                hint = ISTIO_HINT if group in ISTIO_GROUPS else "is the CustomResourceDefinition installed?"
                raise NotFound(f"the cluster of account {self.account!r} serves {gv} but not kind {kind}",
                               where=where, hint=hint)
            known = KNOWN_KINDS.get((group, kind))
            plural = known[1] if known else _guess_plural(kind)
            namespaced = kind not in CLUSTER_SCOPED_KINDS
            found = ApiResource(group, version, kind, plural, namespaced,
                                _generic_class(group, version, kind, plural, namespaced))
        self._resources[cache_key] = found
        return found

    async def _resource_for_key(self, key: ResourceKey) -> ApiResource:
        return await self.resource(key.group, key.kind, where=str(key))

    # ---- documents -----------------------------------------------------------------------------
    def _check(self, doc: Document) -> None:
        if not doc.api_version:
            raise ValidationError("missing apiVersion", where=doc.where(("apiVersion",)))
        if not doc.kind:
            raise ValidationError("missing kind", where=doc.where(("kind",)))
        if not doc.name:
            raise ValidationError(f"{doc.kind} has no metadata.name", where=doc.where(("metadata",)))

    def _placed(self, doc: Document, namespace_override: str | None, res: ApiResource) -> dict[str, Any]:
        body = copy.deepcopy(doc.body)
        meta = body.setdefault("metadata", {})
        for k in _SERVER_META:
            meta.pop(k, None)
        body.pop("status", None)
        if res.namespaced:
            meta["namespace"] = namespace_override or meta.get("namespace") or self.namespace
        else:
            meta.pop("namespace", None)
        return body

    async def _get_raw(self, res: ApiResource, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            obj = await self.client().get(res.cls, name, namespace=namespace if res.namespaced else None)
        except httpx2.HTTPStatusError as exc:
            if _status_code(exc) == 404:
                return None
            raise
        return dict(obj.to_dict())

    # ---- Target protocol ------------------------------------------------------------------------
    async def apply(self, docs: Sequence[Document], *, actor: str, namespace_override: str | None = None,
                    dry_run: bool = False, force: bool | None = None) -> list[Applied]:
        """Server-side apply (fieldManager `graylane`) in make-before-break order.

        Every document is first checked and applied with `dryRun=All`, so a bad document, a missing CRD or a
        field-ownership conflict stops the batch before anything changes.
        """
        force = self.force_conflicts if force is None else force
        for doc in docs:
            self._check(doc)
        check_apply(docs)  # schema + Istio admission rules, with file:line, before the cluster sees anything
        ordered = order_for_apply(docs)
        plans: list[tuple[Document, ApiResource, dict[str, Any]]] = []
        for doc in ordered:
            if doc.group == LOCAL_ONLY_GROUP:
                plural = doc.kind.lower() + "s"
                plans.append((doc, ApiResource(doc.group, doc.version, doc.kind, plural, True, type(None)),
                              copy.deepcopy(doc.body)))
                continue
            res = await self.resource(doc.group, doc.kind, doc.version, where=doc.where())
            plans.append((doc, res, self._placed(doc, namespace_override, res)))
        new_namespaces = {p[2]["metadata"]["name"] for p in plans if p[0].kind == "Namespace"}
        local_only = [p for p in plans if p[1].group == LOCAL_ONLY_GROUP]
        plans = [p for p in plans if p[1].group != LOCAL_ONLY_GROUP]
        # Preflight: dry-run every document; a namespace created by this batch may not exist yet.
        for doc, res, body in plans:
            ns = body["metadata"].get("namespace")
            try:
                await self._ssa(res, body, force=force, dry_run=True)
            except Exception as exc:
                if _status_code(exc) == 404 and ns in new_namespaces:
                    continue
                raise self._translate(exc, verb="apply", what=self._what(res, body), group=res.group,
                                      where=doc.where()) from exc
        done = {id(doc): await self._apply_one(doc, res, body, force=force, dry_run=dry_run, actor=actor)
                for doc, res, body in plans}
        for doc, _, body in local_only:  # LocalImage & co. mean nothing to a cluster: the real image runs
            done[id(doc)] = Applied(key=doc.key, action="unchanged", body=body)
        return [done[id(doc)] for doc in ordered]

    @staticmethod
    def _what(res: ApiResource, body: dict[str, Any]) -> str:
        meta = body.get("metadata") or {}
        ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"{res.kind} {ns}{meta.get('name', '?')} ({res.display})"

    async def _ssa(self, res: ApiResource, body: dict[str, Any], *, force: bool, dry_run: bool) -> dict[str, Any]:
        meta = body["metadata"]
        obj = await self.client().patch(res.cls, meta["name"], body, namespace=meta.get("namespace"),
                                        patch_type=LkPatchType.APPLY, field_manager=FIELD_MANAGER,
                                        force=force, dry_run=dry_run)
        return dict(obj.to_dict())

    async def _apply_one(self, doc: Document, res: ApiResource, body: dict[str, Any], *, force: bool,
                         dry_run: bool, actor: str = "") -> Applied:
        meta = body["metadata"]
        what = self._what(res, body)
        try:
            before = await self._get_raw(res, meta["name"], meta.get("namespace"))
            sent = await fenced(self.before_write, actor, body, dry_run)  # just before the write (base.WriteGuard)
            after = await self._ssa(res, sent or body, force=force, dry_run=dry_run)
        except Exception as exc:
            raise self._translate(exc, verb="apply", what=what, group=res.group, where=doc.where()) from exc
        key = ResourceKey(res.group, res.kind, meta.get("namespace", "") if res.namespaced else "", meta["name"])
        rv = str((after.get("metadata") or {}).get("resourceVersion") or "")
        if before is None:
            action = "created"
        else:  # what we own changed? (status and server bookkeeping move on their own)
            action = "unchanged" if _comparable(before) == _comparable(after) else "configured"
        return Applied(key=key, action=action, resource_version=rv, body=after)  # type: ignore[arg-type]

    async def delete(self, keys: Sequence[ResourceKey], *, actor: str, cascade: bool = True,
                     grace_period_seconds: int | None = None) -> list[ResourceKey]:
        """Delete routes first, then what they route to; cascade = background garbage collection of dependents."""
        existed: list[ResourceKey] = []
        policy = CascadeType.BACKGROUND if cascade else CascadeType.ORPHAN
        for key in order_for_delete(keys):
            if key.group == LOCAL_ONLY_GROUP:
                continue
            try:
                res = await self._resource_for_key(key)
            except NotFound:
                continue  # the cluster does not serve the kind (e.g. Istio not installed): nothing to delete
            ns = (key.namespace or self.namespace) if res.namespaced else None
            await fenced(self.before_write, actor)
            try:
                await self.client().delete(res.cls, key.name, namespace=ns, grace_period=grace_period_seconds,
                                           cascade=policy)
            except Exception as exc:
                if _status_code(exc) == 404:
                    continue
                raise self._translate(exc, verb="delete", what=str(key), group=key.group) from exc
            existed.append(ResourceKey(res.group, res.kind, ns or "", key.name))
        return existed

    async def get(self, key: ResourceKey) -> dict[str, Any] | None:
        res = await self._resource_for_key(key)
        ns = (key.namespace or self.namespace) if res.namespaced else None
        try:
            return await self._get_raw(res, key.name, ns)
        except Exception as exc:
            raise self._translate(exc, verb="get", what=str(key), group=key.group) from exc

    async def list(self, kind: str, namespace: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """List one kind in `namespace`; None (or '*') lists every namespace, like the store does."""
        if group is None:
            group = next((g for (g, k) in KNOWN_KINDS if k == kind), "")
        res = await self.resource(group, kind)
        ns = None
        if res.namespaced:
            ns = namespace if namespace and namespace != "*" else "*"
        try:
            return [dict(o.to_dict()) async for o in self.client().list(res.cls, namespace=ns)]
        except Exception as exc:
            raise self._translate(exc, verb="list", what=res.display, group=group) from exc

    async def patch(self, key: ResourceKey, patch: Any, patch_type: PatchType, *, actor: str) -> dict[str, Any]:
        types = {"strategic": LkPatchType.STRATEGIC, "merge": LkPatchType.MERGE, "json": LkPatchType.JSON}
        if patch_type not in types:
            raise ValidationError(f"unknown patch type {patch_type!r}; use strategic, merge or json")
        if patch_type == "json" and not isinstance(patch, list):
            raise ValidationError("a json patch is a list of operations ([{op, path, value}, ...])")
        if patch_type != "json" and not isinstance(patch, dict):
            raise ValidationError(f"a {patch_type} patch is a map")
        res = await self._resource_for_key(key)
        ns = (key.namespace or self.namespace) if res.namespaced else None
        if patch_type == "strategic" and res.group not in BUILTIN_GROUPS:
            patch_type = "merge"  # custom resources have no strategic merge schema
        await fenced(self.before_write, actor)
        try:
            obj = await self.client().patch(res.cls, key.name, patch, namespace=ns, patch_type=types[patch_type],
                                            field_manager=FIELD_MANAGER)
        except Exception as exc:
            raise self._translate(exc, verb="patch", what=str(key), group=key.group) from exc
        return dict(obj.to_dict())

    async def history(self, key: ResourceKey) -> list[ManifestRevision]:
        """A Deployment's ReplicaSet revisions (targets/kubernetes_history.py); other kinds keep none here."""
        return await rollout_history(self, key)

    async def traffic(self, namespace: str | None = None, *, window: str = "1m",
                      reporter: str | None = "destination", at: float | None = None) -> list[TrafficSample]:
        """Istio's request counters from the Prometheus that scrapes this cluster's sidecars (istio.md §3.2)."""
        if not self.prometheus:
            raise GraylaneError(f"account {self.account!r} has no Prometheus", where=f"account {self.account}",
                                hint=f"re-add it with `graylane account add {self.account} ... --prometheus URL "
                                     "--replace`")
        return await PrometheusClient(self.prometheus, account=self.account).istio_traffic(
            namespace, window=window, reporter=reporter, at=at)

    async def wait_ready(self, keys: Sequence[ResourceKey], *, timeout: float) -> None:
        """Wait like `kubectl rollout status` for every Deployment/StatefulSet/DaemonSet; others must exist."""
        deadline = time.monotonic() + timeout
        pending = list(keys)
        last: dict[ResourceKey, str] = {}
        while pending:
            still: list[ResourceKey] = []
            for key in pending:
                obj = await self.get(key)
                if obj is None:
                    last[key] = f"{key} does not exist (yet)"
                    still.append(key)
                    continue
                done, message = rollout_status(obj)
                if not done:
                    last[key] = message
                    still.append(key)
            pending = still
            if not pending:
                return
            if time.monotonic() >= deadline:
                waiting = "; ".join(last[k] for k in pending)
                raise GraylaneError(f"timed out after {timeout:g}s waiting for the rollout: {waiting}",
                                    where=f"account {self.account}")
            await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    # ---- helpers for other areas --------------------------------------------------------------
    async def istio_installed(self) -> bool:
        """True when the cluster serves networking.istio.io (Istio's CRDs are installed)."""
        return await self._cached_get("/apis/networking.istio.io") is not None

    async def check(self) -> dict[str, Any]:
        """Connectivity check for `graylane account add/list`: server version and Istio presence."""
        version = await self._raw_get("/version")
        return {"server": self.server, "version": (version or {}).get("gitVersion", "?"),
                "istio": await self.istio_installed()}
