"""`graylane graph`, `graylane query`, `graylane traces`, `graylane trace ID`: the mesh topology, PromQL over the
local mesh, and traces in the terminal."""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from graylane.cli.client import ApiClient
from graylane.mesh.telemetry.traces import waterfall
from graylane.resources.durations import query_seconds as parse_duration

_HEALTH_STYLE = {"Healthy": "green", "Degraded": "yellow", "Failure": "red", "NA": "dim"}


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}ms" if v >= 10 else f"{v:.1f}ms")


def render_graph(graph: dict[str, Any]) -> Group:
    """A tree from each entry node (gateways, unknown callers, nodes nobody calls) along its edges."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    out_edges: dict[str, list[dict[str, Any]]] = {}
    has_in: set[str] = set()
    for e in graph["edges"]:
        out_edges.setdefault(e["source"], []).append(e)
        has_in.add(e["target"])
    title = Text.assemble(("mesh ", "bold"), (graph.get("namespace") or "all namespaces", "cyan"),
                          f"  {graph['graphType']}  window {graph['window']:.0f}s  ",
                          (graph.get("health", "NA"), _HEALTH_STYLE.get(graph.get("health", "NA"), "")))
    trees: list[Any] = [title]

    def label(node: dict[str, Any]) -> Text:
        style = _HEALTH_STYLE.get(node["health"], "")
        kind = {"gateway": "⛩ ", "service": "△ ", "unknown": "? "}.get(node["nodeType"], "● ")
        return Text.assemble((kind, style), (node["label"], "bold"), (f"  {node['namespace']}", "dim"))

    def grow(tree: Tree, node_id: str, seen: set[str]) -> None:
        for e in sorted(out_edges.get(node_id, []), key=lambda e: (e["service"], e["target"])):
            target = nodes.get(e["target"], {"label": e["target"], "health": "NA", "nodeType": "app",
                                             "namespace": ""})
            dist = f" {e['distribution']:.0f}%" if e["distribution"] < 99.95 else ""
            errs = f" 5xx {e['errorRate5xx']:.1f}%" if e["errorRate5xx"] else ""
            text = Text.assemble(("→ ", _HEALTH_STYLE.get(e["health"], "")), (target["label"], "bold"),
                                 (f" [{e['service']}]", "dim"), f"  {e['rps']:.2f} rps{dist}",
                                 f"  p95 {_fmt_ms(e['p95'])}", (errs, "red"))
            child = tree.add(text)
            if e["target"] not in seen:
                grow(child, e["target"], seen | {e["target"]})

    entries = [n for n in graph["nodes"] if n["id"] not in has_in and not n["idle"]]
    for node in entries:
        tree = Tree(label(node))
        grow(tree, node["id"], {node["id"]})
        trees.append(tree)
    idle = [n for n in graph["nodes"] if n["idle"]]
    if idle:
        trees.append(Text("idle: " + ", ".join(n["label"] for n in idle), style="dim"))
    if len(trees) == 1:
        trees.append(Text("no traffic in the window", style="dim"))
    return Group(*trees)


def _series_name(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def render_query(data: dict[str, Any]) -> Table | str:
    """A query's answer: one row per series (a range: its points' count, min, max and last value)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        return str(result[1]) if isinstance(result, list) and len(result) == 2 else ""
    if not result:
        return "no series"
    table = Table(box=None)
    table.add_column("SERIES", overflow="fold")
    if kind == "matrix":
        for col in ("POINTS", "MIN", "MAX", "LAST"):
            table.add_column(col, justify="right", no_wrap=True)
        for item in result:
            values = [float(v) for _, v in item["values"]]
            real = [v for v in values if v == v] or [float("nan")]
            table.add_row(_series_name(item["metric"]), str(len(values)), f"{min(real):.6g}", f"{max(real):.6g}",
                          f"{values[-1]:.6g}")
        return table
    table.add_column("VALUE", justify="right", no_wrap=True)
    for item in result:
        table.add_row(_series_name(item["metric"]), f"{float(item['value'][1]):.6g}")
    return table


def sampling_note(percent: float, options_file: str) -> list[str]:
    """What `graylane traces` says under its table: how many requests get traced, and how to change it.

    >>> sampling_note(1.0, "/s/mesh-options.json")[0]
    "sampling: 1% of requests start a trace (Istio's default is 1%); a caller's own sampled flag wins"
    """
    lines = [f"sampling: {percent:g}% of requests start a trace (Istio's default is 1%); "
             "a caller's own sampled flag wins"]
    if percent < 100:
        lines.append(f'to trace every request: set "trace_sampling": 100 in {options_file} (the mesh applies it '
                     "within a second), or send one request with the header x-b3-sampled: 1")
    else:
        lines.append(f'to trace fewer: lower "trace_sampling" (percent) in {options_file}')
    return lines


def register(app: typer.Typer) -> None:
    @app.command("graph")
    def graph_cmd(
        namespace: str = typer.Option(None, "-n", "--namespace", help="Only this namespace."),
        window: str = typer.Option("1m", "--window", help="Trailing window, e.g. 30s, 1m, 10m."),
        graph_type: str = typer.Option("versionedApp", "--type", help="versionedApp, app, workload or service."),
        hide_idle: bool = typer.Option(False, "--hide-idle", help="Hide deployed workloads without traffic."),
        watch: bool = typer.Option(False, "--watch", "-w", help="Redraw every 2 seconds."),
        output: str = typer.Option("tree", "-o", "--output", help="tree or json."),
        account: str = typer.Option("local", "--account", help="A Kubernetes account: its Prometheus feeds the graph."),
    ) -> None:
        """The mesh topology: who calls whom, requests/s, traffic split, p95 latency, health."""
        client = ApiClient()
        params = {"window": window, "type": graph_type, "idle": str(not hide_idle).lower(), "account": account}
        if namespace:
            params["namespace"] = namespace
        if output == "json":
            typer.echo(json.dumps(client.get("/api/v1/graph", params=params), indent=2))
            return
        console = Console()
        if not watch:
            console.print(render_graph(client.get("/api/v1/graph", params=params)))
            return
        with Live(console=console, refresh_per_second=2) as live:
            while True:
                live.update(render_graph(client.get("/api/v1/graph", params=params)))
                time.sleep(2)

    @app.command("query")
    def query_cmd(
        promql: str = typer.Argument(..., help="A PromQL expression over the local mesh's Istio series."),
        at: str = typer.Option(None, "--time", help="Evaluate at this time (unix seconds or RFC 3339); default now."),
        over: str = typer.Option(None, "--range", help="A range query over the trailing duration, e.g. 5m."),
        step: str = typer.Option("15s", "--step", help="Resolution of a range query."),
        output: str = typer.Option("table", "-o", "--output", help="table or json (Prometheus' `data`)."),
    ) -> None:
        """PromQL over the local mesh, as Prometheus answers it (the control plane's /prometheus query API)."""
        client = ApiClient()
        if over:
            end = time.time()
            data = client.post("/prometheus/api/v1/query_range", data={
                "query": promql, "start": f"{end - parse_duration(over, '--range'):.3f}", "end": f"{end:.3f}",
                "step": step})["data"]
        else:
            form = {"query": promql} | ({"time": at} if at else {})
            data = client.post("/prometheus/api/v1/query", data=form)["data"]
        if output == "json":
            typer.echo(json.dumps(data, indent=2))
            return
        Console(highlight=False).print(render_query(data))

    @app.command("traces")
    def traces_cmd(
        service: str = typer.Option(None, "--service", "-s", help="Traces touching this service."),
        min_duration: str = typer.Option(None, "--min-duration", help="e.g. 100ms"),
        limit: int = typer.Option(20, "--limit"),
        tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE a span must carry, e.g. "
                                      "guid:x-request-id=ID or http.status_code=503 (repeatable)."),
        lookback: str = typer.Option(None, "--lookback", help="Only traces started within, e.g. 15m."),
        output: str = typer.Option("table", "-o", "--output", help="table or json."),
    ) -> None:
        """Recent traces, newest first, and the share of requests that get traced (sampling)."""
        params: dict[str, Any] = {"limit": limit}
        if tag:
            params["tag"] = tag
        if lookback:
            params["lookback"] = lookback
        if service:
            params["service"] = service
        if min_duration:
            params["minDuration"] = min_duration
        data = ApiClient().get("/api/v1/traces", params=params)["traces"]
        if output == "json":
            typer.echo(json.dumps(data, indent=2))
            return
        table = Table(box=None)
        table.add_column("TRACE ID", no_wrap=True, min_width=32)  # whole: it is what `graylane trace` takes
        table.add_column("ROOT", overflow="fold")
        for col in ("SPANS", "TIME", "ERR"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("SERVICES", overflow="fold", min_width=14)
        for t in data:
            services = ", ".join(s.split(".")[0] for s in t["services"])
            table.add_row(t["traceId"], t["rootService"].split(".")[0], str(t["spanCount"]),
                          _fmt_ms(t["durationUs"] / 1000), str(t["errors"]), services)
        console = Console(highlight=False)
        if data:
            console.print(table)
        else:
            console.print("no traces found")
        # The control plane pushes the options of this same state folder (graylane.mesh.control.read_options).
        from graylane.mesh.control import MESH_OPTIONS_FILE, read_options
        from graylane.settings import state_dir

        state = state_dir()
        for line in sampling_note(read_options(state).trace_sampling, str(state / MESH_OPTIONS_FILE)):
            console.print(line, style="dim", soft_wrap=True)

    @app.command("trace")
    def trace_cmd(trace_id: str, output: str = typer.Option("waterfall", "-o", "--output",
                                                            help="waterfall or json.")) -> None:
        """One trace as a waterfall: each span's service, operation and timing."""
        data = ApiClient().get(f"/api/v1/traces/{trace_id}")
        if output == "json":
            typer.echo(json.dumps(data, indent=2))
            return
        Console().print(render_waterfall(data["spans"]))


def render_waterfall(spans: list[dict[str, Any]], width: int = 40) -> Table:
    rows = waterfall(spans)
    start = min(s["startUs"] for s in spans)
    total = max(s["startUs"] + s["durationUs"] for s in spans) - start or 1
    table = Table("SPAN", "KIND", "CODE", "DURATION", "TIMELINE", box=None)
    for depth, s in rows:
        offset = int(width * (s["startUs"] - start) / total)
        length = max(1, int(width * s["durationUs"] / total))
        bar = " " * offset + "█" * min(length, width - offset)
        code = str(s["tags"].get("http.status_code", ""))
        name = s["name"].replace(".svc.cluster.local", "")
        table.add_row("  " * depth + f"{s['service'].split('.')[0]} {name}", s["kind"], code,
                      _fmt_ms(s["durationUs"] / 1000), Text(bar, style="red" if code[:1] == "5" else "cyan"))
    return table
