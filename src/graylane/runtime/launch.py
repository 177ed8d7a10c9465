"""From a Deployment's pod template to one replica's argv, environment and folder.

Pure over resource bodies: images are resolved by `runtime.images`, the environment by
`runtime.env`. A template that cannot run here yields a `LaunchProblem` (a Deployment condition).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graylane.runtime.env import EnvError, PodIdentity, container_env, expand_argv
from graylane.runtime.images import ImageEntry, ImageNotRunnable, resolve

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.String alphabet


@dataclass(frozen=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    container: Mapping[str, Any]


@dataclass(frozen=True)
class LaunchProblem:
    reason: str
    message: str


@dataclass
class Resources:
    """The slice of the store the runtime reads, indexed by namespace."""

    deployments: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)  # generation / resourceVersion
    config_maps: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Mapping[str, Any]]] = field(default_factory=dict)
    services: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    images: list[ImageEntry] = field(default_factory=list)
    source_dirs: dict[tuple[str, str], str] = field(default_factory=dict)  # Deployment -> folder applied from


def template_hash(template: Mapping[str, Any]) -> str:
    """A short stable hash of the pod template (the `pod-template-hash` label)."""
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    return "".join(_NAME_ALPHABET[int(digest[i:i + 2], 16) % len(_NAME_ALPHABET)] for i in range(0, 20, 2))


def pod_name(deployment: str, hash_: str) -> str:
    return f"{deployment}-{hash_}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(5))}"


def main_container(template: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return containers[0]


def init_containers(template: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod's `initContainers`, which run first, one after another, each to exit 0."""
    return list((template.get("spec") or {}).get("initContainers") or [])


def container_port(container: Mapping[str, Any]) -> int:
    ports = container.get("ports") or []
    return int(ports[0].get("containerPort", 9080)) if ports else 9080


def grace_period_s(template: Mapping[str, Any]) -> float:
    return float((template.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


def build_launch(template: Mapping[str, Any], pod: PodIdentity, res: Resources,
                 base_env: Mapping[str, str] | None = None, *, source_dir: str | None = None,
                 container: Mapping[str, Any] | None = None) -> LaunchSpec | LaunchProblem:
    """What to run for `pod` from its template, or why it cannot run (`source_dir`: see images.resolve).

    `container`: one of the template's containers (an init container, a Job's second container); default the first
    of `containers`."""
    container = container if container is not None else main_container(template)
    resolved = resolve(container, res.images, base_dir=source_dir)
    if isinstance(resolved, ImageNotRunnable):
        return LaunchProblem(resolved.reason, resolved.message)
    try:
        env = container_env(container, pod, image_env=resolved.env,
                            config_maps=res.config_maps.get(pod.namespace, {}),
                            secrets=res.secrets.get(pod.namespace, {}),
                            services=res.services.get(pod.namespace, []),
                            base=base_env if base_env is not None else os.environ)
    except EnvError as exc:
        return LaunchProblem(EnvError.reason, str(exc))
    argv = expand_argv([*resolved.command, *resolved.args], env)
    if not argv:
        return LaunchProblem("ImageNotRunnableLocally", f'image "{container.get("image")}" has no command')
    cwd = resolved.working_dir
    if cwd and not os.path.isdir(cwd):
        where = "" if os.path.isabs(cwd) else (f" (relative to the control plane's folder {os.getcwd()}: "
                                               "apply the Deployment from a file to use the file's folder)")
        return LaunchProblem("CreateContainerError", f"workingDir {cwd} does not exist{where}")
    return LaunchSpec(tuple(argv), env, cwd, container)


def index_resources(stored: Mapping[str, Sequence[Any]]) -> Resources:
    """Build `Resources` from store listings {kind: [StoredResource]}."""
    from graylane.runtime.images import applied_entries, source_dir_of

    res = Resources()
    for item in stored.get("Deployment", []):
        body = item.body
        md = body.get("metadata") or {}
        key = (str(md.get("namespace") or "default"), str(md.get("name")))
        res.deployments[key] = body
        folder = source_dir_of(body)
        if folder:
            res.source_dirs[key] = folder
        res.versions[key] = str(getattr(item, "generation", None) or getattr(item, "resource_version", "") or "")
    for kind, target in (("ConfigMap", res.config_maps), ("Secret", res.secrets)):
        for item in stored.get(kind, []):
            md = item.body.get("metadata") or {}
            target.setdefault(str(md.get("namespace") or "default"), {})[str(md.get("name"))] = item.body
    for item in stored.get("Service", []):
        md = item.body.get("metadata") or {}
        res.services.setdefault(str(md.get("namespace") or "default"), []).append(item.body)
    res.images = applied_entries(item.body for item in stored.get("LocalImage", []))
    return res
