"""The compiled data plane (graylane.mesh.native): used only while it matches the source, off on request.

The build itself is made by `make install` / `make test` (`python -m graylane.mesh.native build --if-stale`);
these tests read it, in fresh interpreters (activation is decided once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graylane.mesh import native

PROBE = ("import json, graylane.mesh.proxy.pool as p, graylane.mesh.routing.table as t; "
         "from graylane.mesh import native; "
         "print(json.dumps([p.__file__, t.__file__, *native.status()]))")


def _probe(**env: str) -> tuple[str, str, bool, str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env}, check=True).stdout
    pool, table, active, why = json.loads(out)
    return pool, table, active, why


def test_the_installed_build_is_current_and_used_by_the_proxy_modules() -> None:
    missing = native.cannot_build()
    if missing:
        pytest.skip(f"this machine cannot build the compiled data plane: {missing}")
    assert native._check(native.OUT) == "", "make install builds it; python -m graylane.mesh.native build"
    pool, table, active, why = _probe(GRAYLANE_NATIVE="1")
    assert active, why
    assert "mypyc" in why
    assert Path(pool).suffix == ".so" and Path(table).suffix == ".so"
    assert Path(pool).is_relative_to(native.OUT)


def test_turned_off_runs_the_python_source() -> None:
    pool, table, active, why = _probe(GRAYLANE_NATIVE="0")
    assert not active
    assert why == "turned off (GRAYLANE_NATIVE=0)"
    assert pool.endswith("proxy/pool.py") and table.endswith("routing/table.py")


def _manifest(tmp_path: Path, **change: object) -> Path:
    sources = {rel: __import__("hashlib").sha256((native.PACKAGE_ROOT / rel).read_bytes()).hexdigest()
               for rel in native.HOT}
    doc = {"tag": native._tag(), "mypy": "x", "group": native.GROUP, "sources": sources, **change}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    return tmp_path


def test_a_build_of_other_sources_is_not_used(tmp_path: Path) -> None:
    assert native._check(_manifest(tmp_path)) == ""
    sources = json.loads((tmp_path / "manifest.json").read_text())["sources"]
    sources["mesh/proxy/pool.py"] = "0" * 64
    reason = native._check(_manifest(tmp_path, sources=sources))
    assert reason == "stale: 1 module(s) changed since the build (mesh/proxy/pool.py)"


def test_a_build_for_another_interpreter_or_none_is_not_used(tmp_path: Path) -> None:
    assert native._check(_manifest(tmp_path, tag="cpython-312-linux")).startswith("built for cpython-312-linux")
    assert native._check(tmp_path / "absent").startswith("not built")
    (tmp_path / "manifest.json").write_text("{not json")
    assert native._check(tmp_path).startswith("unreadable manifest")


def test_a_current_manifest_without_its_libraries_falls_back_to_python(tmp_path: Path) -> None:
    """A manifest that matches but whose shared library is gone (a half-copied build): Python, with the reason."""
    out = _manifest(tmp_path)
    script = ("import json, sys\nfrom pathlib import Path\nfrom graylane.mesh import native\n"
              f"native.activate('graylane.mesh.x', [], out=Path({str(out)!r}))\n"
              "print(json.dumps([native._state['active'], native._state['reason']]))")
    env = {**os.environ, "GRAYLANE_NATIVE": "1"}
    active, why = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                            env=env, check=True, timeout=60).stdout)
    assert not active
    assert why == f"graylane_native__mypyc missing from {out}"
