"""The respond layer through real sockets: Envoy's local replies, redirects, direct responses, CORS."""

from __future__ import annotations

from ..helpers import dr, series, svc, vs
from .support import client, to


def test_no_route_no_cluster_no_healthy_upstream_are_worded_as_envoy(mesh, reviews):
    push, port, ups = reviews
    push([dr("ratings", ["v1"]), svc("ratings"), vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/nc"}}], "route": [to("v7")]},
        {"match": [{"uri": {"prefix": "/uh"}}], "route": [to("v1", host="ratings")]}])])
    kinds = {"NC": {"response_flags": "NC", "response_code": "503"}, "UH": {"response_flags": "UH"},
             "NR": {"response_flags": "NR", "response_code": "404"},
             "passthrough": {"destination_service_name": "PassthroughCluster", "response_code": "200"}}
    before = {k: series(mesh, reporter="source", **labels) for k, labels in kinds.items()}
    with client(port) as c:
        assert c.get(f"http://127.0.0.1:{ups['v2'].port}/direct").json()["name"] == "reviews-v2"  # passthrough
        assert c.get("http://reviews:9080/zzz").status_code == 404
        r = c.get("http://reviews:9080/nc")
        assert r.status_code == 503
        r = c.get("http://reviews:9080/uh")
        assert (r.status_code, r.text) == (503, "no healthy upstream")
    after = {k: series(mesh, reporter="source", **labels) for k, labels in kinds.items()}
    assert {k: after[k] - before[k] for k in kinds} == {"NC": 1, "UH": 1, "NR": 1, "passthrough": 1}


def test_rewrite_redirect_direct_response(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/old"}}], "rewrite": {"uri": "/new", "authority": "reviews.internal"},
         "route": [to("v1")]},
        {"match": [{"uri": {"prefix": "/re"}}], "rewrite": {"uriRegexRewrite": {"match": "^/re/(.*)$",
                                                                                 "rewrite": "/x/\\1"}},
         "route": [to("v1")]},
        {"match": [{"uri": {"exact": "/moved"}}], "redirect": {"uri": "/here", "authority": "example.com",
                                                              "redirectCode": 308}},
        {"match": [{"uri": {"exact": "/port"}}], "redirect": {"uri": "/p", "derivePort": "FROM_REQUEST_PORT"}},
        {"match": [{"uri": {"exact": "/direct"}}], "directResponse": {"status": 503, "body": {"string": "down"}}}])])
    with client(port, follow_redirects=False) as c:
        body = c.get("http://reviews:9080/old/a?z=1").json()
        assert body["path"] == "/new/a" and body["headers"]["host"] == "reviews.internal"
        assert c.get("http://reviews:9080/re/q").json()["path"] == "/x/q"
        r = c.get("http://reviews:9080/moved")
        assert (r.status_code, r.headers["location"]) == (308, "http://example.com/here")
        assert c.get("http://reviews:9080/port").headers["location"] == "http://reviews:9080/p"
        r = c.get("http://reviews:9080/direct")
        assert (r.status_code, r.text) == (503, "down")


def test_cors_preflight_and_simple_request(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "corsPolicy": {
        "allowOrigins": [{"exact": "https://app.example"}], "allowMethods": ["GET", "POST"],
        "allowHeaders": ["x-a"], "exposeHeaders": ["x-b"], "maxAge": "24h", "allowCredentials": True}}])])
    seen = len(ups["v1"].requests)
    with client(port) as c:
        pre = c.options("http://reviews:9080/", headers={"origin": "https://app.example",
                                                         "access-control-request-method": "POST"})
        simple = c.get("http://reviews:9080/", headers={"origin": "https://app.example"})
        other = c.get("http://reviews:9080/", headers={"origin": "https://evil.example"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-methods"] == "GET,POST"
    assert pre.headers["access-control-max-age"] == "86400"
    assert len(ups["v1"].requests) == seen + 2  # the preflight was answered by the proxy
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert simple.headers["access-control-expose-headers"] == "x-b"
    assert "access-control-allow-origin" not in other.headers
