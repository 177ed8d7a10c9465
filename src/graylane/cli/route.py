"""`graylane route` (explainer, same routing code as the proxy) and `graylane proxy` (the data plane).

`route -f FILES` explains a request against files alone; without `-f` it reads the live resources,
endpoints and sidecars from the control plane API and runs the same code on them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from graylane.errors import GraylaneError, NotFound, ValidationError

if TYPE_CHECKING:
    from graylane.cli.client import ApiClient
    from graylane.mesh.state import Endpoint, Sidecar


@dataclass(frozen=True)
class LiveMesh:
    """What the control plane serves: where it is, and its replicas (None without a local runtime)."""

    url: str
    endpoints: list[Endpoint] | None
    sidecars: list[Sidecar] | None


def _grpc_name(code: int) -> str:
    """`14 UNAVAILABLE`: a gRPC status as its number and name (grpc/status codes)."""
    from graylane.mesh.protocols import GRPC_CODES

    return f"{code} {GRPC_CODES[code]}" if 0 <= code < len(GRPC_CODES) else str(code)

def fetch_live(client: ApiClient) -> tuple[list[dict[str, Any]], LiveMesh]:
    """Every stored resource (all namespaces) and the runtime's endpoints and sidecars."""
    from graylane.mesh.state import Endpoint, Sidecar

    resources = [r for r in client.get("/api/v1/resources")["items"] if isinstance(r, dict)]
    try:
        live = client.get("/api/v1/mesh/endpoints")
    except GraylaneError:  # no local runtime in that control plane (e.g. it deploys to Kubernetes)
        return resources, LiveMesh(client.base_url, None, None)
    return resources, LiveMesh(client.base_url, [Endpoint(**e) for e in live.get("items") or []],
                               [Sidecar(**s) for s in live.get("sidecars") or []])


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValidationError(f"header {text!r} must look like 'name: value'", where="-H")
    return name.strip().lower(), value.strip()


def explain(resources: list[dict[str, Any]], url: str, *, source: str | None = None, gateway: str | None = None,
            headers: list[tuple[str, str]] | None = None, method: str = "GET", count: int = 0,
            live: LiveMesh | None = None) -> dict[str, Any]:
    """What the mesh would do with one request, computed by `RouteTable.route` exactly as the proxy does.

    With `live`, the runtime's replicas are the endpoints and the source's own sidecar is used;
    otherwise every Deployment in `resources` counts as ready replicas.
    """
    from urllib.parse import urlsplit

    from graylane.mesh.config import compile_snapshot, endpoints_from_deployments
    from graylane.mesh.proxy.balance import LoadState
    from graylane.mesh.proxy.faults import roll
    from graylane.mesh.routing import Outcome, RequestView, RouteTable, split_host_port
    from graylane.mesh.snapshot import decode_snapshot
    from graylane.mesh.state import MeshOptions, Sidecar

    if bool(source) == bool(gateway):
        raise ValidationError("give exactly one of --from WORKLOAD or --gateway NAME")
    endpoints, notes = endpoints_from_deployments(resources)
    if live is not None and live.endpoints is not None:
        endpoints, notes = live.endpoints, []
    elif live is not None:
        notes.append("the control plane runs no local runtime: every Deployment counts as ready replicas")
    sidecars: list[Sidecar] = []
    if source:
        ns, _, name = source.rpartition("/")
        deps = [r for r in resources if r.get("kind") == "Deployment" and r["metadata"].get("name") == name
                and (not ns or (r["metadata"].get("namespace") or "default") == ns)]
        if not deps:
            known = sorted(r["metadata"].get("name", "") for r in resources if r.get("kind") == "Deployment")
            raise NotFound(f"no Deployment {source!r} in {'the live mesh' if live else 'the input'}", where="--from",
                           hint=f"known: {', '.join(known) or 'none'}; the source must be a Deployment")
        dep = deps[0]
        tmpl = (dep.get("spec") or {}).get("template") or {}
        dep_ns = dep["metadata"].get("namespace") or "default"
        running = [s for s in (live.sidecars if live is not None else None) or ()
                   if s.workload == name and s.namespace == dep_ns]
        if running:
            sidecars.append(running[0])
        elif live is not None and live.sidecars is not None:
            notes.append(f"no replica of {dep_ns}/{name} is running: routed as if from its pod template")
        if not sidecars:
            sidecars.append(Sidecar(dep["metadata"].get("namespace") or "default", f"{name}-0",
                                dict((tmpl.get("metadata") or {}).get("labels") or {}), 1, name,
                                str((tmpl.get("spec") or {}).get("serviceAccountName") or "default")))
    snapshot = compile_snapshot(resources, endpoints, sidecars, MeshOptions(gateway_port_map={}), 1)
    table = RouteTable(decode_snapshot(snapshot))
    for cluster in table.clusters.values():
        if cluster.subset and not cluster.endpoints:
            what = ("no ready replica matches it" if live is not None and live.endpoints is not None
                    else "no Deployment in the input matches it")
            notes.append(f"subset {cluster.subset} of {cluster.service}: {what}; requests routed there get 503 UH")
    if source:
        listener = next(iter(lst for lst in table.listeners.values() if lst.kind == "sidecar"))
    else:
        assert gateway is not None
        ref = gateway if "/" in gateway else f"default/{gateway}"
        candidates = [lst for lst in table.listeners.values() if lst.kind == "gateway" and any(
            g == ref or g.startswith(f"{ref}~istio-autogenerated-k8s-gateway~") for g in lst.gateways)]
        if not candidates:
            known = sorted({g for lst in table.listeners.values() for g in lst.gateways})
            raise NotFound(f"no Gateway {ref} with an HTTP server in {'the live mesh' if live else 'the input'}",
                           where="--gateway",
                           hint=f"known: {', '.join(known) or 'none'}")
        listener = candidates[0]
    parts = urlsplit(url if "://" in url else f"http://{url}")
    authority = parts.netloc or "localhost"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    hmap: dict[str, str] = {}
    for k, v in headers or ():
        hmap[k] = f"{hmap[k]},{v}" if k in hmap else v
    port = listener.server_port if listener.kind == "gateway" else split_host_port(authority, 80)[1]
    req = RequestView(method.upper(), path, authority, hmap, parts.scheme or "http", port)
    d = table.route(req, listener, random.Random(0), LoadState(), explain=True)
    rule = d.rule
    # The proxy's fault layer acts after the route is chosen: an abort answers instead of the destination.
    aborted = roll(rule.fault, random.Random(0)).abort_status if rule is not None else 0
    out: dict[str, Any] = {
        "input": f"live mesh at {live.url}" if live is not None else "files",
        "request": {"method": req.method, "url": url, "headers": hmap},
        "from": {"kind": listener.kind, "name": listener.name, "namespace": listener.source.namespace,
                 "workload": listener.source.workload, "labels": dict(listener.source.labels),
                 "gateways": list(listener.gateways)},
        "host": d.host,
        "virtualService": d.virtual_service.key if d.virtual_service else None,
        "skipped": [{"rule": i, "name": _rule_name(d, i), "why": why} for i, why in d.skipped],
        "rule": {"index": rule.index, "name": rule.name} if rule else None,
        "match": ({"index": d.match_index, "name": rule.matches[d.match_index].name}
                  if rule is not None and d.match_index is not None else ("catch-all" if rule else None)),
        "outcome": "FAULT_ABORT" if aborted else d.outcome.value,
        "status": aborted or d.status or 200,
        **({"grpcStatus": _grpc_name(rule.fault.abort_grpc)}
           if aborted and rule is not None and rule.fault is not None and rule.fault.abort_grpc is not None else {}),
        "flags": "FI" if aborted else d.flags or "-",
        "detail": d.detail,
        "notes": notes + list(snapshot.get("warnings") or ()),
    }
    if d.destination is not None:
        dest = d.destination
        out["destination"] = {"host": dest.host, "subset": dest.subset or None, "cluster": d.cluster_name,
                              "share": round(d.share, 6),
                              "endpoints": [ep.pod for ep in d.cluster.endpoints] if d.cluster else []}
    if d.sticky:  # the VirtualService's graylane.io/sticky annotation: kept, set, or weights
        out["sticky"] = d.sticky
    if rule is not None:
        out["timeout"] = f"{rule.timeout_s:g}s" if rule.timeout_s else "none (Istio default: disabled)"
        out["retries"] = rule.retries.describe()
        fault = {}
        if rule.fault is not None and rule.fault.delay_percent:
            fault["delay"] = f"{rule.fault.delay_s:g}s for {rule.fault.delay_percent:g}% (DI)"
        if rule.fault is not None and rule.fault.abort_percent and rule.fault.abort_grpc is not None:
            fault["abort"] = (f"gRPC status {_grpc_name(rule.fault.abort_grpc)} (trailers-only, HTTP 200) for "
                              f"{rule.fault.abort_percent:g}% (FI)")
        elif rule.fault is not None and rule.fault.abort_percent:
            fault["abort"] = (f"HTTP {rule.fault.abort_status} for {rule.fault.abort_percent:g}% "
                              "(FI, 'fault filter abort')")
        if fault:
            out["fault"] = fault
        if rule.mirrors:
            out["mirrors"] = [{"host": m.host, "subset": m.subset or None, "percent": m.percent} for m in rule.mirrors]
        if rule.rewrite:
            out["rewrite"] = rule.rewrite.as_istio()
        if rule.redirect:
            out["redirect"] = rule.redirect.as_istio()
        if rule.direct_response:
            out["directResponse"] = rule.direct_response.as_istio()
    elif d.outcome is Outcome.ROUTED:
        out["timeout"] = "none (Istio default: disabled)"
        out["retries"] = "2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes " \
                         "codes=[503] (Istio default)"
    if count > 0:
        fresh = LoadState()  # new round-robin state: the split from the first request on
        rng = random.Random(0)
        split: Counter[str] = Counter()
        for _ in range(count):
            di = table.route(req, listener, rng, fresh, pick_endpoint=False)
            aborted = roll(di.rule.fault, rng).abort_status if di.rule is not None else 0
            key = f"{aborted} FI" if aborted else di.cluster_name if di.outcome is Outcome.ROUTED else \
                f"{di.cluster_name + ': ' if di.cluster_name else ''}{di.status} {di.flags or di.outcome.value}"
            split[key] += 1
        out["split"] = dict(split.most_common())
    return out


def _rule_name(d: Any, index: int) -> str:
    vs = d.virtual_service
    return vs.rules[index].name if vs is not None and index < len(vs.rules) else ""


def _print_text(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    src = result["from"]
    who = f"gateway {', '.join(src['gateways'])}" if src["kind"] == "gateway" else \
        f"{src['namespace']}/{src['workload']} (sidecar)"
    con.print(f"[bold]{result['request']['method']} {result['request']['url']}[/] from {who}", highlight=False)
    if result.get("input", "files") != "files":
        con.print(f"explained against the {result['input']}", highlight=False)
    con.print(f"host            {result['host']}", highlight=False)
    con.print(f"VirtualService  {result['virtualService'] or '(none: default route to the whole Service)'}",
              highlight=False)
    for s in result["skipped"]:
        con.print(f"  http[{s['rule']}]{' ' + repr(s['name']) if s['name'] else ''} skipped: {s['why']}",
                  highlight=False)
    if result["rule"]:
        name = f" {result['rule']['name']!r}" if result["rule"]["name"] else ""
        match = result["match"]
        mtxt = match if isinstance(match, str) else f"match[{match['index']}]" + (
            f" {match['name']!r}" if match.get("name") else "")
        con.print(f"rule            http[{result['rule']['index']}]{name}, {mtxt}", highlight=False)
    outcome = result["outcome"]
    status = f"{result['status']} {result['flags']}" if result["flags"] != "-" else str(result["status"])
    con.print(f"outcome         {outcome} ({status}){' — ' + result['detail'] if result['detail'] else ''}",
              highlight=False)
    if "destination" in result:
        d = result["destination"]
        con.print(f"destination     {d['host']} subset {d['subset'] or '(all)'} share {d['share'] * 100:g}%"
                  f"  cluster {d['cluster']}  endpoints {len(d['endpoints'])}", highlight=False)
    for key in ("sticky", "timeout", "retries", "fault", "mirrors", "rewrite", "redirect", "directResponse"):
        if key in result:
            value = result[key]
            label = "sticky:" if key == "sticky" else key  # reads `sticky: cookie gl-canary=v2 kept`
            con.print(f"{label:<15} {value if isinstance(value, str) else json.dumps(value)}", highlight=False)
    for note in result["notes"]:
        con.print(f"[yellow]note[/]            {note}", highlight=False)
    if "split" in result:
        total = sum(result["split"].values())
        table = Table(title=f"split of {total} requests")
        table.add_column("destination")
        table.add_column("requests", justify="right")
        table.add_column("share", justify="right")
        for key, n in result["split"].items():
            table.add_row(key, str(n), f"{100 * n / total:.2f}%")
        con.print(table)


def register(app: typer.Typer) -> None:
    """Add `route` and `proxy` to the root app."""

    @app.command("route")
    def route_cmd(
        url: str = typer.Argument(..., help="e.g. http://reviews:9080/reviews/0 or http://bookinfo.example/productpage"),
        files: list[str] = typer.Option(None, "-f", "--filename",
                                        help="YAML files or folders (- for stdin); default: the live mesh"),
        source: str = typer.Option(None, "--from", help="source Deployment name (or ns/name)"),
        gateway: str = typer.Option(None, "--gateway", help="Gateway name (or ns/name) the request enters"),
        header: list[str] = typer.Option([], "-H", "--header", help="'name: value', repeatable"),
        method: str = typer.Option("GET", "-X", "--method"),
        count: int = typer.Option(0, "--count", help="also show the split N requests would get"),
        output: str = typer.Option("text", "-o", "--output", help="text or json"),
    ) -> None:
        """Explain what the mesh would do with one request (same code as the data plane): files, or the live mesh."""
        if output not in ("text", "json"):
            raise ValidationError(f"unknown output {output!r}", where="-o", hint="use text or json")
        live = None
        if files:
            from graylane.resources.load import load_paths

            resources = [d.body for d in load_paths(files)]
        else:
            from graylane.cli.client import ApiClient

            resources, live = fetch_live(ApiClient())
        result = explain(resources, url, source=source, gateway=gateway,
                         headers=[_parse_header(h) for h in header], method=method, count=count, live=live)
        if output == "json":
            typer.echo(json.dumps(result, indent=2))
        else:
            _print_text(result)

    @app.command("proxy")
    def proxy_cmd(
        admin_port: int = typer.Option(..., "--admin-port", help="admin HTTP port (PUT /config, /stats, ...)"),
        admin_host: str = typer.Option("127.0.0.1", "--admin-host"),
        state_dir: str = typer.Option(None, "--state-dir", help="keep the last ACKed snapshot here"),
        log_level: str = typer.Option("info", "--log-level"),
        concurrency: int = typer.Option(None, "--concurrency", help="worker processes sharing every listener "
                                        "(one socket per address); default: the CPUs this process may use"),
    ) -> None:
        """Run the data plane in the foreground (uvloop)."""
        import logging

        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        import uvloop

        from graylane.dataplane_contract import MAX_WORKERS
        from graylane.mesh.proxy.admin import run
        from graylane.mesh.proxy.workers import WorkerFailed, default_concurrency, run_primary

        workers = default_concurrency() if concurrency is None else concurrency
        if not 1 <= workers <= MAX_WORKERS:
            raise GraylaneError(f"--concurrency must be from 1 to {MAX_WORKERS}, got {workers}")
        runner = uvloop.run
        try:
            if workers == 1:
                runner(run(admin_host, admin_port, state_dir))
            else:
                runner(run_primary(admin_host, admin_port, state_dir, workers, log_level))
        except (OSError, WorkerFailed) as exc:
            raise GraylaneError(f"cannot start the data plane: {exc}", where=f"{admin_host}:{admin_port}") from None
