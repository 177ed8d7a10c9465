"""The timeout layer through real sockets: the route timeout, its header override, perTryTimeout."""

from __future__ import annotations

import pytest

from ..helpers import series, vs
from .support import client, to


def test_route_timeout_is_504_ut_and_header_overrides_it(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "timeout": "0.2s"}])])
    before = series(mesh, reporter="source", response_flags="UT", response_code="504")
    with client(port) as c:
        r = c.get("http://reviews:9080/delay/2")
        assert (r.status_code, r.text) == (504, "upstream request timeout")
        assert c.get("http://reviews:9080/delay/0.4", headers={"x-envoy-upstream-rq-timeout-ms": "3000"}
                     ).status_code == 200
    assert series(mesh, reporter="source", response_flags="UT", response_code="504") - before == 1


def test_per_try_timeout_retries_then_fails(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "retries": {
        "attempts": 1, "perTryTimeout": "0.1s", "retryOn": "gateway-error"}}])])
    before = series(mesh, reporter="source", response_flags="UT,URX", response_code="504")
    with client(port) as c:
        r = c.get("http://reviews:9080/delay/1")
    assert r.status_code == 504
    assert series(mesh, reporter="source", response_flags="UT,URX", response_code="504") - before == 1


def test_deadline_takes_the_tighter_limit_and_the_header_replaces_the_route_timeout():
    from graylane.mesh.proxy.timeout import NO_DEADLINE, Deadline

    def clock() -> float:
        return 100.0

    d = Deadline.start(clock, 2.0, None, 0.5)
    assert d.limit(100.0) == (0.5, True) and d.limit(101.8) == (pytest.approx(0.2), False)
    assert Deadline.start(clock, 2.0, "3000", None).at == 103.0
    assert Deadline.start(clock, 2.0, "0", None).limit(100.0) == (None, False)  # 0 disables
    assert Deadline.start(clock, None, None, None) is NO_DEADLINE  # the common route: no limit at all
    assert Deadline.start(clock, None, "250", None).at == 100.25  # the header alone sets one
    assert d.clamp(5.0, 101.0) == pytest.approx(0.999)
