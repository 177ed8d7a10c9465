"""JSON files a user hands the CLI (pipelines, execution snapshots, canary configs and series): a bad byte, bad
syntax or nesting too deep for the parser is one error line naming the file, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEEP = "[" * 100_000 + "]" * 100_000
LATIN1 = b'{"application": "a", "name": "Z\xfcrich", "stages": []}'
OFFSET = LATIN1.index(b"\xfc")


def graylane(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"GRAYLANE_STATE": str(tmp_path / "state"), "GRAYLANE_SERVER": "127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "graylane.cli.main", *args], env=env, text=True,
                          capture_output=True, timeout=60)


def commands(path: Path) -> dict[str, list[str]]:
    judge_config = path.with_name("config.json")
    judge_config.write_text(json.dumps({  # a valid config: the series file is the one under test
        "name": "c", "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [{"name": "m", "query": {"type": "local"}, "groups": ["g"],
                     "analysisConfigurations": {"canary": {"direction": "increase"}}}],
        "classifier": {"groupWeights": {"g": 100}}}))
    return {
        "pipeline import": ["pipeline", "import", str(path)],
        "expr --context": ["expr", "1 + 1", "--context", str(path)],
        "canary judge --control": ["canary", "judge", "--config", str(judge_config), "--control", str(path),
                                   "--experiment", str(path)],
        "canary judge --config": ["canary", "judge", "--config", str(path), "--control", str(judge_config),
                                  "--experiment", str(judge_config)],
    }


@pytest.mark.parametrize("command", ["pipeline import", "expr --context", "canary judge --control",
                                     "canary judge --config"])
def test_json_nested_too_deep_is_an_error_naming_the_file(tmp_path: Path, command: str) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    done = graylane(tmp_path, *commands(deep)[command])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{deep}" in done.stderr and "nests too deeply" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["pipeline import", "expr --context", "canary judge --control",
                                     "canary judge --config"])
def test_json_that_is_not_utf8_names_the_byte_offset(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes(LATIN1)
    done = graylane(tmp_path, *commands(bad)[command])
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{bad}" in done.stderr and f"byte 0xfc at offset {OFFSET}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
