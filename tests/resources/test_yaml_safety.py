"""Hostile YAML and bytes: alias bombs and non-UTF-8 files are refused, quickly, by name, and change nothing.

Through the real CLI (a child process, its peak memory from wait4) against a real `graylane server`, and
through the API in-process (this process's peak memory). Issue #19.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.cli import conftest as cli_fixtures
from tests.cli.conftest import Cli, InProcessCli
from tests.memory import MB, peak_growth, run_child
from tests.server import conftest as server_fixtures

from graylane.errors import ValidationError
from graylane.resources.load import load_text
from graylane.resources.yamlsafe import MAX_ALIAS_NODES
from graylane.store import Store

# The CLI's real server (one per module) and the API's in-process app, as their own tests use them.
server_env = cli_fixtures.server_env
cli = cli_fixtures.cli
api = server_fixtures.api
api_store = server_fixtures.api_store

# Billion laughs: 9 levels of 9 aliases, 9^9 = 387,420,489 "lol"s in a few hundred bytes.
BOMB = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n" + "".join(
    ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    + [f"  {c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
       for p, c in zip("abcdefgh", "bcdefghi", strict=True)])
NOT_UTF8 = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin1\ndata:\n  city: Z\xfcrich\n"
BAD_OFFSET = NOT_UTF8.index(b"\xfc")
MEMORY_BOUND = 200 * MB  # generous: the bomb took 10 GB before the fix


def graylane(*args: str) -> list[str]:
    return [sys.executable, "-m", "graylane.cli.main", *args]


def test_the_bomb_is_small() -> None:
    assert len(BOMB.encode()) < 600


@pytest.mark.parametrize("command", [("apply", "-f"), ("validate", "-f"), ("pipeline", "import")],
                         ids=["apply", "validate", "pipeline-import"])
def test_cli_refuses_an_alias_bomb_naming_the_file_and_line(command: tuple[str, str], server_env: dict[str, str],
                                                            cli: InProcessCli, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    done, peak = run_child(graylane(*command, str(bomb)), env=server_env, timeout_s=30)
    assert done.returncode != 0
    assert f"{bomb}:" in done.stderr and "alias" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert peak < 300 * MB, f"graylane {' '.join(command)} peaked at {peak // MB} MB"  # a bare CLI: ~60-100 MB
    assert cli("get", "configmap", "lol").returncode == 2  # nothing was applied


def test_api_refuses_an_alias_bomb_with_a_422_and_stores_nothing(api: TestClient, api_store: Store) -> None:
    resp, grew = peak_growth(lambda: api.post("/api/v1/apply", content=BOMB,
                                              headers={"content-type": "application/yaml"}))
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert "alias" in error["message"] and error["where"].startswith("<request>:")
    assert grew < MEMORY_BOUND, f"the apply grew the peak RSS by {grew // MB} MB"
    assert api_store.list(kind="ConfigMap") == []


def test_api_refuses_a_bomb_inside_a_files_body(api: TestClient, api_store: Store) -> None:
    resp = api.post("/api/v1/apply", json={"files": [{"name": "k8s/bomb.yaml", "text": BOMB}]})
    assert resp.status_code == 422
    assert resp.json()["error"]["where"].startswith("k8s/bomb.yaml:")
    assert api_store.list(kind="ConfigMap") == []


def test_a_few_aliases_still_load() -> None:
    [doc] = load_text("kind: ConfigMap\nmetadata: {name: a}\ndata:\n  x: &v hello\n  y: *v\n", "ok.yaml")
    assert doc.body["data"] == {"x": "hello", "y": "hello"}


def test_the_alias_budget_is_per_file_and_counts_expanded_nodes() -> None:
    items = ",".join(["*x"] * (MAX_ALIAS_NODES // 10 + 1))
    text = f"kind: ConfigMap\nmetadata: {{name: a}}\nanchor: &x [1,2,3,4,5,6,7,8,9]\nmany: [{items}]\n"
    with pytest.raises(ValidationError, match="aliases expand") as caught:
        load_text(text, "many.yaml")
    assert caught.value.where == "many.yaml:3"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(ValidationError, match="nests deeper") as caught:
        load_text("kind: ConfigMap\ndata: " + "[" * 900 + "]" * 900 + "\n", "deep.yaml")
    assert caught.value.where == "deep.yaml:2"


@pytest.mark.parametrize("command", [("apply", "-f"), ("validate", "-f"), ("pipeline", "import")],
                         ids=["apply", "validate", "pipeline-import"])
def test_cli_names_the_file_and_byte_offset_of_non_utf8(command: tuple[str, ...], server_env: dict[str, str],
                                                        cli: InProcessCli, tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(NOT_UTF8)
    done = Cli(server_env)(*command, str(bad))
    assert done.returncode != 0
    assert f"{bad}: not UTF-8 text: byte 0xfc at offset {BAD_OFFSET} (line 6)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert cli("get", "configmap", "latin1").returncode == 2


def test_api_refuses_bad_bytes_naming_the_offset(api: TestClient, api_store: Store) -> None:
    resp = api.post("/api/v1/apply", content=NOT_UTF8, headers={"content-type": "application/yaml"})
    assert resp.status_code == 422
    assert f"byte 0xfc at offset {BAD_OFFSET}" in resp.json()["error"]["message"]
    assert api_store.list(kind="ConfigMap") == []


_YAML_BITS = st.sampled_from(["&a ", "*a", "&b ", "*b", "<<: ", "!!binary ", "!!int ", "!!float ", "!!set ",
                              "!x ", "? ", "- ", ": ", "[", "]", "{", "}", ",", "\n", "  ", "---\n", "...\n",
                              "'", '"', "|", ">", "#", "%YAML 1.1\n", "kind", "apiVersion", "1", "2024-01-02",
                              "null", "~", "yes", ".nan", "0x1F", "\t", "\x00", "\ufeff", "é", "\\u00e9"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_YAML_BITS, max_size=40).map("".join) | st.text(max_size=200))
def test_the_loader_either_loads_or_raises_a_validation_error(text: str) -> None:
    try:
        docs = load_text(text, "fuzz.yaml")
    except ValidationError as exc:
        assert exc.where and exc.where.startswith("fuzz.yaml")
        return
    for doc in docs:
        assert isinstance(doc.body, dict)
        json.dumps(doc.body)  # what the store will do with it

