"""Accounts (Spinnaker's word for "where a stage deploys"): the built-in `local` mesh and Kubernetes clusters.

Kubernetes accounts live in `<state>/accounts.yaml`; `get_target(name)` turns one into a Target.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graylane import settings
from graylane.errors import Conflict, GraylaneError, NotFound, ValidationError
from graylane.promql import PrometheusClient
from graylane.resources import yamlsafe
from graylane.targets.local import LocalTarget

LOCAL = "local"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass
class Account:
    """One place to deploy. `kubeconfig` None means $KUBECONFIG, ~/.kube/config or the in-cluster service account."""

    name: str
    type: str = "kubernetes"
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    prometheus: str | None = None
    force_conflicts: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra", None)
        return out


LOCAL_ACCOUNT = Account(name=LOCAL, type="local", namespace="default")


def accounts_file() -> Path:
    return settings.state_dir() / "accounts.yaml"


def _read() -> dict[str, Account]:
    path = accounts_file()
    if not path.exists():
        return {}
    raw = yamlsafe.load(yamlsafe.read_text(path), str(path)) or {}  # ValidationError names file:line
    items = raw.get("accounts") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise GraylaneError("the accounts file must hold `accounts: [...]`", where=str(path))
    out: dict[str, Account] = {}
    known = {f for f in Account.__dataclass_fields__ if f != "extra"}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name"):
            raise GraylaneError(f"account #{i + 1} has no name", where=str(path))
        data = {k: v for k, v in item.items() if k in known}
        extra = {k: v for k, v in item.items() if k not in known}
        out[str(item["name"])] = Account(**data, extra=extra)
    return out


def _write(accounts: dict[str, Account]) -> None:
    path = accounts_file()
    items = []
    for acc in accounts.values():
        d = {k: v for k, v in acc.public().items() if v not in (None, False)}
        d.update(acc.extra)
        items.append(d)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".accounts.", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump({"accounts": items}, fh, sort_keys=False)
    os.replace(tmp, path)


def list_accounts() -> list[Account]:
    """`local` first, then the Kubernetes accounts by name."""
    return [LOCAL_ACCOUNT, *sorted(_read().values(), key=lambda a: a.name)]


def get_account(name: str) -> Account:
    if name == LOCAL:
        return LOCAL_ACCOUNT
    accounts = _read()
    if name not in accounts:
        known = ", ".join(a.name for a in list_accounts())
        raise NotFound(f"no account named {name!r}", hint=f"known accounts: {known}; add one with "
                                                          "`graylane account add NAME --kubeconfig PATH`")
    return accounts[name]


def add_account(name: str, *, kubeconfig: str | Path | None = None, context: str | None = None,
                namespace: str | None = None, prometheus: str | None = None, force_conflicts: bool = False,
                replace: bool = False) -> Account:
    """Validate and store a Kubernetes account (the kubeconfig and its context must exist)."""
    if name == LOCAL:
        raise ValidationError("`local` is the built-in local mesh account and cannot be redefined")
    if not _NAME.match(name):
        raise ValidationError(f"account name {name!r} must be a DNS label (lowercase letters, digits, '-')")
    path: str | None = None
    if kubeconfig is not None:
        kc = Path(kubeconfig).expanduser()
        if not kc.is_file():
            raise ValidationError(f"kubeconfig {str(kubeconfig)!r} does not exist", where="--kubeconfig")
        path = str(kc.resolve())
        _check_context(path, context)
    if prometheus is not None and not re.match(r"^https?://", prometheus):
        raise ValidationError(f"--prometheus must be an http(s) URL, got {prometheus!r}", where="--prometheus")
    if namespace is not None and not _NAME.match(namespace):
        raise ValidationError(f"namespace {namespace!r} is not a valid Kubernetes namespace", where="--namespace")
    accounts = _read()
    if name in accounts and not replace:
        raise Conflict(f"account {name!r} already exists", hint="remove it first or pass --replace")
    acc = Account(name=name, kubeconfig=path, context=context, namespace=namespace,
                  prometheus=prometheus.rstrip("/") if prometheus else None, force_conflicts=force_conflicts)
    accounts[name] = acc
    _write(accounts)
    return acc


def _check_context(path: str, context: str | None) -> None:
    from lightkube import ConfigError, KubeConfig

    try:
        kc = KubeConfig.from_file(path)
        kc.get(context_name=context)
    except (ConfigError, KeyError, ValueError, OSError) as exc:
        what = f"context {context!r}" if context else "a current-context"
        raise ValidationError(f"kubeconfig {path} has no usable {what}: {exc}", where="--context") from exc


def remove_account(name: str) -> Account:
    if name == LOCAL:
        raise ValidationError("`local` is built in and cannot be removed")
    accounts = _read()
    if name not in accounts:
        raise NotFound(f"no account named {name!r}")
    acc = accounts.pop(name)
    _write(accounts)
    return acc


def prometheus_url(account: str) -> str:
    """The Prometheus of a Kubernetes account (its `--prometheus` URL); GraylaneError naming the fix without one."""
    acc = get_account(account)
    if not acc.prometheus:
        raise GraylaneError(f"account {account!r} has no Prometheus",
                            hint=f"re-add it with `graylane account add {account} ... --prometheus URL --replace`")
    return acc.prometheus


def prometheus_client(account: str) -> PrometheusClient:
    """A PromQL client of a Kubernetes account's Prometheus (graylane.promql)."""
    return PrometheusClient(prometheus_url(account), account=account)


def kubernetes_target(acc: Account, *, namespace: str | None = None) -> Any:
    """A KubernetesTarget for a stored account (namespace: a stage's namespaceOverride as default namespace)."""
    from graylane.targets.kubernetes import KubernetesTarget

    return KubernetesTarget(acc.name, kubeconfig=acc.kubeconfig, context=acc.context,
                            namespace=namespace or acc.namespace, force_conflicts=acc.force_conflicts,
                            prometheus=acc.prometheus)


def get_target(account: str, cp: Any = None, *, namespace: str | None = None) -> Any:
    """The Target for a stage's `account` (`local` when empty).

    `namespace` (a stage's `namespaceOverride`) becomes the Kubernetes target's default namespace; pass it to
    `Target.apply(namespace_override=...)` as well so documents naming another namespace move too.
    With a ControlPlane, Kubernetes targets are cached per account+namespace (one connection pool each).
    """
    name = account or LOCAL
    acc = get_account(name)
    if acc.type == "local":
        if cp is None:
            from graylane.store import Store

            return LocalTarget(Store.open())
        return LocalTarget(cp.store, runtime=cp.component("runtime"), mesh=cp.component("mesh"),
                           telemetry=cp.component("telemetry"), jobs=cp.component("jobs"))
    if cp is None:
        return kubernetes_target(acc, namespace=namespace)
    cache: dict[tuple[Any, ...], Any] = cp.settings.setdefault("kubernetes_targets", {})
    key = (name, namespace, acc.kubeconfig, acc.context, acc.namespace, acc.force_conflicts, acc.prometheus)
    if key not in cache:
        cache[key] = kubernetes_target(acc, namespace=namespace)
    return cache[key]


GATEWAY_API = "gateway.networking.k8s.io"
LIVE_KINDS: tuple[tuple[str, str], ...] = (
    ("", "Service"), ("apps", "Deployment"), ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "Gateway"), ("networking.istio.io", "VirtualService"), (GATEWAY_API, "HTTPRoute"),
)


async def alive_context(account: str, namespace: str | None = None, cp: Any = None) -> list[dict[str, Any]]:
    """What the cluster of `account` holds that manifests refer to: Services, Deployments, DestinationRules,
    Gateways, VirtualServices, HTTPRoutes (every namespace unless `namespace`). Istio kinds are skipped when Istio
    is absent, HTTPRoutes when the cluster does not serve the Gateway API (in the version it prefers otherwise).
    """
    acc = get_account(account or LOCAL)
    if acc.type == "local":
        from graylane.store import Store

        store = cp.store if cp is not None else Store.open()
        out = []
        for group, kind in LIVE_KINDS:
            out += [dict(r.body) for r in store.list(kind=kind, namespace=namespace, group=group)]
        return out
    target = kubernetes_target(acc)
    try:
        istio = await target.istio_installed()
        out = []
        for group, kind in LIVE_KINDS:
            if group == "networking.istio.io" and not istio:
                continue
            try:
                out += await target.list(kind, namespace or "*", group=group)
            except NotFound:
                if group != GATEWAY_API:  # the Gateway API's CRDs are optional
                    raise
        return out
    finally:
        await target.close()


def live_context(account: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Synchronous `alive_context` for the CLI (`graylane validate --account NAME`)."""
    import asyncio

    return asyncio.run(alive_context(account, namespace))
