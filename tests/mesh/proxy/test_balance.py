"""The balance layer through real sockets: outlier ejection and cookie affinity."""

from __future__ import annotations

from ..helpers import dr, sidecar, svc, vs
from .support import client, to


def test_outlier_detection_ejects_the_failing_host(mesh, reviews):
    push, port, ups = reviews
    bad = mesh.upstream("bad3", status=500)
    policy = {"outlierDetection": {"consecutive5xxErrors": 2, "interval": "1s", "baseEjectionTime": "30s",
                                   "maxEjectionPercent": 50}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")], "retries": {"attempts": 0}}])],
              [mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")], [sidecar(port)])
    with client(port) as c:
        codes = [c.get("http://reviews:9080/").status_code for _ in range(30)]
    assert codes.count(500) == 2 and codes[-10:] == [200] * 10
    cluster = next(c for c in mesh.get("/clusters").json()["clusters"] if c["name"].startswith("outbound|9080|v1|"))
    ejected = [e for e in cluster["endpoints"] if e["ejected"]]
    assert [e["address"] for e in ejected] == [f"127.0.0.1:{bad.port}"] and ejected[0]["times_ejected"] == 1


def test_cookie_affinity_sets_the_cookie_and_sticks(mesh, reviews):
    push, port, ups = reviews
    extra = [mesh.endpoint(mesh.upstream(f"v1-{i}"), "reviews", "v1") for i in range(3)]
    policy = {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "3600s", "path": "/"}}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])], extra, [sidecar(port)])
    with client(port) as c:
        first = c.get("http://reviews:9080/")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith('user="') and "Max-Age=3600" in cookie and "Path=/" in cookie
        value = cookie.split('"')[1]
        c.cookies.clear()
        names = {c.get("http://reviews:9080/", headers={"cookie": f"user={value}"}).json()["name"]
                 for _ in range(10)}
    assert names == {first.json()["name"]}
