"""Fixtures of the proxy layer tests: the Bookinfo reviews upstreams behind a productpage sidecar."""

from __future__ import annotations

import pytest

from ..helpers import dr, free_port, sidecar, svc


@pytest.fixture
def reviews(mesh):
    """reviews v1/v2/v3 upstreams and a sidecar for productpage; returns (push(resources, **kw), port, ups)."""
    ups = {v: mesh.upstream(f"reviews-{v}") for v in ("v1", "v2", "v3")}
    port = free_port()
    eps = [mesh.endpoint(up, "reviews", v) for v, up in ups.items()]

    def push(resources, endpoints=None, sidecars=None, options=None, extra_eps=()):
        return mesh.push([svc("reviews"), dr("reviews", ["v1", "v2", "v3"]), *resources],
                         [*(eps if endpoints is None else endpoints), *extra_eps],
                         sidecars or [sidecar(port)], options)

    return push, port, ups

