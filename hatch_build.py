"""Hatch build hook: ship the console's browser libraries inside the Python package.

Copies the files listed in src/graylane/ui/vendor.json from `node_modules/` (installed from the
pinned package-lock.json, by `npm ci` when they are not there yet and npm is on PATH) into
src/graylane/ui/static/vendor/, for wheels, sdists and editable installs alike. A wheel built from
an sdist finds them already copied. Without them the build fails, naming the files and the fix:
a package that served no JavaScript would only fail later, in a browser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MANIFEST = Path("src/graylane/ui/vendor.json")
VENDOR_DIR = Path("src/graylane/ui/static/vendor")


def vendor_files(root: Path) -> dict[str, str]:
    """File name served under /vendor -> its path inside node_modules."""
    data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data["files"].items()}


def copy_vendor(root: Path) -> list[str]:
    """Copy what node_modules has into the package; return the names still missing there."""
    dest = root / VENDOR_DIR
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for name, rel in vendor_files(root).items():
        source = root / "node_modules" / rel
        target = dest / name
        if source.is_file() and (not target.is_file() or target.read_bytes() != source.read_bytes()):
            shutil.copyfile(source, target)
        if not target.is_file():
            missing.append(f"{name} (node_modules/{rel})")
    return missing


def npm_ci(root: Path) -> None:
    npm = shutil.which("npm")
    if npm is None or not (root / "package-lock.json").is_file():
        return
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root, check=True)


class VendorBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        missing = copy_vendor(root)
        if missing and not (root / "node_modules").is_dir():
            npm_ci(root)
            missing = copy_vendor(root)
        if missing:
            raise RuntimeError(
                "graylane: the console's browser libraries are missing: " + ", ".join(missing)
                + ". Run `npm ci` in " + str(root) + " (Node.js installs them from package-lock.json), "
                "then build again.")
        # Copied files are git-ignored; artifacts are packaged all the same.
        build_data["artifacts"].extend(f"/{VENDOR_DIR.as_posix()}/{name}" for name in vendor_files(root))
