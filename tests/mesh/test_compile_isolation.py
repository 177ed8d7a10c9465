"""One bad resource never stops the mesh: it is left out of the snapshot, with a status condition and an event.

Compiler level (`compile_snapshot(isolate=True)`), the status it leads to (`status_with`, `Store.set_status`),
admission refusing what the local data plane cannot serve (Istio's own ratelimit sample), and the control plane
pushing to a real data plane (the proxy of tests/mesh/conftest.py) while a bad resource sits in the store.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from graylane.errors import GraylaneError, ValidationError
from graylane.mesh.config import compile_snapshot
from graylane.mesh.control import MeshControl, load_compiler
from graylane.mesh.isolation import CONDITION, Rejection, status_with
from graylane.mesh.state import MeshOptions
from graylane.resources.document import ResourceKey
from graylane.resources.load import load_text
from graylane.resources.validate import admission_errors, validate
from graylane.store import Store

from .helpers import Mesh, dr, free_port, svc, vs

# What Istio's samples/bookinfo/policy/productpage_envoy_ratelimit.yaml applies (the global ratelimit filter on
# the ingress gateway, its rate-limit-service cluster, and the route's descriptors), in compact form.
RATELIMIT_NAME = "productpage_envoy_ratelimit.yaml"
RATELIMIT_SAMPLE = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-ratelimit, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
          domain: productpage-ratelimit
          failure_mode_deny: true
          rate_limit_service:
            grpc_service: {envoy_grpc: {cluster_name: rate_limit_cluster}, timeout: 10s}
  - applyTo: CLUSTER
    match: {cluster: {service: ratelimit.default.svc.cluster.local}}
    patch:
      operation: ADD
      value:
        name: rate_limit_cluster
        type: STRICT_DNS
        connect_timeout: 10s
        lb_policy: ROUND_ROBIN
        http2_protocol_options: {}
        load_assignment:
          cluster_name: rate_limit_cluster
          endpoints:
          - lb_endpoints:
            - endpoint: {address: {socket_address: {address: ratelimit.default.svc.cluster.local, port_value: 8081}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-ratelimit-svc, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: VIRTUAL_HOST
    match: {context: GATEWAY, routeConfiguration: {vhost: {name: "", route: {action: ANY}}}}
    patch:
      operation: MERGE
      value:
        rate_limits:
        - actions: [{request_headers: {header_name: ":path", descriptor_key: PATH}}]
"""
ISTIO = "networking.istio.io/v1alpha3"
EF_KEY = ResourceKey("networking.istio.io", "EnvoyFilter", "istio-system", "no-bucket")


def ef(name: str = "no-bucket", filter_name: str = "envoy.filters.http.local_ratelimit",
       bucket: dict[str, Any] | None = None, ns: str = "istio-system") -> dict[str, Any]:
    """An EnvoyFilter with one local_ratelimit patch; without `bucket` it passes admission but cannot compile."""
    value: dict[str, Any] = {"stat_prefix": "rl", "filter_enabled": {"default_value": {"numerator": 100}},
                             "filter_enforced": {"default_value": {"numerator": 100}}}
    if bucket:
        value["token_bucket"] = bucket
    return {"apiVersion": ISTIO, "kind": "EnvoyFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"workloadSelector": {"labels": {"istio": "ingressgateway"}}, "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "GATEWAY", "listener": {
                    "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "INSERT_BEFORE", "value": {
                    "name": filter_name,
                    "typed_config": {"@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
                                     "type_url": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit"
                                                 ".v3.LocalRateLimit",
                                     "value": value}}}}]}}


def ratelimit_sample() -> list[dict[str, Any]]:
    return [d.body for d in load_text(RATELIMIT_SAMPLE, RATELIMIT_NAME)]


def rejected_refs(snap: dict[str, Any]) -> list[str]:
    return [f"{r['kind']} {r['namespace']}/{r['name']}" for r in snap["rejected"]]


# --------------------------------------------------------------------------------------------- compiler


def test_unsupported_envoy_filter_is_left_out_and_the_rest_compiles() -> None:
    resources = [svc("reviews"), vs("reviews", ["reviews"], [{"route": [{"destination": {"host": "reviews"}}]}]),
                 *ratelimit_sample()]
    with pytest.raises(ValidationError, match="unsupported HTTP filter 'envoy.ratelimit'"):
        compile_snapshot(copy.deepcopy(resources), [], [], MeshOptions(), 1)  # strict, as `graylane route` is
    snap = compile_snapshot(resources, [], [], MeshOptions(), 1, isolate=True)
    assert [v["name"] for v in snap["virtual_services"]] == ["reviews"]
    assert rejected_refs(snap) == ["EnvoyFilter istio-system/filter-ratelimit",
                                   "EnvoyFilter istio-system/filter-ratelimit-svc"]
    first = snap["rejected"][0]
    assert first["reason"] == "CompileError" and first["group"] == "networking.istio.io"
    assert "spec.configPatches[0]: unsupported HTTP filter 'envoy.ratelimit'" in first["message"]
    assert snap["inbound_rate_limits"] == []


def test_a_virtual_service_whose_delegate_is_missing_is_left_out_and_others_still_route() -> None:
    root = vs("reviews", ["reviews"], [{"delegate": {"name": "reviews-v2"}}])
    other = vs("ratings", ["ratings"], [{"route": [{"destination": {"host": "ratings"}}]}])
    snap = compile_snapshot([svc("reviews"), svc("ratings"), root, other], [], [], MeshOptions(), 1, isolate=True)
    assert [v["name"] for v in snap["virtual_services"]] == ["ratings"]
    assert rejected_refs(snap) == ["VirtualService default/reviews"]
    assert "delegate VirtualService default/reviews-v2 not found" in snap["rejected"][0]["message"]


def test_when_the_oldest_virtual_service_for_a_host_is_bad_the_next_one_serves_it() -> None:
    bad = vs("a", ["reviews"], [{"match": [{"uri": {"regex": "(?=x)"}}],
                                 "route": [{"destination": {"host": "reviews"}}]}])
    bad["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    good = vs("b", ["reviews"], [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}])
    good["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    snap = compile_snapshot([svc("reviews"), bad, good], [], [], MeshOptions(), 1, isolate=True)
    assert [v["name"] for v in snap["virtual_services"]] == ["b"]
    assert "regex" in snap["rejected"][0]["message"] and snap["rejected"][0]["name"] == "a"


def test_a_bad_destination_rule_leaves_out_only_its_own_subsets() -> None:
    broken = dr("reviews", ["v1", "v1"])  # duplicate subset names
    broken["metadata"]["name"] = "broken"
    fine = dr("ratings", ["v1"])
    snap = compile_snapshot([svc("reviews"), svc("ratings"), broken, fine], [], [], MeshOptions(), 1, isolate=True)
    assert snap["subsets"] == {"ratings.default.svc.cluster.local": ["v1"]}
    assert "outbound|9080|v1|ratings.default.svc.cluster.local" in snap["clusters"]
    assert "outbound|9080||reviews.default.svc.cluster.local" in snap["clusters"]  # the Service itself stays
    assert rejected_refs(snap) == ["DestinationRule default/broken"]


def test_a_destination_rule_failing_only_against_a_live_port_is_left_out() -> None:
    """portLevelSettings for port 9080 are read only when a Service has that port (live state)."""
    bad = dr("reviews", ["v1"], policy={"portLevelSettings": [
        {"port": {"number": 9080}, "loadBalancer": {"consistentHash": {"httpCookie": {"ttl": "0s"}}}}]})
    assert compile_snapshot([bad], [], [], MeshOptions(), 1, isolate=True)["rejected"] == []
    snap = compile_snapshot([svc("reviews"), bad], [], [], MeshOptions(), 1, isolate=True)
    assert rejected_refs(snap) == ["DestinationRule default/reviews"]
    assert "name required for HttpCookie" in snap["rejected"][0]["message"]


def test_malformed_resources_and_bad_gateways_are_left_out_too() -> None:
    broken_svc = svc("details")
    del broken_svc["spec"]["ports"][0]["port"]
    gw = {"apiVersion": ISTIO, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
          "spec": {"selector": {"istio": "ingressgateway"},
                   "servers": [{"port": {"protocol": "HTTP"}, "hosts": ["*"]}]}}
    bound = vs("front", ["*"], [{"route": [{"destination": {"host": "reviews"}}]}], gateways=["gw"])
    snap = compile_snapshot([svc("reviews"), broken_svc, gw, bound], [], [], MeshOptions(), 1, isolate=True)
    assert rejected_refs(snap) == ["Gateway default/gw", "Service default/details"]
    assert "malformed resource (KeyError" in snap["rejected"][1]["message"]
    assert any("gateway default/gw not found" in w for w in snap["warnings"])
    assert "reviews.default.svc.cluster.local" in snap["services"]


# --------------------------------------------------------------------------------------------- status


def test_status_condition_is_added_kept_and_removed() -> None:
    body: dict[str, Any] = {"kind": "EnvoyFilter", "metadata": {"name": "x", "generation": 3}}
    rej = Rejection("networking.istio.io", "EnvoyFilter", "default", "x", "7", 3, "EnvoyFilter default/x: bad")
    status = status_with(body, rej, "2026-12-06T01:00:00Z")
    assert isinstance(status, dict)
    [cond] = status["conditions"]
    assert cond == {"type": CONDITION, "status": "False", "reason": "CompileError", "observedGeneration": 3,
                    "message": "left out of the mesh configuration: bad",
                    "lastTransitionTime": "2026-12-06T01:00:00Z"}
    body["status"] = status
    assert status_with(body, rej, "2026-12-06T02:00:00Z") is False  # already reported: nothing to write
    changed = dataclasses.replace(rej, message="EnvoyFilter default/x: worse")
    again = status_with(body, changed, "2026-12-06T02:00:00Z")
    assert isinstance(again, dict) and again["conditions"][0]["lastTransitionTime"] == "2026-12-06T01:00:00Z"
    assert status_with(body, None, "2026-12-06T03:00:00Z") is None  # fixed: the condition (and status) go
    assert status_with({"metadata": {}}, None, "t") is False


def test_set_status_is_a_status_only_write(state_dir: Path) -> None:
    store = Store.open()
    try:
        [created] = store.apply([ef(bucket={"max_tokens": 1, "fill_interval": "1s"})], actor="user:test")
        revision = store.revision()
        seen: list[Any] = []
        store.subscribe(seen.append)
        status = {"conditions": [{"type": CONDITION, "status": "False", "reason": "CompileError", "message": "m"}]}
        assert store.set_status(EF_KEY, status, resource_version=created.resource_version)
        got = store.get(EF_KEY)
        assert got is not None and got.body["status"] == status
        assert (got.generation, got.resource_version, store.revision()) == (1, created.resource_version, revision)
        assert len(store.history(EF_KEY)) == 1 and seen == []
        assert not store.set_status(EF_KEY, None, resource_version="0")  # about another version: not written
        # A user's apply without status keeps the reported one (and is "unchanged").
        [again] = store.apply([ef(bucket={"max_tokens": 1, "fill_interval": "1s"})], actor="user:test")
        assert again.action == "unchanged" and again.body["status"] == status
        assert store.set_status(EF_KEY, None)
        assert "status" not in store.get(EF_KEY).body  # type: ignore[union-attr]
    finally:
        store.close()


# --------------------------------------------------------------------------------------------- admission


def test_the_istio_ratelimit_sample_is_refused_by_the_local_apply_naming_the_fields(state_dir: Path) -> None:
    docs = load_text(RATELIMIT_SAMPLE, RATELIMIT_NAME)
    store = Store.open()
    try:
        with pytest.raises(ValidationError) as info:
            store.apply(docs, actor="user:test")
        assert store.list(kind="EnvoyFilter") == []
    finally:
        store.close()
    text = str(info.value)
    assert "3 validation errors, nothing was applied" in text
    assert ("productpage_envoy_ratelimit.yaml:18: spec.configPatches[0].patch.value.name: HTTP filter "
            "'envoy.ratelimit' is not supported; the local data plane serves only HTTP_FILTER/HTTP_ROUTE patches "
            "for envoy.filters.http.local_ratelimit (docs/dataplane.md) (EnvoyFilter istio-system/filter-ratelimit)"
            ) in text
    assert "spec.configPatches[1].applyTo: applyTo 'CLUSTER' is not supported" in text
    assert "spec.configPatches[0].applyTo: applyTo 'VIRTUAL_HOST' is not supported" in text


def test_validate_warns_about_the_sample_and_istio_admission_still_accepts_it() -> None:
    """A real Istio serves it (a Kubernetes account), so outside the local store it is a warning, not an error."""
    docs = load_text(RATELIMIT_SAMPLE, RATELIMIT_NAME)
    assert admission_errors(docs) == []
    warnings = [str(f) for f in validate(docs)]
    assert any("spec.configPatches[0].patch.value.name: HTTP filter 'envoy.ratelimit' is not supported" in w
               and "applying it to the local mesh is refused" in w for w in warnings), warnings


def test_what_admission_cannot_judge_passes_it(state_dir: Path) -> None:
    store = Store.open()
    try:
        [result] = store.apply([ef()], actor="user:test")  # local_ratelimit without a token bucket
        assert result.action == "created"
    finally:
        store.close()


# --------------------------------------------------------------------------------------------- control plane


GATEWAY = {"apiVersion": ISTIO, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
           "spec": {"selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}}


def front(body: str) -> dict[str, Any]:
    return {"apiVersion": ISTIO, "kind": "VirtualService", "metadata": {"name": "front", "namespace": "default"},
            "spec": {"hosts": ["app.example"], "gateways": ["gw"],
                     "http": [{"directResponse": {"status": 200, "body": {"string": body}}}]}}


@pytest_asyncio.fixture
async def control(state_dir: Path, mesh: Mesh) -> Any:
    store = Store.open()
    port = free_port()
    options = MeshOptions(gateway_port_map={80: port})
    events: list[tuple[str, dict[str, Any]]] = []
    mc = MeshControl(store, None, state_dir, compiler=load_compiler(), admin_url=lambda: mesh.admin,
                     options=lambda: options, resync_s=0.1, publish=lambda topic, **data: events.append((topic, data)))
    await mc.start()
    try:
        yield store, mc, f"http://127.0.0.1:{port}/", events
    finally:
        await mc.stop()
        store.close()


async def _get(url: str) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        resp = await client.get(url, headers={"host": "app.example"})
    assert resp.status_code == 200, resp.text
    return resp.text


@pytest.mark.asyncio
async def test_a_bad_resource_is_skipped_with_a_condition_and_later_changes_still_reach_the_data_plane(
        control: Any) -> None:
    store, mc, url, events = control
    store.apply([GATEWAY, front("one")], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    assert await _get(url) == "one"
    version = mc.status.acked_version

    # Passes admission, cannot be compiled: the wait for its revision fails naming it, instead of timing out.
    store.apply([ef()], actor="user:test")
    with pytest.raises(GraylaneError) as info:
        await mc.wait_acked(store.revision(), timeout=10)
    message = str(info.value)
    assert message.startswith(f"EnvoyFilter istio-system/no-bucket was not applied to the mesh (store revision "
                              f"{store.revision()} is served without it): spec.configPatches: local_ratelimit "
                              "needs a token_bucket"), message
    assert mc.status.acked_version > version  # the snapshot without it was pushed and ACKed

    # The next good change still reaches the data plane.
    version = mc.status.acked_version
    store.apply([front("two")], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10)
    assert mc.status.acked_version > version
    assert await _get(url) == "two"
    dump = httpx.get(f"{mc.admin_url()}/config_dump", timeout=5).json()
    assert [r["name"] for r in dump["snapshot"]["rejected"]] == ["no-bucket"]
    # Waiting on the bad resource itself (a pipeline's wait_ready passes its keys) still names it.
    with pytest.raises(GraylaneError, match="EnvoyFilter istio-system/no-bucket was not applied"):
        await mc.wait_acked(store.revision(), timeout=10, keys=[EF_KEY])

    # Status condition through the store (generation untouched), one warning event, the mesh status says it.
    stored = store.get(EF_KEY)
    [cond] = stored.body["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Reconciled", "False", "CompileError")
    assert "local_ratelimit needs a token_bucket" in cond["message"] and stored.generation == 1
    warnings = [data for topic, data in events if topic == "event"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    assert warnings[0]["involvedObject"]["name"] == "no-bucket"
    described = mc.describe()
    assert described["error"].startswith("1 resource left out of the mesh configuration: EnvoyFilter "
                                         "istio-system/no-bucket")
    assert [r["name"] for r in described["rejected"]] == ["no-bucket"]

    # Fixed: it is compiled again and the condition goes.
    store.apply([ef(bucket={"max_tokens": 5, "fill_interval": "60s"})], actor="user:test")
    await mc.wait_acked(store.revision(), timeout=10, keys=[EF_KEY])
    for _ in range(50):
        if "status" not in store.get(EF_KEY).body:
            break
        await asyncio.sleep(0.05)
    assert "status" not in store.get(EF_KEY).body
    assert mc.describe()["error"] == "" and mc.describe()["rejected"] == []
