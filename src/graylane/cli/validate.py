"""`graylane validate -f PATHS...`: schema, admission and istioctl-style analysis of files, offline."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from graylane.errors import GraylaneError
from graylane.resources.finding import Finding, Severity
from graylane.resources.load import load_paths
from graylane.resources.validate import validate as validate_documents

# Exit codes (documented in the command help).
EXIT_CLEAN = 0          # no findings, or warnings/info only
EXIT_ERRORS = 1         # at least one error
EXIT_WARNINGS = 2       # warnings, with --fail-on-warnings
EXIT_UNREADABLE = 3     # a path is missing or a file is not valid YAML/JSON

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}

HELP = (
    "Check resource files offline: schema, Istio admission rules, and cross-resource analyzers.\n\n"
    "Reports unknown fields and wrong types (with file:line and field path); what Istio's admission webhook "
    "would reject (weights, durations, RE2 regexes, retryOn, redirects, subsets, ...); istioctl analyze findings "
    "(IST0101 missing host, subset, gateway or port; IST0109; IST0112; IST0130; IST0131; IST0132; IST0173; IST0174); "
    "GL0001 (a kind the local target ignores) and GL0002 (weights not summing to 100).\n\n"
    f"Exit codes: {EXIT_CLEAN} clean or warnings only; {EXIT_ERRORS} errors found; {EXIT_WARNINGS} warnings found "
    f"with --fail-on-warnings; {EXIT_UNREADABLE} unreadable input (missing path, invalid YAML/JSON)."
)


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {
        "errors": sum(f.severity is Severity.ERROR for f in findings),
        "warnings": sum(f.severity is Severity.WARNING for f in findings),
        "info": sum(f.severity is Severity.INFO for f in findings),
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _print_text(console: Console, findings: list[Finding], documents: int) -> None:
    for finding in findings:
        text = escape(str(finding))
        head, sep, rest = text.partition(" ")
        console.print(f"[{_STYLE[finding.severity]}]{head}[/]{sep}{rest}")
    counts = _counts(findings)
    if not findings:
        console.print(f"[green]✔[/] No validation issues found in {_plural(documents, 'document')}.")
        return
    parts = [_plural(counts["errors"], "error"), _plural(counts["warnings"], "warning"), f"{counts['info']} info"]
    style = "bold red" if counts["errors"] else "yellow"
    console.print(f"[{style}]{', '.join(parts)}[/] in {_plural(documents, 'document')}.")


def _store_context(account: str | None) -> list[dict[str, Any]] | None:
    """Resources already deployed, for analyzers to judge references against. Offline: none.

    With `--account NAME`, the live cluster's Services, Deployments, DestinationRules, Gateways and
    VirtualServices (or, for `local`, the control plane's store) join the analysis.
    """
    if not account:
        return None
    from graylane.targets.accounts import live_context

    return live_context(account)


def validate(
    files: list[str] = typer.Option(None, "-f", "--filename", help="Files or folders (recursive); '-' reads stdin."),
    output: str = typer.Option("text", "-o", "--output", help="text or json."),
    fail_on_warnings: bool = typer.Option(False, "--fail-on-warnings", help="Exit 2 when there are warnings."),
    account: str = typer.Option(None, "--account", help="Also check references against this account's live "
                                                        "resources (e.g. a Kubernetes cluster)."),
) -> None:
    if output not in ("text", "json"):
        raise GraylaneError(f"unknown output format {output!r}", hint="use -o text or -o json")
    console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not files:
        err.print("[bold red]error:[/] no input (pass -f FILE, -f FOLDER or -f - for stdin)")
        raise typer.Exit(EXIT_UNREADABLE)
    try:
        docs = load_paths(files)
    except GraylaneError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNREADABLE) from None
    findings = validate_documents(docs, context=_store_context(account))
    counts = _counts(findings)
    if output == "json":
        payload = {"documents": len(docs), **counts, "findings": [f.to_dict() for f in findings]}
        console.out(json.dumps(payload, indent=2), highlight=False)
    else:
        _print_text(console, findings, len(docs))
    if counts["errors"]:
        raise typer.Exit(EXIT_ERRORS)
    if fail_on_warnings and counts["warnings"]:
        raise typer.Exit(EXIT_WARNINGS)


def register(app: typer.Typer) -> None:
    """Add `graylane validate` to the root app."""
    app.command("validate", help=HELP)(validate)
