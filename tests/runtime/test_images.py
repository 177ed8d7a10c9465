"""Which local command stands in for a container image."""

from __future__ import annotations

import sys

from graylane.runtime.images import ImageEntry, ImageNotRunnable, Resolved, applied_entries, builtin_entries, resolve


def local_image(name: str, image: str, command: list[str], **extra: object) -> dict:
    return {"apiVersion": "graylane.io/v1alpha1", "kind": "LocalImage",
            "metadata": {"name": name, "namespace": "default", **extra.pop("metadata", {})},  # type: ignore[dict-item]
            "spec": {"image": image, "command": command, **extra}}


def test_most_specific_applied_pattern_wins() -> None:
    entries = applied_entries([
        local_image("broad", "docker.io/acme/*", ["broad"]),
        local_image("exact", "docker.io/acme/reviews-v2:1.0", ["exact"]),
        local_image("narrow", "docker.io/acme/reviews-v*:*", ["narrow"]),
    ])
    assert isinstance(r := resolve({"image": "docker.io/acme/reviews-v2:1.0"}, entries, []), Resolved)
    assert r.command == ("exact",)
    assert isinstance(r := resolve({"image": "docker.io/acme/reviews-v3:1.0"}, entries, []), Resolved)
    assert r.command == ("narrow",)
    assert isinstance(r := resolve({"image": "docker.io/acme/ratings:1"}, entries, []), Resolved)
    assert r.command == ("broad",)


def test_applied_local_image_beats_builtin_for_the_same_image() -> None:
    builtin = [ImageEntry("docker.io/istio/examples-bookinfo-ratings-v1:1.20.2", ("builtin",))]
    applied = applied_entries([local_image("mine", "docker.io/istio/examples-bookinfo-ratings-v*:*", ["mine"])])
    r = resolve({"image": "docker.io/istio/examples-bookinfo-ratings-v1:1.20.2"}, applied, builtin)
    assert isinstance(r, Resolved) and r.command == ("mine",)


def test_bookinfo_builtins_resolve_to_our_python_services() -> None:
    entries = builtin_entries()
    assert entries, "the Bookinfo built-in images should be importable"
    r = resolve({"image": "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2"}, [], entries)
    assert isinstance(r, Resolved)
    assert r.command[0] == sys.executable and "reviews" in r.command[-1]
    assert ("STAR_COLOR", "black") in r.env


def test_image_local_runs_the_containers_own_command() -> None:
    r = resolve({"image": "local", "command": ["python", "app.py"], "args": ["v1"], "workingDir": "/srv"}, [], [])
    assert r == Resolved((sys.executable, "app.py"), ("v1",), "/srv", origin="image: local")


def test_unknown_image_gets_a_clear_reason() -> None:
    r = resolve({"image": "nginx:1.25"}, [], [])
    assert isinstance(r, ImageNotRunnable)
    assert r.reason == "ImageNotRunnableLocally"
    assert r.message == 'no LocalImage matches "nginx:1.25"; add one with graylane apply'


def test_container_args_override_image_args_and_relative_dirs_use_the_source_folder(tmp_path) -> None:
    (tmp_path / "svc").mkdir()
    applied = applied_entries([local_image("x", "acme/x:*", ["python", "server.py"], args=["--default"],
                                           workingDir="svc",
                                           metadata={"annotations": {"graylane.io/source-dir": str(tmp_path)}})])
    r = resolve({"image": "acme/x:1", "args": ["--mine"]}, applied, [])
    assert isinstance(r, Resolved)
    assert r.args == ("--mine",)
    assert r.working_dir == str(tmp_path / "svc")
