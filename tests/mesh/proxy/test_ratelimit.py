"""The rate-limit layer through real sockets: the destination's inbound local rate limit."""

from __future__ import annotations

from ..helpers import series, vs
from .support import client, envoy_filter, to


def test_local_rate_limit_on_the_destination_workload_is_429_rl(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}]), envoy_filter("SIDECAR_INBOUND", {"app": "reviews"})])
    before = series(mesh, reporter="destination", response_flags="RL", response_code="429")
    with client(port) as c:
        got = [c.get("http://reviews:9080/") for _ in range(5)]
    assert [r.status_code for r in got] == [200, 200, 200, 429, 429]
    assert got[-1].text == "local_rate_limited" and got[-1].headers["x-local-rate-limit"] == "true"
    assert series(mesh, reporter="destination", response_flags="RL", response_code="429") - before == 2
