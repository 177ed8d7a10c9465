"""`graylane release status|promote|abort|retry SERVICE`: kubectl-argo-rollouts habits over Graylane's release stages.

A service's release is the newest execution with a `canaryRollout`, `blueGreen` or `trafficShift` stage naming it
(`service`, or a member of `services`). `status` shows the phase (Progressing, Paused, Promoted, Healthy,
Aborted), the step, the weights, the analysis, the canary's desired/ready replicas (setCanaryScale), the stable's
(dynamicStableScale) and the service's Deployments (read where the release runs: the local mesh, or a Kubernetes
account's cluster); `--watch` follows it and exits 0 when Healthy, 1 when it aborted or failed, 3 when `--timeout`
runs out: a CI gate.
`promote [--full]` and `abort` answer the rollout's judgment (as `graylane judge ... --input Promote` would);
`retry` restarts an aborted rollout stage from its first step.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from graylane.cli import exit_codes
from graylane.cli.client import ApiClient
from graylane.errors import Conflict, GraylaneError, NotFound
from graylane.settings import current_user

RELEASE_TYPES = ("canaryRollout", "blueGreen", "trafficShift")
DONE_OK, DONE_BAD = {"Healthy"}, {"Aborted", "Degraded"}
SEARCHED = 30  # newest executions looked at

out = Console(highlight=False, soft_wrap=True)
release_app = typer.Typer(help="Follow and steer a service's release (canaryRollout, blueGreen, trafficShift).",
                          no_args_is_help=True)


def _names(stage: dict[str, Any]) -> set[str]:
    ctx = stage.get("context") or {}
    names = {str(ctx["service"])} if ctx.get("service") else set()
    return names | {str(m.get("service")) for m in ctx.get("services") or [] if isinstance(m, dict)}


def find_release(client: ApiClient, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(execution, stage) of the service's newest release stage; a running one wins within an execution."""
    for header in client.get("/api/v1/executions", params={"limit": SEARCHED}):
        exe = client.get(f"/api/v1/executions/{header['id']}")
        stages = [s for s in exe.get("stages") or [] if s.get("type") in RELEASE_TYPES and service in _names(s)
                  and s.get("status") != "NOT_STARTED"]
        if stages:
            running = [s for s in stages if s["status"] in ("RUNNING", "PAUSED")]
            return exe, (running or sorted(stages, key=lambda s: s.get("startTime") or 0))[-1]
    raise NotFound(f"no release of {service!r} in the last {SEARCHED} executions",
                   hint="a release is a pipeline with a canaryRollout, blueGreen or trafficShift stage naming it")


def _phase(stage: dict[str, Any]) -> str:
    st = (stage.get("context") or {}).get("rollout") or {}
    if st.get("phase"):
        return str(st["phase"])
    return {"SUCCEEDED": "Healthy", "RUNNING": "Progressing", "PAUSED": "Paused", "TERMINAL": "Degraded",
            "CANCELED": "Degraded", "STOPPED": "Degraded"}.get(stage["status"], str(stage["status"]))


def _deployments(client: ApiClient, account: str, namespace: str) -> list[dict[str, Any]]:
    """The namespace's Deployments where the release runs, each with its `status`: a Kubernetes account's cluster
    (its readyReplicas), or the local store with the local runtime's status (no runtime: no status)."""
    if account != "local":
        items = client.get(f"/api/v1/accounts/{account}/live", params={"namespace": namespace})["items"]
        return [b for b in items if b.get("kind") == "Deployment"]
    try:
        items = client.get("/api/v1/resources/Deployment", params={"namespace": namespace})["items"]
    except NotFound:
        return []
    try:
        live = {d["name"]: d.get("status") or {}
                for d in client.get("/api/v1/deployments/status", params={"namespace": namespace})["items"]}
    except GraylaneError:  # the control plane runs no local runtime
        live = {}
    return [{**b, "status": b.get("status") or live.get(b["metadata"]["name"]) or {}} for b in items]


def _pods(deployments: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    out_: list[dict[str, Any]] = []
    for body in deployments:
        labels = ((body.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        if labels.get("app") != service:
            continue
        status = body.get("status") or {}
        out_.append({"name": body["metadata"]["name"], "version": labels.get("version"),
                     "replicas": (body.get("spec") or {}).get("replicas", 1),
                     "ready": status.get("readyReplicas", 0 if status else None)})
    return out_


def _canary(st: dict[str, Any], deployments: list[dict[str, Any]], namespace: str) -> dict[str, Any] | None:
    """setCanaryScale's canary Deployments: the replicas the stage asked for and how many are ready now."""
    scale = st.get("canaryScale")
    if not scale:
        return None
    live = {f"{(b['metadata'].get('namespace') or namespace)}/{b['metadata']['name']}": b for b in deployments}
    out_ = []
    for key, want in (scale.get("deployments") or {}).items():
        body = live.get(key) or {}
        status = body.get("status") or {}
        out_.append({"deployment": key, "desired": want.get("desired"),
                     "replicas": (body.get("spec") or {}).get("replicas"),
                     "ready": status.get("readyReplicas", 0 if status else None)})
    return {"mode": scale.get("mode"), "deployments": out_}


def _stable(st: dict[str, Any], deployments: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]] | None:
    """dynamicStableScale's stable Deployments: the replicas the stage asked for, how many they had before the
    rollout, and how many are ready now."""
    scale = st.get("stableScale")
    if not scale:
        return None
    live = {f"{(b['metadata'].get('namespace') or namespace)}/{b['metadata']['name']}": b for b in deployments}
    out_ = []
    for key, want in scale.items():
        body = live.get(key) or {}
        status = body.get("status") or {}
        out_.append({"deployment": key, "desired": want.get("desired"), "before": want.get("replicas"),
                     "replicas": (body.get("spec") or {}).get("replicas"),
                     "ready": status.get("readyReplicas", 0 if status else None)})
    return out_


def status_of(client: ApiClient, service: str) -> dict[str, Any]:
    """What `release status` shows, as JSON (`-o json` prints this)."""
    exe, stage = find_release(client, service)
    ctx = stage.get("context") or {}
    st = ctx.get("rollout") or {}
    weights = st.get("weights") or (stage.get("outputs") or {}).get("weights") or {}
    if not weights and ctx.get("weights"):
        weights = {service: ctx["weights"]}
    step = st.get("step") or {}
    error = ((ctx.get("exception") or {}).get("details") or {}).get("error")
    analysis = st.get("analysis") or {}
    background = st.get("backgroundAnalysis") or {}
    namespace = str(ctx.get("namespace") or "default")
    account = str(ctx.get("account") or "local")
    deployments = _deployments(client, account, namespace)
    return {
        "service": service, "execution": exe["id"], "pipeline": f"{exe['application']}/{exe['name']}",
        "executionStatus": exe["status"], "stage": {"id": stage["id"], "name": stage["name"], "type": stage["type"],
                                                    "status": stage["status"]},
        "phase": _phase(stage), "message": st.get("message") or error or "",
        "step": {"index": st.get("stepIndex"), "total": st.get("totalSteps"), "kind": step.get("kind"),
                 "config": step.get("config")},
        "weights": weights, "canaryWeight": st.get("canaryWeight"),
        "analysis": {"type": analysis.get("type"), "outputs": analysis.get("outputs")} if analysis else None,
        "backgroundAnalysis": {"type": background.get("type"), "phase": background.get("phase"),
                               "message": (background.get("outputs") or {}).get("analysisMessage")}
        if background else None,
        "lastAction": st.get("lastAction"),
        "canary": _canary(st, deployments, namespace),
        "stable": _stable(st, deployments, namespace),
        "pods": _pods(deployments, service),
    }


def render(s: dict[str, Any]) -> None:
    colour = {"Healthy": "green", "Paused": "yellow", "Aborted": "red", "Degraded": "red"}.get(s["phase"], "cyan")
    out.print(f"Name:      {escape(s['service'])}")
    out.print(f"Status:    [{colour}]{escape(s['phase'])}[/]" + (f"  {escape(s['message'])}" if s["message"] else ""))
    out.print(f"Release:   {escape(s['pipeline'])}  execution {s['execution']} ({s['executionStatus']})  "
              f"stage {escape(s['stage']['name'])} ({s['stage']['type']}, {s['stage']['status']})")
    step = s["step"]
    if step.get("total") is not None:
        index = int(step.get("index") or 0)
        shown = min(index + 1, int(step["total"])) if step.get("kind") else index
        current = f"  now: {step['kind']} {json.dumps(step.get('config'))}" if step.get("kind") else ""
        out.print(f"Step:      {shown}/{step['total']}{escape(current)}")
    for svc, weights in (s["weights"] or {}).items():
        split = "  ".join(f"{subset}={weight}%" for subset, weight in weights.items())
        out.print(f"Weights:   {escape(svc)}: {escape(split)}")
    if s["analysis"]:
        out.print(f"Analysis:  {escape(str(s['analysis'].get('type')))} "
                  f"{escape(json.dumps(s['analysis'].get('outputs'))[:200])}")
    if s.get("backgroundAnalysis"):
        bg = s["backgroundAnalysis"]
        out.print(f"Background analysis: {escape(str(bg.get('type')))} {escape(str(bg.get('phase')))}"
                  + (f"  {escape(str(bg['message']))[:200]}" if bg.get("message") else ""))
    if s.get("canary"):
        mode = s["canary"].get("mode")
        how = f"setCanaryScale {json.dumps(mode)}" if mode else "set by the stage"
        for c in s["canary"]["deployments"]:
            ready = "?" if c["ready"] is None else c["ready"]
            out.print(f"Canary:    {escape(c['deployment'])}  desired {c['desired']}  ready {ready}  ({escape(how)})")
    for c in s.get("stable") or []:
        ready = "?" if c["ready"] is None else c["ready"]
        out.print(f"Stable:    {escape(c['deployment'])}  desired {c['desired']} of {c['before']}  ready {ready}  "
                  "(dynamicStableScale)")
    if s["pods"]:
        out.print("Pods:")
        for pod in s["pods"]:
            ready = "?" if pod["ready"] is None else pod["ready"]
            out.print(f"  {escape(pod['name'])}  version={pod['version']}  ready {ready}/{pod['replicas']}")


@release_app.command("status")
def status(service: str = typer.Argument(..., help="the service, e.g. reviews"),
           watch: bool = typer.Option(False, "--watch", "-w", help="follow until Healthy (exit 0) or aborted (1)"),
           output: str = typer.Option("", "-o", "--output", help="json"),
           timeout: float = typer.Option(3600.0, "--timeout", help="seconds --watch waits")) -> None:
    """Show the service's release: phase, step, weights, analysis, pods."""
    client = ApiClient()
    deadline = time.monotonic() + timeout
    last = None
    while True:
        s = status_of(client, service)
        shown = json.dumps(s, sort_keys=True)
        if shown != last:
            if output == "json":
                print(json.dumps(s), flush=True)
            else:
                render(s)
            last = shown
        if not watch:
            return
        if s["phase"] in DONE_OK or s["phase"] in DONE_BAD or s["executionStatus"] in ("TERMINAL", "CANCELED"):
            ok = s["phase"] in DONE_OK
            raise typer.Exit(exit_codes.OK if ok else exit_codes.REFUSED)
        if time.monotonic() >= deadline:
            out.print(f"release of {service} still {s['phase']} after {timeout:g}s")
            raise typer.Exit(exit_codes.WRONG_STATE)
        time.sleep(0.5)


def _answer(service: str, choice: str) -> None:
    client = ApiClient()
    exe, stage = find_release(client, service)
    if stage["type"] == "trafficShift" or stage["status"] not in ("RUNNING", "PAUSED"):
        raise Conflict(f"the release of {service} ({stage['name']}, {stage['type']}) is {stage['status']}; "
                       f"nothing to {choice.lower()}", hint="`graylane release status` shows it")
    client.patch(f"/api/v1/executions/{exe['id']}/stages/{stage['id']}",
                 json={"judgmentStatus": "continue", "judgmentInput": choice},
                 headers={"X-Graylane-User": current_user()})
    out.print(f"release of {escape(service)}: {escape(choice)} (execution {exe['id']}, stage {escape(stage['name'])})")


@release_app.command("promote")
def promote(service: str = typer.Argument(...),
            full: bool = typer.Option(False, "--full", help="skip the remaining steps: all to the new version"),
            ) -> None:
    """Go past the current pause (or analysis); --full goes straight to the new version."""
    _answer(service, "Promote full" if full else "Promote")


@release_app.command("abort")
def abort(service: str = typer.Argument(...)) -> None:
    """Return all traffic to the stable version and remove Graylane's header and mirror routes."""
    _answer(service, "Abort")


@release_app.command("retry")
def retry(service: str = typer.Argument(...)) -> None:
    """Start an aborted (or failed) release stage again from its first step."""
    client = ApiClient()
    exe, stage = find_release(client, service)
    if stage["status"] in ("RUNNING", "PAUSED", "NOT_STARTED"):
        raise Conflict(f"the release of {service} is {stage['status']}; only an aborted or failed one can be retried")
    client.post(f"/api/v1/executions/{exe['id']}/stages/{stage['id']}/restart",
                headers={"X-Graylane-User": current_user()})
    out.print(f"release of {escape(service)}: retrying stage {escape(stage['name'])} (execution {exe['id']})")


def register(app: typer.Typer) -> None:
    """Add `release`."""
    app.add_typer(release_app, name="release")
