"""A replica's environment, as kubelet builds it: container env, valueFrom, service links, $(VAR).

Pure: takes the pod's identity and the namespace's ConfigMaps/Secrets/Services as bodies; raises
`EnvError` (a condition reason) when a referenced key is missing and not optional.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class EnvError(Exception):
    """A container's environment cannot be built (CreateContainerConfigError in Kubernetes)."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    port: int  # the local PORT the process must listen on
    sidecar_port: int  # its outbound listener on the data plane
    service_account: str = "default"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined vars replaced, `$$` escapes, unknown refs left as written.

    >>> expand("$(A)-$$(A)-$(B)", {"A": "x"})
    'x-$(A)-$(B)'
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


def service_env(services: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """`<SVC>_SERVICE_HOST`/`_PORT` (and `_PORT_<NAME>`) for the namespace's Services.

    The host is the Service's name: the app reaches it through its sidecar (HTTP_PROXY), which
    resolves names the way cluster DNS would.
    """
    out: dict[str, str] = {}
    for svc in services:
        name = str((svc.get("metadata") or {}).get("name") or "")
        ports = (svc.get("spec") or {}).get("ports") or []
        if not name or not ports:
            continue
        prefix = name.upper().replace("-", "_")
        out[f"{prefix}_SERVICE_HOST"] = name
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port", ""))
        for p in ports:
            if p.get("name"):
                out[f"{prefix}_SERVICE_PORT_{str(p['name']).upper().replace('-', '_')}"] = str(p.get("port", ""))
    return out


def _lookup(kind: str, objects: Mapping[str, Mapping[str, Any]], ref: Mapping[str, Any]) -> str | None:
    obj = objects.get(str(ref.get("name") or ""))
    key = str(ref.get("key") or "")
    optional = bool(ref.get("optional"))
    if obj is not None:
        if kind == "Secret":
            if key in (obj.get("stringData") or {}):
                return str(obj["stringData"][key])
            if key in (obj.get("data") or {}):
                return base64.b64decode(str(obj["data"][key])).decode("utf-8", "replace")
        elif key in (obj.get("data") or {}):
            return str(obj["data"][key])
    if optional:
        return None
    what = f'{kind} "{ref.get("name")}"'
    if obj is None:
        raise EnvError(f"{what} not found")
    raise EnvError(f'couldn\'t find key {key} in {what}')


def _field_ref(path: str, pod: PodIdentity) -> str:
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        source = pod.labels if m.group(1) == "labels" else pod.annotations
        return str(source.get(m.group(2), ""))
    values = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "spec.nodeName": "localhost",
              "spec.serviceAccountName": pod.service_account, "status.podIP": "127.0.0.1",
              "status.hostIP": "127.0.0.1", "status.podIPs": "127.0.0.1", "metadata.uid": pod.name}
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted(pod.labels.items()))
    if path not in values:
        raise EnvError(f"unsupported fieldRef fieldPath {path}")
    return values[path]


def container_env(container: Mapping[str, Any], pod: PodIdentity, *, image_env: Sequence[tuple[str, str]] = (),
                  config_maps: Mapping[str, Mapping[str, Any]] | None = None,
                  secrets: Mapping[str, Mapping[str, Any]] | None = None,
                  services: Sequence[Mapping[str, Any]] = (), base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment for one replica (base = the runtime's own PATH etc.)."""
    config_maps = config_maps or {}
    secrets = secrets or {}
    env: dict[str, str] = dict(base or {})
    env.update(dict(image_env))
    proxy = f"http://127.0.0.1:{pod.sidecar_port}"
    env.update({
        "PORT": str(pod.port), "HOSTNAME": pod.name, "POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace,
        "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1", "PYTHONUNBUFFERED": "1",
    })
    env.update(service_env(services))
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        if "configMapRef" in src:
            ref = src["configMapRef"]
            obj = config_maps.get(str(ref.get("name")))
            if obj is None and not ref.get("optional"):
                raise EnvError(f'ConfigMap "{ref.get("name")}" not found')
            for k, v in ((obj or {}).get("data") or {}).items():
                env[prefix + str(k)] = str(v)
        if "secretRef" in src:
            ref = src["secretRef"]
            obj = secrets.get(str(ref.get("name")))
            if obj is None and not ref.get("optional"):
                raise EnvError(f'Secret "{ref.get("name")}" not found')
            for k, v in ((obj or {}).get("data") or {}).items():
                env[prefix + str(k)] = base64.b64decode(str(v)).decode("utf-8", "replace")
            for k, v in ((obj or {}).get("stringData") or {}).items():
                env[prefix + str(k)] = str(v)
    # Kubernetes: a value may reference variables defined earlier in the list (and service vars).
    for item in container.get("env") or []:
        name = str(item.get("name") or "")
        if not name:
            continue
        if "valueFrom" in item:
            vf = item["valueFrom"] or {}
            value: str | None
            if "fieldRef" in vf:
                value = _field_ref(str(vf["fieldRef"].get("fieldPath") or ""), pod)
            elif "configMapKeyRef" in vf:
                value = _lookup("ConfigMap", config_maps, vf["configMapKeyRef"])
            elif "secretKeyRef" in vf:
                value = _lookup("Secret", secrets, vf["secretKeyRef"])
            elif "resourceFieldRef" in vf:
                value = "0"
            else:
                raise EnvError(f"env {name}: unsupported valueFrom {sorted(vf)}")
            if value is None:
                continue
            env[name] = value
        else:
            env[name] = expand(str(item.get("value", "")), env)
    return env


def expand_argv(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    return [expand(a, env) for a in argv]
