"""The control plane's telemetry loop: scrape the data plane, keep series and spans, serve graph and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import httpx

from graylane.mesh.telemetry.metrics import ControlPlaneMetrics, route_weights
from graylane.mesh.telemetry.recorder import Recorder
from graylane.mesh.telemetry.series import parse_text
from graylane.mesh.telemetry.topology import GraphOptions, Workload, build_graph
from graylane.mesh.telemetry.traces import TraceStore

log = logging.getLogger("graylane.telemetry")

REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
# What the recorder keeps of each scrape (15 minutes, one a second): what the graph, canary analysis and PromQL
# over the local mesh (promql_engine) read. The bytes histograms' buckets are left out: many series, rarely asked.
KEPT = (REQUESTS, DURATION_BUCKETS, "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count", "istio_request_bytes_sum", "istio_request_bytes_count",
        "istio_response_bytes_sum", "istio_response_bytes_count", "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total", "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total")


def _admin_urls(cp: Any) -> list[str]:
    """Where the data plane's admin port is: the mesh control component knows; env overrides."""
    env = os.environ.get("GRAYLANE_DATAPLANE_ADMIN")
    if env:
        return [u if u.startswith("http") else f"http://{u}" for u in env.split(",") if u]
    mesh = cp.components.get("mesh")
    for attr in ("admin_urls", "admin_url"):
        value = getattr(mesh, attr, None)
        if callable(value):
            value = value()
        if value:
            return list(value) if isinstance(value, list | tuple) else [str(value)]
    # `graylane up` records the data plane's admin port in the state folder.
    from graylane.mesh.control import read_dataplane
    from graylane.settings import state_dir

    data = read_dataplane(state_dir())
    if data is None:
        return []
    return [f"http://{data.get('admin_host') or '127.0.0.1'}:{data['admin_port']}"]


def _dataplane_started(cp: Any) -> float | None:
    """When the (single, local) data plane process started, from the state folder; None when unknown."""
    if os.environ.get("GRAYLANE_DATAPLANE_ADMIN"):
        return None
    from graylane.mesh.control import read_dataplane
    from graylane.settings import state_dir

    data = read_dataplane(state_dir()) or {}
    started = data.get("started")
    return float(started) if isinstance(started, int | float) else None


class Telemetry:
    def __init__(self, cp: Any, interval: float | None = None) -> None:
        self.cp = cp
        self.interval = interval or float(os.environ.get("GRAYLANE_SCRAPE_INTERVAL", "1.0"))
        self.recorder = Recorder()
        self.traces = TraceStore(cp.store.engine) if getattr(cp, "store", None) is not None else None
        self.metrics = ControlPlaneMetrics()
        self.metrics.add_source(self._route_weight_metrics)
        self.metrics.add_source(self._mesh_metrics)
        self.last_text = ""  # the data plane's own exposition, relayed on /metrics
        self._span_seq: dict[str, int] = {}
        self._scrape_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._spans_task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=2.0, trust_env=False)
        self._otlp = None
        with contextlib.suppress(Exception):
            from graylane.mesh.telemetry.otlp import exporter_from_env

            self._otlp = exporter_from_env()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> Telemetry:
        self._task = asyncio.create_task(self._loop(self.scrape_once), name="graylane-telemetry")
        self._spans_task = asyncio.create_task(self._loop(self.pull_spans_once), name="graylane-spans")
        return self

    async def stop(self) -> None:
        for task in (self._task, self._spans_task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._http.aclose()

    async def _loop(self, step: Any) -> None:
        """Run `step` every interval (spans and metrics apart: a slow span export must not delay the
        metrics scrape, whose timestamps make the rates)."""
        while True:
            began = time.monotonic()
            try:
                await step()
            except Exception as exc:  # keep scraping; the data plane may be restarting
                log.debug("telemetry %s failed: %s", getattr(step, "__name__", step), exc)
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - began)))

    # -- scraping ----------------------------------------------------------------------------
    async def refresh(self, max_age: float = 0.25) -> None:
        """Scrape now unless the newest scrape is younger than `max_age` s: a graph asked for right after
        some traffic shows it (Kiali, reading Prometheus, lags by a scrape interval)."""
        latest = self.recorder.latest_time
        if latest is None or time.time() - latest > max_age:
            with contextlib.suppress(Exception):
                await self.scrape_once()

    async def scrape_once(self) -> bool:
        """Scrape every data plane; record the scrape only when all answered (a partial or empty scrape
        would look like a counter reset and count every request again). The scrape's time is when the
        data plane answered, not when we got round to parsing it."""
        async with self._scrape_lock:  # the loop and on-demand refreshes add scrapes in time order
            return await self._scrape()

    async def _scrape(self) -> bool:
        urls = _admin_urls(self.cp)
        if not urls:
            return False
        texts, stamps = [], []
        for url in urls:
            sent = time.time()
            try:
                resp = await self._http.get(f"{url}/stats/prometheus")
            except httpx.HTTPError as exc:
                log.debug("scrape of %s failed: %s", url, exc)
                return False
            if resp.status_code != 200:
                return False
            stamps.append((sent + time.time()) / 2)
            texts.append(resp.text)
        text = "\n".join(texts)
        self.last_text = text
        series = await asyncio.to_thread(parse_text, text, KEPT)
        if self.recorder.latest_time is None:
            self.recorder.origin = _dataplane_started(self.cp)
        self.recorder.add(series, sum(stamps) / len(stamps))
        return True

    async def pull_spans_once(self) -> None:
        for url in _admin_urls(self.cp):
            await self._pull_spans(url)

    async def _pull_spans(self, url: str) -> None:
        if self.traces is None:
            return
        since = self._span_seq.get(url, 0)
        with contextlib.suppress(httpx.HTTPError, ValueError):
            resp = await self._http.get(f"{url}/spans", params={"since": since})
            if resp.status_code != 200:
                return
            body = resp.json()
            spans = body.get("spans", []) if isinstance(body, dict) else body
            if isinstance(body, dict) and "next" in body:
                self._span_seq[url] = int(body["next"])
            elif spans:
                self._span_seq[url] = max(int(s.get("seq", since)) for s in spans) + 1
            if spans:
                await asyncio.to_thread(self.traces.add, spans)
                if self._otlp is not None:
                    from graylane.mesh.telemetry.otlp import export
                    from graylane.mesh.telemetry.traces import normalise

                    norm = [n for n in (normalise(s) for s in spans) if n]
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(export, self._otlp, norm)

    # -- views -------------------------------------------------------------------------------
    def deployed_workloads(self, namespace: str | None = None) -> list[Workload]:
        out = []
        store = getattr(self.cp, "store", None)
        if store is None:
            return out
        for res in store.list(kind="Deployment", namespace=namespace):
            body = res.body
            labels = ((body.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
            md = body.get("metadata") or {}
            out.append(Workload(md.get("namespace", "default"), md.get("name", ""),
                                labels.get("app", md.get("name", "")), labels.get("version", "unknown")))
        return out

    def graph(self, opts: GraphOptions) -> dict[str, Any]:
        requests, covered = self.recorder.increase(REQUESTS, opts.window, opts.query_time)
        buckets, _ = self.recorder.increase(DURATION_BUCKETS, opts.window, opts.query_time)
        return build_graph(requests, buckets, covered, opts, self.deployed_workloads(opts.namespace),
                           now=opts.query_time)

    def metrics_text(self, dataplane_text: str | None = None) -> str:
        own = self.metrics.render()
        text = self.last_text if dataplane_text is None else dataplane_text
        return (text.rstrip("\n") + "\n" + own) if text else own

    async def metrics_text_live(self) -> str:
        """`/metrics` for a Prometheus scrape: the data plane's counters as of now (not as of our last scrape,
        which would add up to one scrape interval of jitter to every rate), falling back to the last scrape."""
        texts = []
        for url in _admin_urls(self.cp):
            try:
                resp = await self._http.get(f"{url}/stats/prometheus", timeout=1.0)
            except httpx.HTTPError:
                return self.metrics_text()
            if resp.status_code != 200:
                return self.metrics_text()
            texts.append(resp.text)
        return self.metrics_text("\n".join(texts))

    def _mesh_metrics(self) -> Any:
        """The mesh control's own series (config push latency histogram), when it offers them."""
        mesh = self.cp.components.get("mesh")
        collect = getattr(mesh, "collect_metrics", None)
        return list(collect()) if callable(collect) else []

    def _route_weight_metrics(self) -> list[Any]:
        store = getattr(self.cp, "store", None)
        if store is None:
            return []
        return [route_weights(r.body for r in store.list(kind="VirtualService"))]


async def start(cp: Any) -> Telemetry:
    telemetry = Telemetry(cp)
    cp.components["telemetry"] = telemetry
    return await telemetry.start()
