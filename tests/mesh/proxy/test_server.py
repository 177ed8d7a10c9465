"""The data-plane process through real sockets: NACKs, snapshot swaps under load, listener removal."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest

from ..helpers import free_port, sidecar, vs
from .support import client, to


def test_unsupported_envoy_filter_and_bad_snapshot_are_nacked_keeping_the_previous(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    good = mesh.get("/config_dump").json()["version"]
    snap = mesh.get("/config_dump").json()["snapshot"]
    bad = json.loads(json.dumps(snap))
    bad["version"] = good + 1
    bad["virtual_services"][0]["http"][0]["match"] = [{"uri": {"regex": "(unclosed"}}]
    r = httpx.put(f"{mesh.admin}/config", json=bad)
    assert r.status_code == 400 and r.json()["nack"] == good + 1 and "regex" in r.json()["reason"]
    assert mesh.get("/config_dump").json()["version"] == good
    with client(port) as c:
        assert c.get("http://reviews:9080/").status_code == 200


def test_snapshot_swaps_under_load_never_fail_a_request(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1", 50), to("v2", 50)]}])])
    stop = False

    def load(_):
        n = bad = 0
        with client(port) as c:
            while not stop:
                r = c.get("http://reviews:9080/delay/0.01")
                n += 1
                bad += r.status_code != 200
        return n, bad

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, i) for i in range(4)]
        for i in range(10):
            push([vs("reviews", ["reviews"], [{"route": [to("v1", i * 7 % 100), to("v2", 100 - i * 7 % 100)]}])])
            time.sleep(0.03)
        stop = True
        results = [f.result() for f in futures]
    assert sum(n for n, _ in results) > 20 and sum(b for _, b in results) == 0


def test_removing_a_listener_lets_its_in_flight_request_finish(mesh, reviews):
    push, port, ups = reviews
    other = free_port()
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], sidecars=[sidecar(port), sidecar(other, app="x")])
    seen = len(ups["v1"].requests)

    def slow():
        with client(other) as c:
            return c.get("http://reviews:9080/delay/1").status_code

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(slow)
        for _ in range(500):  # the event: the request is at the upstream, in flight through `other`
            if any(r["url"] == "/delay/1" for r in ups["v1"].requests[seen:]):
                break
            time.sleep(0.01)
        push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], sidecars=[sidecar(port)])  # drops `other`
        assert fut.result() == 200
    with pytest.raises(httpx.ConnectError), client(other) as c:
        c.get("http://reviews:9080/")
    assert not [lst for lst in mesh.get("/listeners").json()["listeners"] if lst["address"].endswith(f":{other}")]
