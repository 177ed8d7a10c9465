"""Resolve a container image to what runs locally: applied LocalImages, built-ins, or `image: local`.

Knows resource bodies (dicts); knows nothing of processes or the store. An applied `LocalImage`
(`graylane.io/v1alpha1`) always wins over a built-in entry; among applied ones the most specific
pattern wins (an exact name first, then the pattern with the most literal characters). Relative
paths (a LocalImage's, or a Deployment container's `workingDir`) are resolved against the folder of
the file they were applied from, recorded in the annotation `graylane.io/source-dir`.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCAL_IMAGE = "local"
SOURCE_DIR_ANNOTATION = "graylane.io/source-dir"
_WILDCARDS = "*?["
# Tool images whose containers name their own command (Istio's samples/curl: `/bin/sleep infinity`):
# that command runs as it is on this host.
HOST_COMMAND_IMAGES = ("curlimages/curl", "busybox", "alpine")
HOST_COMMAND_ORIGIN = "built-in (the container's own command, run on this host)"
IMAGES_ENTRY_POINT = "graylane.images"  # each entry point names a list of LocalImage specs


@dataclass(frozen=True)
class ImageEntry:
    """One image pattern and the local command that stands in for it."""

    pattern: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    origin: str = "built-in"  # "LocalImage ns/name", "built-in" or HOST_COMMAND_ORIGIN

    @property
    def specificity(self) -> tuple[int, int]:
        """Exact names first, then the most literal characters (`a/b-v*:*` beats `a/*`)."""
        literal = sum(1 for c in self.pattern if c not in _WILDCARDS)
        return (0 if any(c in self.pattern for c in _WILDCARDS) else 1, literal)

    def matches(self, image: str) -> bool:
        return image == self.pattern or fnmatch.fnmatchcase(image, self.pattern)


@dataclass(frozen=True)
class Resolved:
    """What a container runs: argv base, its folder and image-level environment."""

    command: tuple[str, ...]
    args: tuple[str, ...]
    working_dir: str | None
    env: tuple[tuple[str, str], ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class ImageNotRunnable:
    """The reason a container cannot run here (becomes a Deployment condition)."""

    image: str
    reason: str = "ImageNotRunnableLocally"
    message: str = field(default="")

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message",
                               f'no LocalImage matches "{self.image}"; add one with graylane apply')


def _env_pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, Mapping):
        return tuple((str(k), str(v)) for k, v in raw.items())
    pairs: list[tuple[str, str]] = []
    for item in raw or []:
        if isinstance(item, Mapping) and "name" in item:
            pairs.append((str(item["name"]), str(item.get("value", ""))))
    return tuple(pairs)


def _strs(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(x) for x in raw)


def entry_from_spec(spec: Mapping[str, Any], *, origin: str = "built-in", base_dir: str | None = None) -> ImageEntry:
    """A LocalImage `spec` (image, command, args, workingDir, env) as an entry; relative dirs use base_dir."""
    working_dir = spec.get("workingDir")
    if working_dir and base_dir and not Path(str(working_dir)).is_absolute():
        working_dir = str((Path(base_dir) / str(working_dir)).resolve())
    elif not working_dir and base_dir:
        working_dir = base_dir
    return ImageEntry(pattern=str(spec.get("image") or ""), command=_strs(spec.get("command")),
                      args=_strs(spec.get("args")), working_dir=str(working_dir) if working_dir else None,
                      env=_env_pairs(spec.get("env")), origin=origin)


def applied_entries(local_images: Iterable[Mapping[str, Any]]) -> list[ImageEntry]:
    """Entries from stored LocalImage bodies, most specific first."""
    entries = []
    for body in local_images:
        md = body.get("metadata") or {}
        base = (md.get("annotations") or {}).get(SOURCE_DIR_ANNOTATION)
        origin = f"LocalImage {md.get('namespace') or 'default'}/{md.get('name')}"
        entry = entry_from_spec(body.get("spec") or {}, origin=origin, base_dir=base)
        if entry.pattern:
            entries.append(entry)
    return sorted(entries, key=lambda e: e.specificity, reverse=True)


def host_command_entries() -> list[ImageEntry]:
    """`curlimages/curl`, `docker.io/curlimages/curl:8.1`, ...: no command of their own."""
    entries = []
    for name in HOST_COMMAND_IMAGES:
        names = [name, f"docker.io/{name}"] + ([f"docker.io/library/{name}"] if "/" not in name else [])
        entries += [ImageEntry(pattern=p, origin=HOST_COMMAND_ORIGIN) for n in names for p in (n, f"{n}:*")]
    return entries


@functools.cache
def registered_specs() -> tuple[Mapping[str, Any], ...]:
    """LocalImage specs that packages register under the `graylane.images` entry-point group (the Bookinfo demo
    does, in pyproject.toml): the runtime never imports a demo, the demo names itself."""
    specs: list[Mapping[str, Any]] = []
    for ep in entry_points(group=IMAGES_ENTRY_POINT):
        try:
            specs.extend(ep.load())
        except Exception:  # boundary: a broken plug-in must not stop every workload
            log.warning("cannot load the images registered as %s (%s)", ep.name, ep.value, exc_info=True)
    return tuple(specs)


def builtin_entries() -> list[ImageEntry]:
    """The registered images (see `registered_specs`), then tool images."""
    entries = [entry_from_spec(spec) for spec in registered_specs()] + host_command_entries()
    return sorted((e for e in entries if e.pattern), key=lambda e: e.specificity, reverse=True)


def needs_source_dir(body: Mapping[str, Any]) -> bool:
    """A Deployment whose containers run `image: local` or name a relative `workingDir`."""
    spec = ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
    for c in spec.get("containers") or []:
        if isinstance(c, Mapping) and (c.get("image") == LOCAL_IMAGE
                                       or (c.get("workingDir") and not Path(str(c["workingDir"])).is_absolute())):
            return True
    return False


def source_dir_of(body: Mapping[str, Any]) -> str | None:
    """The folder `body` was applied from (`graylane apply -f FILE`), if recorded."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(SOURCE_DIR_ANNOTATION)
    return str(value) if value else None


def _in_folder(path: Any, base_dir: str | None) -> str | None:
    if not path:
        return base_dir
    if base_dir and not Path(str(path)).is_absolute():
        return str((Path(base_dir) / str(path)).resolve())
    return str(path)


def _python(argv: tuple[str, ...]) -> tuple[str, ...]:
    # `python` in a LocalImage means the interpreter Graylane runs on, so `-m graylane...` works.
    if argv and argv[0] in ("python", "python3"):
        return (sys.executable, *argv[1:])
    return argv


def resolve(container: Mapping[str, Any], applied: list[ImageEntry],
            builtins: list[ImageEntry] | None = None, *, base_dir: str | None = None) -> Resolved | ImageNotRunnable:
    """What `container` runs, Kubernetes-style: container command/args override the image's.

    `base_dir` is the folder the Deployment was applied from: a relative `workingDir` is taken
    against it, and an `image: local` container without one runs there.

    >>> resolve({"image": "local", "command": ["python", "app.py"]}, []).command[1]
    'app.py'
    """
    image = str(container.get("image") or "")
    own_command = _strs(container.get("command"))
    own_args = _strs(container.get("args"))
    own_dir = container.get("workingDir")
    if image == LOCAL_IMAGE:
        if not own_command and not own_args:
            return ImageNotRunnable(image, message='container with image "local" needs a command')
        return Resolved(_python(own_command), own_args, _in_folder(own_dir, base_dir), origin="image: local")
    for entry in [*applied, *(builtin_entries() if builtins is None else builtins)]:
        if entry.matches(image):
            if entry.origin == HOST_COMMAND_ORIGIN and not own_command:
                return ImageNotRunnable(image, message=f'image "{image}" runs here only with the container\'s '
                                        'own command (e.g. command: ["/bin/sleep", "infinity"])')
            # Kubernetes: command replaces ENTRYPOINT (and drops CMD); args replace CMD.
            command = own_command or entry.command
            args = own_args if (own_args or own_command) else entry.args
            working_dir = _in_folder(own_dir, base_dir) if own_dir else entry.working_dir
            return Resolved(_python(command), args, working_dir, entry.env, entry.origin)
    return ImageNotRunnable(image)
