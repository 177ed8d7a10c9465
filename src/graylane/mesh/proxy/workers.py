"""The data plane as N worker processes (`--concurrency N`): a primary holding the admin port, N workers serving.

Each worker is a whole single-process data plane (its own uvloop and `ProxyServer`) accepting from the
primary's one listening socket per address (`shared_sockets.py`: passed over a second socketpair, kept by the
supervisor when there is one), as nginx's workers share theirs. The primary serves no traffic: it starts the
workers, holds the admin port and the listening sockets, and talks to each worker over its own Unix socketpair
(`fanout.py` framing).

- A push (PUT /config) goes to every worker; the primary ACKs when every running worker ACKed, otherwise it
  NACKs with the first worker's reason (by worker index) and puts the workers that did ACK back on the
  snapshot the refusing ones serve (their whole document), so all of them keep serving the same one. A worker
  that exits during a push or is being restarted is not waited for: it catches up once started.
- A worker that exits is started again at once (backoff from 0.1 s doubling to 5 s while it keeps exiting):
  it restores the kept snapshot (with a state folder), then gets the whole snapshot a running worker serves
  before the next push. A worker that does not answer the primary in time is killed (and so restarted).
- Views are one: see `fanout.py` (stats summed, clusters merged, access log and spans gathered).
- Every worker restores the kept snapshot at start; only worker 0 writes it (on each ACK).

With `--concurrency 1` none of this runs: `admin.run` serves in one process as before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graylane.dataplane_contract import ENV_CHANNEL, ENV_FDS
from graylane.mesh import native
from graylane.mesh.proxy.admin import Reply, respond, serve_admin
from graylane.mesh.proxy.fanout import (
    ChannelClosed,
    merge_access_log,
    merge_clusters,
    merge_connections,
    merge_prometheus,
    read_frame,
    read_reply,
    read_request,
    write_frames,
    write_reply,
    write_request,
)
from graylane.mesh.proxy.handoff import Handoff
from graylane.mesh.proxy.shared_sockets import ListenSockets, ProvidedSockets, recv_latest, recv_sockets, send_sockets
from graylane.mesh.proxy.tracing import SpanRing

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0  # interpreter start and imports, on a loaded machine
PUSH_TIMEOUT_S = 120.0  # a worker applying a snapshot (thousands of services)
VIEW_TIMEOUT_S = 10.0
TIMEOUT_FLAGS = {"idle_timeout_s": "--idle-timeout", "header_timeout_s": "--header-timeout",
                 "request_timeout_s": "--request-timeout", "stream_idle_timeout_s": "--stream-idle-timeout"}


def default_concurrency() -> int:
    """The CPUs this process may run on (its affinity; `os.process_cpu_count()` in Python 3.13), as Envoy's
    `--cpuset-threads` and nginx's `worker_processes auto` count them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _json(status: int, payload: Any) -> Reply:
    return status, "application/json", json.dumps(payload, separators=(",", ":")).encode()


class WorkerFailed(Exception):
    pass


class Worker:
    def __init__(self, index: int, listen: ListenSockets) -> None:
        self.index = index
        self.listen = listen  # the shared listening sockets: every call brings the worker's set up to date
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.up = False
        self.restarts = 0
        self.started = 0.0
        self.version: Any = None  # the snapshot version it serves, as far as the primary knows
        self.fds: socket.socket | None = None  # the channel its shared listening sockets go over (shared_sockets.py)
        self.sockets_generation = -1  # the set of shared sockets it has (ListenSockets.generation)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def call(self, method: str, url: str, body: bytes = b"", timeout: float = VIEW_TIMEOUT_S) -> Reply:
        async with self.lock:
            if not self.up or self.reader is None or self.writer is None:
                raise WorkerFailed(f"worker {self.index} is restarting")
            try:
                self.send_sockets()  # before the request: the worker takes them before it handles it
                write_request(self.writer, method, url, body)
                await self.writer.drain()
                return await asyncio.wait_for(read_reply(self.reader), timeout)
            except (ChannelClosed, TimeoutError, OSError) as exc:
                self.up = False
                self.kill()
                what = "did not answer in time" if isinstance(exc, TimeoutError) else f"exited ({exc})"
                raise WorkerFailed(f"worker {self.index} (pid {self.pid}) {what}") from None

    def send_sockets(self) -> None:
        """The current set of shared listening sockets, if the worker's is older (it drops those not in it)."""
        if self.fds is not None and self.sockets_generation != self.listen.generation:
            send_sockets(self.fds, self.listen.sockets)
            self.sockets_generation = self.listen.generation

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class Primary:
    """Starts and restarts the workers, fans admin requests out to them and merges their answers."""

    def __init__(self, concurrency: int, state_dir: str | None, log_level: str, timeouts: dict[str, float],
                 handoff: Handoff | None = None) -> None:
        self.listen = ListenSockets(handoff)
        self.workers = [Worker(i, self.listen) for i in range(concurrency)]
        self.state_dir = state_dir
        self.log_level = log_level
        self.timeouts = timeouts
        self.push_lock = asyncio.Lock()
        self.stopping = False
        self.watchers: list[asyncio.Task[None]] = []
        self.span_lock = asyncio.Lock()
        self.span_cursor = [0] * concurrency
        self.spans = SpanRing()

    # -- processes -------------------------------------------------------------------------------------
    def argv(self, index: int, fd: int, sockets_fd: int) -> list[str]:
        argv = [sys.executable, "-m", "graylane.mesh.proxy.workers", "--channel-fd", str(fd), "--index", str(index),
                "--sockets-fd", str(sockets_fd), "--log-level", self.log_level]
        for key, value in self.timeouts.items():
            argv += [TIMEOUT_FLAGS[key], repr(float(value))]
        if self.state_dir:
            argv += ["--state-dir", self.state_dir]
        return argv

    async def spawn(self, w: Worker) -> None:
        if w.writer is not None:  # the previous process's channel
            w.writer.close()
            w.reader = w.writer = None
        if w.fds is not None:
            w.fds.close()
        ours, theirs = socket.socketpair()
        w.fds, their_fds = socket.socketpair()
        env = {k: v for k, v in os.environ.items() if k not in (ENV_CHANNEL, ENV_FDS)}
        try:
            w.proc = await asyncio.create_subprocess_exec(
                *self.argv(w.index, theirs.fileno(), their_fds.fileno()), env=env,
                pass_fds=(theirs.fileno(), their_fds.fileno()), stdin=asyncio.subprocess.DEVNULL)
        finally:
            theirs.close()
            their_fds.close()
        # Its listening sockets first: it restores its kept snapshot on them before it says hello.
        w.sockets_generation = -1
        w.send_sockets()
        w.reader, w.writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
        try:
            hello = json.loads(await asyncio.wait_for(read_frame(w.reader), START_TIMEOUT_S))
        except (ChannelClosed, TimeoutError, ValueError) as exc:
            w.kill()
            raise WorkerFailed(f"worker {w.index} did not start: {exc or 'timed out'}") from None
        w.started = time.monotonic()
        w.version = hello.get("version")
        self.span_cursor[w.index] = 0
        log.info("worker %d started (pid %s, serving version %s)", w.index, hello.get("pid"), w.version)

    async def start(self) -> None:
        self.listen.restore(self.state_dir)
        await asyncio.gather(*(self.spawn(w) for w in self.workers))
        for w in self.workers:
            w.up = True
        self.watchers = [asyncio.get_running_loop().create_task(self.watch(w)) for w in self.workers]

    async def watch(self, w: Worker) -> None:
        """Restart `w` whenever it exits, and give it the current snapshot before it serves."""
        failures = 0
        while not self.stopping:
            assert w.proc is not None
            code = await w.proc.wait()
            w.up = False
            if self.stopping:
                return
            failures = failures + 1 if time.monotonic() - w.started < 10 else 1
            log.warning("worker %d (pid %s) exited with code %s: restarting it", w.index, w.proc.pid, code)
            await asyncio.sleep(min(5.0, 0.1 * 2 ** (failures - 1)) if failures > 1 else 0)
            try:
                await self.spawn(w)
            except (WorkerFailed, OSError) as exc:
                log.warning("%s", exc)
                continue
            w.restarts += 1
            async with self.push_lock:  # no push interleaves: the worker gets exactly what the others serve
                w.up = True
                with contextlib.suppress(WorkerFailed):
                    await self.sync(w, [o for o in self.live() if o is not w])

    async def sync(self, w: Worker, donors: list[Worker]) -> None:
        """Put `w` on the snapshot the first answering donor serves (its whole document: pushes may be deltas)."""
        for donor in donors:
            try:
                status, _, body = await donor.call("GET", "/config_dump")
            except WorkerFailed:
                continue
            dump = json.loads(body) if status == 200 else {}
            if not dump.get("version") or dump.get("version") == w.version:
                return  # nothing pushed yet, or `w` restored that very snapshot from disk
            status, _, body = await w.call("PUT", "/config", json.dumps(dump["snapshot"]).encode(), PUSH_TIMEOUT_S)
            if status != 200:
                log.warning("worker %d refused the snapshot worker %d serves: %s", w.index, donor.index, body[:500])
            else:
                w.version = dump.get("version")
            return

    async def close(self) -> None:
        self.stopping = True
        for t in self.watchers:
            t.cancel()
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.terminate()
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                await asyncio.wait_for(w.proc.wait(), 10)
            except TimeoutError:
                w.kill()
                await w.proc.wait()
        self.listen.close()

    # -- admin -----------------------------------------------------------------------------------------
    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.up]

    async def gather(self, url: str) -> list[Reply]:
        """`url` from every running worker, in worker order (workers that fail meanwhile are left out)."""
        replies = await asyncio.gather(*(w.call("GET", url) for w in self.live()), return_exceptions=True)
        return [r for r in replies if isinstance(r, tuple)]

    async def push(self, body: bytes) -> Reply:
        async with self.push_lock:
            live = self.live()
            if not live:
                return _json(503, {"nack": None, "reason": "no data-plane worker is running"})
            doc = _document(body)
            names = self.listen.follow(doc)  # new listeners' sockets go with the push (`Worker.call`)
            replies = await asyncio.gather(*(w.call("PUT", "/config", body, PUSH_TIMEOUT_S) for w in live),
                                           return_exceptions=True)
            answered = [(w, r) for w, r in zip(live, replies, strict=True) if isinstance(r, tuple)]
            acked = [w for w, r in answered if r[0] == 200]
            nacked = [(w, r) for w, r in answered if r[0] != 200]
            if acked and not nacked:  # workers that died meanwhile take it from these once restarted
                version = doc.get("version") if isinstance(doc, dict) else None
                for w in acked:
                    w.version = version
                self.listen.served_now(names, version)
                if self.listen.drop_unwanted():  # listeners gone: the workers let go of their sockets too
                    await self.give_sockets(self.live())
                return answered[0][1]
            if not nacked:
                reply = _json(400, {"nack": _version(body), "reason": "; ".join(str(r) for r in replies)})
            else:
                if acked:  # keep every worker on one snapshot: the ones that took this push go back
                    for w in acked:
                        w.version = _version(body)
                        with contextlib.suppress(WorkerFailed):
                            await self.sync(w, [n for n, _ in nacked])
                reply = nacked[0][1]
            if self.listen.drop_unwanted():  # sockets opened for the refused snapshot
                await self.give_sockets(self.live())
            return reply

    async def give_sockets(self, workers: list[Worker]) -> None:
        """Bring every worker's set of shared sockets up to date now (after listeners went away)."""
        await asyncio.gather(*(w.call("PUT", "/sockets") for w in workers), return_exceptions=True)

    async def handle(self, method: str, url: str, body: bytes) -> Reply:
        path = urlsplit(url).path
        if path == "/config" and method in ("PUT", "POST"):
            return await self.push(body)
        if method != "GET":
            return _json(405, {"error": f"{method} not allowed on {path}"})
        if path == "/workers":
            return _json(200, {"workers": await self.workers_view()})
        if path == "/stats/prometheus":
            texts = [b.decode() for s, _, b in await self.gather(url) if s == 200]
            own = (f"# TYPE graylane_proxy_workers gauge\ngraylane_proxy_workers {len(self.live())}\n"
                   f"# TYPE graylane_proxy_worker_restarts_total counter\n"
                   f"graylane_proxy_worker_restarts_total {sum(w.restarts for w in self.workers)}\n")
            return 200, "text/plain; version=0.0.4", merge_prometheus([*texts, own]).encode()
        if path == "/spans":
            return _json(200, await self.gather_spans(url))
        merges = {"/clusters": merge_clusters, "/access_log": merge_access_log, "/connections": merge_connections}
        if path in merges or path == "/ready":
            replies = await self.gather(url)
            views = [json.loads(b) for s, _, b in replies if s == 200]
            if path == "/ready":
                return _json(200, self.ready_view(views))
            return _json(200, merges[path](views)) if views else _json(503, {"error": "no worker answered"})
        for w in self.live():  # /config_dump, /listeners, unknown paths: any worker (they serve one snapshot)
            with contextlib.suppress(WorkerFailed):
                return await w.call(method, url, body)
        return _json(503, {"error": "no data-plane worker is running"})

    def ready_view(self, views: list[dict[str, Any]]) -> dict[str, Any]:
        every = len(views) == len(self.workers)
        return {"ready": every and all(v.get("ready") for v in views),
                "version": views[0].get("version") if views else None,
                "acked": every and all(v.get("acked") for v in views),
                "last_nack": next((v["last_nack"] for v in views if v.get("last_nack")), None),
                "workers": len(self.workers), "workers_running": len(views)}

    async def workers_view(self) -> list[dict[str, Any]]:
        out = []
        for w in self.workers:
            info: dict[str, Any] = {"index": w.index, "pid": w.pid, "up": w.up, "restarts": w.restarts}
            with contextlib.suppress(WorkerFailed, ValueError):
                status, _, body = await w.call("GET", "/worker")
                if status == 200:
                    info.update(json.loads(body))
            out.append(info)
        return out

    async def gather_spans(self, url: str) -> dict[str, Any]:
        """Every worker's new spans into the primary's ring (renumbered), then `since` over that ring."""
        since = int((parse_qs(urlsplit(url).query).get("since") or ["0"])[0] or 0)
        async with self.span_lock:
            for w in self.live():
                try:
                    status, _, body = await w.call("GET", f"/spans?since={self.span_cursor[w.index]}")
                except WorkerFailed:
                    continue
                if status != 200:
                    continue
                page = json.loads(body)
                for span in page.get("spans", []):
                    span.pop("seq", None)
                    self.spans.add(span)
                self.span_cursor[w.index] = int(page.get("next") or 0)
            return self.spans.since(since)


def _document(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _version(body: bytes) -> Any:
    with contextlib.suppress(ValueError, AttributeError):
        return json.loads(body).get("version")
    return None


async def run_primary(admin_host: str, admin_port: int, state_dir: str | None, concurrency: int,
                      log_level: str = "info", **timeouts: float) -> None:
    """Run the data plane as `concurrency` workers until SIGTERM/SIGINT."""
    handoff = Handoff.from_environ(os.environ)  # the supervisor keeps the shared sockets (shared_sockets.py)
    primary = Primary(concurrency, state_dir, log_level, timeouts, handoff)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await primary.start()
        admin = await serve_admin(primary.handle, admin_host, admin_port)
    except BaseException:
        await primary.close()
        raise
    log.info("data plane admin on %s:%s, %d workers; hot path %s", admin_host, admin_port, concurrency,
             native.status()[1])
    await stop.wait()
    admin.close()
    await primary.close()


# -- the worker process ---------------------------------------------------------------------------------------
async def serve_worker(fd: int, index: int, state_dir: str | None, sockets_fd: int | None = None,
                       **timeouts: float) -> None:
    from graylane.mesh.proxy.server import ProxyServer

    server = ProxyServer(state_dir=state_dir, **timeouts)  # type: ignore[arg-type]  # only *_timeout_s keys
    server.reuse_port = True  # an address the primary could not open: bound here, shared with the other workers
    fds = socket.socket(fileno=sockets_fd) if sockets_fd is not None else None
    provided = ProvidedSockets()
    if fds is not None:
        provided.replace(recv_sockets(fds))  # sent at spawn: the kept snapshot is restored on them
        server.handoff = provided  # type: ignore[assignment]  # the same shape as the supervisor's handoff
    await server.restore()  # every worker serves the kept snapshot; only worker 0 writes it
    if index != 0:
        server.last_good = None
    reader, writer = await asyncio.open_connection(sock=socket.socket(fileno=fd), limit=1 << 20)
    write_frames(writer, json.dumps({"pid": os.getpid(), "index": index, "version": server.table.version}).encode())
    await writer.drain()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        while True:
            method, url, body = await read_request(reader)
            if fds is not None:  # a newer set of shared sockets comes before the request that needs it
                try:
                    if (latest := recv_latest(fds)) is not None:
                        provided.replace(latest)
                except (OSError, ValueError) as exc:
                    log.warning("worker %d: cannot take the shared listening sockets: %s", index, exc)
            if urlsplit(url).path == "/sockets":
                reply = _json(200, {"sockets": len(provided.sockets)})
            elif urlsplit(url).path == "/worker":
                text = server.stats.render()
                served = sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                             if line.startswith("istio_requests_total{"))
                reply = _json(200, {"index": index, "pid": os.getpid(), "requests": int(served),
                                    "version": server.table.version})
            else:
                reply = await respond(server, method, url, body)
            write_reply(writer, reply)
            await writer.drain()
    except (ChannelClosed, ConnectionError):
        log.info("worker %d: the primary went away; stopping", index)
    except asyncio.CancelledError:
        pass
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graylane.mesh.proxy.workers", description="one data-plane worker")
    ap.add_argument("--channel-fd", type=int, required=True)
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--sockets-fd", type=int, default=None)
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--log-level", default="info")
    for key, flag in TIMEOUT_FLAGS.items():
        ap.add_argument(flag, dest=key, type=float, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {args.index}]: %(message)s")
    timeouts = {k: getattr(args, k) for k in TIMEOUT_FLAGS if getattr(args, k) is not None}
    import uvloop

    uvloop.run(serve_worker(args.channel_fd, args.index, args.state_dir, args.sockets_fd, **timeouts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
