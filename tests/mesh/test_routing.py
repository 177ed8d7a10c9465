"""Pure routing core: host resolution, matching, first-match-wins, weights, subsets, outcomes, endpoint LB."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graylane.mesh.config import compile_snapshot
from graylane.mesh.proxy.balance import LoadState, WeightedPicker
from graylane.mesh.routing import Outcome, RequestView, RouteTable
from graylane.mesh.snapshot import decode_snapshot
from graylane.mesh.state import Endpoint, MeshOptions, Sidecar

from .helpers import dr, svc, vs


def ep(app: str, version: str, i: int = 0, ns: str = "default", ready: bool = True) -> Endpoint:
    return Endpoint(ns, f"{app}-{version}-{i}", {"app": app, "version": version}, "127.0.0.1", 10000 + i, 9080, ready,
                    f"{app}-{version}")


SRC = Sidecar("default", "productpage-v1-0", {"app": "productpage", "version": "v1"}, 15001, "productpage-v1")


def table(resources: list[dict], endpoints: list[Endpoint] | None = None, sidecars: list[Sidecar] | None = None,
          **options: object) -> RouteTable:
    eps = endpoints if endpoints is not None else [ep("reviews", v) for v in ("v1", "v2", "v3")]
    return RouteTable(decode_snapshot(compile_snapshot(resources, eps, sidecars or [SRC], MeshOptions(**options), 1)))


def req(authority: str = "reviews:9080", path: str = "/", method: str = "GET", **headers: str) -> RequestView:
    port = int(authority.rpartition(":")[2]) if ":" in authority else 80
    return RequestView(method, path, authority, {k.replace("_", "-"): v for k, v in headers.items()}, "http", port)


_RNG = random.Random(0)
# By identity, the table kept alive with it (a test makes a few dozen): the compiled RouteTable (a native class,
# graylane.mesh.native) takes no weak references.
_STATES: dict[int, tuple[RouteTable, LoadState]] = {}


def state(t: RouteTable) -> LoadState:
    """The balancer state of one table (what the proxy keeps across requests)."""
    return _STATES.setdefault(id(t), (t, LoadState()))[1]


def route(t: RouteTable, r: RequestView, listener: str = "sidecar~default~productpage-v1-0", explain: bool = False):
    return t.route(r, t.listeners[listener], _RNG, state(t), explain=explain)


BASE = [svc("reviews"), dr("reviews", ["v1", "v2", "v3"])]


def to(subset: str, weight: int | None = None) -> dict:
    d: dict = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


@pytest.mark.parametrize("authority", ["reviews", "reviews:9080", "reviews.default", "reviews.default.svc",
                                       "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080"],
                         ids=lambda a: a)
def test_every_host_form_from_the_same_namespace_reaches_the_service(authority):
    t = table([*BASE, vs("reviews", ["reviews"], [{"route": [to("v2")]}])])
    d = route(t, req(authority))
    assert d.outcome is Outcome.ROUTED
    assert d.cluster_name == "outbound|9080|v2|reviews.default.svc.cluster.local"


def test_short_name_from_another_namespace_does_not_resolve():
    other = Sidecar("prod", "x-0", {"app": "x"}, 15002, "x")
    t = table([*BASE], sidecars=[other])
    d = route(t, req("reviews"), "sidecar~prod~x-0")
    assert d.cluster_name == "PassthroughCluster" and d.endpoint.address == "reviews:80"  # not the mesh service
    assert route(t, req("reviews.default"), "sidecar~prod~x-0").cluster_name == \
        "outbound|9080||reviews.default.svc.cluster.local"


def test_unknown_hosts_pass_through_unless_registry_only():
    t = table(BASE)
    assert route(t, req("api.example.com:8443")).endpoint.address == "api.example.com:8443"
    snap = dict(t.snapshot.document)
    snap["options"] = {**snap["options"], "outbound_traffic_policy": "REGISTRY_ONLY"}
    strict = RouteTable(decode_snapshot(snap))
    assert route(strict, req("api.example.com")).outcome is Outcome.NO_ROUTE


def test_no_virtual_service_routes_to_every_version():
    t = table(BASE)
    pods = Counter(route(t, req()).endpoint.pod for _ in range(60))
    assert set(pods) == {"reviews-v1-0", "reviews-v2-0", "reviews-v3-0"}


def test_header_rule_wins_over_catch_all_and_explains_skips():
    t = table([*BASE, vs("reviews", ["reviews"], [
        {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2")]},
        {"route": [to("v1")]}])])
    assert route(t, req(end_user="jason")).destination.subset == "v2"
    d = route(t, req(end_user="alice"), explain=True)
    assert d.destination.subset == "v1"
    assert d.skipped and d.skipped[0][0] == 0 and "end-user" in d.skipped[0][1]


CASES = [
    ({"uri": {"exact": "/a"}}, req(path="/a?x=1"), True),
    ({"uri": {"exact": "/a"}}, req(path="/a/b"), False),
    ({"uri": {"prefix": "/static"}}, req(path="/staticfoo"), True),
    ({"uri": {"regex": "/r/[0-9]+"}}, req(path="/r/12?q"), True),
    ({"uri": {"regex": "/r/[0-9]+"}}, req(path="/r/12x"), False),
    ({"uri": {"prefix": "/API"}, "ignoreUriCase": True}, req(path="/api/x"), True),
    ({"method": {"exact": "POST"}}, req(method="GET"), False),
    ({"authority": {"prefix": "reviews"}}, req("reviews:9080"), True),
    ({"scheme": {"exact": "https"}}, req(), False),
    ({"headers": {"x-a": {}}}, req(x_a=""), True),
    ({"headers": {"x-a": {}}}, req(), False),
    ({"headers": {"x-a": {"prefix": "ab"}}}, req(x_a="abc"), True),
    ({"headers": {"x-a": {"regex": "a.c"}}}, req(x_a="abcd"), False),
    ({"withoutHeaders": {"end-user": {"exact": "jason"}}}, req(), True),
    ({"withoutHeaders": {"end-user": {"exact": "jason"}}}, req(end_user="jason"), False),
    ({"queryParams": {"v": {"exact": ""}}}, req(path="/?v"), True),
    ({"queryParams": {"id": {"regex": "\\d+$"}}}, req(path="/?id=a123"), False),
    ({"queryParams": {"id": {"regex": "\\d+$"}}}, req(path="/?id=123"), True),
    ({"port": 9080}, req("reviews:9080"), True),
    ({"port": 9090}, req("reviews:9080"), False),
    ({"sourceLabels": {"app": "productpage"}}, req(), True),
    ({"sourceLabels": {"app": "ratings"}}, req(), False),
    ({"sourceNamespace": "default"}, req(), True),
    ({"gateways": ["mesh"]}, req(), True),
    ({"gateways": ["bookinfo-gateway"]}, req(), False),
    ({"uri": {"prefix": "/a"}, "method": {"exact": "GET"}}, req(path="/a", method="POST"), False),
]


@pytest.mark.parametrize(("match", "request_view", "expected"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_match_fields(match, request_view, expected):
    t = table([*BASE, vs("reviews", ["reviews"], [{"match": [match], "route": [to("v3")]}, {"route": [to("v1")]}])])
    assert (route(t, request_view).destination.subset == "v3") is expected


def test_match_blocks_are_ored():
    t = table([*BASE, vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/x"}}, {"headers": {"k": {"exact": "1"}}}], "route": [to("v2")]},
        {"route": [to("v1")]}])])
    assert route(t, req(path="/x")).destination.subset == "v2"
    d = route(t, req(k="1"))
    assert d.destination.subset == "v2" and d.match_index == 1
    assert route(t, req(path="/y")).destination.subset == "v1"


def test_undefined_subset_is_503_nc_and_empty_subset_is_503_uh_and_no_match_is_404_nr():
    t = table([svc("reviews"), dr("reviews", ["v1", "v9"]), vs("reviews", ["reviews"], [
        {"match": [{"uri": {"prefix": "/nc"}}], "route": [to("v2")]},
        {"match": [{"uri": {"prefix": "/uh"}}], "route": [to("v9")]}])])
    nc, uh, nr = route(t, req(path="/nc")), route(t, req(path="/uh")), route(t, req(path="/zz"))
    assert (nc.outcome, nc.status, nc.flags) == (Outcome.CLUSTER_NOT_FOUND, 503, "NC")
    assert (uh.outcome, uh.status, uh.flags) == (Outcome.NO_HEALTHY_UPSTREAM, 503, "UH")
    assert (nr.outcome, nr.status, nr.flags) == (Outcome.NO_ROUTE, 404, "NR")


def test_not_ready_endpoints_are_not_picked():
    t = table(BASE, [ep("reviews", "v1", 0, ready=False), ep("reviews", "v1", 1)])
    assert {route(t, req()).endpoint.pod for _ in range(20)} == {"reviews-v1-1"}


def test_weights_split_exactly_per_window_and_zero_weight_gets_nothing():
    t = table([*BASE, vs("reviews", ["reviews"], [{"route": [to("v1", 99), to("v2", 1), to("v3", 0)]}])])
    got = Counter(route(t, req()).destination.subset for _ in range(100))
    assert got == {"v1": 99, "v2": 1}


def test_single_destination_gets_everything_even_with_weight_zero():
    t = table([*BASE, vs("reviews", ["reviews"], [{"route": [to("v3", 0)]}])])
    assert route(t, req()).destination.subset == "v3"


def test_random_option_picks_per_request():
    t = table([*BASE, vs("reviews", ["reviews"], [{"route": [to("v1", 50), to("v2", 50)]}])],
              load_balancing="random")
    rng = random.Random(3)
    seq = [t.route(req(), t.listeners["sidecar~default~productpage-v1-0"], rng, state(t)).destination.subset
           for _ in range(200)]
    assert 60 < seq.count("v1") < 140
    assert any(a == b for a, b in zip(seq, seq[1:], strict=False))  # not a strict alternation


@given(st.lists(st.integers(0, 100), min_size=2, max_size=6).filter(lambda w: sum(w) > 0))
@settings(max_examples=150, deadline=None)
def test_weighted_pick_is_exact_per_cycle_and_less_than_one_off_on_every_prefix(weights):
    picker = WeightedPicker(weights)
    total = sum(weights)
    counts = [0] * len(weights)
    rng = random.Random(0)
    for n in range(1, 2 * total + 1):
        counts[picker.pick(rng)] += 1
        for i, w in enumerate(weights):
            assert abs(counts[i] - n * w / total) < 1, (weights, n, counts)
        if n % total == 0:
            assert counts == [w * n // total for w in weights]


@given(st.integers(0, 100), st.integers(0, 100), st.integers(1, 300), st.integers(0, 300))
@settings(max_examples=150, deadline=None)
def test_two_way_split_is_within_one_request_in_any_window(a, b, window, offset):
    if a + b == 0:
        return
    picker = WeightedPicker([a, b])
    rng = random.Random(0)
    seq = [picker.pick(rng) for _ in range(offset + window)][offset:]
    assert abs(seq.count(0) - window * a / (a + b)) <= 1


header_values = st.sampled_from(["a", "b", "c"])


@given(rules=st.lists(st.dictionaries(st.sampled_from(["x-1", "x-2"]), header_values, min_size=1, max_size=2),
                      min_size=1, max_size=5),
       headers=st.dictionaries(st.sampled_from(["x-1", "x-2"]), header_values))
@settings(max_examples=80, deadline=None)
def test_first_matching_rule_wins(rules, headers):
    http = [{"match": [{"headers": {k: {"exact": v} for k, v in r.items()}}],
             "route": [{"destination": {"host": "reviews", "subset": "v1"}}], "name": f"r{i}"}
            for i, r in enumerate(rules)]
    t = table([*BASE, vs("reviews", ["reviews"], http)])
    expected = next((i for i, r in enumerate(rules) if all(headers.get(k) == v for k, v in r.items())), None)
    d = route(t, req(**{k.replace("-", "_"): v for k, v in headers.items()}))
    assert (d.rule.index if d.rule else None) == expected


@given(prefix=st.text("/abAB", max_size=4), path=st.text("/abAB?", max_size=6))
@settings(max_examples=80, deadline=None)
def test_prefix_and_exact_match_the_path_without_query(prefix, path):
    path = "/" + path
    prefix = "/" + prefix
    t = table([*BASE, vs("reviews", ["reviews"], [
        {"match": [{"uri": {"exact": prefix}}], "route": [to("v3")]},
        {"match": [{"uri": {"prefix": prefix}}], "route": [to("v2")]}, {"route": [to("v1")]}])])
    bare = path.split("?", 1)[0]
    want = "v3" if bare == prefix else "v2" if bare.startswith(prefix) else "v1"
    assert route(t, req(path=path)).destination.subset == want


def lb_table(lb: dict) -> RouteTable:
    return table([svc("reviews"), dr("reviews", ["v1"], policy={"loadBalancer": lb}),
                  vs("reviews", ["reviews"], [{"route": [to("v1")]}])], [ep("reviews", "v1", i) for i in range(4)])


def test_round_robin_visits_every_endpoint_in_turn():
    t = lb_table({"simple": "ROUND_ROBIN"})
    pods = [route(t, req()).endpoint.pod for _ in range(8)]
    assert pods[:4] == pods[4:] and len(set(pods)) == 4


def test_least_request_avoids_the_busy_endpoint():
    t = lb_table({"simple": "LEAST_REQUEST"})
    busy = t.clusters["outbound|9080|v1|reviews.default.svc.cluster.local"].endpoints[0]
    state(t).host(busy).active = 100
    assert all(route(t, req()).endpoint is not busy for _ in range(50))


def test_consistent_hash_on_header_sticks_and_spreads():
    t = lb_table({"consistentHash": {"httpHeaderName": "x-user"}})
    for user in ("a", "b", "c"):
        assert len({t.route(req(x_user=user), t.listeners["sidecar~default~productpage-v1-0"],
                            random.Random(i), state(t)).endpoint.pod for i in range(10)}) == 1
    assert len({route(t, req(x_user=f"u{i}")).endpoint.pod for i in range(60)}) > 1


def test_consistent_hash_cookie_is_generated_when_ttl_is_set():
    t = lb_table({"consistentHash": {"httpCookie": {"name": "sess", "ttl": "60s"}}})
    d = route(t, req())
    assert d.set_cookie
    again = route(t, req(cookie=f"sess={d.set_cookie}"))
    assert again.endpoint is d.endpoint and again.set_cookie is None


def test_consistent_hash_cookie_draws_from_an_injected_source():
    t = lb_table({"consistentHash": {"httpCookie": {"name": "sess", "ttl": "60s"}}})
    cluster = route(t, req()).cluster
    cookies = [cluster.pick(req(), random.Random(1), 0.0, state(t), cookie_bits=random.Random(7).getrandbits)[1]
               for _ in range(2)]
    assert cookies[0] == cookies[1] == format(random.Random(7).getrandbits(64), "016x")
    assert cluster.hash_key(req(), random.Random(7).getrandbits) == (cookies[0], cookies[0])


@pytest.mark.parametrize("lb", [{"consistentHash": {"useSourceIp": True}},
                                {"consistentHash": {"httpQueryParameterName": "u"}}], ids=["source-ip", "query"])
def test_consistent_hash_other_keys_stick(lb):
    t = lb_table(lb)
    assert len({route(t, req(path="/?u=42")).endpoint.pod for _ in range(10)}) == 1


def test_trace_context_is_continued_from_b3_multi_single_and_w3c():
    from graylane.mesh.proxy.tracing import TraceContext

    rng = random.Random(0)
    multi = TraceContext.extract({"x-b3-traceid": "a" * 16, "x-b3-spanid": "b" * 16, "x-b3-sampled": "1"}, 0, rng)
    assert (multi.trace_id, multi.parent_id, multi.sampled) == ("0" * 16 + "a" * 16, "b" * 16, True)
    single = TraceContext.extract({"b3": f"{'c' * 32}-{'d' * 16}-0"}, 100, rng)
    assert (single.trace_id, single.parent_id, single.sampled) == ("c" * 32, "d" * 16, False)
    w3c = TraceContext.extract({"traceparent": f"00-{'e' * 32}-{'f' * 16}-01"}, 0, rng)
    assert (w3c.trace_id, w3c.parent_id, w3c.sampled) == ("e" * 32, "f" * 16, True)
    fresh = TraceContext.extract({}, 0, rng)
    assert fresh.parent_id is None and not fresh.sampled and len(fresh.trace_id) == 32
    out = dict(w3c.inject([("b3", "x"), ("a", "1")], "1" * 16, "2" * 16))
    assert out["traceparent"] == f"00-{'e' * 32}-{'1' * 16}-01" and out["x-b3-parentspanid"] == "2" * 16
    assert "b3" not in out and out["a"] == "1"


def test_gateway_requests_match_only_gateway_bound_rules():
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"},
                                     "hosts": ["bookinfo.example"]}]}}
    t = table([*BASE, gateway,
               vs("edge", ["bookinfo.example"], [
                   {"match": [{"uri": {"prefix": "/mesh-only"}, "gateways": ["mesh"]}], "route": [to("v3")]},
                   {"route": [to("v2")]}], gateways=["gw", "mesh"])],
              gateway_port_map={80: 18080})
    lst = "gateway~18080"
    assert route(t, req("bookinfo.example", path="/mesh-only"), lst).destination.subset == "v2"
    assert route(t, req("other.example"), lst).outcome is Outcome.NO_ROUTE
    assert t.listeners[lst].source.workload == "istio-ingressgateway"


def test_gateway_merges_virtual_services_for_one_host_with_catch_alls_last():
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": ["*"]}]}}
    first = vs("a", ["shop.example"], [{"route": [to("v1")]}], gateways=["gw"])
    first["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    second = vs("b", ["shop.example"], [{"match": [{"uri": {"prefix": "/new"}}], "route": [to("v2")]}],
                gateways=["gw"])
    second["metadata"]["creationTimestamp"] = "2024-02-01T00:00:00Z"
    t = table([*BASE, gateway, first, second], gateway_port_map={80: 18081})
    assert route(t, req("shop.example", path="/new/x"), "gateway~18081").destination.subset == "v2"
    d = route(t, req("shop.example", path="/old"), "gateway~18081")
    assert d.destination.subset == "v1" and d.virtual_service.name == "a+b"


def test_gateway_serves_a_host_from_its_most_specific_virtual_host_without_merging_wildcards():
    """A VirtualService for `*` and one for `shop.example` on one gateway make two virtual hosts (Istio merges only
    VirtualServices sharing a host): shop.example is served by its own rules only, every other host by the `*`
    one; `*.example` sits between them, and a server host narrows a `*` VirtualService to itself."""
    gateway = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "default"},
               "spec": {"servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"}, "hosts": ["*"]}]}}
    catch_all = vs("everything", ["*"], [{"match": [{"uri": {"prefix": "/"}}], "route": [to("v1")]}],
                   gateways=["gw"])
    suffix = vs("suffix", ["*.example"], [{"route": [to("v3")]}], gateways=["gw"])
    shop = vs("shop", ["shop.example"], [{"match": [{"uri": {"prefix": "/new"}}], "route": [to("v2")]}],
              gateways=["gw"])
    t = table([*BASE, gateway, catch_all, suffix, shop], gateway_port_map={80: 18082})
    new = route(t, req("shop.example", path="/new"), "gateway~18082")
    assert new.destination.subset == "v2" and new.virtual_service.name == "shop"
    assert route(t, req("shop.example", path="/old"), "gateway~18082").outcome is Outcome.NO_ROUTE
    assert route(t, req("bar.example", path="/old"), "gateway~18082").destination.subset == "v3"
    assert route(t, req("other.org", path="/old"), "gateway~18082").destination.subset == "v1"
    narrow = dict(gateway, spec={"servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"},
                                              "hosts": ["shop.example"]}]})
    t = table([*BASE, narrow, catch_all, shop], gateway_port_map={80: 18083})
    merged = route(t, req("shop.example", path="/old"), "gateway~18083")
    assert merged.destination.subset == "v1" and merged.virtual_service.name in ("everything+shop", "shop+everything")


def test_delegate_rules_are_spliced_into_the_root_with_matches_anded():
    root = vs("root", ["reviews"], [
        {"match": [{"uri": {"prefix": "/api"}}], "delegate": {"name": "api", "namespace": "default"}},
        {"route": [to("v1")]}])
    delegate = vs("api", [], [{"match": [{"headers": {"x-beta": {"exact": "1"}}}], "route": [to("v3")]},
                              {"route": [to("v2")]}])
    t = table([*BASE, root, delegate])
    assert route(t, req(path="/api/x", x_beta="1")).destination.subset == "v3"
    assert route(t, req(path="/api/x")).destination.subset == "v2"
    assert route(t, req(path="/other", x_beta="1")).destination.subset == "v1"


@pytest.mark.parametrize(("retry_on", "codes", "retried", "not_retried"), [
    ({"5xx"}, set(), {500, 502, 503, 599}, {200, 404, 409, 499}),
    ({"gateway-error"}, set(), {502, 503, 504}, {500, 501, 409}),
    ({"retriable-4xx"}, set(), {409}, {400, 404, 503}),
    ({"retriable-status-codes"}, {429, 503}, {429, 503}, {500, 502}),
    ({"connect-failure"}, {503}, set(), {503, 500}),  # the codes count only with retriable-status-codes
])
def test_the_statuses_a_retry_policy_retries_are_envoys_retry_on(retry_on, codes, retried, not_retried):
    from graylane.mesh.routing import RetryPolicy

    policy = RetryPolicy(2, None, frozenset(retry_on), frozenset(codes))
    assert {s for s in retried | not_retried if policy.retries_status(s)} == retried
