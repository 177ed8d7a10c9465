"""kubectl-like resource commands over the API: apply, diff, delete, get, describe, history; and `server`.

Every command parses its arguments, calls the control plane through `ApiClient`, and prints.
`apply --wait` calls each function in `APPLY_WAITERS` (graylane.cli.apply_wait: rollouts, then the
mesh ACK); other areas may append their own waiter (signature: `(client, apply_response, timeout_s) -> None`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from graylane.cli.apply_wait import APPLY_WAITERS
from graylane.cli.client import ApiClient
from graylane.cli.columns import COLUMNS, WIDE, dig
from graylane.errors import GraylaneError, NotFound, ValidationError
from graylane.resources.durations import format_age as human_duration  # kubectl's AGE: the one formatter
from graylane.resources.load import load_text
from graylane.resources.yamlsafe import read_stdin, read_text
from graylane.settings import current_user, server_address

_SUFFIXES = {".yaml", ".yml", ".json"}
OUTPUTS = ("yaml", "json", "wide", "name")
DIFF_FOUND = 1  # `graylane diff` exit code when applying would change something (kubectl diff's)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# -- shared helpers ----------------------------------------------------------------------------

def _client() -> ApiClient:
    return ApiClient()


def _headers() -> dict[str, str]:
    return {"X-Graylane-User": current_user()}


def read_files(paths: list[str]) -> list[tuple[str, str]]:
    """(name, text) for each file under `paths` (folders recursive and sorted; `-` is stdin)."""
    files: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            files.append(("-", read_stdin()))
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _SUFFIXES)
            files.extend((str(p), read_text(p)) for p in found)
        elif path.is_file():
            files.append((str(path), read_text(path)))
        else:
            raise ValidationError("no such file or folder", where=str(path), hint="check the -f path")
    count = sum(len(load_text(text, name)) for name, text in files)  # YAML errors with file:line, early
    if count == 0:
        raise ValidationError("no objects passed", where=", ".join(paths), hint="check the -f paths")
    return files


def split_targets(args: list[str]) -> list[tuple[str, str]]:
    """kubectl's object arguments: `KIND NAME...` or `KIND/NAME...` -> [(kind, name)]."""
    if not args:
        return []
    if all("/" in a for a in args):
        pairs = [tuple(a.split("/", 1)) for a in args]
        if any(not k or not n for k, n in pairs):
            raise ValidationError("arguments in KIND/NAME form need both parts", hint="e.g. vs/reviews")
        return [(k, n) for k, n in pairs]
    if any("/" in a for a in args):
        raise ValidationError("there is no need to give a kind with each name when KIND comes first",
                              hint="use `KIND NAME...` or `KIND/NAME...`, not both")
    if len(args) < 2:
        raise ValidationError(f"give a name after the kind {args[0]!r}", hint=f"e.g. {args[0]} NAME")
    return [(args[0], name) for name in args[1:]]


def ref(item: dict[str, Any]) -> str:
    """kubectl's `kind.group/name` (core kinds: `kind/name`)."""
    kind = str(item.get("kind", "")).lower()
    group = item.get("group")
    if group is None:
        api_version = str(item.get("apiVersion", ""))
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        name = item.get("metadata", {}).get("name", "")
    else:
        name = item.get("name", "")
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


def _age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def table_lines(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Plain columns, three spaces apart, as kubectl prints them."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    return ["   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *rows]]


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    for line in table_lines(headers, rows):
        out.print(escape(line))


def print_diff(diff: str) -> None:
    for line in diff.splitlines():
        style = ("bold" if line.startswith(("---", "+++")) else "green" if line.startswith("+")
                 else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else "")
        out.print(Text(line, style=style))


def _dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        out.print(escape(json.dumps(data, indent=2)))
    else:
        out.print(escape(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()))


# -- `get` ---------------------------------------------------------------------------------------

def _matches(body: dict[str, Any], selector: str | None) -> bool:
    """Equality label selectors: `app=web,version!=v1`, or `app` for "has label"."""
    if not selector:
        return True
    labels = dig(body, "metadata", "labels", default={}) or {}
    for term in filter(None, (s.strip() for s in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def render_get(items: list[dict[str, Any]], output: str | None, all_namespaces: bool, single: bool) -> None:
    if output in ("yaml", "json"):
        data = items[0] if single else {"apiVersion": "v1", "kind": "List", "items": items}
        _dump(data, output)
        return
    if output == "name":
        for item in items:
            out.print(escape(ref(item)))
        return
    kinds = {str(i.get("kind")) for i in items}
    kind = kinds.pop() if len(kinds) == 1 else ""
    cols = COLUMNS.get(kind, [])
    # kubectl puts the wide columns after AGE; kinds without any show their generation.
    wide = (WIDE.get(kind) or [("GENERATION", lambda b: str(dig(b, "metadata", "generation", default="")))]
            if output == "wide" else [])
    headers = ((["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c[0] for c in cols] + ["AGE"]
               + [c[0] for c in wide])
    now = datetime.now(UTC)
    rows = []
    for item in items:
        md = item.get("metadata", {})
        name = str(md.get("name", "")) if kind else ref(item)
        row = ([str(md.get("namespace", ""))] if all_namespaces else []) + [name]
        row += [fn(item) for _, fn in cols] + [_age(md.get("creationTimestamp"), now)] + [fn(item) for _, fn in wide]
        rows.append(row)
    print_table(headers, rows)


# -- what the runtime reports (Deployment status, pods) -----------------------------------------

_POD_NAMES = ("po", "pod", "pods")


def _file_entry(name: str, text: str) -> dict[str, str]:
    """One file of an apply body; its folder lets LocalImage resolve relative paths (not for stdin)."""
    entry = {"name": name, "text": text}
    if name != "-" and Path(name).exists():
        entry["dir"] = str(Path(name).resolve().parent)
    return entry


def with_gateway_urls(client: ApiClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gateways get `status.urls`: where their servers listen on this host (from the mesh API)."""
    if not any(i.get("kind") == "Gateway" for i in items):
        return items
    try:
        urls = client.get("/api/v1/mesh/gateways")["items"]
    except GraylaneError:
        return items
    by_key: dict[tuple[Any, Any], list[str]] = {}
    for u in urls:
        by_key.setdefault((u.get("namespace"), u.get("name")), []).append(str(u.get("url")))
    out_items = []
    for item in items:
        md = item.get("metadata", {})
        key = (md.get("namespace") or "default", md.get("name"))
        found = by_key.get(key) if item.get("kind") == "Gateway" else None
        out_items.append({**item, "status": {**(item.get("status") or {}), "urls": found}} if found else item)
    return out_items


def with_live_status(client: ApiClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deployments get the runtime's Kubernetes-shaped status (the store holds only the spec); Gateways their URLs."""
    items = with_gateway_urls(client, items)
    if not any(i.get("kind") == "Deployment" for i in items):
        return items
    try:
        live = client.get("/api/v1/deployments/status")["items"]
    except GraylaneError:  # no runtime in this control plane: show what the store has
        return items
    by_key = {(x.get("namespace"), x.get("name")): x.get("status") for x in live}
    out_items = []
    for item in items:
        md = item.get("metadata", {})
        status = by_key.get((md.get("namespace"), md.get("name"))) if item.get("kind") == "Deployment" else None
        out_items.append({**item, "status": status} if status else item)
    return out_items


def get_pods(client: ApiClient, names: list[str], namespace: str | None, output: str | None,
             selector: str | None) -> None:
    """`get pods`: the runtime's replica processes, in kubectl's columns."""
    pods = client.get("/api/v1/pods", params={"namespace": namespace} if namespace else {})["items"]
    pods = [p for p in pods if (not names or p["name"] in names)
            and _matches({"metadata": {"labels": p.get("labels") or {}}}, selector)]
    if names and not pods:
        raise NotFound(f'pods "{names[0]}" not found', hint="graylane get pods -A")
    if output in ("yaml", "json"):
        _dump(pods[0] if len(names) == 1 else {"kind": "List", "items": pods}, output)
        return
    if output == "name":
        for p in pods:
            out.print(escape(f"pod/{p['name']}"))
        return
    if not pods:
        err.print(f"No resources found in {namespace} namespace." if namespace else "No resources found.")
        return
    headers = (["NAMESPACE"] if namespace is None else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if output == "wide":
        headers += ["IP", "PORT", "SIDECAR", "PID"]
    rows = []
    for p in pods:
        row = ([p["namespace"]] if namespace is None else []) + [
            p["name"], str(p.get("ready", "")), str(p.get("status", "")),
            str(p.get("restarts", 0)), human_duration(float(p.get("age_s") or 0))]
        if output == "wide":
            row += [str(p.get("ip", "")), str(p.get("port", "")), str(p.get("sidecarPort", "")),
                    str(p.get("pid") or "<none>")]
        rows.append(row)
    print_table(headers, rows)


# -- commands ----------------------------------------------------------------------------------

def register(app: typer.Typer) -> None:
    """Add apply, delete, get, describe, history and server to the root app."""

    @app.command("apply")
    def apply_cmd(
        filenames: list[str] = typer.Option(..., "-f", "--filename", help="Files, folders (recursive) or - for stdin."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change, as a diff; change nothing."),
        namespace: str | None = typer.Option(None, "-n", "--namespace", help="Namespace for documents without one."),
        wait: bool = typer.Option(False, "--wait", help="Wait for changed Deployments to roll out and the mesh "
                                  "to serve this revision."),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait with --wait."),
    ) -> None:
        """Create or update resources from files (all or nothing)."""
        files = read_files(filenames)
        client = _client()
        params: dict[str, str] = {"diff": "true" if dry_run else "false"}
        if dry_run:
            params["dryRun"] = "All"
        if namespace:
            params["namespace"] = namespace
        count = sum(len(load_text(t, n)) for n, t in files)
        with err.status(f"applying {count} object{'s' if count != 1 else ''}..."):
            resp = client.post("/api/v1/apply", params=params, headers=_headers(),
                               json={"files": [_file_entry(n, t) for n, t in files]})
        for warning in resp.get("warnings", []):
            err.print(f"[yellow]Warning:[/] {escape(warning)}")  # as kubectl prints admission warnings
        for r in resp["results"]:
            out.print(escape(f"{ref(r)} {r['action']}" + (" (dry run)" if dry_run else "")))
            if dry_run and r.get("diff"):
                print_diff(r["diff"])
        if wait and not dry_run:
            deadline = time.monotonic() + timeout
            for waiter in APPLY_WAITERS:
                waiter(client, resp, max(1.0, deadline - time.monotonic()))

    @app.command("diff")
    def diff_cmd(
        filenames: list[str] = typer.Option(..., "-f", "--filename", help="Files, folders (recursive) or - for stdin."),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
    ) -> None:
        """Show what applying these files would change (exit 1 when something would, like kubectl diff)."""
        files = read_files(filenames)
        params = {"dryRun": "All", "diff": "true", **({"namespace": namespace} if namespace else {})}
        resp = _client().post("/api/v1/apply", params=params, headers=_headers(),  # with folders, as apply sends
                              json={"files": [_file_entry(n, t) for n, t in files]})
        changed = [r for r in resp["results"] if r["action"] != "unchanged"]
        for r in changed:
            print_diff(r["diff"])
        if changed:
            raise typer.Exit(DIFF_FOUND)

    @app.command("delete")
    def delete_cmd(
        args: list[str] = typer.Argument(None, metavar="[KIND NAME...]"),
        filenames: list[str] = typer.Option(None, "-f", "--filename", help="Delete the objects in these files."),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
        ignore_not_found: bool = typer.Option(False, "--ignore-not-found"),
    ) -> None:
        """Delete resources named in files, or by kind and name."""
        client = _client()
        params = {"namespace": namespace} if namespace else {}
        if filenames:
            if args:
                raise ValidationError("give either -f or KIND NAME, not both")
            files = read_files(filenames)
            resp = client.post("/api/v1/delete", params=params, headers=_headers(),
                               json={"files": [{"name": n, "text": t} for n, t in files]})
            missing = resp["notFound"]
        else:
            targets = split_targets(args or [])
            if not targets:
                raise ValidationError("delete needs -f PATHS, KIND NAME..., or KIND/NAME...",
                                      hint="e.g. graylane delete vs reviews -n default")
            deleted: list[dict[str, Any]] = []
            missing = []
            for kind, name in targets:
                try:
                    r = client.delete(f"/api/v1/resources/{kind}/{name}", params=params, headers=_headers())
                    deleted.extend(r["deleted"])
                except NotFound as exc:
                    if "resource type" in exc.message:  # an unknown kind is an error of its own
                        raise
                    missing.append({"kind": kind, "group": "", "name": name})
            resp = {"deleted": deleted}
        for k in resp["deleted"]:
            out.print(escape(f'{ref(k).rsplit("/", 1)[0]} "{k["name"]}" deleted'))
        if missing and not ignore_not_found:
            names = ", ".join(f'{ref(k).rsplit("/", 1)[0]} "{k["name"]}"' for k in missing)
            raise NotFound(f"{names} not found", hint="add --ignore-not-found to skip missing objects")

    @app.command("get")
    def get_cmd(
        kind: str = typer.Argument(..., help="Kind: vs, dr, gw, deploy, svc, se, cm, ... or all."),
        names: list[str] = typer.Argument(None, help="Names (default: all of that kind)."),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
        all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        output: str | None = typer.Option(None, "-o", "--output", help="yaml | json | wide | name"),
        selector: str | None = typer.Option(None, "-l", "--selector", help="Label selector, e.g. app=web"),
    ) -> None:
        """Show resources as a table (or YAML/JSON)."""
        if output is not None and output not in OUTPUTS:
            raise ValidationError(f"unknown output format {output!r}", hint=f"use one of: {', '.join(OUTPUTS)}")
        client = _client()
        ns = None if all_namespaces else (namespace or "default")
        if "/" in kind:  # kubectl's `get deploy/web svc/web`
            pairs = split_targets([kind, *(names or [])])
            items = [client.get(f"/api/v1/resources/{k}/{n}", params={"namespace": ns or "default"})
                     for k, n in pairs]
            render_get(with_live_status(client, items), output, False, single=len(items) == 1)
            return
        if kind.lower() in _POD_NAMES:
            get_pods(client, names or [], ns, output, selector)
            return
        if names:
            items = [client.get(f"/api/v1/resources/{kind}/{n}", params={"namespace": ns or "default"})
                     for n in names]
            render_get(with_live_status(client, items), output, all_namespaces, single=len(items) == 1)
            return
        path = "/api/v1/resources" if kind == "all" else f"/api/v1/resources/{kind}"
        resp = client.get(path, params={"namespace": ns} if ns else {})
        items = with_live_status(client, [i for i in resp["items"] if _matches(i, selector)])
        if kind != "all" and items and items[0].get("metadata", {}).get("namespace") is None:
            all_namespaces = False  # cluster-scoped kinds have no NAMESPACE column
        if not items and output not in ("yaml", "json"):
            err.print(f"No resources found in {ns} namespace." if ns else "No resources found.")
            return
        render_get(items, output, all_namespaces, single=False)

    @app.command("describe")
    def describe_cmd(
        kind: str = typer.Argument(...),
        name: str = typer.Argument(...),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
    ) -> None:
        """Show one resource in detail, with its recent history."""
        client = _client()
        params = {"namespace": namespace or "default"}
        body = with_live_status(client, [client.get(f"/api/v1/resources/{kind}/{name}", params=params)])[0]
        hist = client.get(f"/api/v1/resources/{kind}/{name}/history", params=params)["items"]
        md = body.get("metadata", {})

        def mapping(title: str, value: Any) -> None:
            if not value:
                out.print(escape(f"{title + ':':<14}<none>"))
                return
            for i, (k, v) in enumerate(value.items()):
                out.print(escape(f"{(title + ':') if i == 0 else '':<14}{k}={v}"))

        out.print(escape(f"{'Name:':<14}{md.get('name', '')}"))
        if md.get("namespace"):
            out.print(escape(f"{'Namespace:':<14}{md['namespace']}"))
        mapping("Labels", md.get("labels"))
        mapping("Annotations", md.get("annotations"))
        out.print(escape(f"{'API Version:':<14}{body.get('apiVersion', '')}"))
        out.print(escape(f"{'Kind:':<14}{body.get('kind', '')}"))
        if body.get("kind") == "Deployment":
            st = body.get("status") or {}
            out.print(escape(f"{'Replicas:':<14}{dig(body, 'spec', 'replicas', default=1)} desired | "
                             f"{st.get('updatedReplicas', 0)} updated | {st.get('replicas', 0)} total | "
                             f"{st.get('availableReplicas', 0)} available | "
                             f"{st.get('unavailableReplicas', 0)} unavailable"))
        out.print("Metadata:")
        for label, field in (("Creation Timestamp", "creationTimestamp"), ("Generation", "generation"),
                             ("Resource Version", "resourceVersion"), ("UID", "uid")):
            out.print(escape(f"  {label + ':':<21}{md.get(field, '')}"))
        now = datetime.now(UTC)
        for section in [k for k in body if k not in ("apiVersion", "kind", "metadata")]:
            out.print(escape(f"{section[:1].upper() + section[1:]}:"))
            text = yaml.safe_dump(body[section], sort_keys=False, default_flow_style=False).rstrip()
            for line in text.splitlines():
                out.print(escape(f"  {line}"))
        out.print("History:")
        rows = [[str(h["revision"]), _action(h), h["actor"], _age(h["time"], now)] for h in hist[-5:]]
        for line in table_lines(["REVISION", "ACTION", "ACTOR", "AGE"], rows):
            out.print(escape(f"  {line}"))
        out.print("Events:       <none>")

    @app.command("history")
    def history_cmd(
        kind: str = typer.Argument(...),
        name: str = typer.Argument(...),
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
        diff: int | None = typer.Option(None, "--diff", help="Show what revision REV changed."),
        against: str | None = typer.Option(None, "--against", help="With --diff: compare to revision N or 'current'."),
        show: int | None = typer.Option(None, "--revision", help="Print revision REV as YAML."),
        restore: int | None = typer.Option(None, "--restore", help="Make the object as it was at revision REV."),
        output: str | None = typer.Option(None, "-o", "--output", help="yaml | json"),
    ) -> None:
        """List the revisions of a resource (who changed it, when); diff or restore one."""
        client = _client()
        params: dict[str, Any] = {"namespace": namespace or "default"}
        base = f"/api/v1/resources/{kind}/{name}"
        if restore is not None:
            resp = client.post(f"{base}/restore", params={**params, "revision": restore}, headers=_headers())
            r = resp["result"]
            out.print(escape(f"{ref(r)} restored to revision {restore} ({r['action']})"))
            return
        if diff is not None:
            if against:
                params["against"] = against
            text = client.get(f"{base}/history/{diff}/diff", params=params)["diff"]
            if text:
                print_diff(text)
            else:
                err.print("no differences")
            return
        if show is not None:
            rev = client.get(f"{base}/history/{show}", params=params)
            _dump(rev["body"], output if output in ("yaml", "json") else "yaml")
            return
        items = client.get(f"{base}/history", params=params)["items"]
        if output in ("yaml", "json"):
            _dump(items, output)
            return
        now = datetime.now(UTC)
        print_table(["REVISION", "ACTION", "ACTOR", "AGE", "GENERATION", "RESOURCE-VERSION"],
                    [[str(h["revision"]), _action(h), h["actor"], _age(h["time"], now), str(h["generation"]),
                      h["resourceVersion"]] for h in items])

    @app.command("server")
    def server_cmd(
        host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
        port: int = typer.Option(None, "--port", help="Port (default 7380, or $GRAYLANE_SERVER's)."),
        components: bool = typer.Option(True, "--components/--no-components",
                                        help="Start background parts (runtime, executor, telemetry)."),
        log_level: str = typer.Option("info", "--log-level"),
    ) -> None:
        """Run the control plane (API, UI, background parts) in the foreground."""
        from graylane.server import draining
        from graylane.server.app import create_app

        addr = server_address()
        host, port = host or addr.host, port or addr.port
        # The process's own address, for components that call the API, and for graylane.server.auth,
        # which trusts callers without a token only when the server listens on loopback.
        os.environ["GRAYLANE_SERVER"] = f"{host}:{port}"
        os.environ["GRAYLANE_BIND_HOST"] = host
        # SIGTERM drains first: graylane.server.draining (docs/operations.md, "Stopping a control plane").
        draining.run(create_app(start_components=components), host=host, port=port, log_level=log_level)


def _action(h: dict[str, Any]) -> str:
    return f"restored (from {h['restoredFrom']})" if h.get("restoredFrom") else str(h["action"])

