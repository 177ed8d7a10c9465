"""The fault layer through real sockets: abort (FI) and delay (DI)."""

from __future__ import annotations

from ..helpers import series, vs
from .support import client, to


def test_fault_abort_and_delay(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/abort"}}], "route": [to("v1")],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}}},
        {"route": [to("v1")], "fault": {"delay": {"fixedDelay": "0.05s", "percentage": {"value": 100}}}}])])
    seen = len(ups["v1"].requests)
    fi = series(mesh, reporter="source", response_flags="FI", response_code="418")
    di = series(mesh, reporter="source", response_flags="DI", response_code="200")
    with client(port) as c:
        r = c.get("http://reviews:9080/abort")
        assert (r.status_code, r.text) == (418, "fault filter abort")
        assert c.get("http://reviews:9080/slow").status_code == 200
    assert len(ups["v1"].requests) == seen + 1  # the aborted request never reached the upstream
    assert series(mesh, reporter="source", response_flags="FI", response_code="418") - fi == 1
    assert series(mesh, reporter="source", response_flags="DI", response_code="200") - di == 1


def test_roll_draws_delay_and_abort_independently_by_percentage():
    import random

    from graylane.mesh.proxy.faults import NO_FAULT, roll
    from graylane.mesh.routing import Fault

    assert roll(None, random.Random(0)) is NO_FAULT
    both = roll(Fault(delay_s=0.5, delay_percent=100, abort_status=418, abort_percent=100), random.Random(0))
    assert (both.delay_s, both.abort_status) == (0.5, 418)
    rng = random.Random(1)
    aborts = sum(roll(Fault(abort_status=500, abort_percent=25), rng).abort_status == 500 for _ in range(4000))
    assert 800 < aborts < 1200
