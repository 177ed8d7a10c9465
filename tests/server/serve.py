"""A real control plane on a loopback socket (uvicorn in a thread), for tests of what arrives over HTTP:
Host headers, Origins, cookies and body sizes exactly as a browser or a script sends them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from graylane.server.app import create_app
from graylane.server.context import ControlPlane
from graylane.store import Store


@dataclass
class Served:
    url: str
    port: int
    app: Any
    store: Store

    @property
    def token(self) -> str:
        return str(self.app.state.cli_token)

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        """A script's client: no cookies, no Origin; with a bearer token when given."""
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, trust_env=False, timeout=30, **kw)

    def operator(self, **kw: Any) -> httpx.Client:
        """The local CLI: the token from the state folder."""
        return self.client(self.token, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(store: Store) -> Iterator[Served]:
    app = create_app(ControlPlane(store=store), start_components=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # uvicorn offers no start event; its flag flips once the socket listens
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", port, app, store)
    finally:
        server.should_exit = True
        thread.join(15)
