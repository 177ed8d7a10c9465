"""The release timeline's data, fetched from the REST API in-process (graylane.ui.timeline shapes it): the
history of every resource the execution touched, the topology graph per time bucket (the same query the
release header and the topology use), and sample traces per version. Pages: the execution page's
timeline section (fragment, refreshed live) and /executions/{id}/timeline on its own.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from graylane.server.ui import api_json, render
from graylane.server.ui_traces import version_traces
from graylane.ui.release import release_account, released_services
from graylane.ui.timeline import ROUTE_KINDS, Timeline, buckets, build_timeline, window_of

RETENTION_S = 900  # the local mesh's recorder keeps 15 minutes of scrapes (mesh.telemetry.recorder)
MAX_RESOURCES = 20


def touched(execution: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of what the execution's manifest stages applied or deleted, in order."""
    out: list[tuple[str, str, str]] = []
    for stage in execution.get("stages") or []:
        ctx = stage.get("context") or {}
        default_ns = str(ctx.get("location") or ctx.get("namespace") or "default")
        for m in (stage.get("outputs") or {}).get("manifests") or ctx.get("manifests") or []:
            if isinstance(m, dict) and m.get("kind") and (m.get("metadata") or {}).get("name"):
                meta = m["metadata"]
                key = (str(m["kind"]), str(meta.get("namespace") or default_ns), str(meta["name"]))
                if "${" not in "".join(key) and key not in out:
                    out.append(key)
        if stage.get("type") == "deleteManifest" and stage.get("status") not in (None, "NOT_STARTED", "SKIPPED"):
            kind, _, name = str(ctx.get("manifestName") or "").partition(" ")
            if kind and name and "${" not in name and (kind, default_ns, name) not in out:
                out.append((kind, default_ns, name))
    return out


async def _revisions(request: Request, execution: dict[str, Any]) -> list[dict[str, Any]]:
    """History entries the execution wrote (actor `pipeline:<id>/<stage>`), route kinds with their bodies."""
    mine = f"pipeline:{execution.get('id')}/"
    keys = touched(execution)
    services = set(released_services(execution))
    for kind in ROUTE_KINDS if services else ():  # routes a stage may have patched without a manifest
        for item in (await api_json(request, f"/api/v1/resources/{kind}", {"items": []}) or {}).get("items", []):
            meta = item.get("metadata") or {}
            key = (kind, str(meta.get("namespace") or "default"), str(meta.get("name")))
            if key not in keys:
                keys.append(key)
    out = []
    for kind, namespace, name in keys[:MAX_RESOURCES]:
        base = f"/api/v1/resources/{quote(kind, safe='')}/{quote(name, safe='')}"
        items = (await api_json(request, f"{base}/history", {"items": []}, params={"namespace": namespace})
                 or {}).get("items", [])
        ours = [h for h in items if str(h.get("actor", "")).startswith(mine)]
        first = ours[0]["revision"] if ours else None
        # A route's weights as the execution found them: the last revision before its first change.
        before = [dict(h, before=True) for h in items if kind in ROUTE_KINDS and not h.get("deleted")
                  and (first is None or h["revision"] < first) and not str(h.get("actor", "")).startswith(mine)][-1:]
        for h in before + ours:
            entry = dict(h)
            entry.setdefault("namespace", namespace)
            if h.get("kind") in ROUTE_KINDS and not h.get("deleted"):
                rev = await api_json(request, f"{base}/history/{h['revision']}", None, params={"namespace": namespace})
                entry["body"] = (rev or {}).get("body")
            out.append(entry)
    return out


async def _samples(request: Request, start_ms: float, end_ms: float,
                   account: str = "local") -> list[tuple[float, float, dict[str, Any]]]:
    """The topology graph of each bucket of the window the recorder still covers (a Kubernetes account: its
    Prometheus, whose retention is its own)."""
    oldest = (time.time() - RETENTION_S) * 1000 if account == "local" else 0
    out = []
    for b_start, b_end in buckets(start_ms, end_ms):
        if b_end < oldest:
            continue
        window = max(int(round((b_end - b_start) / 1000)), 1)
        graph = await api_json(request, "/api/v1/graph", None,
                               params={"window": f"{window}s", "queryTime": f"{b_end / 1000:.3f}",
                                       "account": account})
        if graph and graph.get("edges"):
            out.append((b_start, b_end, graph))
    return out


async def timeline_of(request: Request, execution: dict[str, Any] | None) -> Timeline | None:
    if not execution:
        return None
    start, end = window_of(execution)
    services = released_services(execution)
    revisions = await _revisions(request, execution)
    samples = await _samples(request, start, end, release_account(execution)) if services else []
    versions = sorted({(e.get("service"), n.get("version"))
                       for _, _, g in samples for e in g.get("edges") or [] for n in g.get("nodes") or []
                       if n.get("id") == e.get("target") and e.get("service") in services and n.get("version")})
    lookback = max(time.time() - start / 1000, 1.0) + 5
    traces = {(str(s), str(v)): await version_traces(request, str(s), str(v), limit=50, lookback_s=lookback)
              for s, v in versions}
    drs = (await api_json(request, "/api/v1/resources/DestinationRule", {"items": []}) or {}).get("items", []) \
        if services else []
    kube: list[dict[str, Any]] = []
    if any(r.get("kind") == "HTTPRoute" for r in revisions):
        kube = (await api_json(request, "/api/v1/resources/Service", {"items": []}) or {}).get("items", [])
    return build_timeline(execution, revisions, samples, traces, drs, kube)


def mount(app: FastAPI) -> None:

    @app.get("/executions/{execution_id}/timeline", response_class=HTMLResponse, include_in_schema=False)
    async def timeline_page(request: Request, execution_id: str) -> HTMLResponse:
        exe = await api_json(request, f"/api/v1/executions/{quote(execution_id, safe='')}", None)
        return render(request, "timeline.html", "Executions", exe=exe, timeline=await timeline_of(request, exe))

    @app.get("/ui/executions/{execution_id}/timeline", response_class=HTMLResponse, include_in_schema=False)
    async def timeline_fragment(request: Request, execution_id: str) -> HTMLResponse:
        """The timeline alone, fetched again on the page's live events (SSE) and every 15 s (error rates)."""
        exe = await api_json(request, f"/api/v1/executions/{quote(execution_id, safe='')}", None)
        return render(request, "fragments/timeline.html", "", exe=exe, timeline=await timeline_of(request, exe))
