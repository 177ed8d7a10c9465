"""Tool images run the container's own command; relative paths follow the manifest's folder."""

from __future__ import annotations

from pathlib import Path

from graylane.runtime.images import (
    HOST_COMMAND_ORIGIN,
    ImageNotRunnable,
    Resolved,
    needs_source_dir,
    resolve,
)
from graylane.runtime.probes import readiness_spec


def test_tool_images_run_the_containers_own_command() -> None:
    for image in ("curlimages/curl", "docker.io/curlimages/curl:8.11.0", "busybox:1.36", "docker.io/library/alpine"):
        got = resolve({"image": image, "command": ["/bin/sleep", "infinity"]}, [])
        assert isinstance(got, Resolved), image
        assert (got.command, got.origin) == (("/bin/sleep", "infinity"), HOST_COMMAND_ORIGIN)
    bare = resolve({"image": "curlimages/curl"}, [])
    assert isinstance(bare, ImageNotRunnable)
    assert bare.message == ('image "curlimages/curl" runs here only with the container\'s own command '
                            '(e.g. command: ["/bin/sleep", "infinity"])')
    assert isinstance(resolve({"image": "curlimages/curl-extra", "command": ["x"]}, []), ImageNotRunnable)


def test_relative_working_dir_follows_the_manifest_folder(tmp_path: Path) -> None:
    local = {"image": "local", "command": ["python", "app.py"], "workingDir": "v1"}
    assert resolve(local, [], base_dir=str(tmp_path)).working_dir == str(tmp_path / "v1")  # type: ignore[union-attr]
    assert resolve(local, []).working_dir == "v1"  # type: ignore[union-attr]  # no folder known: as written
    no_dir = {"image": "local", "command": ["python", "app.py"]}
    assert resolve(no_dir, [], base_dir=str(tmp_path)).working_dir == str(tmp_path)  # type: ignore[union-attr]
    absolute = {**local, "workingDir": "/srv"}
    assert resolve(absolute, [], base_dir=str(tmp_path)).working_dir == "/srv"  # type: ignore[union-attr]


def test_which_deployments_record_their_folder() -> None:
    def dep(**container: object) -> dict[str, object]:
        return {"spec": {"template": {"spec": {"containers": [{"name": "c", **container}]}}}}

    assert needs_source_dir(dep(image="local", command=["x"]))
    assert needs_source_dir(dep(image="reviews:v1", workingDir="sub"))
    assert not needs_source_dir(dep(image="reviews:v1", workingDir="/abs"))
    assert not needs_source_dir(dep(image="docker.io/istio/examples-bookinfo-reviews-v1:1.20.1"))


def test_readiness_without_a_probe_depends_on_declared_ports_only() -> None:
    assert readiness_spec({"image": "curlimages/curl"}) is None
    assert readiness_spec({"ports": [{"containerPort": 9080}]}).action == {"tcpSocket": {}}  # type: ignore[union-attr]
    probe = readiness_spec({"readinessProbe": {"httpGet": {"path": "/", "port": 80}}})
    assert probe is not None and probe.action == {"httpGet": {"path": "/", "port": 80}}
