"""The web console: server-rendered pages (Jinja2 + htmx) that are clients of the same REST API.

Pages call `/api/v1/...` in-process (an ASGI transport, carrying the caller's credentials), so the
console can never do what the API would refuse. Live parts (topology, execution stages) refresh from
the API and from SSE in `static/console.js`. Third-party JS (cytoscape, dagre, htmx) is served under
`/vendor/` from the package (graylane.ui.vendor); the server refuses to start without it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sse_starlette.sse import EventSourceResponse

from graylane.resources import secrets as secrets_view
from graylane.server.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    TOKEN_COOKIE,
    User,
    caller,
    operator_name,
    user_for_token,
)
from graylane.server.draining import event_stream
from graylane.ui import live, vendor
from graylane.ui.views import (
    WAITING_STATUSES,
    actor_href,
    approval_of,
    clock_tag,
    diff_lines,
    editable_yaml_body,
    findings,
    markdown,
    time_tag,
    waiting_judgments,
)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
SECRET_KINDS = secrets_view.SECRET_KINDS

templates = Jinja2Templates(directory=str(UI_DIR / "templates"))


ANONYMOUS = User("anonymous", "viewer")


def user_of(request: Request) -> User:
    """The caller, as graylane.server.auth.caller reads it (the one reader), or an anonymous viewer."""
    return caller(request) or ANONYMOUS


async def api(request: Request, method: str, path: str, **kw: Any) -> httpx.Response:
    """Call our own API in-process with the caller's identity (token, or session cookie + its CSRF token)."""
    headers = dict(kw.pop("headers", {}) or {})
    state = request.scope.get("state", {})
    auth = request.headers.get("authorization")
    if auth:
        headers["authorization"] = auth
        for name in ("x-graylane-user", "x-graylane-roles"):
            if request.headers.get(name):
                headers[name] = request.headers[name]
    elif request.cookies.get(SESSION_COOKIE) and state.get("credential") == request.cookies[SESSION_COOKIE]:
        headers["cookie"] = f"{SESSION_COOKIE}={request.cookies[SESSION_COOKIE]}"
        headers[CSRF_HEADER] = state.get("csrf", "")
    elif request.cookies.get(TOKEN_COOKIE):
        headers["authorization"] = f"Bearer {request.cookies[TOKEN_COOKIE]}"
    transport = httpx.ASGITransport(app=request.app, client=("127.0.0.1", 0))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.request(method, path, headers=headers, timeout=60, **kw)


async def api_json(request: Request, path: str, default: Any = None, **kw: Any) -> Any:
    resp = await api(request, "GET", path, **kw)
    if resp.status_code != 200:
        return default
    return resp.json()


def error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        return resp.text
    text = str(err.get("message", resp.text))
    if err.get("where"):
        text = f"{err['where']}: {text}"
    if err.get("hint"):
        text += f" ({err['hint']})"
    return text


def render(request: Request, template: str, active: str, **ctx: Any) -> HTMLResponse:
    """A page with the caller's CSRF token: the session's own when signed in, else (the sign-in form)
    a double-submit cookie."""
    bound = request.scope.get("state", {}).get("csrf")
    csrf = bound or request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = templates.TemplateResponse(request, template, {"active": active, "user": user_of(request),
                                                          "csrf_token": csrf, **ctx})
    if not bound and CSRF_COOKIE not in request.cookies:
        response.set_cookie(CSRF_COOKIE, csrf, samesite="strict", httponly=True)
    response.headers.setdefault("x-frame-options", "DENY")
    response.headers.setdefault("content-security-policy", "frame-ancestors 'none'")
    return response


def redact(body: dict[str, Any]) -> dict[str, Any]:
    """Secrets are never rendered: values (and the last-applied copy) replaced, keys kept (resources/secrets.py)."""
    return secrets_view.redact(body)


def readable_json(value: Any) -> str:
    """JSON (or a JSON string) shown with its own characters (e.g. CJK stage names), not \\u escapes."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def to_yaml(body: Any) -> str:
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True, default_flow_style=False)


def mount(app: FastAPI) -> None:
    vendor.check()  # fail at start, naming the files, rather than serve a console whose forms do nothing
    app.mount("/static", StaticFiles(directory=str(UI_DIR / "static")), name="static")
    templates.env.filters["yaml"] = to_yaml
    templates.env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    templates.env.filters["readable_json"] = readable_json
    templates.env.filters["when"] = time_tag
    templates.env.filters["clock"] = clock_tag
    templates.env.filters["diff_lines"] = diff_lines
    templates.env.filters["markdown"] = markdown
    templates.env.filters["actor_href"] = actor_href

    @app.get("/vendor/{name}", include_in_schema=False)
    async def vendor_file(name: str) -> Response:
        path = vendor.find(name)
        if path is None:
            return Response(f"/* no {name} here */", media_type="application/javascript", status_code=404)
        return Response(path.read_bytes(), media_type="application/javascript",
                        headers={"cache-control": "max-age=3600"})

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, next: str = "/", code: str = "") -> Response:
        """`/login?code=...` (the one-time link `graylane up` and `graylane status` print) opens a session."""
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if code:
            session = app.state.sessions.redeem(code)
            if session is None:
                return render(request, "login.html", "", next=target,
                              error="That sign-in link was used already or has expired; run `graylane status` "
                                    "for a new one.")
            response = RedirectResponse(target, status_code=303)  # drops the code from the address bar
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
            return response
        return render(request, "login.html", "", next=target, error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, token: str = Form(...), next: str = Form("/"),
                    csrf_token: str = Form("")) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not secrets.compare_digest(cookie, csrf_token):
            return render(request, "login.html", "", next=next, error="The form expired; sign in again.")
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        token = token.strip()
        if app.state.cli_token and secrets.compare_digest(token.encode(), app.state.cli_token.encode()):
            session = app.state.sessions.redeem(app.state.sessions.new_code(operator_name(), "admin"))
            response.set_cookie(SESSION_COOKIE, session or "", httponly=True, samesite="strict", path="/")
            return response
        if user_for_token(app.state.cp.store.engine, token) is None:
            return render(request, "login.html", "", next=next, error="That token is not valid.")
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if request.cookies.get(SESSION_COOKIE):
            app.state.sessions.end(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def overview(request: Request) -> HTMLResponse:
        return render(request, "overview.html", "Overview", graph=await _graph(request),
                      **await _overview_executions(request))

    @app.get("/ui/overview/mesh", response_class=HTMLResponse, include_in_schema=False)
    async def overview_mesh(request: Request) -> HTMLResponse:
        return render(request, "fragments/overview_mesh.html", "", graph=await _graph(request))

    @app.get("/ui/overview/executions", response_class=HTMLResponse, include_in_schema=False)
    async def overview_executions(request: Request) -> HTMLResponse:
        return render(request, "fragments/overview_executions.html", "", **await _overview_executions(request))

    @app.get("/ui/waiting", response_class=HTMLResponse, include_in_schema=False)
    async def waiting_badge(request: Request) -> HTMLResponse:
        """The navigation's count of judgments waiting for the signed-in user."""
        waiting = waiting_judgments(await running_executions(request), user_of(request).role)
        return render(request, "fragments/waiting_badge.html", "", count=len(waiting))

    @app.get("/topology", response_class=HTMLResponse, include_in_schema=False)
    async def topology(request: Request, namespace: str = "", window: str = "1m") -> HTMLResponse:
        return render(request, "topology.html", "Topology", namespace=namespace, window=window)

    @app.get("/ui/events", include_in_schema=False)
    async def console_events(request: Request) -> EventSourceResponse:
        """The page's one stream: execution events and resource changes (graylane.ui.live)."""
        return event_stream(request, live.console_events(request.app.state.cp.bus, request.is_disconnected))

    @app.get("/resources", response_class=HTMLResponse, include_in_schema=False)
    async def resources(request: Request, kind: str = "", namespace: str = "", edit: str = "",
                        revision: int | None = None) -> HTMLResponse:
        kinds = sorted({i.get("kind", "") for i in (await api_json(request, "/api/v1/resources", {"items": []}))
                        .get("items", [])})
        return render(request, "resources.html", "Resources", items=await _resource_items(request, kind, namespace),
                      kind=kind, kinds=kinds, namespace=namespace,
                      manifest=await _revision_yaml(request, edit, revision))

    @app.get("/ui/resources-table", response_class=HTMLResponse, include_in_schema=False)
    async def resources_table(request: Request, kind: str = "", namespace: str = "") -> HTMLResponse:
        """The resources table's rows, fetched again on each resource change (SSE)."""
        return render(request, "fragments/resources_rows.html", "",
                      items=await _resource_items(request, kind, namespace))

    @app.get("/resources/{kind}/{namespace}/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def resource(request: Request, kind: str, namespace: str, name: str, diff: int | None = None) -> Response:
        ctx = await _resource_ctx(request, kind, namespace, name, diff)
        return render(request, "resource.html", "Resources", **ctx)

    @app.get("/ui/resource/{kind}/{namespace}/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def resource_detail(request: Request, kind: str, namespace: str, name: str,
                              diff: int | None = None) -> Response:
        """The YAML and history, fetched again on each resource change (SSE)."""
        return render(request, "fragments/resource_detail.html", "",
                      **await _resource_ctx(request, kind, namespace, name, diff))

    @app.post("/ui/resources/{kind}/{namespace}/{name}/restore", response_class=HTMLResponse, include_in_schema=False)
    async def ui_restore(request: Request, kind: str, namespace: str, name: str,
                         revision: int = Form(...)) -> HTMLResponse:
        resp = await api(request, "POST", f"/api/v1/resources/{quote(kind)}/{quote(name)}/restore",
                         params={"namespace": namespace, "revision": revision})
        if resp.status_code != 200:
            return render(request, "fragments/message.html", "", error=error_text(resp), ok=None)
        now = resp.json().get("revision")
        return render(request, "fragments/message.html", "", error=None,
                      ok=f"Restored revision {revision}; it is the live object now (revision {now}).")

    @app.post("/ui/apply", response_class=HTMLResponse, include_in_schema=False)
    async def ui_apply(request: Request, manifest: str = Form(...), dry_run: str = Form("")) -> HTMLResponse:
        params = {"dryRun": "true"} if dry_run else {}
        resp = await api(request, "POST", "/api/v1/apply", params=params,
                         json={"files": [{"name": "console", "text": manifest}]})
        if resp.status_code != 200:
            return render(request, "fragments/apply_result.html", "", error=error_text(resp), results=[])
        data = resp.json()
        # The API runs `graylane validate`'s analyzers against the live state on every apply, dry run too.
        return render(request, "fragments/apply_result.html", "", error=None, results=data.get("results", []),
                      dry_run=data.get("dryRun"), findings=findings(data.get("warnings", [])))

    @app.get("/traces", response_class=HTMLResponse, include_in_schema=False)
    async def traces(request: Request, service: str = "", minDuration: str = "", version: str = "") -> HTMLResponse:
        """`version` (with `service`): traces of requests that version handled (its spans' Istio revision tag)."""
        params: dict[str, Any] = {"limit": 50}
        if service:
            params["service"] = service
        if minDuration:
            params["minDuration"] = minDuration
        if service and version:
            params["tag"] = [f"istio.canonical_service={service}", f"istio.canonical_revision={version}"]
        data = await api_json(request, "/api/v1/traces", {"traces": []}, params=params)
        return render(request, "traces.html", "Traces", traces=data["traces"], service=service,
                      minDuration=minDuration, version=version if service else "")

    @app.get("/traces/{trace_id}", response_class=HTMLResponse, include_in_schema=False)
    async def trace(request: Request, trace_id: str) -> HTMLResponse:
        from graylane.mesh.telemetry.traces import waterfall

        data = await api_json(request, f"/api/v1/traces/{quote(trace_id)}", {"spans": []})
        spans = data["spans"]
        rows = waterfall(spans) if spans else []
        start = min((s["startUs"] for s in spans), default=0)
        total = max((s["startUs"] + s["durationUs"] for s in spans), default=1) - start or 1
        return render(request, "trace.html", "Traces", trace_id=trace_id, rows=rows, start=start, total=total)



async def _executions(request: Request) -> list[dict[str, Any]]:
    data = await api_json(request, "/api/v1/executions", [], params={"limit": 50})
    if isinstance(data, dict):
        data = data.get("items") or data.get("executions") or []
    return list(data)


async def running_executions(request: Request, headers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Running executions with their stages (the list API gives headers only), newest 20."""
    if headers is None:
        headers = await _executions(request)
    out = []
    for header in [e for e in headers if e.get("status") in WAITING_STATUSES][:20]:
        exe = await api_json(request, f"/api/v1/executions/{quote(header['id'])}", None)
        if exe:
            out.append(exe)
    return out


async def _overview_executions(request: Request) -> dict[str, Any]:
    executions = await _executions(request)
    running = await running_executions(request, executions)
    return {"running": running, "waiting": waiting_judgments(running, user_of(request).role),
            "recent": executions[:10]}


async def _resource_items(request: Request, kind: str, namespace: str) -> list[dict[str, Any]]:
    params = {"namespace": namespace} if namespace else {}
    path = f"/api/v1/resources/{quote(kind)}" if kind else "/api/v1/resources"
    return list((await api_json(request, path, {"items": []}, params=params)).get("items", []))


async def _resource_ctx(request: Request, kind: str, namespace: str, name: str, diff: int | None) -> dict[str, Any]:
    params = {"namespace": namespace}
    base = f"/api/v1/resources/{quote(kind)}/{quote(name)}"
    body = await api_json(request, base, None, params=params)
    hist = await api_json(request, f"{base}/history", {"items": []}, params=params)
    diff_text = None
    if diff is not None:
        d = await api_json(request, f"{base}/history/{diff}/diff", {}, params=params)
        diff_text = d.get("diff") if kind not in SECRET_KINDS else "(secret contents are not shown)"
    history = hist.get("items", [])
    return {"body": redact(body) if body else None, "kind": kind, "namespace": namespace, "name": name,
            "history": history, "diff": diff, "diff_text": diff_text,
            "approvals": await _approvals(request, history)}


async def _approvals(request: Request, history: list[dict[str, Any]]) -> dict[int, str]:
    """revision -> who approved it, for revisions a pipeline stage made after a manual judgment."""
    executions: dict[str, dict[str, Any] | None] = {}
    out: dict[int, str] = {}
    for h in history:
        actor = str(h.get("actor", ""))
        if not actor.startswith("pipeline:") or "/" not in actor:
            continue
        execution_id, _, stage_id = actor[len("pipeline:"):].partition("/")
        if execution_id not in executions and len(executions) < 20:
            executions[execution_id] = await api_json(request, f"/api/v1/executions/{quote(execution_id)}", None)
        exe = executions.get(execution_id)
        approved = approval_of(exe, stage_id) if exe else None
        if approved:
            out[int(h["revision"])] = approved
    return out


async def _revision_yaml(request: Request, edit: str, revision: int | None) -> str:
    """`edit=Kind/namespace/name` and `revision=N`: that revision's YAML, to edit and dry-run again."""
    parts = edit.split("/")
    if len(parts) != 3 or revision is None or parts[0] in SECRET_KINDS:
        return ""
    kind, namespace, name = parts
    rev = await api_json(request, f"/api/v1/resources/{quote(kind)}/{quote(name)}/history/{revision}", None,
                         params={"namespace": namespace})
    if not rev or not isinstance(rev.get("body"), dict):
        return ""
    return to_yaml(editable_yaml_body(rev["body"]))


async def _graph(request: Request) -> dict[str, Any]:
    return await api_json(request, "/api/v1/graph", {}, params={"window": "1m"}) or {}
