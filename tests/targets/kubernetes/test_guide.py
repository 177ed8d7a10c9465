"""docs/kubernetes.md: the guide's `graylane account` commands, run as written against the emulated cluster."""

from __future__ import annotations

import asyncio
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from graylane_k8s_emulator import kubeconfig_text  # loaded by conftest.py
from typer.testing import CliRunner

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "kubernetes.md"


def guide_commands(prefix: str) -> list[str]:
    """Shell lines of the guide's code blocks starting with `prefix` (continuations joined, comments dropped)."""
    text = GUIDE.read_text()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(prefix):
                out.append(line)
    return out


@pytest.mark.asyncio
async def test_guide_account_commands_work(cluster: Any, state_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from graylane.cli.main import app

    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(kubeconfig_text(cluster.url, token="graylane-test-token",
                                                           context="kind-graylane"))
    monkeypatch.setenv("HOME", str(home))
    commands = guide_commands("graylane account")[:4]  # section 2; the last block's `add recorded` needs no cluster
    assert [shlex.split(c)[2] for c in commands] == ["add", "list", "check", "remove"]
    runner = CliRunner()
    outputs = []
    for command in commands:
        args = shlex.split(command)[1:]
        result = await asyncio.to_thread(runner.invoke, app, args, catch_exceptions=False)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        outputs.append(result.output)
    assert "account kind added" in outputs[0] and "Istio installed" in outputs[0]
    assert "kind" in outputs[1]
    assert f"API server {cluster.url}" in outputs[2]


def test_guide_uses_the_test_recipe_for_prometheus() -> None:
    lines = guide_commands("promtool") + guide_commands("prometheus ")
    assert lines[0].startswith("promtool tsdb create-blocks-from openmetrics ")
    assert "--storage.tsdb.path=" in lines[1] and "--web.listen-address=" in lines[1]
