"""The route layer through real sockets: request forms, Host routing, weighted splits, header rules,
request ids and traces, gateway listeners.
"""

from __future__ import annotations

import httpx

from graylane.mesh.state import MeshOptions

from ..helpers import free_port, proxy_workers, series, vs
from .support import client, to


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
    # One upstream keep-alive connection served all 11 requests; with N workers one per worker the two client
    # connections reached (upstream pools are per worker: docs/dataplane.md, Workers).
    assert 1 <= ups["v1"].connections - before <= proxy_workers()


def test_weighted_split_is_exact_through_the_proxy_and_header_rule_wins(mesh, reviews):
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
        {"route": [to("v1", 90), to("v3", 10)]}])])
    with client(port) as c:
        names = [c.get("http://reviews:9080/").json()["name"] for _ in range(100)]
        assert c.get("http://reviews:9080/", headers={"end-user": "jason"}).json()["name"] == "reviews-v2"
    assert names.count("reviews-v1") == 90 and names.count("reviews-v3") == 10


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


def test_header_names_match_in_any_case_past_the_name_cache(mesh, reviews):
    """Header names are case-insensitive however many distinct ones clients send: the listener keeps the lowercase
    form of up to 512 names of up to 64 bytes (issue #17) and lowercases the rest each time."""
    push, port, _ = reviews
    push([vs("reviews", ["reviews"], [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
        {"route": [to("v1")]}])])
    long_name = "X-" + "Long" * 20  # longer than the names the cache keeps
    with client(port) as c:
        for i in range(600):  # more distinct names than the cache holds
            spelling = ("End-User", "END-USER", "end-user")[i % 3]
            got = c.get("http://reviews:9080/", headers={spelling: "jason", f"X-Distinct-{i}": str(i),
                                                         long_name: "l"}).json()
            assert got["name"] == "reviews-v2"
            assert got["headers"][f"x-distinct-{i}"] == str(i) and got["headers"][long_name.lower()] == "l"
        assert c.get("http://reviews:9080/", headers={"End-User": "someone"}).json()["name"] == "reviews-v1"
