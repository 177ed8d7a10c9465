"""A proxy in front of a real control plane that loses the answer to the first request of one kind: the request
was applied, its sender never heard back (the connection closes); or answers it as a stopping replica does.
What the CLI's re-send with its `Idempotency-Key` is tested against (test_judgment_once, test_start_cancel_once)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

_NOT_RELAYED = ("content-length", "transfer-encoding", "connection", "content-encoding")


class _LosesFirstAnswer(http.server.BaseHTTPRequestHandler):
    upstream = ""
    stopping = False  # answer the first lossy request 503 + Retry-After itself (a draining replica), not forward it
    lossy: Callable[[str, str], bool] = staticmethod(lambda method, path: False)  # type: ignore[assignment]
    keys: list[str | None] = []  # the Idempotency-Key of every request of the lossy kind, in order

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        lossy = type(self).lossy(self.command, self.path)
        if lossy:
            self.keys.append(self.headers.get("idempotency-key"))
        if lossy and len(self.keys) == 1 and self.stopping:
            answer = b'{"error": {"message": "this control plane is stopping and takes no new requests"}}'
            self.send_response(503)
            for k, v in (("retry-after", "1"), ("content-type", "application/json"),
                         ("content-length", str(len(answer)))):
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(answer)
            return
        r = httpx.request(self.command, self.upstream + self.path, content=body, headers=headers, trust_env=False)
        if lossy and len(self.keys) == 1:
            self.close_connection = True
            return  # no answer: the client sees the connection closed
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in _NOT_RELAYED:
                self.send_header(k, v)
        self.send_header("content-length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PATCH = do_PUT = _forward

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def losing_first_answer(upstream: str, lossy: Callable[[str, str], bool],
                        stopping: bool = False) -> Iterator[tuple[str, list[str | None]]]:
    """Serves the proxy on a free port: yields its `host:port` and the keys the lossy requests carried.
    `stopping`: the first lossy request is not forwarded but answered as a draining control plane does."""
    handler = type("Proxy", (_LosesFirstAnswer,), {"upstream": upstream, "lossy": staticmethod(lossy), "keys": [],
                                                   "stopping": stopping})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{proxy.server_address[1]}", handler.keys
    finally:
        proxy.shutdown()
