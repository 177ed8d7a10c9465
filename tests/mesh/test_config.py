"""compile_snapshot: validation errors name the object, the EnvoyFilter subset, policy precedence, ports."""

from __future__ import annotations

import pytest

from graylane.errors import ValidationError
from graylane.mesh.config import compile_snapshot, parse_duration
from graylane.mesh.state import Endpoint, MeshOptions

from .helpers import dr, svc, vs
from .proxy.support import envoy_filter


def compile_(resources, endpoints=()):
    return compile_snapshot(resources, list(endpoints), [], MeshOptions(), 1)


def test_invalid_regex_is_rejected_naming_the_virtual_service():
    with pytest.raises(ValidationError, match="VirtualService default/reviews.*regex"):
        compile_([svc("reviews"), vs("reviews", ["reviews"], [
            {"match": [{"uri": {"regex": "(open"}}], "route": [{"destination": {"host": "reviews"}}]}])])


def test_zero_total_weight_and_negative_weight_are_rejected():
    route = [{"destination": {"host": "reviews", "subset": "a"}, "weight": 0},
             {"destination": {"host": "reviews", "subset": "b"}, "weight": 0}]
    with pytest.raises(ValidationError, match="total destination weight = 0"):
        compile_([vs("reviews", ["reviews"], [{"route": route}])])
    route[0]["weight"] = -1
    with pytest.raises(ValidationError, match="weight -1 < 0"):
        compile_([vs("reviews", ["reviews"], [{"route": route}])])


def test_unsupported_envoy_filter_is_rejected_clearly():
    lua = envoy_filter("SIDECAR_INBOUND", {"app": "reviews"})
    lua["spec"]["configPatches"][0]["patch"]["value"] = {"name": "envoy.filters.http.lua", "typed_config": {}}
    with pytest.raises(ValidationError, match="EnvoyFilter default/rl.*unsupported HTTP filter 'envoy.filters.http.l"):
        compile_([lua])
    cluster = envoy_filter("SIDECAR_INBOUND", {"app": "reviews"})
    cluster["spec"]["configPatches"][0]["applyTo"] = "CLUSTER"
    with pytest.raises(ValidationError, match="unsupported applyTo 'CLUSTER'"):
        compile_([cluster])


def test_subset_policy_overrides_top_level_and_port_level_overrides_its_level():
    policy = {"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 5}},
              "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"}}]}
    snap = compile_([svc("reviews"), dr("reviews", ["v1", "v2"], policy=policy, subset_policies={
        "v2": {"loadBalancer": {"simple": "LEAST_REQUEST"}}})])
    clusters = snap["clusters"]
    base = clusters["outbound|9080||reviews.default.svc.cluster.local"]["policy"]
    assert base["loadBalancer"] == {"simple": "ROUND_ROBIN"} and base["pool"]["max_connections"] == 5
    assert clusters["outbound|9080|v1|reviews.default.svc.cluster.local"]["policy"]["loadBalancer"]["simple"] == \
        "ROUND_ROBIN"
    v2 = clusters["outbound|9080|v2|reviews.default.svc.cluster.local"]["policy"]
    assert v2["loadBalancer"]["simple"] == "LEAST_REQUEST" and v2["pool"]["max_connections"] == 5


def test_named_target_port_resolves_through_the_deployment():
    service = svc("ratings", port=80, target="http-api")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ratings-v1"},
                  "spec": {"template": {"metadata": {"labels": {"app": "ratings"}}, "spec": {"containers": [
                      {"name": "c", "ports": [{"name": "http-api", "containerPort": 8000}]}]}}}}
    good = Endpoint("default", "r-0", {"app": "ratings"}, "127.0.0.1", 1, 8000, True, "ratings-v1")
    wrong = Endpoint("default", "r-1", {"app": "ratings"}, "127.0.0.1", 2, 9999, True, "ratings-v1")
    snap = compile_([service, deployment], [good, wrong])
    eps = snap["clusters"]["outbound|80||ratings.default.svc.cluster.local"]["endpoints"]
    assert [e["pod"] for e in eps] == ["r-0"]


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("0.5s", 0.5), ("100ms", 0.1), ("1m30s", 90),
                                               ("1h", 3600)], ids=lambda x: str(x))
def test_durations(text, seconds):
    assert parse_duration(text, "x") == pytest.approx(seconds)


def test_bad_duration_names_the_field():
    with pytest.raises(ValidationError, match=r"VirtualService default/reviews: spec.http\[0\].timeout"):
        compile_([vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}], "timeout": "soon"}])])


def test_a_gateway_server_with_certificate_files_is_left_out_with_a_warning_and_the_rest_is_served():
    """istio.io's egress TLS origination: MUTUAL with files mounted in Istio's egress gateway pod (no Secret)."""
    gw = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
          "metadata": {"name": "istio-egressgateway", "namespace": "default"},
          "spec": {"selector": {"istio": "egressgateway"}, "servers": [
              {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["nginx.example.com"],
               "tls": {"mode": "MUTUAL", "serverCertificate": "/etc/certs/cert-chain.pem",
                       "privateKey": "/etc/certs/key.pem", "caCertificates": "/etc/certs/root-cert.pem"}},
              {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["nginx.example.com"]}]}}
    snap = compile_([gw])
    assert snap["rejected"] == []
    assert [w for w in snap["warnings"] if "servers[0]" in w] == [
        "Gateway default/istio-egressgateway: spec.servers[0]: tls.serverCertificate/privateKey name files in Istio's "
        "gateway pod, which the local gateway does not read; this server is not served locally (use "
        "tls.credentialName)"]
    assert [lst["server_port"] for lst in snap["listeners"] if lst["kind"] == "gateway"] == [80]
