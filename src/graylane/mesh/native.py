"""The data plane's compiled hot path: mypyc builds of the modules in `HOT`, used only while they match the source.

CPython spends ~3,000 bytecodes on each proxied request (issue #17); mypyc compiles the same annotated modules to C
(direct calls between them, native attribute slots, no frames), which cuts the proxy's user-space instructions per
request by ~40% (docs/dataplane.md, "Fifth round"). The Python source stays the one truth and the fallback:

- `build()` (`python -m graylane.mesh.native`, run by `make install`) compiles `HOT` as one mypyc group into
  `_native/` next to this file, and writes `_native/manifest.json`: the SHA-256 of every compiled module's source,
  the interpreter's cache tag and the compiler's version.
- `activate(package)` is called by `graylane.mesh.routing` and `graylane.mesh.proxy` before they import anything:
  if the manifest matches the sources on disk (every hash, this interpreter), the package's `__path__` gets the
  compiled directory first, so `import graylane.mesh.proxy.pool` loads `pool.<tag>.so`; else nothing changes
  and the modules run as Python. A stale build (a source edited after it) is never used, whatever the file times.
- `GRAYLANE_NATIVE=0` turns it off (pure Python) for a process and its children; `status()` says which one runs
  and why (the proxy logs it at start, `graylane proxy` and the admin `/server_info`).

What differs when compiled (mypyc's documented semantics): annotations are checked at run time (a wrong type is a
TypeError, not a silent pass), and compiled classes cannot be monkeypatched or subclassed from Python code.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../graylane
SRC_ROOT = PACKAGE_ROOT.parent
OUT = Path(__file__).resolve().parent / "_native"
GROUP = "graylane_native"  # mypyc's shared library: `graylane_native__mypyc.<tag>.so`
# The HTTP/1.1 hot path (docs/dataplane.md's profile) and the routing decisions it calls. Package `__init__`s stay
# Python: they hold the activation.
HOT: tuple[str, ...] = (
    *(f"mesh/routing/{m}.py" for m in ("balancing", "l4", "matching", "policies", "rewrites", "rules", "sticky",
                                       "table")),
    *(f"mesh/proxy/{m}.py" for m in ("balance", "connect", "forward", "framing", "heads", "inline", "listener",
                                     "outlier", "pool", "request", "respond", "retry", "route", "stats", "telemetry",
                                     "timeout", "tracing")),
)

_state: dict[str, object] = {}  # "active": bool, "reason": str, "dir": Path (cached per process)


def _source_hashes() -> dict[str, str]:
    return {rel: hashlib.sha256((PACKAGE_ROOT / rel).read_bytes()).hexdigest() for rel in HOT}


def _tag() -> str:
    return f"{sys.implementation.cache_tag}-{sys.platform}"


def _turned_off() -> bool:
    return os.environ.get("GRAYLANE_NATIVE", "1").lower() in ("0", "false", "no", "off")


def _check(out: Path) -> str:
    """'' when the build in `out` matches the sources and this interpreter; else why it cannot be used."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except FileNotFoundError:
        return "not built (make install, or python -m graylane.mesh.native)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    if manifest.get("tag") != _tag():
        return f"built for {manifest.get('tag')}, this is {_tag()}"
    try:
        now = _source_hashes()
    except OSError as exc:
        return f"source unreadable: {exc}"
    stale = sorted(rel for rel, digest in now.items() if manifest.get("sources", {}).get(rel) != digest)
    if stale:
        return f"stale: {len(stale)} module(s) changed since the build ({', '.join(stale[:3])})"
    return ""


def _load_group(out: Path) -> str:
    """Load the group's shared library under its name (the modules' shims import it from sys.modules)."""
    name = f"{GROUP}__mypyc"
    if name in sys.modules:
        return ""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = out / f"{name}{suffix}"
        if path.exists():
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                break
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except ImportError as exc:
                return f"cannot load {path.name}: {exc}"
            sys.modules[name] = module
            return ""
    return f"{name} missing from {out}"


def activate(package: str, path: list[str], out: Path = OUT) -> bool:
    """Put the compiled modules of `package` (e.g. 'graylane.mesh.proxy') first on its `path` if the build is
    current; the decision is made once per process."""
    if "active" not in _state:
        reason = "turned off (GRAYLANE_NATIVE=0)" if _turned_off() else _check(out) or _load_group(out)
        _state.update(active=not reason, reason=reason or f"compiled with mypyc ({len(HOT)} modules)", dir=out)
    if not _state["active"]:
        return False
    sub = out.joinpath(*package.split(".")[1:])  # graylane.mesh.proxy -> _native/mesh/proxy
    if sub.is_dir() and str(sub) not in path:
        path.insert(0, str(sub))
    return True


def status() -> tuple[bool, str]:
    """(compiled hot path in use, why or why not). Activation happens when the mesh packages are imported."""
    import graylane.mesh.proxy  # noqa: F401  # activates

    return bool(_state.get("active")), str(_state.get("reason", ""))


def build(out: Path = OUT, jobs: int = 2, quiet: bool = False) -> Path:
    """Compile `HOT` with mypyc (a C compiler and mypy needed) into `out`; replaces what is there."""
    sources = _source_hashes()  # before compiling: an edit during the build leaves the build stale, never wrong
    with tempfile.TemporaryDirectory(prefix="graylane-native-") as tmp:
        work = Path(tmp)
        script = (
            "import sys\n"
            "from setuptools import setup\n"
            "from mypyc.build import mypycify\n"
            f"setup(name='graylane-native', script_args=['build_ext', '--build-lib', {str(work / 'lib')!r},\n"
            f"      '--build-temp', {str(work / 'tmp')!r}, '-j', '{jobs}'],\n"
            f"      ext_modules=mypycify({[f'graylane/{rel}' for rel in HOT]!r}, group_name={GROUP!r},\n"
            f"                           multi_file=True, target_dir={str(work / 'c')!r}))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], cwd=SRC_ROOT, capture_output=quiet, text=True)
        if result.returncode != 0:
            detail = (result.stdout or "")[-4000:] + (result.stderr or "")[-4000:] if quiet else ""
            raise RuntimeError(f"mypyc build failed (exit {result.returncode})\n{detail}")
        staged = work / "out"
        lib = work / "lib"
        for so in lib.rglob("*.so"):
            rel = so.relative_to(lib)
            dest = staged / (rel.relative_to("graylane") if rel.parts[0] == "graylane" else rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(so, dest)
        import mypy.version

        (staged / "manifest.json").write_text(json.dumps(
            {"tag": _tag(), "mypy": mypy.version.__version__, "group": GROUP, "sources": sources}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    return out


def cannot_build() -> str:
    """'' when this machine can build: mypyc, a C compiler and the interpreter's headers; else what is missing."""
    import sysconfig

    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (pip install 'graylane[native]')"
    if not any(shutil.which(cc) for cc in (os.environ.get("CC", "cc"), "cc", "gcc")):
        return "no C compiler (apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (apt-get install python3-dev)"
    return ""


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m graylane.mesh.native", description=__doc__.split("\n")[0])
    ap.add_argument("command", nargs="?", default="build", choices=("build", "status", "remove"))
    ap.add_argument("--if-stale", action="store_true",
                    help="build only when the current build cannot be used; if this machine cannot build, say so "
                         "and exit 0 (the data plane then runs as Python)")
    args = ap.parse_args()
    reason = _check(OUT)
    if args.command == "status":
        off = " (but GRAYLANE_NATIVE=0 here)" if _turned_off() else ""
        print(f"compiled data plane: {'current build' + off if not reason else 'not usable: ' + reason}")
        return
    if args.command == "remove":
        shutil.rmtree(OUT, ignore_errors=True)
        print(f"removed {OUT}")
        return
    if args.if_stale and not reason:
        print("compiled data plane: current build")
        return
    missing = cannot_build()
    if missing:
        print(f"compiled data plane not built: {missing}; the data plane runs as Python", file=sys.stderr)
        sys.exit(0 if args.if_stale else 1)
    try:
        build(quiet=args.if_stale)
    except RuntimeError as exc:
        if not args.if_stale:
            raise
        # An install goes on without it (the data plane runs as Python); tests/mesh/test_native.py fails on a
        # machine that could build but did not, so CI still sees it.
        print(f"compiled data plane not built, the data plane runs as Python: {exc}", file=sys.stderr)
        return
    print(f"compiled data plane: {len(HOT)} modules into {OUT}")


if __name__ == "__main__":
    main()
