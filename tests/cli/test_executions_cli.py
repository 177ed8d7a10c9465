"""Executions as a user follows them: `pipeline run --watch` piped, id prefixes, whole ids, exit codes."""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .conftest import Cli, InProcessCli

PIPELINE = {
    "application": "shop", "name": "gate", "limitConcurrent": False,  # tests share the pipeline
    "stages": [
        {"refId": "1", "type": "wait", "name": "warm up", "waitTime": 0},
        {"refId": "2", "type": "manualJudgment", "name": "设置灰度比例", "requisiteStageRefIds": ["1"],
         "failPipeline": True, "judgmentInputs": [],
         "customParamConfig": [{"name": "canary_ratio", "type": "int", "min": 0, "max": 100, "default": "50",
                                "required": True}]},
        {"refId": "3", "type": "manualJudgment", "name": "是否全量发布", "requisiteStageRefIds": ["2"],
         "failPipeline": True, "judgmentInputs": [{"value": "全量发布"}, {"value": "结束发布"}]},
    ],
}


def _import(cli: InProcessCli, write: Callable[[str, str], Path]) -> None:
    done = cli("pipeline", "import", str(write("gate.json", json.dumps(PIPELINE))))
    assert done.returncode == 0, done.stderr


def _start(cli: InProcessCli) -> str:
    started = cli("pipeline", "run", "gate")
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[1]


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_watch_piped_prints_each_change_and_the_judge_commands(cli: InProcessCli, server_env: dict[str, str],
                                                               write: Callable[[str, str], Path]) -> None:
    _import(cli, write)
    env = {k: v for k, v in server_env.items() if k != "PYTHONUNBUFFERED"}  # a pipe, as a shell gives one
    proc = subprocess.Popen([sys.executable, "-m", "graylane.cli.main", "pipeline", "run", "gate", "--watch"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        for wanted in ("--stage '设置灰度比例' --continue -P canary_ratio=50",
                       "--stage '是否全量发布' --continue --input '全量发布'"):
            while not seen or wanted not in seen[-1]:  # each line arrives while the command still waits
                try:
                    seen.append(lines.get(timeout=30))
                except queue.Empty:
                    raise AssertionError(f"no line with {wanted!r} within 30s; got:\n{''.join(seen)}") from None
            command = shlex.split(seen[-1].strip())
            assert command[:2] == ["graylane", "judge"] and len(command[2]) == 26  # the whole id
            judged = cli(*command[1:])  # exactly as printed, from "another terminal"
            assert judged.returncode == 0, judged.stderr
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert proc.returncode == 0, text + (proc.stderr.read() if proc.stderr else "")
    eid = seen[0].split()[1]
    assert seen[0].startswith(f"execution {eid} started")
    assert "stage warm up (wait) SUCCEEDED\n" in text
    assert "waiting for a judgment at stage '设置灰度比例'; in another terminal, run one of:\n" in text
    assert f"  graylane judge {eid} --stage '设置灰度比例' --continue -P canary_ratio=50\n" in text
    assert "  (canary_ratio: int, 0..100, required)\n" in text
    assert f"  graylane judge {eid} --stage '是否全量发布' --continue --input '结束发布'\n" in text
    assert f"  graylane judge {eid} --stage '是否全量发布' --stop\n" in text
    assert "stage 是否全量发布 (manualJudgment) SUCCEEDED: continue by alice (全量发布)\n" in text
    assert text.endswith(f"execution {eid} shop/gate SUCCEEDED\n")


def test_a_unique_prefix_names_an_execution_everywhere(cli: InProcessCli, write: Callable[[str, str], Path]) -> None:
    _import(cli, write)
    first, second = _start(cli), _start(cli)
    common = os.path.commonprefix([first, second])
    prefix = second[: len(common) + 1].lower()  # ULIDs are case-insensitive
    shown = cli("execution", "show", prefix, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == second
    assert cli("execution", "cancel", prefix).stdout == f"execution {second} canceled\n"
    code = cli("expr", "${execution.id}", "--execution", first[: len(common) + 1])
    assert code.returncode == 0 and first in code.stdout, code.stderr

    ambiguous = cli("execution", "show", common)
    assert ambiguous.returncode == 1
    assert f"execution id prefix {common!r} is ambiguous" in ambiguous.stderr
    assert first in ambiguous.stderr and second in ambiguous.stderr and "type more of the id" in ambiguous.stderr
    unknown = cli("judge", "ZZZZ", "--stage", "x", "--continue")
    assert unknown.returncode == 2 and "no execution id starts with 'ZZZZ'" in unknown.stderr


def test_exit_codes_follow_one_scheme(cli: InProcessCli, write: Callable[[str, str], Path]) -> None:
    _import(cli, write)
    eid = _start(cli)
    _wait_for(lambda: "RUNNING" in cli("execution", "show", eid).stdout, "the judgment to wait")
    # 3: wrong state (the second judgment is not waiting yet)
    early = cli("judge", eid, "--stage", "是否全量发布", "--continue", "--input", "全量发布")
    assert early.returncode == 3, early.stderr
    assert "is NOT_STARTED, not running" in early.stderr
    # 1: refused or invalid input, from the server (a value out of range) and from the command line
    bad = cli("judge", eid, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=500")
    assert bad.returncode == 1 and "above the maximum" in bad.stderr
    usage = cli("judge", eid, "--continue")  # no --stage: typer alone would exit 2
    assert usage.returncode == 1 and "--stage" in usage.stderr
    # 2: not found
    stage = cli("judge", eid, "--stage", "nope", "--continue")
    assert stage.returncode == 2 and "has no stage 'nope'" in stage.stderr
    # `execution wait` is a gate: still running when its time is up is the wrong state
    waited = cli("execution", "wait", eid, "--timeout", "0.2")
    assert waited.returncode == 3 and "still RUNNING" in waited.stdout


def test_execution_list_keeps_ids_whole_in_80_columns(cli: InProcessCli, server_env: dict[str, str],
                                                      write: Callable[[str, str], Path]) -> None:
    _import(cli, write)
    ids = [_start(cli) for _ in range(2)]
    narrow = Cli({**server_env, "COLUMNS": "80"})("execution", "list", "--pipeline", "gate")
    assert narrow.returncode == 0, narrow.stderr
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    for eid in ids:
        assert eid in narrow.stdout, narrow.stdout
