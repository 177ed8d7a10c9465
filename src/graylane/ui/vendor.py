"""The console's third-party browser libraries (htmx, cytoscape, dagre): where each is found.

The package ships them in `ui/static/vendor/` (copied from npm's `node_modules/` by hatch_build.py at
build time); a source checkout may serve them straight from `node_modules/` (`npm ci`). Knows nothing
of HTTP; graylane.server.ui serves what `find` returns and refuses to start when `missing` is not empty.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

from graylane.errors import GraylaneError

UI_DIR = Path(__file__).resolve().parent
PACKAGE_VENDOR = UI_DIR / "static" / "vendor"


class ConsoleAssetsMissing(GraylaneError):
    """The console's browser libraries are in neither the package nor node_modules."""


@cache
def vendor_files() -> dict[str, str]:
    """File name served under /vendor/ -> its path inside node_modules (ui/vendor.json)."""
    data = json.loads((UI_DIR / "vendor.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data["files"].items()}


def node_modules() -> Path | None:
    """`$GRAYLANE_NODE_MODULES`, else the nearest `node_modules/` above the package (a repo checkout)."""
    env = os.environ.get("GRAYLANE_NODE_MODULES")
    if env:
        return Path(env)
    for parent in UI_DIR.parents:
        if (parent / "node_modules").is_dir():
            return parent / "node_modules"
    return None


def find(name: str) -> Path | None:
    """The file served as /vendor/<name>: the package's copy first, then node_modules'."""
    rel = vendor_files().get(name)
    if rel is None:
        return None
    packaged = PACKAGE_VENDOR / name
    if packaged.is_file():
        return packaged
    root = node_modules()
    if root is not None and (root / rel).is_file():
        return root / rel
    return None


def missing() -> list[str]:
    return [f"{name} (node_modules/{rel})" for name, rel in vendor_files().items() if find(name) is None]


def check() -> None:
    """Raise ConsoleAssetsMissing naming each absent file and how to get it."""
    absent = missing()
    if not absent:
        return
    looked = [str(PACKAGE_VENDOR)] + ([str(node_modules())] if node_modules() else [])
    raise ConsoleAssetsMissing(
        f"the console's browser libraries are missing: {', '.join(absent)}; looked in {' and '.join(looked)}",
        hint="install a Graylane package built with them (`pip install graylane` from a wheel), or in a "
             "source checkout run `npm ci` then `pip install -e .` (`make install` does both); "
             "GRAYLANE_NODE_MODULES may point at another node_modules folder")
