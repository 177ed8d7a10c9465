"""`graylane up|down|status|logs|rollout|pods`: the local control plane, data plane and workloads."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from graylane.cli.apply_wait import rollout_failure, rollout_message
from graylane.cli.client import ApiClient
from graylane.cli.resources import get_pods
from graylane.errors import GraylaneError, NotFound, ValidationError
from graylane.mesh.control import read_options, save_options
from graylane.mesh.state import MeshOptions
from graylane.resources.durations import format_age
from graylane.runtime import daemons, supervisor
from graylane.runtime.process import RecordStore, init_log_path, log_path, stop_recorded
from graylane.settings import server_address, state_dir
from graylane.targets.local_jobs import stop_recorded_jobs

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_ADMIN_PORT = 15000  # Envoy's admin port
# `graylane logs PART`: the parts' log files in <state>/logs (aliases as users type them).
_PART_LOGS = {"data-plane": "dataplane.log", "control-plane": "server.log", "supervisor": "supervisor.log"}
_PART_ALIASES = {"dataplane": "data-plane", "proxy": "data-plane", "controlplane": "control-plane",
                 "server": "control-plane", **{name: name for name in _PART_LOGS}}


def _parse_port_map(values: list[str]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for raw in values:
        m = re.fullmatch(r"\s*(\d+)\s*(?:=|:)\s*(\d+)\s*", raw)
        if not m:
            raise ValidationError(f"--gateway-port {raw!r} is not PORT=HOSTPORT", hint="e.g. --gateway-port 80=8080")
        mapping[int(m.group(1))] = int(m.group(2))
    return mapping


def _wait(progress: Progress, task: Any, check: Any, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            progress.update(task, description=f"[green]✓[/] {what}", completed=1)
            return
        time.sleep(0.1)
    raise GraylaneError(f"{what} did not become healthy within {timeout_s:g}s", hint=f"see {log}")


def _ensure_supervisor(state: Path, progress: Progress, want_cp: bool, host: str, port: int,
                       admin_port: int | None, timeout: float) -> subprocess.Popen[bytes] | None:
    """The running supervisor (nudged to skip any backoff), or a new one; returns the process it started."""
    task = progress.add_task("supervisor", total=1)
    sup, parts = supervisor.read_status(state)
    if sup is not None and sup.running:
        if (supervisor.CONTROL_PLANE in parts) == want_cp:
            os.kill(sup.pid, signal.SIGHUP)  # start a part waiting out its backoff now
            progress.update(task, description=f"[green]✓[/] supervisor already running (pid {sup.pid})",
                            completed=1)
            return None
        daemons.stop_daemon(state, sup)  # it leaves the parts running; the new one adopts them
    dp = daemons.data_plane(state)
    if dp is not None and dp.running:
        wanted = int(dp.info.get("admin_port") or admin_port or DEFAULT_ADMIN_PORT)
    else:
        wanted = admin_port or DEFAULT_ADMIN_PORT
        if not daemons.port_is_free(wanted):
            if admin_port:
                raise GraylaneError(f"admin port {admin_port} is in use", hint="pick another with --admin-port")
            wanted = daemons.free_port()
    cp = daemons.control_plane(state)
    if want_cp and cp is not None and cp.running:
        host, port = str(cp.info.get("host") or host), int(cp.info.get("port") or port)
    elif want_cp and not daemons.port_is_free(port, host):
        raise GraylaneError(f"port {port} on {host} is in use", hint="pick another with --port")
    proc = daemons.start_supervisor(state, wanted, host if want_cp else None, port if want_cp else None)
    progress.update(task, description=f"starting supervisor (pid {proc.pid})")

    def recorded() -> bool:
        if proc.poll() is not None:
            raise GraylaneError(f"the supervisor exited with code {proc.returncode}",
                                hint=f"see {state / 'logs' / 'supervisor.log'}")
        rec, _ = supervisor.read_status(state)
        return rec is not None and rec.pid == proc.pid

    _wait(progress, task, recorded, timeout, f"supervisor (pid {proc.pid})", state / "logs" / "supervisor.log")
    return proc


def _part_ready(state: Path, name: str, started: subprocess.Popen[bytes] | None, since: float,
                healthy: Any) -> Any:
    """A check for `_wait`: the part's record runs and `healthy(record)`; fails at once when the part
    exited after `since` under a supervisor this `up` started (the supervisor would retry it forever)."""
    title = name.replace("-", " ")
    log_file = supervisor.previous_log(state / "logs" / _PART_LOGS[name])

    def check() -> bool:
        if started is not None:
            _, parts = supervisor.read_status(state)
            part = parts.get(name)
            if part is not None and part.last_exit and part.last_exit_at >= since:
                raise GraylaneError(f"the {title} {part.last_exit}", hint=f"see {log_file}")
        rec = daemons.data_plane(state) if name == supervisor.DATA_PLANE else daemons.control_plane(state)
        return rec is not None and rec.running and bool(healthy(rec))

    return check


def up(foreground: bool, host: str | None, port: int | None, admin_port: int | None, gateway_ports: list[str],
       gateway_bind: str | None, timeout: float, proxy_workers: int | None = None) -> None:
    state = state_dir()
    if proxy_workers is not None:
        try:
            daemons.save_data_plane_workers(state, proxy_workers)
        except ValueError as exc:
            raise GraylaneError(str(exc)) from None
        dp = daemons.data_plane(state)
        if dp is not None and dp.running and int(dp.info.get("workers") or 1) != proxy_workers:
            err.print(f"[yellow]![/] the running data plane has {int(dp.info.get('workers') or 1)} worker(s); "
                      f"{proxy_workers} from its next start (graylane down, then graylane up)")
    addr = server_address()
    host, port = host or addr.host, port or addr.port
    options = read_options(state)
    if gateway_ports or gateway_bind:
        mapping = {**options.gateway_port_map, **_parse_port_map(gateway_ports)}
        options = MeshOptions(**{**options.__dict__, "gateway_port_map": mapping,
                                 "gateway_bind": gateway_bind or options.gateway_bind})
    save_options(state, options)

    since = time.time()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=False) as progress:
        started = _ensure_supervisor(state, progress, not foreground, host, port, admin_port, timeout)
        try:
            url = _wait_parts(state, progress, started, since, foreground, timeout)
        except GraylaneError:
            if started is not None:
                _abandon(state, started, since)
            raise
        if foreground:
            progress.stop()
            _serve_foreground(state, host, port)
            return
        task = progress.add_task("mesh config pushed", total=1)
        client = ApiClient(url, timeout=5)

        def pushed() -> bool:
            try:
                st = client.get("/api/v1/mesh/status")
            except GraylaneError:
                return False
            return bool(st.get("connected") and st.get("ackedVersion"))

        try:
            _wait(progress, task, pushed, min(timeout, 15), "mesh config pushed and ACKed",
                  state / "logs" / "server.log")
        except GraylaneError as exc:
            progress.update(task, description=f"[yellow]![/] {escape(exc.message)}")
    _print_status(state)


def _abandon(state: Path, started: subprocess.Popen[bytes], since: float) -> None:
    """Leave no crash loop behind a failed `up`: stop the supervisor it started, then any part that exited
    during this `up` and was started again meanwhile (parts that came up healthy keep running, as before)."""
    _, parts = supervisor.read_status(state)  # before it stops: a stopped supervisor removes its record
    started.terminate()
    started.wait(10)
    for name, rec in ((supervisor.DATA_PLANE, daemons.data_plane(state)),
                      (supervisor.CONTROL_PLANE, daemons.control_plane(state))):
        part = parts.get(name)
        if rec is not None and part is not None and part.last_exit_at >= since:
            daemons.stop_daemon(state, rec)


def _wait_parts(state: Path, progress: Progress, started: subprocess.Popen[bytes] | None, since: float,
                foreground: bool, timeout: float) -> str:
    """Wait for the data plane (and the control plane) the supervisor runs; the control plane's URL."""
    task = progress.add_task("data plane", total=1)
    dp_check = _part_ready(state, supervisor.DATA_PLANE, started, since,
                           lambda rec: daemons.probe_http(f"{rec.url}/ready") is not None)
    _wait(progress, task, dp_check, timeout, "data plane", state / "logs" / "dataplane.log")
    dp = daemons.data_plane(state)
    if dp is not None:
        progress.update(task, description=f"[green]✓[/] data plane (pid {dp.pid}, admin {dp.url})")
    if foreground:
        return ""
    task = progress.add_task("control plane", total=1)
    cp_check = _part_ready(state, supervisor.CONTROL_PLANE, started, since,
                           lambda rec: daemons.probe_http(f"{rec.url}/healthz") == 200)
    _wait(progress, task, cp_check, timeout, "control plane", state / "logs" / "server.log")
    cp = daemons.control_plane(state)
    assert cp is not None
    progress.update(task, description=f"[green]✓[/] control plane (pid {cp.pid}, {cp.url})")
    return cp.url


def _serve_foreground(state: Path, host: str, port: int) -> None:
    from graylane.server import draining
    from graylane.server.app import create_app

    os.environ["GRAYLANE_SERVER"] = f"{host}:{port}"
    (state / daemons.SERVER_FILE).write_text(json.dumps({
        "pid": os.getpid(), "ticks": _own_ticks(), "started": time.time(), "url": f"http://{host}:{port}",
        "host": host, "port": port, "foreground": True}))
    err.print(f"control plane in the foreground on http://{host}:{port} (Ctrl-C stops it; workloads keep running)")
    try:
        draining.run(create_app(), host=host, port=port, log_level="info")
    finally:
        (state / daemons.SERVER_FILE).unlink(missing_ok=True)


def _own_ticks() -> int:
    from graylane.runtime.process import start_ticks

    return start_ticks(os.getpid()) or 0


def down(keep_workloads: bool) -> None:
    state = state_dir()
    stopped: list[str] = []
    with err.status("stopping..."):
        sup, _ = supervisor.read_status(state)  # first, so nothing is restarted while stopping
        if sup is not None and daemons.stop_daemon(state, sup):
            stopped.append(f"supervisor (pid {sup.pid})")
        cp = daemons.control_plane(state)
        if cp is not None and cp.running and not keep_workloads:
            try:
                resp = ApiClient(cp.url, timeout=60).post("/api/v1/runtime/shutdown")
                stopped += [f"pod {p}" for p in resp.get("stopped", [])]
            except GraylaneError as exc:
                err.print(f"[yellow]warning:[/] could not ask the control plane to stop workloads: {exc}")
        if cp is not None and daemons.stop_daemon(state, cp):
            stopped.append(f"control plane (pid {cp.pid})")
        if not keep_workloads:
            stopped += [f"pod {k}" for k in stop_recorded(state)]
            stopped += [f"job {k}" for k in stop_recorded_jobs(state)]
        dp = daemons.data_plane(state)
        if dp is not None and daemons.stop_daemon(state, dp):
            stopped.append(f"data plane (pid {dp.pid})")
    if not stopped:
        out.print("nothing was running")
    for line in stopped:
        out.print(f"stopped {escape(line)}")


def _restarts_cell(part: supervisor.PartStatus | None) -> str:
    """kubectl's RESTARTS column: `2 (14s ago)`."""
    if part is None or not part.restarts:
        return "0"
    return f"{part.restarts} ({format_age(time.time() - part.last_restart_at)} ago)"


def _print_status(state: Path) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("COMPONENT", "PID", "STATUS", "RESTARTS", "UPTIME", "ADDRESS"):
        table.add_column(col)
    sup, history = supervisor.read_status(state)
    cp = daemons.control_plane(state)
    dp = daemons.data_plane(state)
    mesh: dict[str, Any] = {}
    gateways: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] | None = None
    if sup is not None and sup.running:
        table.add_row("supervisor", str(sup.pid), "running", "-", format_age(sup.uptime_s), "-")
    else:
        parts_run = any(d is not None and d.running for d in (cp, dp))
        table.add_row("supervisor", "-", "[red]stopped[/]" + (" (nothing restarts the parts; graylane up)"
                                                             if parts_run else ""), "-", "-", "-")
    cp_restarts = _restarts_cell(history.get(supervisor.CONTROL_PLANE))
    if cp is not None and cp.running:
        client = ApiClient(cp.url, timeout=3)
        healthy = daemons.probe_http(f"{cp.url}/healthz") == 200
        try:
            mesh = client.get("/api/v1/mesh/status")
            gateways = client.get("/api/v1/mesh/gateways").get("items", [])
            pods = client.get("/api/v1/pods").get("items", [])
        except GraylaneError:
            pass
        table.add_row("control plane", str(cp.pid), "running" if healthy else "starting", cp_restarts,
                      format_age(cp.uptime_s), cp.url)
    else:
        table.add_row("control plane", "-", "[red]stopped[/]", cp_restarts, "-", "-")
    dp_restarts = _restarts_cell(history.get(supervisor.DATA_PLANE))
    if dp is not None and dp.running:
        ready = daemons.probe_http(f"{dp.url}/ready")
        listeners = _listeners(dp.url)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(listeners.items()))
        detail = f" ({summary} listeners)" if summary else ""
        table.add_row("data plane", str(dp.pid), ("running" if ready is not None else "not answering") + detail,
                      dp_restarts, format_age(dp.uptime_s), f"admin {dp.url}")
    else:
        table.add_row("data plane", "-", "[red]stopped[/]", dp_restarts, "-", "-")
    if pods is None:
        records = RecordStore(state).load_all()
        table.add_row("workloads", "-", f"{len(records)} recorded replicas", "-", "-", "-")
    else:
        ready_count = sum(1 for p in pods if p.get("isReady"))
        table.add_row("workloads", "-", f"{ready_count}/{len(pods)} replicas ready", "-", "-", "-")
    for gw in gateways:
        table.add_row(f"gateway {gw['namespace']}/{gw['name']}", "-", f"listener :{gw['port']}", "-", "-", gw["url"])
    out.print(table)
    for name, part in history.items():
        if part.last_exit:
            out.print(_exit_line(name, part))
    if mesh.get("error"):
        err.print(f"[yellow]mesh:[/] {escape(str(mesh['error']))}")
    if cp is not None and cp.running:
        _print_console_link(cp.url)


def _exit_line(name: str, part: supervisor.PartStatus) -> str:
    """`data plane: last exit killed by signal 9 (SIGKILL) at 01:52:03 UTC; restarted 01:52:03 UTC (3 restarts)`."""
    def clock(t: float) -> str:
        return time.strftime("%H:%M:%S UTC", time.gmtime(t))

    line = f"{name.replace('-', ' ')}: last exit {escape(part.last_exit)} at {clock(part.last_exit_at)}"
    if part.next_start_at > time.time():
        line += f"; restarting in {part.next_start_at - time.time():.0f}s (backoff)"
    elif part.last_restart_at:
        line += f"; restarted {clock(part.last_restart_at)}"
    return line + f" ({part.restarts} restart{'s' if part.restarts != 1 else ''}; "\
        f"graylane logs {name} --previous)"


def _print_console_link(url: str) -> None:
    """The console signs in with a one-time link (as Jupyter's `?token=`), asked for with the CLI token."""
    try:
        link = ApiClient(url, timeout=3).post("/api/v1/auth/login-links")
    except GraylaneError as exc:
        err.print(f"[yellow]console:[/] no sign-in link: {escape(exc.message)}")
        return
    out.print(f"console: {escape(link['url'])}  (one-time sign-in link, valid {link['expiresInSeconds']}s; "
              "`graylane status` prints a new one)")


def _listeners(admin_url: str) -> dict[str, int]:
    import httpx

    try:
        data = httpx.get(f"{admin_url}/listeners", timeout=2, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return {}
    counts: dict[str, int] = {}
    for lst in data.get("listeners") or []:
        counts[str(lst.get("kind", "other"))] = counts.get(str(lst.get("kind", "other")), 0) + 1
    return counts


def _split_target(target: str) -> tuple[str, str]:
    if "/" in target:
        kind, name = target.split("/", 1)
        kind = kind.lower()
        if kind in ("deploy", "deployment", "deployments", "deployment.apps"):
            return "deploy", name
        if kind in ("pod", "pods", "po"):
            return "pod", name
        raise ValidationError(f"unsupported target {target!r}", hint="use deploy/NAME or pod/NAME")
    return "pod", target


def _pods_of(state: Path, namespace: str, kind: str, name: str) -> list[str]:
    records = [r for r in RecordStore(state).load_all() if r.namespace == namespace]
    if kind == "pod":
        return [name]
    live = sorted((r for r in records if r.deployment == name), key=lambda r: r.created)
    if live:
        return [r.name for r in live]
    folder = state / "logs" / "pods" / namespace
    found = sorted(p.name.removesuffix(".log") for p in folder.glob(f"{name}-*.log")
                   if not p.name.endswith((".previous.log", ".init.log")))
    if not found:
        raise NotFound(f"no pods found for deployment {namespace}/{name}", hint="graylane pods")
    return found


def _container_log(state: Path, namespace: str, pod: str, container: str, previous: bool) -> Path:
    """`-c NAME`: an init container's log (`<pod>.<NAME>.init.log`), or the main container's."""
    init = init_log_path(state, namespace, pod, container)
    if init.exists():
        if previous:
            raise ValidationError("--previous is for the main container: an init container's log holds every run "
                                  "of it, one after another")
        return init
    rec = next((r for r in RecordStore(state).load_all() if r.namespace == namespace and r.name == pod), None)
    if rec is not None and rec.container and rec.container != container:
        raise NotFound(f"container {container} is not valid for pod {namespace}/{pod}",
                       hint=f"its main container is {rec.container}; init containers have a log once they ran")
    return log_path(state, namespace, pod, previous=previous)


def logs(target: str, namespace: str, follow: bool, previous: bool, tail: int | None, all_pods: bool,
         container: str | None = None) -> None:
    state = state_dir()
    part = _PART_ALIASES.get(target)
    if part is not None:  # the control plane, data plane or supervisor (before a pod of that name, as no pod has one)
        path = state / "logs" / _PART_LOGS[part]
        files = [(part, supervisor.previous_log(path) if previous else path)]
    else:
        kind, name = _split_target(target)
        pods = _pods_of(state, namespace, kind, name)
        if not all_pods:
            pods = pods[:1]
        files = [(p, _container_log(state, namespace, p, container, previous) if container
                  else log_path(state, namespace, p, previous=previous)) for p in pods]
    prefix = len(files) > 1
    for pod, path in files:
        if not path.exists():
            what = "previous terminated container" if previous else "log"
            if part is not None:
                raise NotFound(f"the {part.replace('-', ' ')} has no {'previous run' if previous else 'log'}",
                               hint="a previous log is kept when the supervisor restarts a part (graylane status)")
            raise NotFound(f"pod {namespace}/{pod} has no {what}", hint="graylane pods")
        lines = path.read_text(errors="replace").splitlines()
        if tail is not None:
            lines = lines[-tail:] if tail else []
        for line in lines:
            out.print(f"[{pod}] {escape(line)}" if prefix else escape(line), markup=prefix)
    if follow and not previous:
        _follow(files, prefix)


def _follow(files: list[tuple[str, Path]], prefix: bool) -> None:
    positions = {p: (path.stat().st_size if path.exists() else 0) for p, path in files}
    while True:
        for pod, path in files:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < positions[pod]:  # rotated (copy-truncate) or restarted
                positions[pod] = 0
            if size > positions[pod]:
                with open(path, "rb") as fh:
                    fh.seek(positions[pod])
                    chunk = fh.read()
                positions[pod] += len(chunk)
                for line in chunk.decode(errors="replace").splitlines():
                    out.print(f"[{pod}] {escape(line)}" if prefix else escape(line), markup=prefix)
        time.sleep(0.2)


def rollout_status(target: str, namespace: str, timeout: float) -> None:
    kind, name = _split_target(target)
    if kind != "deploy":
        raise ValidationError(f"rollout status needs deploy/NAME, not {target!r}")
    client = ApiClient()
    deadline = time.monotonic() + timeout
    last = ""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task(f'Waiting for deployment "{name}" rollout to finish', total=None)
        while True:
            body = client.get(f"/api/v1/namespaces/{namespace}/deployments/{name}/status")
            status, want = body["status"], body.get("spec_replicas")
            failure = rollout_failure(status)  # fail fast with the replica's reason, as `apply --wait` does
            if failure is not None:
                raise GraylaneError(f"deployment {namespace}/{name}: {failure}",
                                    hint=f"graylane pods; graylane logs deploy/{name}")
            if status.get("complete"):
                break
            msg = rollout_message(name, status, want)
            if msg != last:
                progress.update(task, description=msg, total=max(want or status.get("replicas", 0), 1),
                                completed=status.get("updatedReplicas", 0))
                last = msg
            if time.monotonic() > deadline:
                raise GraylaneError(f'deployment "{name}" not rolled out after {timeout:g}s: {msg}',
                                    hint=f"graylane pods; graylane logs deploy/{name}")
            time.sleep(0.3)
    out.print(f'deployment "{name}" successfully rolled out')


def pods(namespace: str | None, all_namespaces: bool, output: str | None, selector: str | None) -> None:
    """`graylane pods`: the same lister as `graylane get pods`."""
    get_pods(ApiClient(), [], None if all_namespaces else (namespace or "default"), output, selector)


def register(app: typer.Typer) -> None:
    """Add up, down, status, logs, rollout and pods to the root app."""

    @app.command("up")
    def up_cmd(
        foreground: bool = typer.Option(False, "--foreground", help="Run the control plane in this terminal."),
        host: str | None = typer.Option(None, "--host", help="Control plane bind address (default 127.0.0.1)."),
        port: int | None = typer.Option(None, "--port", help="Control plane port (default 7380)."),
        admin_port: int | None = typer.Option(None, "--admin-port", help="Data plane admin port (default 15000)."),
        gateway_port: list[str] = typer.Option([], "--gateway-port",
                                               help="Gateway port mapping PORT=HOSTPORT, e.g. 80=8080 (repeatable)."),
        gateway_bind: str | None = typer.Option(None, "--gateway-bind", help="Address gateway listeners bind."),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for each part to be healthy."),
        proxy_workers: int | None = typer.Option(
            None, "--proxy-workers", help="Data-plane worker processes, sharing every listener (default 1; kept for "
            "later starts). More than 1 uses more cores; weighted splits are then exact per worker."),
    ) -> None:
        """Start the supervisor, which runs the control plane and the data plane in the background and restarts
        them when they die (running parts and workloads are adopted)."""
        up(foreground, host, port, admin_port, gateway_port, gateway_bind, timeout, proxy_workers)

    @app.command("down")
    def down_cmd(
        keep_workloads: bool = typer.Option(False, "--keep-workloads", help="Leave replica and job processes running."),
    ) -> None:
        """Stop the supervisor, then the control plane, the data plane and every workload replica."""
        down(keep_workloads)

    @app.command("status")
    def status_cmd() -> None:
        """Show the supervisor, control plane, data plane (with restarts), workloads and gateway URLs."""
        _print_status(state_dir())

    @app.command("logs")
    def logs_cmd(
        target: str = typer.Argument(..., help="deploy/NAME, a pod name, or data-plane | control-plane | supervisor."),
        namespace: str = typer.Option("default", "-n", "--namespace"),
        follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
        previous: bool = typer.Option(False, "-p", "--previous",
                                      help="The previous (crashed) container's or part's log."),
        tail: int | None = typer.Option(None, "--tail", help="Only the last N lines."),
        all_pods: bool = typer.Option(False, "--all-pods", help="Every pod of the deployment, prefixed."),
        container: str | None = typer.Option(None, "-c", "--container",
                                             help="An init container's log (default: the main container's)."),
    ) -> None:
        """Print a workload's or a part's logs (kept in the state folder, rotated)."""
        logs(target, namespace, follow, previous, tail, all_pods, container)

    rollout = typer.Typer(help="Manage rollouts.", no_args_is_help=True)

    @rollout.command("status")
    def rollout_status_cmd(
        target: str = typer.Argument(..., help="deploy/NAME"),
        namespace: str = typer.Option("default", "-n", "--namespace"),
        timeout: float = typer.Option(300.0, "--timeout"),
    ) -> None:
        """Wait until a Deployment is rolled out, showing progress."""
        rollout_status(target, namespace, timeout)

    app.add_typer(rollout, name="rollout")

    @app.command("pods")
    def pods_cmd(
        namespace: str | None = typer.Option(None, "-n", "--namespace"),
        all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        output: str | None = typer.Option(None, "-o", "--output", help="wide | json"),
        selector: str | None = typer.Option(None, "-l", "--selector"),
    ) -> None:
        """List workload replicas (like `kubectl get pods`)."""
        pods(namespace, all_namespaces, output, selector)
