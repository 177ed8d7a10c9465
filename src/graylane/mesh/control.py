"""Mesh control (our istiod): compile the store's resources + runtime endpoints into snapshots, push them.

Every store commit or endpoint change compiles a whole versioned snapshot
(`graylane.mesh.config.compile_snapshot`) and `PUT`s it to the data plane's admin port; the data
plane ACKs (2xx) or NACKs (the reason, keeping its previous snapshot). `wait_acked(revision)` waits
until a snapshot holding that store revision is ACKed. A restarted data plane gets the snapshot again.
Resources are compiled one by one: one that cannot be compiled is left out of the snapshot (the rest of the
mesh still gets every change), gets a `Reconciled=False` status condition in the store and a warning event,
and makes `wait_acked` for the revision that changed it fail naming it (docs/dataplane.md).
Knows nothing of processes: endpoints come from an `EndpointSource` (the local runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx

from graylane.dataplane_contract import DATAPLANE_FILE
from graylane.errors import GraylaneError
from graylane.mesh import gateway_api
from graylane.mesh.config import compile_snapshot
from graylane.mesh.isolation import Rejection, status_with
from graylane.mesh.snapshot_delta import DeltaError, make_delta
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar
from graylane.resources.document import ResourceKey

log = logging.getLogger(__name__)

MESH_OPTIONS_FILE = "mesh-options.json"  # written by `graylane up --gateway-port/--gateway-bind`


class EndpointSource(Protocol):
    seq: int

    def endpoints(self) -> list[Endpoint]: ...

    def sidecars(self) -> list[Sidecar]: ...

    def on_change(self, callback: Callable[[], None]) -> None: ...

    def set_publication_gate(self, gate: Callable[[int], bool]) -> None: ...

    def poke(self) -> None: ...


Compiler = Callable[[list[dict[str, Any]], list[Endpoint], list[Sidecar], MeshOptions, int], dict[str, Any]]


def load_compiler() -> Compiler:
    """`compile_snapshot` compiling per resource (`isolate=True`): a resource that fails is left out, not the mesh."""
    return partial(compile_snapshot, isolate=True)


def read_dataplane(state: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state / DATAPLANE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("admin_port") else None


def read_options(state: Path) -> MeshOptions:
    """Mesh options saved by `graylane up` (gateway bind address and port map), else defaults."""
    try:
        raw = json.loads((state / MESH_OPTIONS_FILE).read_text())
    except (OSError, ValueError):
        return MeshOptions()
    kw: dict[str, Any] = {k: v for k, v in raw.items() if k in MeshOptions.__dataclass_fields__}
    if "gateway_port_map" in kw:
        kw["gateway_port_map"] = {int(k): int(v) for k, v in kw["gateway_port_map"].items()}
    return MeshOptions(**kw)


def save_options(state: Path, options: MeshOptions) -> None:
    data = asdict(options)
    data["gateway_port_map"] = {str(k): v for k, v in options.gateway_port_map.items()}
    (state / MESH_OPTIONS_FILE).write_text(json.dumps(data, indent=2))


def gateway_urls(resources: Sequence[Mapping[str, Any]], options: MeshOptions) -> list[dict[str, Any]]:
    """Where each Gateway server is reachable on this host (`graylane get gw`).

    >>> gw = {"kind": "Gateway", "metadata": {"name": "g"}, "spec": {"servers": [{"port": {"number": 80}}]}}
    >>> gateway_urls([gw], MeshOptions())[0]["url"]
    'http://127.0.0.1:8080/'
    """
    out = []
    host = options.gateway_bind if options.gateway_bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    for body in resources:
        if body.get("kind") != "Gateway":
            continue
        md = body.get("metadata") or {}
        for server in (body.get("spec") or {}).get("servers") or []:
            port = server.get("port") or {}
            number = int(port.get("number", 0))
            host_port = options.gateway_port_map.get(number, number)
            protocol = str(port.get("protocol") or "HTTP").upper()
            scheme = "https" if protocol in ("HTTPS", "TLS") else "http"
            out.append({"namespace": md.get("namespace") or "default", "name": md.get("name"),
                        "port": number, "hostPort": host_port, "bind": options.gateway_bind,
                        "protocol": protocol, "hosts": server.get("hosts") or [],
                        "url": f"{scheme}://{host}:{host_port}/"})
    return out


@dataclass
class PushRecord:
    version: int
    revision: int
    endpoint_seq: int
    pushed_at: float  # time.time()
    acked: bool = False
    nack: str = ""
    duration_ms: float = 0.0
    rejected: list[Rejection] = field(default_factory=list)  # resources left out of this snapshot


@dataclass
class MeshStatus:
    dataplane: str = ""  # admin URL
    connected: bool = False
    last: PushRecord | None = None
    acked_version: int = 0
    acked_revision: int = -1
    acked_seq: int = -1
    error: str = ""
    pushes: int = 0
    delta_pushes: int = 0  # pushes ACKed as a delta against the previous document (issue #17)
    history: deque[PushRecord] = field(default_factory=lambda: deque(maxlen=50))
    acked_rejected: list[Rejection] = field(default_factory=list)  # left out of the ACKed snapshot
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))  # warning events, newest last


class MeshControl:
    """Compiles and pushes snapshots; tracks ACKs; gates runtime rollouts on publication."""

    def __init__(self, store: Any, endpoints: EndpointSource | None, state: Path, *,
                 compiler: Compiler | None = None, admin_url: Callable[[], str | None] | None = None,
                 options: Callable[[], MeshOptions] | None = None, resync_s: float = 1.0,
                 publish: Callable[..., None] | None = None) -> None:
        self.store = store
        self.source = endpoints
        self.state = state
        self.compiler = compiler
        self._admin_url = admin_url or self._admin_from_state
        self._options = options or (lambda: read_options(state))
        self.resync_s = resync_s
        self._publish = publish
        self.status = MeshStatus()
        self._dirty = asyncio.Event()
        self._acked = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changes: deque[tuple[int, float]] = deque(maxlen=1000)  # (store revision, monotonic) as seen
        self._version = 0
        self._dataplane_identity: Any = None
        self._http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        self._stopping = False
        self._pushed_options: MeshOptions | None = None
        self._pending_since: float | None = None  # first change not yet in a pushed snapshot
        self._acked_doc: Mapping[str, Any] | None = None  # the document the data plane ACKed last (delta base)
        self._convergence = Convergence()

    def options(self) -> MeshOptions:
        return self._options()

    def admin_url(self) -> str | None:
        """The data plane's admin URL (telemetry scrapes it)."""
        return self._admin_url()

    def collect_metrics(self) -> list[Any]:
        """Istio-named control plane series: push-to-ACK convergence, pushes, the served version."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        conv = self._convergence
        hist = HistogramMetricFamily("pilot_proxy_convergence_time",
                                     "Delay in seconds between a config change and the data plane ACKing it.",
                                     buckets=conv.buckets(), sum_value=conv.total_s)
        pushes = CounterMetricFamily("pilot_xds_pushes", "Snapshots pushed to the data plane.", labels=["type"])
        pushes.add_metric(["ack"], conv.acks)
        pushes.add_metric(["nack"], conv.nacks)
        pushes.add_metric(["error"], conv.errors)
        version = GaugeMetricFamily("graylane_mesh_acked_version", "Snapshot version the data plane ACKed last.")
        version.add_metric([], self.status.acked_version)
        return [hist, pushes, version]

    def _mark_dirty(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._dirty.set()

    def _admin_from_state(self) -> str | None:
        data = read_dataplane(self.state)
        if data is None:
            return None
        return f"http://{data.get('admin_host') or '127.0.0.1'}:{data['admin_port']}"

    # === lifecycle ===

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(AttributeError):
            self.store.subscribe(self._on_store_change)
        if self.source is not None:
            self.source.on_change(self._mark_dirty)
            self.source.set_publication_gate(self.is_published)
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name="graylane-mesh-control")

    async def stop(self) -> None:
        self._stopping = True
        self._dirty.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    def _on_store_change(self, keys: Sequence[Any] = ()) -> None:
        with contextlib.suppress(Exception):
            self._changes.append((int(self.store.revision()), time.monotonic()))
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._mark_dirty)

    # === what the runtime and the API ask ===

    def is_published(self, seq: int) -> bool:
        """True once the data plane ACKed endpoints as of `seq`, or when no data plane ACKs at all
        (so a control plane without a data plane still rolls out)."""
        if not self.status.connected or (self.status.last is not None and self.status.last.nack):
            return True
        return self.status.acked_seq >= seq

    async def wait_acked(self, revision: int, timeout: float, keys: Sequence[ResourceKey] | None = None) -> float:
        """Wait until a snapshot containing store `revision` is ACKed; returns propagation seconds.

        Raises GraylaneError naming each resource of `keys` (default: those changed at `revision`) that the
        ACKed snapshot left out because it could not be compiled; the rest of the mesh is served.
        """
        started = time.monotonic()
        seen = next((t for rev, t in self._changes if rev >= revision), started)
        deadline = started + timeout
        self._dirty.set()
        async with self._acked:
            while self.status.acked_revision < revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GraylaneError(self._not_acked_message(revision, timeout),
                                        hint="check `graylane status` and the data plane log")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._acked.wait()
            left_out = self._left_out(revision, keys)
        if left_out:
            raise GraylaneError(_left_out_message(left_out, revision),
                                hint="fix or delete it; `graylane describe` shows its Reconciled condition")
        return max(0.0, self._acked_mono - min(seen, started))

    def _left_out(self, revision: int, keys: Sequence[ResourceKey] | None) -> list[Rejection]:
        if keys is not None:
            wanted = {tuple(k) for k in keys}
            return [r for r in self.status.acked_rejected
                    if (r.group, r.kind, r.namespace, r.name) in wanted]
        return [r for r in self.status.acked_rejected if r.resource_version == str(revision)]

    def _not_acked_message(self, revision: int, timeout: float) -> str:
        if self.compiler is None:
            return "the mesh compiler (graylane.mesh.config) is not installed"
        if not self.status.dataplane:
            return "no data plane is running (start it with `graylane up`)"
        if self.status.last is not None and self.status.last.nack:
            return f"the data plane rejected snapshot {self.status.last.version}: {self.status.last.nack}"
        return f"store revision {revision} not ACKed by the data plane within {timeout:g}s ({self.status.error})"

    def describe(self) -> dict[str, Any]:
        """`GET /api/v1/mesh/status`. `error` also names resources left out of the served snapshot."""
        st = self.status
        rejected = st.last.rejected if st.last is not None else []
        error = st.error or (_left_out_summary(rejected) if rejected else "")
        return {
            "dataplane": st.dataplane, "connected": st.connected, "ackedVersion": st.acked_version,
            "ackedRevision": st.acked_revision, "storeRevision": self._store_revision(), "error": error,
            "pushes": st.pushes, "deltaPushes": st.delta_pushes, "compiler": self.compiler is not None,
            "last": asdict(st.last) if st.last else None,
            "history": [asdict(p) for p in list(st.history)[-10:]],
            "rejected": [r.to_json() for r in rejected], "events": list(st.events),
        }

    def _store_revision(self) -> int:
        try:
            return int(self.store.revision())
        except Exception:  # the store is another area's; report rather than fail the status page
            log.warning("cannot read store revision", exc_info=True)
            return -1

    # === the push loop ===

    _acked_mono: float = 0.0

    async def _run(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resync_s):
                    await self._dirty.wait()
            changed = self._dirty.is_set()
            self._dirty.clear()
            try:
                url = self._admin_url()
                identity = (url, (read_dataplane(self.state) or {}).get("pid"))
                if url != self.status.dataplane or identity != self._dataplane_identity:
                    self.status.dataplane, self.status.connected = url or "", False
                    self._acked_doc = None  # another data plane: the next push is a whole document
                    self._dataplane_identity = identity
                    changed = True
                if url is None:
                    self.status.error = "no data plane registered"
                    continue
                if self._options() != self._pushed_options:  # e.g. `graylane up --gateway-port 80=9090`
                    changed = True
                # Resync check: a data plane that restarted (empty) gets the snapshot again.
                if (not changed and self.status.connected and not self.status.error
                        and await self._dataplane_lost_config(url)):
                    changed = True
                if changed or not self.status.connected or self.status.error:
                    await self._push(url)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mesh push failed; retrying")
                self.status.error = "internal error (see the control plane log)"
                await asyncio.sleep(0.5)

    async def _dataplane_lost_config(self, url: str) -> bool:
        try:
            resp = await self._http.get(f"{url}/ready", timeout=2.0)
        except httpx.HTTPError:
            self.status.connected = False
            return True
        if resp.status_code >= 500:
            return True
        version = _version_in(resp)
        return version is not None and version != self.status.acked_version

    async def _push(self, url: str) -> None:
        if self.compiler is None:
            self.status.error = "mesh compiler not installed"
            return
        since, self._pending_since = self._pending_since, None
        revision = int(self.store.revision())
        resources = await asyncio.to_thread(self._bodies)
        seq = self.source.seq if self.source is not None else 0
        endpoints = self.source.endpoints() if self.source is not None else []
        sidecars = self.source.sidecars() if self.source is not None else []
        self._version = max(self._version + 1, int(time.time() * 1000))
        options = self._options()
        self._pushed_options = options
        try:
            snapshot = self.compiler(resources, endpoints, sidecars, options, self._version)
        except GraylaneError as exc:
            self.status.error = f"compile failed: {exc}"
            log.warning("mesh snapshot not compiled: %s", exc)
            return
        rejected = [Rejection(**{k: v for k, v in r.items() if k != "reason"}) for r in snapshot.get("rejected") or ()]
        self._gateway_api_status = {(s["group"], s["kind"], s["namespace"] or "default", s["name"]): s["status"]
                                    for s in snapshot.get(gateway_api.STATUS_KEY) or ()}
        record = PushRecord(self._version, revision, seq, time.time(), rejected=rejected)
        t0 = time.monotonic()
        try:
            resp = await self._send(url, snapshot)
        except httpx.HTTPError as exc:
            self._acked_doc = None  # the data plane may come back empty: the next push is a whole document
            self.status.connected = False
            self.status.error = f"data plane unreachable at {url}: {exc.__class__.__name__}"
            self._convergence.errors += 1
            self._pending_since = self._pending_since or since
            await asyncio.sleep(0.2)
            self._dirty.set()
            return
        record.duration_ms = (time.monotonic() - t0) * 1000
        self.status.connected = True
        self.status.pushes += 1
        self.status.last = record
        self.status.history.append(record)
        if resp.status_code < 300:
            self._acked_doc = snapshot
            record.acked = True
            self.status.error = ""
            self._acked_mono = time.monotonic()
            self._convergence.observe(self._acked_mono - (since if since is not None else t0))
            async with self._acked:
                self.status.acked_version = record.version
                self.status.acked_rejected = rejected
                self.status.acked_revision = max(self.status.acked_revision, revision)
                self.status.acked_seq = max(self.status.acked_seq, seq)
                self._acked.notify_all()
            if self.source is not None:
                self.source.poke()
        else:
            record.nack = _reason(resp)
            self._convergence.nacks += 1
            self.status.error = f"NACK: {record.nack}"
            log.warning("data plane NACKed snapshot %s: %s", record.version, record.nack)
            async with self._acked:
                self._acked.notify_all()
        if self._publish:
            self._publish("mesh", version=record.version, revision=revision, acked=record.acked, nack=record.nack)
        await self._report(resources, rejected, record.version)

    async def _send(self, url: str, snapshot: Mapping[str, Any]) -> httpx.Response:
        """PUT the snapshot: a delta against the document the data plane ACKed last when there is one (what changed
        only: one canary step costs what one service costs), else the whole document. A delta the data plane
        refuses (its base version is not the data plane's: it restarted, or another control plane pushed) is
        followed by the whole document at once (docs/dataplane.md "Speed")."""
        base = self._acked_doc
        if base is not None:
            try:
                delta = make_delta(base, snapshot)
            except DeltaError:
                delta = None
            if delta is not None:
                resp = await self._put(url, delta)
                if resp.status_code < 300 or resp.status_code >= 500:
                    self.status.delta_pushes += resp.status_code < 300
                    return resp
                # Refused (its base, or anything else): the whole document decides, and names the real reason.
                log.info("data plane refused a delta (%s): pushing the whole snapshot", _reason(resp))
        return await self._put(url, snapshot)

    async def _put(self, url: str, document: Mapping[str, Any]) -> httpx.Response:
        return await self._http.put(f"{url}/config", content=json.dumps(document, default=_jsonable),
                                    headers={"content-type": "application/json"})

    def _bodies(self) -> list[dict[str, Any]]:
        return [dict(item.body) for item in self.store.list()]

    # === what the mesh tells about each resource ===

    _reported: frozenset[tuple[str, str, str, str, str]] = frozenset()
    _gateway_api_status: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # noqa: RUF012 (replaced, never mutated)

    async def _report(self, resources: list[dict[str, Any]], rejected: list[Rejection], version: int) -> None:
        """A warning event per newly left-out resource; status conditions written through the store."""
        now = datetime.now(UTC)
        reported = frozenset((r.group, r.kind, r.namespace, r.name, r.message) for r in rejected)
        for r in rejected:
            if (r.group, r.kind, r.namespace, r.name, r.message) in self._reported:
                continue
            log.warning("mesh snapshot %s leaves out %s: %s", version, r.ref, r.message)
            event = {"type": "Warning", "reason": "CompileError", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "involvedObject": {"apiGroup": r.group, "kind": r.kind, "namespace": r.namespace,
                                        "name": r.name, "resourceVersion": r.resource_version},
                     "message": f"left out of mesh snapshot {version}: {r.detail}"}
            self.status.events.append(event)
            if self._publish:
                self._publish("event", **event)
        self._reported = reported
        try:
            await asyncio.to_thread(self._write_statuses, resources, rejected, now)
        except Exception:  # the store is another area's; a failed status report must not stop pushes
            log.warning("cannot write mesh status conditions", exc_info=True)

    def _write_statuses(self, resources: list[dict[str, Any]], rejected: list[Rejection], now: datetime) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        set_status = getattr(self.store, "set_status", None)
        if set_status is None:
            return
        by_key = {(r.group, r.kind, r.namespace, r.name): r for r in rejected}
        for body in resources:
            md = body.get("metadata") or {}
            group = str(body.get("apiVersion") or "").rpartition("/")[0]
            kind, name, ns = str(body.get("kind") or ""), str(md.get("name") or ""), str(md.get("namespace") or "")
            rejection = by_key.get((group, kind, ns or "default", name))
            if group == gateway_api.GROUP:  # Accepted, ResolvedRefs, Programmed: as istiod writes them
                wanted = self._gateway_api_status.get((group, kind, ns or "default", name))
                new = gateway_api.status_update(body, wanted, rejection, stamp)
            else:
                new = status_with(body, rejection, stamp)
            if new is not False:
                set_status(ResourceKey(group, kind, ns, name), new, resource_version=md.get("resourceVersion"))


@dataclass
class Convergence:
    """Change-to-ACK delays as a cumulative histogram (Istio's pilot_proxy_convergence_time buckets)."""

    bounds: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 3, 5, 10, 20, 30)
    counts: list[int] = field(default_factory=lambda: [0] * 14)
    total_s: float = 0.0
    acks: int = 0
    nacks: int = 0
    errors: int = 0

    def observe(self, seconds: float) -> None:
        self.acks += 1
        self.total_s += seconds
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for i, bound in enumerate(self.bounds):
            running += self.counts[i]
            out.append((f"{bound:g}", float(running)))
        out.append(("+Inf", float(self.acks)))
        return out


def _reason(resp: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        data = resp.json()
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict):
                return str(err.get("message") or err)
            for key in ("error", "reason", "message", "detail"):
                if data.get(key):
                    return str(data[key])
    return resp.text.strip()[:500] or f"HTTP {resp.status_code}"


def _version_in(resp: httpx.Response) -> int | None:
    with contextlib.suppress(ValueError):
        data = resp.json()
        if isinstance(data, dict) and isinstance(data.get("version"), int):
            return int(data["version"])
    return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _left_out_summary(rejected: Sequence[Rejection]) -> str:
    noun = "resource" if len(rejected) == 1 else "resources"
    return f"{len(rejected)} {noun} left out of the mesh configuration: " + "; ".join(r.message for r in rejected)


def _left_out_message(rejected: Sequence[Rejection], revision: int) -> str:
    names = ", ".join(r.ref for r in rejected)
    reasons = "; ".join(r.detail if len(rejected) == 1 else r.message for r in rejected)
    return (f"{names} {'was' if len(rejected) == 1 else 'were'} not applied to the mesh (store revision {revision} "
            f"is served without {'it' if len(rejected) == 1 else 'them'}): {reasons}")
