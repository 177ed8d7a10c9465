"""The mirror layer through real sockets: shadow copies and their percentages, of HTTP/1.1 requests and of h2
streams to an HTTP/1.1 mirror (gRPC to an h2 mirror: test_grpc_mirror.py); the bound on mirrors in flight."""

from __future__ import annotations

import asyncio
import random
import time

import httpx

from graylane.mesh.proxy.balance import LoadState
from graylane.mesh.proxy.mirror import MAX_IN_FLIGHT, Mirrors
from graylane.mesh.proxy.stats import Stats

from ..helpers import counter, vs
from .support import client, to


def test_mirror_sends_a_copy_and_the_caller_sees_only_the_primary(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "mirror": {"host": "reviews", "subset": "v2"},
                                       "mirrorPercentage": {"value": 100}}])])
    before = len(ups["v2"].requests)
    with client(port) as c:
        assert c.post("http://reviews:9080/m", content=b"abc").json()["name"] == "reviews-v1"
    for _ in range(500):
        if len(ups["v2"].requests) > before:
            break
        time.sleep(0.02)
    copy = ups["v2"].requests[-1]
    assert copy["url"] == "/m" and copy["body_len"] == 3 and copy["headers"]["host"] == "reviews:9080"


def test_mirror_percentage_zero_sends_nothing(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "mirror": {"host": "reviews", "subset": "v3"},
                                       "mirrorPercentage": {"value": 0}}])])
    before = len(ups["v3"].requests)
    with client(port) as c:
        for _ in range(5):
            c.get("http://reviews:9080/")
        c.get("http://reviews:9080/delay/0.1")
    assert len(ups["v3"].requests) == before


def test_an_h2_stream_is_mirrored_to_an_http1_upstream_with_its_whole_body(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "mirror": {"host": "reviews", "subset": "v2"},
                                       "mirrorPercentage": {"value": 100}}])])
    sent = counter(mesh, "graylane_proxy_mirror_requests_total")
    before = len(ups["v2"].requests)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=10, trust_env=False) as c:
        r = c.post("/h2m", headers={"host": "reviews:9080", "x-test": "1"}, content=b"q" * 50_000)
        assert r.http_version == "HTTP/2" and r.json()["name"] == "reviews-v1"
        r = c.post("/h2big", headers={"host": "reviews:9080"}, content=b"q" * 70_000)  # beyond 64 KiB: no copy
        assert r.json()["name"] == "reviews-v1"
        assert c.get("/h2get", headers={"host": "reviews:9080"}).json()["name"] == "reviews-v1"
    for _ in range(500):
        if len(ups["v2"].requests) >= before + 2:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    copies = ups["v2"].requests[before:]
    assert [(c["method"], c["url"], c["body_len"]) for c in copies] == [("POST", "/h2m", 50_000), ("GET", "/h2get", 0)]
    assert copies[0]["headers"]["host"] == "reviews:9080" and copies[0]["headers"]["x-test"] == "1"
    assert counter(mesh, "graylane_proxy_mirror_requests_total") - sent == 2


def test_mirrors_in_flight_are_bounded_and_the_rest_dropped():
    async def run() -> None:
        stats = Stats()
        mirrors = Mirrors(asyncio.get_running_loop(), random.Random(), LoadState(), None, stats)  # type: ignore[arg-type]
        gate = asyncio.Event()

        async def send() -> bool:
            await gate.wait()
            return True

        for _ in range(MAX_IN_FLIGHT + 5):
            mirrors.start(send())
        assert len(mirrors.tasks) == MAX_IN_FLIGHT
        assert stats.counters["graylane_proxy_mirror_overflow_total"] == 5
        gate.set()
        await asyncio.gather(*mirrors.tasks)
        assert stats.counters["graylane_proxy_mirror_requests_total"] == MAX_IN_FLIGHT and not mirrors.tasks
        mirrors.start(send())  # room again
        assert len(mirrors.tasks) == 1
        await asyncio.gather(*mirrors.tasks)

    asyncio.run(run())
