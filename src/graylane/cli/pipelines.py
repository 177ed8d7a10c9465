"""`graylane pipeline ...`, `graylane execution ...` and `graylane judge`: pipelines over the control plane API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from graylane.cli import exit_codes
from graylane.cli.client import ApiClient
from graylane.cli.execution_ids import resolve_execution_id
from graylane.cli.execution_watch import follow_lines, judge_commands
from graylane.errors import GraylaneError, ValidationError
from graylane.resources.durations import elapsed_between
from graylane.settings import current_user

EXIT_OK = exit_codes.OK
EXIT_NOT_SUCCEEDED = exit_codes.REFUSED  # the gate says no
EXIT_TIMEOUT = exit_codes.WRONG_STATE  # still not complete
COMPLETE = {"SUCCEEDED", "FAILED_CONTINUE", "TERMINAL", "CANCELED", "STOPPED", "SKIPPED"}
_COLOURS = {"SUCCEEDED": "green", "RUNNING": "cyan", "TERMINAL": "red", "CANCELED": "magenta", "STOPPED": "yellow",
            "FAILED_CONTINUE": "yellow", "SKIPPED": "dim", "NOT_STARTED": "dim", "PAUSED": "blue",
            "BUFFERED": "blue"}
_SUFFIXES = {".json", ".yaml", ".yml"}

out = Console(highlight=False, soft_wrap=True)

pipeline_app = typer.Typer(help="Import, list, show, export and run pipelines (Spinnaker JSON).", no_args_is_help=True)
execution_app = typer.Typer(help="Follow and control pipeline executions.", no_args_is_help=True)


def _client() -> ApiClient:
    return ApiClient()


def _h() -> dict[str, str]:
    return {"X-Graylane-User": current_user()}


def _status(text: str) -> Text:
    return Text(text, style=_COLOURS.get(text, ""))


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def _kv(pairs: list[str], flag: str) -> dict[str, str]:
    outd: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"{flag} {pair!r}: expected NAME=VALUE")
        outd[key] = value
    return outd


# ------------------------------------------------------------------ pipeline files

def _pipeline_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in _SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise GraylaneError(f"no such file or folder: {raw}")
    if not files:
        raise GraylaneError(f"no .json/.yaml pipeline files under {', '.join(paths)}")
    return files


def load_pipeline_file(path: Path) -> list[dict[str, Any]]:
    """Pipelines in a file (one object, a list, or several YAML documents), validated with file:line errors."""
    from graylane.pipelines import model
    from graylane.resources.load import load_text
    from graylane.resources.yamlsafe import read_text

    text = read_text(path)
    if path.suffix == ".json":
        from graylane.resources import jsonsafe

        data = jsonsafe.loads(text, str(path))
        items = data if isinstance(data, list) else [data]
        for item in items:
            model.validate(item, where=str(path))
        return items
    docs = load_text(text, file=str(path))
    items = []
    for doc in docs:
        model.validate(doc.body, where=str(path), line_of=lambda p, d=doc: d.line_of(tuple(p)))
        items.append(doc.body)
    return items


@pipeline_app.command("import")
def import_(paths: list[str] = typer.Argument(..., help="pipeline JSON/YAML files or folders")) -> None:
    """Validate and save pipelines (a new version when they changed)."""
    items: list[tuple[Path, dict[str, Any]]] = []
    for f in _pipeline_files(paths):
        items += [(f, body) for body in load_pipeline_file(f)]
    client = _client()
    try:
        answer = client.post("/api/v1/pipelines", json=[b for _, b in items], headers=_h())
    except ValidationError as exc:  # the API names documents `<api>[i]`: name the file instead
        for i, (f, _) in enumerate(items):
            exc.message = exc.message.replace(f"(<api>[{i}])", f"({f})")
            exc.where = str(f) if exc.where == f"<api>[{i}]" else exc.where
        raise
    for (f, _), r in zip(items, answer["results"], strict=True):
        out.print(f"pipeline {escape(r['application'])}/{escape(r['name'])} {r['action']} "
                  f"(version {r['version']}, from {escape(str(f))})")
    for warning in answer.get("warnings") or []:
        out.print(f"warning: {escape(warning)}")


@pipeline_app.command("list")
def list_(application: str = typer.Option(None, "--application", "-a"),
          output: str = typer.Option("table", "-o", "--output", help="table|json")) -> None:
    """Imported pipelines with their stage counts, triggers and versions."""
    rows = _client().get("/api/v1/pipelines", params={"application": application} if application else None)
    if output == "json":
        out.print_json(json.dumps(rows))
        return
    table = Table("APPLICATION", "NAME", "STAGES", "TRIGGERS", "VERSION", "UPDATED BY", box=None)
    for p in rows:
        table.add_row(p["application"], p["name"], str(len(p.get("stages") or [])),
                      ",".join(t.get("type", "?") for t in p.get("triggers") or []) or "-",
                      str(p.get("_version", "")), str(p.get("lastModifiedBy", "")))
    out.print(table)


@pipeline_app.command("show")
def show(name: str, output: str = typer.Option("table", "-o", "--output", help="table|json|yaml")) -> None:
    """The pipeline's stages in graph order, with what each waits for."""
    body = _client().get(f"/api/v1/pipelines/{name}")
    if output in ("json", "yaml"):
        _dump(body, output)
        return
    from graylane.pipelines.model import stage_graph_order

    out.print(f"[bold]{escape(body['application'])}/{escape(body['name'])}[/] id {body['id']} "
              f"version {body.get('_version', '?')}")
    params = ", ".join(f"{p['name']}{'*' if p.get('required') else ''}"
                       + (f"={p['default']}" if p.get("default") not in (None, "") else "")
                       for p in body.get("parameterConfig") or [])
    if params:
        out.print(f"parameters: {escape(params)}")
    table = Table("REF", "STAGE", "TYPE", "AFTER", "CONDITION", box=None)
    for st in stage_graph_order(body.get("stages") or []):
        cond = (st.get("stageEnabled") or {}).get("expression") or ""
        table.add_row(str(st["refId"]), st.get("name") or "", st["type"],
                      ",".join(st.get("requisiteStageRefIds") or []) or "-", escape(str(cond)))
    out.print(table)


def _dump(data: Any, output: str) -> None:
    if output == "yaml":
        out.print(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), end="")
    else:
        out.print_json(json.dumps(data, ensure_ascii=False))


@pipeline_app.command("export")
def export(name: str, output: str = typer.Option("json", "-o", "--output", help="json|yaml"),
           version: int = typer.Option(None, "--version", help="an earlier version")) -> None:
    """The pipeline JSON to keep in git (export then import gives the same pipeline)."""
    path = f"/api/v1/pipelines/{name}/history/{version}" if version else f"/api/v1/pipelines/{name}/export"
    body = _client().get(path)
    if output == "yaml":
        _dump(body, "yaml")
    else:
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


@pipeline_app.command("history")
def history(name: str, diff: tuple[int, int] = typer.Option((0, 0), "--diff", help="A B: diff two versions"),
            restore: int = typer.Option(None, "--restore", help="save version N again as the newest")) -> None:
    """Versions of a pipeline (who saved them, when); diff two or restore one."""
    client = _client()
    if restore:
        r = client.post(f"/api/v1/pipelines/{name}/restore/{restore}", headers=_h())
        out.print(f"pipeline {escape(r['application'])}/{escape(r['name'])} {r['action']} (version {r['version']})")
        return
    if diff != (0, 0):
        out.print(client.get(f"/api/v1/pipelines/{name}/diff", params={"a": diff[0], "b": diff[1]}), end="")
        return
    table = Table("VERSION", "TIME", "ACTOR", "", box=None)
    for v in client.get(f"/api/v1/pipelines/{name}/history"):
        table.add_row(str(v["version"]), _when(v["time"]), v["actor"], "deleted" if v["deleted"] else "")
    out.print(table)


@pipeline_app.command("delete")
def delete(name: str) -> None:
    """Delete a pipeline config (its history stays)."""
    r = _client().delete(f"/api/v1/pipelines/{name}", headers=_h())["deleted"]
    out.print(f"pipeline {escape(r['application'])}/{escape(r['name'])} deleted")


@pipeline_app.command("run")
def run(name: str, param: list[str] = typer.Option([], "-p", "--param", help="NAME=VALUE (repeatable)"),
        artifact: list[str] = typer.Option([], "--artifact", help="artifact JSON (repeatable)"),
        watch: bool = typer.Option(False, "--watch", "-w", help="follow the stages live until it finishes")) -> None:
    """Start a pipeline (manual trigger); prints the execution id. The start is sent with an Idempotency-Key and
    re-sent with it when the connection broke before the answer: it starts one execution."""
    arts = []
    for raw in artifact:
        try:
            arts.append(json.loads(raw))
        except ValueError as exc:
            raise ValidationError(f"--artifact {raw!r} is not JSON: {exc}") from None
    client = _client()
    given = _kv(param, "-p")
    # one Idempotency-Key for this start, sent again with it when the connection broke before the answer
    r = client.idempotent("POST", f"/api/v1/pipelines/{name}/start", json={"parameters": given, "artifacts": arts},
                          headers=_h())
    used = r.get("parameters") or {}
    shown = ", ".join(f"{k}={v}" + ("" if k in given else " (default)") for k, v in used.items())
    status = r.get("status") or "NOT_STARTED"
    if status == "BUFFERED":
        out.print(f"execution {r['id']} BUFFERED: {escape(r.get('reason') or 'waiting for a running execution')}")
    elif r.get("duplicate"):
        out.print(f"execution {r['id']} started (recorded already: nothing new started)")
    else:
        out.print(f"execution {r['id']} started")
    if shown:
        out.print(f"parameters: {escape(shown)}")
    if watch:
        exe = _watch(client, r["id"])
        raise typer.Exit(EXIT_OK if exe["status"] == "SUCCEEDED" else EXIT_NOT_SUCCEEDED)


# ------------------------------------------------------------------ executions

def stage_table(exe: dict[str, Any]) -> Table:
    table = Table("REF", "STAGE", "TYPE", "STATUS", "DURATION", "NOTE", box=None)
    for st in exe.get("stages") or []:
        ctx = st.get("context") or {}
        note = ""
        if ctx.get("judgmentStatus"):
            note = f"{ctx['judgmentStatus']} by {ctx.get('lastModifiedBy', '?')}"
            if ctx.get("judgmentInput"):
                note += f": {ctx['judgmentInput']}"
            if ctx.get("customParams"):
                note += " " + " ".join(f"{k}={v}" for k, v in ctx["customParams"].items())
        elif (ctx.get("exception") or {}).get("details"):
            note = str(ctx["exception"]["details"].get("error", ""))
        elif st["type"] == "manualJudgment" and st["status"] == "RUNNING":
            note = "waiting for judgment: " + judge_commands(exe["id"], st)[0]
        elif st["type"] == "wait" and st["status"] == "RUNNING":
            note = f"waiting {ctx.get('waitTime')}s (skip: graylane execution skip-wait {exe['id']} -s '{st['name']}')"
        elif ctx.get("stageEnabledResult"):
            note = str(ctx["stageEnabledResult"])
        table.add_row(str(st["refId"]), escape(st["name"]), st["type"], _status(st["status"]),
                      elapsed_between(st.get("startTime"), st.get("endTime")), escape(note))
    return table


def _header(exe: dict[str, Any]) -> Text:
    text = Text.assemble((f"{exe['application']}/{exe['name']} ", "bold"), f"{exe['id']} ", _status(exe["status"]),
                         f"  {elapsed_between(exe.get('startTime') or exe.get('buildTime'), exe.get('endTime'))}")
    return text


def _watch(client: ApiClient, execution_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Redraw the stage table until the execution completes (or `timeout` seconds pass); piped, print lines."""
    if not out.is_terminal:
        return follow_lines(client, execution_id, out, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    exe = client.get(f"/api/v1/executions/{execution_id}")
    with Live(Group(_header(exe), stage_table(exe)), console=out, refresh_per_second=4) as live:
        while exe["status"] not in COMPLETE and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.5)
            exe = client.get(f"/api/v1/executions/{execution_id}")
            live.update(Group(_header(exe), stage_table(exe)))
    return exe


@execution_app.command("list")
def execution_list(pipeline: str = typer.Option(None, "--pipeline", "-p"),
                   application: str = typer.Option(None, "--application", "-a"),
                   status: str = typer.Option(None, "--status", help="e.g. RUNNING,PAUSED"),
                   limit: int = typer.Option(20, "--limit"),
                   output: str = typer.Option("table", "-o", "--output", help="table|json")) -> None:
    params = {k: v for k, v in {"pipeline": pipeline, "application": application, "status": status,
                                "limit": limit}.items() if v}
    rows = _client().get("/api/v1/executions", params=params)
    if output == "json":
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(box=None)
    # Ids stay whole (they are what the other commands take); the other columns wrap or shorten.
    table.add_column("ID", no_wrap=True, min_width=max((len(e["id"]) for e in rows), default=2))
    table.add_column("PIPELINE", overflow="fold")
    table.add_column("STATUS", no_wrap=True, overflow="ellipsis")
    table.add_column("TRIGGER", overflow="ellipsis")
    table.add_column("STARTED", overflow="fold")
    table.add_column("DURATION", no_wrap=True, overflow="ellipsis")
    for e in rows:
        trig = e.get("trigger") or {}
        table.add_row(e["id"], f"{e['application']}/{e['name']}", _status(e["status"]),
                      f"{trig.get('type', '')} by {trig.get('user', '?')}", _when(e.get("startTime") or e["buildTime"]),
                      elapsed_between(e.get("startTime"), e.get("endTime")))
    out.print(table)


@execution_app.command("show")
def execution_show(execution_id: str, output: str = typer.Option("table", "-o", "--output",
                                                                  help="table|json|yaml"),
                   watch: bool = typer.Option(False, "--watch", "-w", help="follow live until it finishes")) -> None:
    """Stages with statuses and durations, then the audit trail (who started, judged, canceled, restarted)."""
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    if watch:
        _watch(client, execution_id)
    exe = client.get(f"/api/v1/executions/{execution_id}")
    if output in ("json", "yaml"):
        _dump(exe, output)
        return
    out.print(_header(exe))
    params = (exe.get("trigger") or {}).get("parameters") or {}
    if params:
        out.print("parameters: " + escape(", ".join(f"{k}={v}" for k, v in params.items())))
    if exe.get("canceled"):
        out.print(f"canceled by {exe.get('canceledBy')}: {escape(str(exe.get('cancellationReason') or ''))}")
    out.print(stage_table(exe))
    audit = Table("TIME", "USER", "ACTION", "DETAILS", box=None, title="audit", title_justify="left")
    names = {s["id"]: s["name"] for s in exe.get("stages") or []}
    for a in exe.get("audit") or []:
        details = dict(a.get("details") or {})
        details.pop("stage", None)
        where = f"stage {names.get(a.get('stageId'), a.get('stageId'))} " if a.get("stageId") else ""
        audit.add_row(_when(a["time"]), a["user"], a["action"],
                      escape(where + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in details.items()
                                              if v not in (None, {}, []))))
    out.print(audit)


@execution_app.command("cancel")
def execution_cancel(execution_id: str, reason: str = typer.Option(None, "--reason")) -> None:
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    client.put(f"/api/v1/executions/{execution_id}/cancel", json={"reason": reason}, headers=_h())
    out.print(f"execution {execution_id} canceled")


@execution_app.command("pause")
def execution_pause(execution_id: str) -> None:
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    client.put(f"/api/v1/executions/{execution_id}/pause", headers=_h())
    out.print(f"execution {execution_id} paused")


@execution_app.command("resume")
def execution_resume(execution_id: str) -> None:
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    client.put(f"/api/v1/executions/{execution_id}/resume", headers=_h())
    out.print(f"execution {execution_id} resumed")


@execution_app.command("restart")
def execution_restart(execution_id: str,
                      stage: str = typer.Option(..., "--stage", "-s", help="stage name or id")) -> None:
    """Restart a stage and everything after it; its expressions are evaluated afresh."""
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    st = client.put(f"/api/v1/executions/{execution_id}/stages/{stage}/restart", headers=_h())
    out.print(f"stage {escape(st['name'])} of {execution_id} restarted")


@execution_app.command("skip-wait")
def execution_skip_wait(execution_id: str, stage: str = typer.Option(..., "--stage", "-s")) -> None:
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    client.patch(f"/api/v1/executions/{execution_id}/stages/{stage}", json={"skipRemainingWait": True},
                    headers=_h())
    out.print(f"wait {escape(stage)} of {execution_id} skipped")


@execution_app.command("wait")
def execution_wait(execution_id: str, timeout: float = typer.Option(3600.0, "--timeout", help="seconds")) -> None:
    """Block until the execution finishes: exit 0 if it SUCCEEDED, 1 if it ended otherwise, 3 if --timeout runs out."""
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    exe = _watch(client, execution_id, timeout)
    if exe["status"] not in COMPLETE:
        out.print(f"execution {execution_id} still {exe['status']} after {timeout:g}s")
        raise typer.Exit(EXIT_TIMEOUT)
    out.print(f"execution {execution_id} {exe['status']}")
    raise typer.Exit(EXIT_OK if exe["status"] == "SUCCEEDED" else EXIT_NOT_SUCCEEDED)


def judge(execution_id: str = typer.Argument(..., help="execution id (or a unique prefix of it)"),
          stage: str = typer.Option(..., "--stage", "-s", help="the manual judgment's name (or id)"),
          cont: bool = typer.Option(False, "--continue", help="approve: continue the pipeline"),
          stop: bool = typer.Option(False, "--stop", help="reject: stop here"),
          option: str = typer.Option(None, "--input", "-i", help="one of the stage's judgmentInputs"),
          custom: list[str] = typer.Option([], "-P", "--param",
                                           help="custom parameter NAME=VALUE (repeatable)")) -> None:
    """Answer a manual judgment, e.g. `graylane judge EXEC --stage 设置灰度比例 --continue -P canary_ratio=50`."""
    if cont == stop and not custom and option is None:
        raise ValidationError("say --continue or --stop (and --input / -P as the stage asks)")
    if cont and stop:
        raise ValidationError("--continue and --stop exclude each other")
    body: dict[str, Any] = {}
    if cont or stop:
        body["judgmentStatus"] = "continue" if cont else "stop"
    if option is not None:
        body["judgmentInput"] = option
    if custom:
        body["customParams"] = _kv(custom, "-P")
    client = _client()
    execution_id = resolve_execution_id(client, execution_id)
    # one Idempotency-Key for this judgment, sent again with it when the connection broke before the answer
    st = client.idempotent("PATCH", f"/api/v1/executions/{execution_id}/stages/{stage}", json=body, headers=_h())
    verdict = body.get("judgmentStatus", "updated")
    again = " (recorded already: nothing changed)" if st.get("duplicate") else ""
    out.print(f"judgment {escape(st['name'])}: {verdict}" + (f" ({escape(option)})" if option else "") + again)


def register(app: typer.Typer) -> None:
    """Add `pipeline`, `execution` and `judge`."""
    app.add_typer(pipeline_app, name="pipeline")
    app.add_typer(execution_app, name="execution")
    app.command("judge")(judge)
