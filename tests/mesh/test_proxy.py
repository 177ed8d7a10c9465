"""The data plane through real sockets: a ProxyServer on loopback in front of real upstream servers."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest

from graylane.mesh.state import MeshOptions

from .helpers import dr, free_port, series, sidecar, svc, vs


def client(port: int, **kw) -> httpx.Client:
    return httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10, **kw)


def to(subset: str = "", weight: int | None = None, host: str = "reviews") -> dict:
    d: dict = {"destination": {"host": host, **({"subset": subset} if subset else {})}}
    if weight is not None:
        d["weight"] = weight
    return d


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


def test_absolute_and_origin_form_both_route_and_keep_alive_on_both_sides(mesh, reviews):
    push, port, ups = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    before = ups["v1"].connections
    with client(port) as c:
        for _ in range(10):
            assert c.get("http://reviews:9080/x").json()["name"] == "reviews-v1"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"host": "reviews.default:9080"}) as c:
        r = c.get("/y?q=1")
        assert r.json()["path"] == "/y" and r.json()["query"] == {"q": ["1"]}
    assert ups["v1"].connections - before == 1  # one upstream keep-alive connection served all 11 requests


def test_weighted_split_is_exact_through_the_proxy_and_header_rule_wins(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
        {"route": [to("v1", 90), to("v3", 10)]}])])
    with client(port) as c:
        names = [c.get("http://reviews:9080/").json()["name"] for _ in range(100)]
        assert c.get("http://reviews:9080/", headers={"end-user": "jason"}).json()["name"] == "reviews-v2"
    assert names.count("reviews-v1") == 90 and names.count("reviews-v3") == 10


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


def test_connection_refused_is_503_uf_after_default_retries(mesh, reviews):
    push, port, ups = reviews
    dead = mesh.endpoint(ups["v1"], "reviews", "v1")
    dead = type(dead)(**{**dead.__dict__, "port": free_port(), "pod": "dead"})
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], endpoints=[dead])
    before = series(mesh, reporter="source", response_flags="UF,URX")
    with client(port) as c:
        r = c.get("http://reviews:9080/")
    assert r.status_code == 503
    assert r.text == "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    assert series(mesh, reporter="source", response_flags="UF,URX") - before == 1


def test_default_retry_policy_retries_503_on_another_host(mesh, reviews):
    push, port, ups = reviews
    bad = mesh.upstream("bad", status=503)
    eps = [mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")]
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], endpoints=eps)
    with client(port) as c:
        results = [c.get("http://reviews:9080/").status_code for _ in range(10)]
    assert results == [200] * 10
    assert bad.requests and all("x-request-id" in r["headers"] for r in bad.requests)


def test_retries_disabled_pass_the_error_through_and_5xx_policy_retries(mesh, reviews):
    push, port, ups = reviews
    bad = mesh.upstream("bad2", status=500)
    eps = [mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")]
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"x-r": {"exact": "0"}}}], "route": [to("v1")], "retries": {"attempts": 0}},
        {"route": [to("v1")], "retries": {"attempts": 3, "retryOn": "5xx"}}])], endpoints=eps)
    with client(port) as c:
        off = [c.get("http://reviews:9080/", headers={"x-r": "0"}).status_code for _ in range(24)]
        on = [c.get("http://reviews:9080/").status_code for _ in range(10)]
    assert 500 in off
    assert on == [200] * 10


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


def test_header_manipulation_on_requests_and_responses(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{
        "headers": {"request": {"set": {"x-set": "1"}, "add": {"x-add": "b"}, "remove": ["x-drop"]},
                    "response": {"set": {"x-resp": "r"}, "remove": ["x-upstream"]}},
        "route": [{**to("v1"), "headers": {"request": {"set": {"x-dest": "d"}}}}]}])])
    with client(port) as c:
        r = c.get("http://reviews:9080/", headers={"x-drop": "1", "x-add": "a", "x-set": "0"})
    h = r.json()["headers"]
    assert h["x-set"] == "1" and h["x-add"] == "a,b" and "x-drop" not in h and h["x-dest"] == "d"
    assert r.headers["x-resp"] == "r" and "x-upstream" not in r.headers


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


def test_request_id_and_trace_context_propagate_and_spans_are_recorded(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], options=MeshOptions(trace_sampling=100.0))
    since = mesh.get("/spans?since=0").json()["next"]
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with client(port) as c:
        h = c.get("http://reviews:9080/", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}).json()["headers"]
        fresh = c.get("http://reviews:9080/").json()["headers"]
    assert h["x-b3-traceid"] == trace and h["traceparent"].startswith(f"00-{trace}-") and h["x-request-id"]
    assert fresh["x-b3-traceid"] != trace and len(fresh["x-b3-traceid"]) == 32
    spans = [s for s in mesh.get(f"/spans?since={since}").json()["spans"] if s["traceId"] == trace]
    client_span = next(s for s in spans if s["kind"] == "client")
    server_span = next(s for s in spans if s["kind"] == "server")
    assert client_span["parentSpanId"] == "00f067aa0ba902b7"
    assert server_span["parentSpanId"] == client_span["spanId"] and server_span["spanId"] == h["x-b3-spanid"]
    assert client_span["service"] == "productpage.default" and server_span["service"] == "reviews.default"


def test_bodies_stream_both_ways_chunked_and_content_length(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    payload = b"y" * (3 * 1024 * 1024 + 7)

    def gen():
        for i in range(0, len(payload), 65536):
            yield payload[i:i + 65536]

    with client(port) as c:
        assert len(c.post("http://reviews:9080/echo", content=gen()).content) == len(payload)
        assert c.post("http://reviews:9080/echo", content=payload).content == payload
        r = c.get("http://reviews:9080/chunks/2048")
        assert len(r.content) == 2048 * 1024 and r.headers["transfer-encoding"] == "chunked"
        assert c.head("http://reviews:9080/").status_code == 200
        assert c.get("http://reviews:9080/status/204").status_code == 204
        assert c.get("http://reviews:9080/x").status_code == 200  # connection still usable


def test_gateway_listener_serves_only_its_virtual_services(mesh, reviews):
    push, port, ups = reviews
    gw_port = free_port()
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "bookinfo-gateway", "namespace": "default"},
               "spec": {"selector": {"istio": "ingressgateway"},
                        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}
    push([gateway,
          vs("edge", ["*"], [{"match": [{"uri": {"prefix": "/reviews"}}], "route": [to("v2")]}],
             gateways=["bookinfo-gateway"]),
          vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
         options=MeshOptions(gateway_port_map={80: gw_port}))
    gateway_v2 = {"reporter": "source", "source_workload": "istio-ingressgateway",
                  "source_workload_namespace": "istio-system", "destination_version": "v2"}
    before = series(mesh, **gateway_v2)
    with httpx.Client(base_url=f"http://127.0.0.1:{gw_port}") as c:
        assert c.get("/reviews/1").json()["name"] == "reviews-v2"
        assert c.get("/other").status_code == 404
    with client(port) as c:
        assert c.get("http://reviews:9080/reviews/1").json()["name"] == "reviews-v1"
    assert series(mesh, **gateway_v2) - before == 1


def test_connection_pool_overflow_is_503_uo(mesh, reviews):
    push, port, _ = reviews
    policy = {"connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
              [mesh.endpoint(mesh.upstreams["reviews-v1"], "reviews", "v1")], [sidecar(port)])
    before = series(mesh, reporter="source", response_flags="UO")

    def call(_):
        with client(port) as c:
            r = c.get("http://reviews:9080/delay/1")
            return r.status_code, r.text

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    codes = sorted(code for code, _ in results)
    assert 200 in codes and 503 in codes
    assert any(text.endswith("reset reason: overflow") for code, text in results if code == 503)
    assert series(mesh, reporter="source", response_flags="UO") - before == codes.count(503)


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


RL_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def envoy_filter(context: str, labels: dict, max_tokens: int = 3) -> dict:
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "rl", "namespace": "default"},
            "spec": {"workloadSelector": {"labels": labels}, "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": context, "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": "envoy.filters.http.local_ratelimit",
                    "typed_config": {
                        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                        "type_url": RL_TYPE,
                        "value": {"stat_prefix": "http_local_rate_limiter",
                                  "token_bucket": {"max_tokens": max_tokens, "tokens_per_fill": max_tokens,
                                                   "fill_interval": "60s"},
                                  "filter_enabled": {"runtime_key": "e", "default_value": {
                                      "numerator": 100, "denominator": "HUNDRED"}},
                                  "filter_enforced": {"runtime_key": "f", "default_value": {
                                      "numerator": 100, "denominator": "HUNDRED"}},
                                  "response_headers_to_add": [{"append_action": "APPEND_IF_EXISTS_OR_ADD",
                                                               "header": {"key": "x-local-rate-limit",
                                                                          "value": "true"}}]}}}}}]}}


def test_local_rate_limit_on_the_destination_workload_is_429_rl(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}]), envoy_filter("SIDECAR_INBOUND", {"app": "reviews"})])
    before = series(mesh, reporter="destination", response_flags="RL", response_code="429")
    with client(port) as c:
        got = [c.get("http://reviews:9080/") for _ in range(5)]
    assert [r.status_code for r in got] == [200, 200, 200, 429, 429]
    assert got[-1].text == "local_rate_limited" and got[-1].headers["x-local-rate-limit"] == "true"
    assert series(mesh, reporter="destination", response_flags="RL", response_code="429") - before == 2


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


def test_expect_100_continue_is_answered_by_the_proxy(mesh, reviews):
    import socket

    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST http://reviews:9080/echo HTTP/1.1\r\nhost: reviews\r\ncontent-length: 5\r\n"
                  b"expect: 100-continue\r\n\r\n")
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = b""
        while not data.endswith(b"hello"):
            data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 200 ")


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


def test_max_requests_per_connection_one_disables_upstream_keep_alive(mesh, reviews):
    push, port, ups = reviews
    up = mesh.upstream("fresh")
    policy = {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}}
    mesh.push([svc("reviews"), dr("reviews", ["v1"], policy=policy),
               vs("reviews", ["reviews"], [{"route": [to("v1")]}])],
              [mesh.endpoint(up, "reviews", "v1")], [sidecar(port)])
    with client(port) as c:
        for _ in range(5):
            assert c.get("http://reviews:9080/").status_code == 200
    assert up.connections == 5


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


@pytest.mark.parametrize(("retry_on", "bad_kind", "expected"), [
    ("reset", "reset", {200}), ("retriable-4xx", 409, {200}), ("retriable-status-codes", "reset", {200, 503}),
], ids=["reset-retried", "409-retried", "reset-not-retried"])
def test_retry_on_reset_and_retriable_4xx_move_to_the_healthy_host(mesh, reviews, retry_on, bad_kind, expected):
    push, port, ups = reviews
    bad = mesh.upstream(f"bad-{retry_on}", status=409 if bad_kind == 409 else 200)
    bad.reset = bad_kind == "reset"
    push([vs("reviews", ["reviews"], [{"route": [to("v1")], "retries": {"attempts": 2, "retryOn": retry_on}}])],
         endpoints=[mesh.endpoint(bad, "reviews", "v1"), mesh.endpoint(ups["v1"], "reviews", "v1")])
    with client(port) as c:
        got = {c.get("http://reviews:9080/").status_code for _ in range(16)}
    assert got == expected


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


def test_access_log_records_requests_when_enabled(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])], options=MeshOptions(access_log="json"))
    with client(port) as c:
        c.get("http://reviews:9080/logged", headers={"x-request-id": "rid-42"})
    entry = next(e for e in mesh.get("/access_log").json()["entries"] if e["request_id"] == "rid-42")
    assert entry["status"] == 200 and entry["flags"] == "-" and entry["path"] == "/logged"
    assert entry["upstream_cluster"] == "outbound|9080|v1|reviews.default.svc.cluster.local"
    push([vs("reviews", ["reviews"], [{"route": [to("v1")]}])])
    assert mesh.get("/access_log").json()["enabled"] is False
