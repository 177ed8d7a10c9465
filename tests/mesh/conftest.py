"""Fixtures for data-plane tests: a real proxy with its admin port, and real upstream servers, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import Mesh, loop_thread


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    from graylane.mesh.proxy.admin import serve_admin
    from graylane.mesh.proxy.server import ProxyServer

    with loop_thread() as lt:
        async def start() -> tuple[Any, int]:
            server = ProxyServer(idle_timeout_s=2.0, header_timeout_s=1.0)
            admin = await serve_admin(server, "127.0.0.1", 0)
            return server, admin.sockets[0].getsockname()[1]

        server, admin_port = lt.run(start())
        yield Mesh(lt, admin_port, server)
        lt.run(server.close())
