"""`graylane validate -f PATHS...`: schema, admission and istioctl-style analysis of files.

Like `istioctl analyze`, the files are judged together with what is live: the resources of the
control plane when one answers (or, with `--account NAME`, that account's cluster). `--use-kube=false`
checks the files alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from graylane.cli import exit_codes
from graylane.cli.client import ApiClient
from graylane.errors import GraylaneError
from graylane.resources.finding import Finding, Severity
from graylane.resources.load import load_paths
from graylane.resources.validate import validate as validate_documents

# Exit codes: the CLI's one scheme (cli/exit_codes.py, docs/cli.md), documented in the command help.
EXIT_CLEAN = exit_codes.OK             # no findings, or warnings/info only
EXIT_ERRORS = exit_codes.REFUSED       # at least one error (or a warning, with --fail-on-warnings)
EXIT_UNREADABLE = exit_codes.REFUSED   # a file is not valid YAML/JSON, or no input was given
EXIT_MISSING = exit_codes.NOT_FOUND    # a path does not exist

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}

HELP = (
    "Check resource files: schema, Istio admission rules, and cross-resource analyzers.\n\n"
    "Reports unknown fields and wrong types (with file:line and field path); what Istio's admission webhook "
    "would reject (weights, durations, RE2 regexes, retryOn, redirects, subsets, ...); istioctl analyze findings "
    "(IST0101 missing host, subset, gateway, port, credential or gateway workload; IST0109; IST0112; IST0118 and "
    "IST0150 Service port names; IST0128 and IST0129 DestinationRule TLS without caCertificates; IST0130; IST0131; "
    "IST0132; IST0134 ServiceEntry without addresses; IST0138 duplicate Gateway certificate; IST0140; IST0145 "
    "conflicting Gateways; IST0162 gateway port not on its Service; IST0165; IST0173; IST0174; IST0177 conflicting "
    "ServiceEntry protocols); "
    "GL0001 (a kind the local target ignores) and GL0002 (weights not summing to 100).\n\n"
    f"Exit codes: {EXIT_CLEAN} clean or warnings only; {EXIT_ERRORS} errors found, warnings found with "
    f"--fail-on-warnings, or unreadable input (invalid YAML/JSON); {EXIT_MISSING} a path does not exist.\n\n"
    "As istioctl analyze does, the files are checked together with the live resources (the control plane's, "
    "when one answers; a file's resource replaces the live one of the same name); --use-kube=false checks "
    "the files alone."
)
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
LIVE_TIMEOUT = 5.0  # seconds to wait for the control plane before checking the files alone


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {
        "errors": sum(f.severity is Severity.ERROR for f in findings),
        "warnings": sum(f.severity is Severity.WARNING for f in findings),
        "info": sum(f.severity is Severity.INFO for f in findings),
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _print_text(console: Console, findings: list[Finding], documents: int, live: str) -> None:
    for finding in findings:
        text = escape(str(finding))
        head, sep, rest = text.partition(" ")
        console.print(f"[{_STYLE[finding.severity]}]{head}[/]{sep}{rest}")
    counts = _counts(findings)
    if not findings:
        console.print(f"[green]✔[/] No validation issues found in {_plural(documents, 'document')}{live}.")
        return
    parts = [_plural(counts["errors"], "error"), _plural(counts["warnings"], "warning"), f"{counts['info']} info"]
    style = "bold red" if counts["errors"] else "yellow"
    console.print(f"[{style}]{', '.join(parts)}[/] in {_plural(documents, 'document')}{escape(live)}.")


def _control_plane_resources() -> tuple[list[dict[str, Any]], str] | None:
    """Every resource of the control plane (GET /api/v1/resources) and its address; None when none answers."""
    import httpx

    client = ApiClient(timeout=LIVE_TIMEOUT)
    try:
        items = client.get("/api/v1/resources").get("items") or []
    except (GraylaneError, httpx.HTTPError, AttributeError):
        return None
    finally:
        client.close()
    return [i for i in items if isinstance(i, dict)], client.base_url


def _live_context(account: str | None, use_kube: bool) -> tuple[list[dict[str, Any]] | None, str]:
    """Resources already deployed, for analyzers to judge references against, and where they came from.

    With `--account NAME`, that account's Services, Deployments, DestinationRules, Gateways and
    VirtualServices; otherwise every resource of the control plane when one answers; with
    `--use-kube=false`, or when nothing answers, none (the files alone).
    """
    if not use_kube:
        return None, ""
    if account:
        from graylane.targets.accounts import live_context

        return live_context(account), f"account {account}"
    found = _control_plane_resources()
    if found is None:
        return None, ""
    items, url = found
    return items, url


def validate(
    files: list[str] = typer.Option(None, "-f", "--filename", help="Files or folders (recursive); '-' reads stdin. "
                                    "Several paths may follow one -f: -f a.yaml b.yaml."),
    more_files: list[str] = typer.Argument(None, hidden=True, metavar="[PATHS]..."),
    output: str = typer.Option("text", "-o", "--output", help="text or json."),
    fail_on_warnings: bool = typer.Option(False, "--fail-on-warnings", help="Exit 2 when there are warnings."),
    use_kube: str = typer.Option("true", "--use-kube", metavar="BOOL",
                                  help="Check the files together with the live resources (the control plane's, "
                                       "when one answers), as istioctl analyze does; --use-kube=false checks the "
                                       "files alone."),
    account: str = typer.Option(None, "--account", help="Take the live resources from this account instead "
                                                        "(e.g. a Kubernetes cluster)."),
) -> None:
    if output not in ("text", "json"):
        raise GraylaneError(f"unknown output format {output!r}", hint="use -o text or -o json")
    if use_kube.lower() not in _BOOLS:
        raise GraylaneError(f"--use-kube takes true or false, not {use_kube!r}", hint="--use-kube=false")
    console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if more_files and not files:
        err.print("[bold red]error:[/] paths are given with -f: graylane validate -f " + escape(" ".join(more_files)))
        raise typer.Exit(EXIT_UNREADABLE)
    paths = [*(files or []), *(more_files or [])]
    if not paths:
        err.print("[bold red]error:[/] no input (pass -f FILE, -f FOLDER or -f - for stdin)")
        raise typer.Exit(EXIT_UNREADABLE)
    absent = [p for p in paths if p != "-" and not Path(p).exists()]
    if absent:
        err.print(f"[bold red]error:[/] {escape(absent[0])}: no such file or folder (check the -f path)")
        raise typer.Exit(EXIT_MISSING)
    try:
        docs = load_paths(paths)
    except GraylaneError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_UNREADABLE) from None
    context, source = _live_context(account, _BOOLS[use_kube.lower()])
    findings = validate_documents(docs, context=context)
    counts = _counts(findings)
    if output == "json":
        payload: dict[str, Any] = {"documents": len(docs), **counts}
        if context is not None:
            payload["live"] = {"source": source, "resources": len(context)}
        payload["findings"] = [f.to_dict() for f in findings]
        console.out(json.dumps(payload, indent=2), highlight=False)
    else:
        live = f" (with {_plural(len(context), 'live resource')} from {source})" if context is not None else ""
        _print_text(console, findings, len(docs), live)
    if counts["errors"]:
        raise typer.Exit(EXIT_ERRORS)
    if fail_on_warnings and counts["warnings"]:
        raise typer.Exit(EXIT_ERRORS)


def register(app: typer.Typer) -> None:
    """Add `graylane validate` to the root app."""
    app.command("validate", help=HELP)(validate)
