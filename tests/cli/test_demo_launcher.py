"""The demo's "next" commands work as printed in a new shell opened in the repository, venv activated or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAM = Path(sys.executable).parent / "graylane"  # the console script `make demo` installs


def printed_launcher(path: str) -> str:
    code = (f"import sys; sys.argv = [{str(PROGRAM)!r}]; "
            "from graylane.cli.demo import launcher; print(launcher())")
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, text=True, capture_output=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not PROGRAM.exists(), reason="tests run from an environment without the console script")
def test_without_an_activated_venv_the_printed_command_runs_in_a_new_shell() -> None:
    bare_path = "/usr/local/bin:/usr/bin:/bin"
    program = printed_launcher(bare_path)
    assert program != "graylane"
    shell = subprocess.run(["bash", "-c", f"{program} pipeline run --help"], cwd=REPO, text=True,
                           capture_output=True, env={**os.environ, "PATH": bare_path})
    assert shell.returncode == 0, shell.stderr
    assert "Usage" in shell.stdout


@pytest.mark.skipif(not PROGRAM.exists(), reason="tests run from an environment without the console script")
def test_with_graylane_on_path_the_plain_name_is_printed() -> None:
    assert printed_launcher(f"{PROGRAM.parent}:/usr/bin:/bin") == "graylane"
