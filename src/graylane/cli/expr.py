"""`graylane expr 'EXPR' --context FILE.json [--stage NAME]`: evaluate an expression offline.

Reads an execution snapshot (Spinnaker's execution JSON, as `graylane execution show -o json`
prints it) and prints the result and the expressionEvaluationSummary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from graylane.errors import GraylaneError
from graylane.expressions import ExpressionOptions, evaluate_for_execution

EXIT_OK = 0                  # the expression evaluated
EXIT_EXPRESSION_FAILED = 1   # it failed (the summary says why); the result is the raw text

HELP = (
    "Evaluate a pipeline expression (SpEL subset) against an execution snapshot, or a stored execution.\n\n"
    "EXPR is a bare expression (`#toInt(parameters.ratio) + 1`) or text with `${...}` parts. "
    "--context is an execution JSON (Spinnaker's shape; '-' reads stdin); --execution ID asks the control "
    "plane to evaluate against a stored execution instead. --stage makes that stage (name, id or refId) "
    "current, so its context keys and its ancestors' outputs join the root.\n\n"
    f"Exit codes: {EXIT_OK} evaluated; {EXIT_EXPRESSION_FAILED} the expression failed, or bad input."
)


def _read_execution(path: str | None) -> dict[str, Any]:
    if path is None:
        return {"id": "offline", "stages": [], "trigger": {"type": "manual", "parameters": {}}}
    from graylane.resources import jsonsafe
    from graylane.resources.yamlsafe import decode_utf8, read_stdin

    where = "<stdin>" if path == "-" else path
    if path == "-":
        text = read_stdin()
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise GraylaneError(f"cannot read the execution snapshot: {exc.strerror}", where=where) from None
        text = decode_utf8(raw, where).removeprefix("\ufeff")  # a bad byte is named with its offset
    data = jsonsafe.loads(text, where)
    if isinstance(data, dict) and isinstance(data.get("execution"), dict) and "stages" not in data:
        data = data["execution"]  # tolerate {"execution": {...}} wrappers
    if not isinstance(data, dict):
        raise GraylaneError("the execution snapshot must be a JSON object", where=where,
                            hint="use the output of `graylane execution show ID -o json`")
    if not isinstance(data.get("stages", []), list):
        raise GraylaneError("field stages must be a list", where=f"{where}: stages")
    return data


def _evaluate_remote(execution_id: str, expression: str, stage: str | None) -> dict[str, Any]:
    """`POST /api/v1/executions/{id}/evaluate` on the control plane (same answer shape as offline)."""
    from urllib.parse import quote

    from graylane.cli.client import ApiClient
    from graylane.cli.execution_ids import resolve_execution_id

    client = ApiClient()
    try:
        execution_id = resolve_execution_id(client, execution_id)
        body: dict[str, Any] = {"expression": expression}
        if stage is not None:
            body["stage"] = stage
        answer = client.post(f"/api/v1/executions/{quote(execution_id, safe='')}/evaluate", json=body)
    finally:
        client.close()
    if not isinstance(answer, dict) or "result" not in answer:
        raise GraylaneError("the control plane returned an unexpected answer to evaluate",
                            where=f"execution {execution_id}")
    answer.setdefault("summary", {})
    answer.setdefault("failed", False)
    return answer


def expr(
    expression: str = typer.Argument(..., metavar="EXPR", help="A bare expression, or text with ${...} parts."),
    context: str | None = typer.Option(None, "--context", "-c", help="Execution JSON file ('-' for stdin)."),
    execution_id: str | None = typer.Option(None, "--execution", "-e",
                                            help="A stored execution's id (or a unique prefix of it): "
                                                 "evaluate on the control plane."),
    stage: str | None = typer.Option(None, "--stage", "-s", help="Current stage: name, id or refId."),
    user: str | None = typer.Option(None, "--user",
                                    help="What #currentUser() returns (offline; the server uses the caller)."),
    output: str = typer.Option("text", "-o", "--output", help="text or json."),
    allow_url_functions: bool = typer.Option(False, "--allow-url-functions",
                                             help="Enable #fromUrl/#jsonFromUrl/#yamlFromUrl (public hosts only)."),
) -> None:
    if output not in ("text", "json"):
        raise GraylaneError(f"unknown output format {output!r}", hint="use -o text or -o json")
    if context is not None and execution_id is not None:
        raise GraylaneError("--context and --execution cannot be used together",
                            hint="--context evaluates a JSON file offline; --execution asks the control plane")
    if execution_id is not None:
        answer = _evaluate_remote(execution_id, expression, stage)
    else:
        options = ExpressionOptions(allow_url_functions=allow_url_functions)
        answer = evaluate_for_execution(_read_execution(context), expression, stage, user=user, options=options)
    console = Console(highlight=False, soft_wrap=True)
    if output == "json":
        console.print_json(json.dumps(answer, ensure_ascii=False))
    else:
        result = json.dumps(answer["result"], ensure_ascii=False, indent=2)
        console.print(f"[bold]result:[/] {escape(result)}")
        entries = [e for items in answer["summary"].values() for e in items]
        if entries:
            console.print("[bold]expressionEvaluationSummary:[/]")
        for entry in entries:
            style = "bold red" if entry["level"] == "ERROR" else "cyan"
            console.print(f"[{style}]{entry['level']}[/] {escape(entry['description'])}")
    raise typer.Exit(EXIT_EXPRESSION_FAILED if answer["failed"] else EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add `graylane expr` to the root app."""
    app.command("expr", help=HELP)(expr)
