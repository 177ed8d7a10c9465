"""Console pages for pipelines (list, import, export, start form) and executions (stage graph, stage
details, manual judgments, cancel/pause/resume/restart). Every action goes through the REST API."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from graylane.resources.durations import elapsed_between
from graylane.server import ui_timeline
from graylane.server.ui import api, api_json, error_text, render, running_executions, user_of
from graylane.server.ui_timeline import timeline_of
from graylane.server.ui_traces import version_traces
from graylane.ui.analysis import analysis_view
from graylane.ui.preview import preview, spec_diff
from graylane.ui.release import ReleaseView, cancel_questions, release_account, release_view, released_services
from graylane.ui.views import option_consequences, parse_time, stage_rows, waiting_judgments

STRUCTURAL = {"refId", "requisiteStageRefIds", "type", "name"}


def _message_text(value: Any) -> str:
    """A stage message as a person reads it: an exception's error texts (orca's {"details": {"errors": [...]}}),
    not its JSON; other structures stay JSON."""
    if isinstance(value, str):
        return value
    details = value.get("details") if isinstance(value, dict) else None
    if isinstance(details, dict):
        errors = details.get("errors") or ([details["error"]] if details.get("error") else [])
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
    return json.dumps(value, ensure_ascii=False)


def stage_view(stage: dict[str, Any]) -> dict[str, Any]:
    """What the stage panel shows: context without runtime noise, manifests, expression summary, messages."""
    ctx = dict(stage.get("context") or {})
    outputs = dict(stage.get("outputs") or {})
    manifests = outputs.get("manifests") or ctx.get("manifests") or ([ctx["manifest"]] if ctx.get("manifest") else [])
    summary = ctx.get("expressionEvaluationSummary") or {}
    messages = []
    for key in ("exception", "failureMessage", "skipReason", "stageEnabledReason", "reason"):
        if ctx.get(key):
            messages.append(f"{key}: {_message_text(ctx[key])}")
    for task in stage.get("tasks") or []:
        if isinstance(task, dict) and task.get("status") not in (None, "SUCCEEDED", "NOT_STARTED"):
            messages.append(f"task {task.get('name')}: {task.get('status')}")
    hidden = {"manifests", "manifest", "expressionEvaluationSummary"}
    return {
        "context_yaml": yaml.safe_dump({k: v for k, v in ctx.items() if k not in hidden}, sort_keys=False,
                                       allow_unicode=True) if ctx else "",
        "outputs_yaml": yaml.safe_dump({k: v for k, v in outputs.items() if k != "manifests"}, sort_keys=False,
                                       allow_unicode=True) if outputs else "",
        "manifests_yaml": yaml.safe_dump_all(manifests, sort_keys=False, allow_unicode=True) if manifests else "",
        "summary": summary, "messages": messages,
        "duration": elapsed_between(stage.get("startTime"), stage.get("endTime")),
        "analysis": analysis_view(stage),
    }


def judgment_fields(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The custom parameters as form fields with HTML constraints (type, bounds, required, options)."""
    out = []
    ctx = stage.get("context") or {}
    current = ctx.get("customParams") or {}
    for d in ctx.get("customParamConfig") or []:
        if not isinstance(d, dict) or not d.get("name"):
            continue
        kind = str(d.get("type") or "string")
        options = [str(o.get("value") if isinstance(o, dict) else o) for o in d.get("options") or []]
        out.append({"name": d["name"], "label": d.get("label") or d["name"], "description": d.get("description", ""),
                    "type": "enum" if options else kind, "min": d.get("min"), "max": d.get("max"),
                    "required": bool(d.get("required")), "options": options,
                    "value": current.get(d["name"], d.get("default", "")) or ""})
    return out


def judgment_options(stage: dict[str, Any]) -> list[str]:
    return [str(o.get("value") if isinstance(o, dict) else o)
            for o in (stage.get("context") or {}).get("judgmentInputs") or []]


def graph_elements(execution: dict[str, Any]) -> list[dict[str, Any]]:
    """Cytoscape elements for the stage DAG (top-level stages, edges from requisiteStageRefIds)."""
    stages = [s for s in execution.get("stages", []) if not s.get("parentStageId")]
    by_ref = {str(s.get("refId")): s for s in stages}
    els: list[dict[str, Any]] = []
    for s in stages:
        els.append({"group": "nodes", "data": {"id": s["id"], "label": s.get("name") or s.get("type"),
                                               "status": s.get("status"), "duration": elapsed_between(
                                                   s.get("startTime"), s.get("endTime"))}})
        for req in s.get("requisiteStageRefIds") or []:
            parent = by_ref.get(str(req))
            if parent:
                els.append({"group": "edges", "data": {"id": f"{parent['id']}-{s['id']}", "source": parent["id"],
                                                       "target": s["id"]}})
    return els


async def _execution(request: Request, execution_id: str) -> dict[str, Any] | None:
    return await api_json(request, f"/api/v1/executions/{quote(execution_id)}", None)


def _fragment(request: Request, template: str, **ctx: Any) -> HTMLResponse:
    return render(request, template, "", **ctx)


def mount(app: FastAPI) -> None:
    ui_timeline.mount(app)

    @app.get("/pipelines", response_class=HTMLResponse, include_in_schema=False)
    async def pipelines(request: Request) -> HTMLResponse:
        items = await api_json(request, "/api/v1/pipelines", [])
        return render(request, "pipelines.html", "Pipelines", pipelines=items)

    @app.post("/ui/pipelines/import", response_class=HTMLResponse, include_in_schema=False)
    async def import_pipeline(request: Request) -> HTMLResponse:
        form = await request.form()
        text = str(form.get("pipeline") or "")
        upload = form.get("file")
        if upload is not None and hasattr(upload, "read"):
            data = await upload.read()  # type: ignore[union-attr]
            if data:
                text = data.decode("utf-8", "replace")
        # The API parses it, within the server's limits (size, nesting), and says what is wrong.
        resp = await api(request, "POST", "/api/v1/pipelines", content=text.encode(),
                         headers={"content-type": "application/json"})
        if resp.status_code != 200:
            return _fragment(request, "fragments/message.html", error=error_text(resp), ok=None)
        saved = resp.json().get("results", [])
        names = ", ".join(str(r.get("name")) for r in saved)
        response = _fragment(request, "fragments/message.html", error=None, ok=f"Imported {names}.")
        response.headers["HX-Refresh"] = "true"
        return response

    @app.get("/pipelines/{ref}/start", response_class=HTMLResponse, include_in_schema=False)
    async def start_form(request: Request, ref: str) -> HTMLResponse:
        pipeline = await api_json(request, f"/api/v1/pipelines/{quote(ref)}", None)
        return render(request, "pipeline_start.html", "Pipelines", pipeline=pipeline, ref=ref)

    @app.post("/ui/pipelines/{ref}/start", include_in_schema=False)
    async def start(request: Request, ref: str) -> Response:
        form = await request.form()
        parameters = {k[2:]: str(v) for k, v in form.items() if k.startswith("p_") and str(v) != ""}
        key = request.headers.get("idempotency-key")  # console.js: one per start, the same on a re-send
        resp = await api(request, "POST", f"/api/v1/pipelines/{quote(ref)}/start", json={"parameters": parameters},
                         headers={"Idempotency-Key": key} if key else {})
        if resp.status_code != 200:
            return _fragment(request, "fragments/message.html", error=error_text(resp), ok=None)
        execution_id = resp.json()["id"]  # a re-sent start: the execution the first one started
        response = Response(status_code=204)
        response.headers["HX-Redirect"] = f"/executions/{execution_id}"
        return response

    @app.get("/executions", response_class=HTMLResponse, include_in_schema=False)
    async def executions(request: Request) -> HTMLResponse:
        return render(request, "executions.html", "Executions", executions=await _execution_rows(request))

    @app.get("/ui/executions-table", response_class=HTMLResponse, include_in_schema=False)
    async def executions_table(request: Request) -> HTMLResponse:
        """The executions table's rows, fetched again by the page on each execution event (SSE)."""
        return _fragment(request, "fragments/executions_rows.html", executions=await _execution_rows(request))

    @app.get("/executions/{execution_id}", response_class=HTMLResponse, include_in_schema=False)
    async def execution(request: Request, execution_id: str) -> HTMLResponse:
        exe = await _execution(request, execution_id)
        return render(request, "execution.html", "Executions", exe=exe, release=await _release(request, exe),
                      timeline=await timeline_of(request, exe), **_exe_ctx(exe))

    @app.get("/ui/executions/{execution_id}/panel", response_class=HTMLResponse, include_in_schema=False)
    async def execution_panel(request: Request, execution_id: str) -> HTMLResponse:
        exe = await _execution(request, execution_id)
        return _fragment(request, "fragments/execution_panel.html", exe=exe, release=await _release(request, exe),
                         **_exe_ctx(exe))

    @app.get("/ui/executions/{execution_id}/release", response_class=HTMLResponse, include_in_schema=False)
    async def execution_release(request: Request, execution_id: str) -> HTMLResponse:
        """The release header alone: the topology's side panel shows it for a service being released."""
        exe = await _execution(request, execution_id)
        return _fragment(request, "fragments/release_header.html", exe=exe, release=await _release(request, exe),
                         **_exe_ctx(exe))

    @app.get("/ui/executions/{execution_id}/release/shares", response_class=HTMLResponse, include_in_schema=False)
    async def execution_release_shares(request: Request, execution_id: str) -> HTMLResponse:
        """The release header's tables alone (configured and observed shares, 5xx, p95, sample traces): they
        refresh every 15 s while the execution runs, leaving the judgment form beside them as it is."""
        exe = await _execution(request, execution_id)
        return _fragment(request, "fragments/release_shares.html", exe=exe, release=await _release(request, exe))

    @app.get("/ui/topology/releases", include_in_schema=False)
    async def topology_releases(request: Request) -> Response:
        """Services that running executions release: the execution, its judgment waiting for the reader,
        and each version's configured weight (the topology labels its edges with them)."""
        out = []
        for exe in await running_executions(request):
            release = await _release(request, exe)
            for svc in release.services if release else []:
                out.append({"service": svc.service, "executionId": exe["id"], "pipeline": exe.get("name"),
                            "waiting": release.waiting.get("name") if release and release.waiting else None,
                            "configured": {v.version: v.configured for v in svc.versions if v.configured is not None}})
        return Response(json.dumps(out, ensure_ascii=False), media_type="application/json")

    @app.get("/ui/executions/{execution_id}/stages/{stage_id}/preview", response_class=HTMLResponse,
             include_in_schema=False)
    async def judgment_preview(request: Request, execution_id: str, stage_id: str) -> HTMLResponse:
        """What continuing with the values typed would apply (graylane.ui.preview); nothing is sent."""
        user = user_of(request)
        exe = await _execution(request, execution_id) if user.can("approver") else None
        stage = next((s for s in (exe or {}).get("stages", []) if s.get("id") == stage_id), None)
        custom = {k[3:]: v for k, v in request.query_params.items() if k.startswith("cp_") and v.strip()}
        if exe is None or stage is None or stage.get("status") != "RUNNING" or not custom:
            return _fragment(request, "fragments/judgment_preview.html", previews=[], diffs={}, custom=custom)
        previews = await run_in_threadpool(preview, exe, stage, custom, user.name)
        diffs = {}
        for p in previews:
            for m in p.manifests:
                meta = m.get("metadata") or {}
                live = await api_json(request, f"/api/v1/resources/{quote(str(m.get('kind')))}/"
                                      f"{quote(str(meta.get('name')))}", None,
                                      params={"namespace": meta.get("namespace") or "default"})
                diffs[f"{m.get('kind')} {meta.get('name')}"] = spec_diff(live, m)
        return _fragment(request, "fragments/judgment_preview.html", previews=previews, diffs=diffs, custom=custom)

    @app.get("/ui/executions/{execution_id}/graph", include_in_schema=False)
    async def execution_graph(request: Request, execution_id: str) -> Response:
        exe = await _execution(request, execution_id)
        els = graph_elements(exe) if exe else []
        return Response(json.dumps({"status": exe.get("status") if exe else None, "elements": els,
                                    "questions": cancel_questions(exe) if exe else {}}),
                        media_type="application/json")

    @app.post("/ui/executions/{execution_id}/stages/{stage_id}/judge", response_class=HTMLResponse,
              include_in_schema=False)
    async def judge(request: Request, execution_id: str, stage_id: str) -> HTMLResponse:
        form = await request.form()
        body: dict[str, Any] = {"judgmentStatus": str(form.get("judgmentStatus") or "continue")}
        if form.get("judgmentInput"):
            body["judgmentInput"] = str(form["judgmentInput"])
        custom = {k[3:]: str(v) for k, v in form.items() if k.startswith("cp_")}
        if custom:
            body["customParams"] = custom
        key = request.headers.get("idempotency-key")  # console.js: one per judgment, the same on a re-send
        resp = await api(request, "PATCH", f"/api/v1/executions/{quote(execution_id)}/stages/{quote(stage_id)}",
                         json=body, headers={"Idempotency-Key": key} if key else {})
        if resp.status_code != 200:
            return _fragment(request, "fragments/message.html", error=error_text(resp), ok=None)
        verb = "Continued" if body["judgmentStatus"] == "continue" else "Stopped"
        if resp.json().get("duplicate"):
            return _fragment(request, "fragments/message.html", error=None,
                             ok=f"{verb} already: this judgment was recorded before; nothing changed.")
        return _fragment(request, "fragments/message.html", error=None, ok=f"{verb}. The pipeline moves on.")

    @app.post("/ui/executions/{execution_id}/{action}", response_class=HTMLResponse, include_in_schema=False)
    async def execution_action(request: Request, execution_id: str, action: str) -> HTMLResponse:
        form = await request.form()
        if action == "cancel-and-return":
            return await _cancel_and_return(request, execution_id, str(form.get("reason") or ""))
        if action == "restart":
            path = f"/api/v1/executions/{quote(execution_id)}/stages/{quote(str(form.get('stage')))}/restart"
        elif action in ("cancel", "pause", "resume"):
            path = f"/api/v1/executions/{quote(execution_id)}/{action}"
        else:
            return _fragment(request, "fragments/message.html", error=f"unknown action {action!r}", ok=None)
        payload = {"reason": str(form.get("reason"))} if form.get("reason") else {}
        resp = await api(request, "POST", path, json=payload)
        if resp.status_code != 200:
            return _fragment(request, "fragments/message.html", error=error_text(resp), ok=None)
        return _fragment(request, "fragments/message.html", error=None, ok=f"{action.capitalize()} requested.")


async def _release(request: Request, exe: dict[str, Any] | None) -> ReleaseView | None:
    """The release header's data: the VirtualServices and DestinationRules where the execution releases (the
    local store, or a Kubernetes account's cluster: what its stages changed), and the last minute's graph."""
    if not exe:
        return None
    services = released_services(exe)
    account = release_account(exe)
    graph = await api_json(request, "/api/v1/graph", {}, params={"window": "1m", "account": account}) \
        if services else {}
    if services and account != "local":
        vs, dr, routes, kube_services = await _account_routing(request, account)
    else:
        vs, dr, routes, kube_services = await _local_routing(request, exe, services)
    view = release_view(exe, vs, dr, graph or {}, user_of(request).role, routes, kube_services)
    # Sample traces of each version, from this execution's window: the evidence beside the judgment.
    started = (parse_time(exe.get("startTime")) or datetime.now(UTC)).timestamp()
    lookback = min(max(time.time() - started, 60.0), 900.0)  # at most the 15 minutes the mesh's telemetry keeps
    traces = {(svc.service, v.version): await version_traces(request, svc.service, v.version, lookback_s=lookback)
              for svc in view.services for v in svc.versions}
    return replace(view, traces=traces)


async def _local_routing(request: Request, exe: dict[str, Any],
                         services: list[str]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """VirtualServices, DestinationRules, HTTPRoutes and Services from the local store."""
    if not services:
        return [], [], [], []
    vs = await api_json(request, "/api/v1/resources/VirtualService", {"items": []})
    dr = await api_json(request, "/api/v1/resources/DestinationRule", {"items": []})
    routes: dict[str, Any] = {"items": []}
    kube_services: dict[str, Any] = {"items": []}
    if any(s.get("type") == "deployManifest" and "HTTPRoute" in json.dumps(s.get("context") or {})
           for s in exe.get("stages") or []):
        routes = await api_json(request, "/api/v1/resources/HTTPRoute", None) or routes
        kube_services = await api_json(request, "/api/v1/resources/Service", None) or kube_services
    return vs.get("items", []), dr.get("items", []), routes.get("items", []), kube_services.get("items", [])


async def _account_routing(request: Request,
                           account: str) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The same from a Kubernetes account's cluster (`/api/v1/accounts/NAME/live`); nothing when it cannot be
    read (the header then shows no configured weights rather than the local store's)."""
    live = await api_json(request, f"/api/v1/accounts/{quote(account, safe='')}/live", {"items": []})
    items = [b for b in (live or {}).get("items", []) if isinstance(b, dict)]

    def kind(name: str) -> list[Any]:
        return [b for b in items if b.get("kind") == name]

    return kind("VirtualService"), kind("DestinationRule"), kind("HTTPRoute"), kind("Service")


async def _cancel_and_return(request: Request, execution_id: str, reason: str) -> HTMLResponse:
    """Cancel, then put back each VirtualService this execution changed as it was before its first change
    (its history names the execution as `pipeline:<id>/<stage>`). Restoring needs the admin role."""
    payload = {"reason": reason} if reason else {}
    resp = await api(request, "POST", f"/api/v1/executions/{quote(execution_id)}/cancel", json=payload)
    if resp.status_code != 200:
        return _fragment(request, "fragments/message.html", error=error_text(resp), ok=None)
    exe = await _execution(request, execution_id) or {}
    services = set(released_services(exe))
    listed = await api_json(request, "/api/v1/resources/VirtualService", {"items": []})
    done: list[str] = []
    for vs in listed.get("items", []):
        if not services & {str(h).split(".")[0] for h in (vs.get("spec") or {}).get("hosts") or []}:
            continue
        ns, name = vs["metadata"].get("namespace", "default"), vs["metadata"]["name"]
        base = f"/api/v1/resources/VirtualService/{quote(name)}"
        items = (await api_json(request, f"{base}/history", {"items": []}, params={"namespace": ns}))["items"]
        ours = [h for h in items if str(h.get("actor", "")).startswith(f"pipeline:{execution_id}/")]
        before = [h for h in items if ours and h["revision"] < ours[0]["revision"] and not h.get("deleted")]
        if not ours:
            done.append(f"VirtualService {ns}/{name}: this execution did not change it")
        elif not before:
            done.append(f"VirtualService {ns}/{name}: this execution created it; it stays")
        else:
            restored = await api(request, "POST", f"{base}/restore",
                                 params={"namespace": ns, "revision": before[-1]["revision"]})
            done.append(f"VirtualService {ns}/{name}: " + (
                f"back to revision {before[-1]['revision']}, from before this execution"
                if restored.status_code == 200 else f"not restored: {error_text(restored)}"))
    text = "Cancel requested. " + ("; ".join(done) + "." if done else "No VirtualService to return.")
    return _fragment(request, "fragments/message.html", error=None, ok=text)


async def _execution_rows(request: Request) -> list[dict[str, Any]]:
    items = await api_json(request, "/api/v1/executions", [], params={"limit": 100})
    waiting = {exe["id"] for exe, _ in waiting_judgments(await running_executions(request, items),
                                                         user_of(request).role)}
    for e in items:
        e["_duration"] = elapsed_between(e.get("startTime"), e.get("endTime"))
        e["_waiting"] = e.get("id") in waiting
    return list(items)


def _exe_ctx(exe: dict[str, Any] | None) -> dict[str, Any]:
    if not exe:
        return {"stages": [], "views": {}, "fields": {}, "options": {}, "consequences": {}, "graph": [],
                "stage_table": [], "questions": {}}
    stages = exe.get("stages", [])
    judgments = [s for s in stages if s.get("type") == "manualJudgment"]
    graph = graph_elements(exe)
    return {"stages": stages, "views": {s["id"]: stage_view(s) for s in stages},
            "fields": {s["id"]: judgment_fields(s) for s in judgments},
            "options": {s["id"]: judgment_options(s) for s in judgments},
            "consequences": {s["id"]: option_consequences(exe, s) for s in judgments},
            "graph": graph, "stage_table": stage_rows(graph), "questions": cancel_questions(exe),
            "exe_duration": elapsed_between(exe.get("startTime"), exe.get("endTime"))}
