"""Following an execution when stdout is not a terminal (a pipe, a CI log): one line per change.

`pipeline run --watch`, `execution show --watch` and `execution wait` redraw a live table on a
terminal; piped, they print here instead: a line when the execution or a stage changes status, and,
at a manual judgment, the `graylane judge` commands to run in another terminal (whole execution id).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from graylane.cli.client import ApiClient

COMPLETE = frozenset({"SUCCEEDED", "FAILED_CONTINUE", "TERMINAL", "CANCELED", "STOPPED", "SKIPPED"})


def judge_commands(execution_id: str, stage: dict[str, Any]) -> list[str]:
    """The commands that answer a waiting manual judgment: one per option, then --stop.

    >>> judge_commands("01KB", {"name": "go", "context": {"judgmentInputs": [{"value": "yes"}]}})
    ['graylane judge 01KB --stage go --continue --input yes', 'graylane judge 01KB --stage go --stop']
    """
    ctx = stage.get("context") or {}
    base = f"graylane judge {execution_id} --stage {shlex.quote(str(stage['name']))}"
    params = ""
    for pdef in ctx.get("customParamConfig") or []:
        if isinstance(pdef, dict) and pdef.get("name"):
            value = pdef.get("default")
            pair = f"{pdef['name']}={'VALUE' if value in (None, '') else value}"
            params += f" -P {shlex.quote(pair)}"
    options = [str(o.get("value") if isinstance(o, dict) else o) for o in ctx.get("judgmentInputs") or []]
    lines = [f"{base} --continue --input {shlex.quote(o)}{params}" for o in options] or [f"{base} --continue{params}"]
    return [*lines, f"{base} --stop"]


def _param_notes(stage: dict[str, Any]) -> list[str]:
    notes = []
    for pdef in (stage.get("context") or {}).get("customParamConfig") or []:
        if not isinstance(pdef, dict) or not pdef.get("name"):
            continue
        bits = [str(pdef.get("type") or "string")]
        if pdef.get("min") is not None or pdef.get("max") is not None:
            bits.append(f"{pdef.get('min', '')}..{pdef.get('max', '')}")
        if pdef.get("options"):
            bits.append("one of " + ", ".join(str(o.get("value") if isinstance(o, dict) else o)
                                              for o in pdef["options"]))
        if pdef.get("required"):
            bits.append("required")
        notes.append(f"{pdef['name']}: {', '.join(bits)}")
    return notes


def _stage_line(stage: dict[str, Any]) -> str:
    ctx = stage.get("context") or {}
    line = f"stage {stage['name']} ({stage['type']}) {stage['status']}"
    if ctx.get("judgmentStatus"):
        line += f": {ctx['judgmentStatus']} by {ctx.get('lastModifiedBy', '?')}"
        if ctx.get("judgmentInput"):
            line += f" ({ctx['judgmentInput']})"
    elif (ctx.get("exception") or {}).get("details"):
        line += f": {ctx['exception']['details'].get('error', '')}"
    elif ctx.get("stageEnabledResult"):
        line += f": {ctx['stageEnabledResult']}"
    return line


def follow_lines(client: ApiClient, execution_id: str, console: Console, timeout: float | None = None,
                 *, poll_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Print status changes until the execution completes (or `timeout` seconds pass); return its JSON."""
    deadline = None if timeout is None else clock() + timeout
    seen: dict[str, str] = {}
    prompted: set[str] = set()
    while True:
        exe = client.get(f"/api/v1/executions/{execution_id}")
        done = exe["status"] in COMPLETE
        headline = None
        if seen.get("") != exe["status"]:
            seen[""] = exe["status"]
            headline = escape(f"execution {exe['id']} {exe['application']}/{exe['name']} {exe['status']}")
        if headline and not done:
            console.print(headline)
        for stage in exe.get("stages") or []:
            if stage["status"] == "NOT_STARTED" or seen.get(stage["id"]) == stage["status"]:
                continue
            seen[stage["id"]] = stage["status"]
            console.print(escape(_stage_line(stage)))
            if (stage["type"] == "manualJudgment" and stage["status"] == "RUNNING"
                    and stage["id"] not in prompted):
                prompted.add(stage["id"])
                console.print(escape(f"waiting for a judgment at stage {stage['name']!r}; "
                                     "in another terminal, run one of:"))
                for command in judge_commands(exe["id"], stage):
                    console.print(escape(f"  {command}"))
                for note in _param_notes(stage):
                    console.print(escape(f"  ({note})"))
        if headline and done:  # the outcome comes last, after the stages that led to it
            console.print(headline)
        if done or (deadline is not None and clock() >= deadline):
            return exe
        time.sleep(poll_s)
