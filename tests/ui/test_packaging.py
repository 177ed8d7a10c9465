"""A pip-only install serves the console: the wheel carries the browser libraries (hatch_build.py), a
server running from that install alone (no node_modules anywhere) answers /vendor and the pages work in
Chromium, and an install without them refuses to start, naming the files and the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ui.console_server import ARTIFACTS, Browser, ConsoleServer, chromium, free_port

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
VENDOR = json.loads((ROOT / "src/graylane/ui/vendor.json").read_text())["files"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [built] = out.glob("graylane-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed by pip alone into a folder of its own (no npm, no source checkout)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def install_env(site: Path, empty: Path) -> dict[str, str]:
    # The installed copy comes first on sys.path; GRAYLANE_NODE_MODULES points at an empty folder so the
    # checkout's node_modules cannot help.
    return {"PYTHONPATH": str(site), "GRAYLANE_NODE_MODULES": str(empty)}


def test_the_wheel_carries_the_console_libraries(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name, rel in VENDOR.items():
            member = f"graylane/ui/static/vendor/{name}"
            assert member in names, f"{member} is not in {wheel.name}"
            assert zf.read(member) == (ROOT / "node_modules" / rel).read_bytes(), f"{name} differs from npm's"


@pytest.fixture(scope="module")
def packaged_server(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    base = tmp_path_factory.mktemp("pip-only")
    (base / "state").mkdir()
    (base / "empty").mkdir()
    server = ConsoleServer(base / "state", env=install_env(installed, base / "empty"), cwd=base)
    try:
        server.start(components=False)
        yield server
    finally:
        server.stop()


def test_a_pip_only_install_serves_the_console_javascript(packaged_server: ConsoleServer, installed: Path) -> None:
    origin = subprocess.run([sys.executable, "-c", "import graylane; print(graylane.__file__)"],
                            env={**packaged_server.env}, capture_output=True, text=True, check=True).stdout
    assert origin.startswith(str(installed)), origin  # the server ran the pip-installed copy
    for name in VENDOR:
        resp = packaged_server.api.get(f"/vendor/{name}")
        assert resp.status_code == 200 and len(resp.content) > 1000, name
    with chromium() as b:
        page = Browser(b, packaged_server).new_page()
        page.goto(f"{packaged_server.base}/topology")
        assert page.evaluate("typeof htmx") == "object"
        assert page.evaluate("typeof cytoscape") == "function"
        assert page.get_by_text("cytoscape is missing").count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "pip-only-topology.png"))


def test_an_install_without_them_refuses_to_start_and_says_how_to_fix_it(installed: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(installed, site)
    shutil.rmtree(site / "graylane/ui/static/vendor")
    (tmp_path / "state").mkdir()
    (tmp_path / "empty").mkdir()
    env = {**ConsoleServer(tmp_path / "state").env, **install_env(site, tmp_path / "empty")}
    proc = subprocess.run([sys.executable, "-m", "graylane.cli.main", "server", "--no-components", "--port",
                           str(free_port())], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    said = " ".join((proc.stderr + proc.stdout).split())
    assert "browser libraries are missing" in said, said
    for name in VENDOR:
        assert name in said
    assert "npm ci" in said
