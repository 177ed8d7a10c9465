"""trafficShift and canaryRollout through a Gateway API HTTPRoute (`httpRoute`): the backendRef weights of the
route's default rule move, per-version Services as Istio's bookinfo-versions.yaml has them; what the mesh compiles
from the result; what is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.pipelines.test_release_stages import Rig, deployment, run_rig

from graylane.mesh.config import compile_snapshot
from graylane.mesh.state import MeshOptions
from graylane.pipelines import httproute_edit
from graylane.pipelines.status import ExecutionStatus as S
from graylane.resources.document import ResourceKey

ROUTE = ResourceKey("gateway.networking.k8s.io", "HTTPRoute", "default", "reviews")


def services() -> str:
    out = ""
    for name, selector in (("reviews", "{app: reviews}"), ("reviews-v1", "{app: reviews, version: v1}"),
                           ("reviews-v2", "{app: reviews, version: v2}")):
        out += f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{selector: {selector}, ports: [{{name: http, port: 9080}}]}}
---
"""
    return out


# A mesh (GAMMA) route as Istio's gateway-api samples write it: a tester's header rule, then the default rule.
HTTPROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{headers: [{name: end-user, value: tester}]}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - backendRefs: [{name: reviews-v1, port: 9080}]
    timeouts: {request: 3s}
"""
WORLD = deployment("reviews", "v1") + deployment("reviews", "v2") + services() + HTTPROUTE


def _route(rig: Rig) -> dict[str, Any]:
    got = rig.store.get(ROUTE)
    assert got is not None
    return got.body  # type: ignore[no-any-return]


def _mesh_split(rig: Rig) -> list[tuple[str, int]]:
    """What the data plane would be pushed for reviews: the default route's destinations and weights."""
    snap = compile_snapshot([dict(r.body) for r in rig.store.list()], [], [], MeshOptions(), 1, isolate=True)
    assert not snap["rejected"], snap["rejected"]
    [vs] = [v for v in snap["virtual_services"] if v["hosts"] == ["reviews.default.svc.cluster.local"]]
    return [(d["host"].split(".")[0], d.get("weight", 100)) for d in vs["http"][-1]["route"]]


def test_traffic_shift_moves_the_httproute_weights_in_place(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        before = _route(rig)
        done = await rig.done(await rig.run({"type": "trafficShift", "service": "reviews", "httpRoute": "reviews",
                                             "weights": {"reviews-v1": 90, "reviews-v2": 10}}))
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        after = _route(rig)
        assert after["spec"]["rules"][0] == before["spec"]["rules"][0]  # the tester's rule
        assert after["spec"]["rules"][1]["timeouts"] == {"request": "3s"}
        assert after["spec"]["rules"][1]["backendRefs"] == [{"name": "reviews-v1", "port": 9080, "weight": 90},
                                                            {"name": "reviews-v2", "port": 9080, "weight": 10}]
        assert _mesh_split(rig) == [("reviews-v1", 90), ("reviews-v2", 10)]
        assert done.stage("0").outputs["weights"] == {"reviews": {"reviews-v1": 90, "reviews-v2": 10}}

    run_rig(tmp_path, WORLD, test)


@pytest.mark.parametrize(("stage", "message"), [
    ({"weights": {"reviews-v1": 50, "reviews-v4": 50}}, "Referenced backendRef Service not found"),
    ({"httpRoute": "nope", "weights": {"reviews-v1": 50, "reviews-v2": 50}}, "HTTPRoute default/nope not found"),
])
def test_traffic_shift_refuses_what_would_route_to_nothing(tmp_path: Path, state_dir: Path, stage: dict[str, Any],
                                                           message: str) -> None:
    async def test(rig: Rig) -> None:
        revision = rig.store.revision()
        done = await rig.done(await rig.run({"type": "trafficShift", "service": "reviews", "httpRoute": "reviews",
                                             **stage}))
        assert done.status == S.TERMINAL
        assert message in done.stage("0").context["exception"]["details"]["error"]
        assert rig.store.revision() == revision

    run_rig(tmp_path, WORLD, test)


def test_canary_rollout_steps_through_httproute_weights_then_promotes(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        exe = await rig.run({"type": "canaryRollout", "service": "reviews", "httpRoute": "reviews",
                             "stableService": "reviews-v1", "canaryService": "reviews-v2",
                             "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 1)
        assert _mesh_split(rig) == [("reviews-v1", 80), ("reviews-v2", 20)]
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "continue", "judgmentInput": "Promote"}, user="bob")
        await rig.rollout(exe, "Paused", 3)
        assert _mesh_split(rig) == [("reviews-v1", 40), ("reviews-v2", 60)]
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "continue", "judgmentInput": "Promote"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        assert _mesh_split(rig) == [("reviews-v2", 100)]

    run_rig(tmp_path, WORLD, test)


def _explain(rig: Rig, headers: list[tuple[str, str]]) -> str:
    """The backend Service a request to reviews (from a reviews-v1 sidecar) reaches, as the proxy would route it."""
    from graylane.cli.route import explain

    out = explain([dict(r.body) for r in rig.store.list()], "http://reviews:9080/reviews/1", source="reviews-v1",
                  headers=headers)
    return str(out["destination"]["host"]).split(".")[0]


def test_header_and_mirror_routes_on_an_httproute(tmp_path: Path, state_dir: Path) -> None:
    """As Argo Rollouts' Gateway API plugin: setHeaderRoute adds a named rule (the managed rule's matches ANDed with
    the header) to the canary Service, above the tester's; setMirrorRoute a RequestMirror filter; both go at the
    end, and the tester's rule is untouched throughout."""
    async def test(rig: Rig) -> None:
        tester = _route(rig)["spec"]["rules"][0]
        exe = await rig.run({
            "type": "canaryRollout", "service": "reviews", "httpRoute": "reviews", "stableService": "reviews-v1",
            "canaryService": "reviews-v2",
            "steps": [{"setHeaderRoute": {"name": "jason", "match": [{"headerName": "end-user",
                                                                       "headerValue": {"exact": "jason"}}]}},
                      {"setWeight": 10}, {"setMirrorRoute": {"name": "shadow", "percentage": 50}}, {"pause": {}}]})
        await rig.rollout(exe, "Paused", 3)
        rules = _route(rig)["spec"]["rules"]
        assert rules[0] == {"name": "jason", "matches": [{"headers": [{"name": "end-user", "type": "Exact",
                                                                        "value": "jason"}]}],
                            "backendRefs": [{"name": "reviews-v2", "port": 9080}], "timeouts": {"request": "3s"}}
        assert rules[1] == tester
        assert rules[2]["filters"] == [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "reviews-v2", "port": 9080}, "percent": 50}}]
        assert _explain(rig, [("end-user", "jason")]) == "reviews-v2"
        assert _explain(rig, [("end-user", "tester")]) == "reviews-v1"
        snap = compile_snapshot([dict(r.body) for r in rig.store.list()], [], [], MeshOptions(), 1, isolate=True)
        [vs] = [v for v in snap["virtual_services"] if v["hosts"] == ["reviews.default.svc.cluster.local"]]
        mirrored = [r for r in vs["http"] if r.get("mirrors")]
        assert [(m["host"], m["percent"]) for m in mirrored[0]["mirrors"]] == [
            ("reviews-v2.default.svc.cluster.local", 50.0)]
        await rig.ex.update_stage(exe, "0", {"judgmentStatus": "continue", "judgmentInput": "Promote"}, user="bob")
        done = await rig.done(exe)
        assert done.status == S.SUCCEEDED, done.stage("0").context.get("exception")
        after = _route(rig)
        assert after["spec"]["rules"][0] == tester and len(after["spec"]["rules"]) == 2
        assert "filters" not in after["spec"]["rules"][1]
        assert not {"graylane.io/managed-routes", "graylane.io/managed-mirror"} & set(
            after["metadata"].get("annotations") or {})
        assert _mesh_split(rig) == [("reviews-v2", 100)]

    run_rig(tmp_path, WORLD, test)


def test_sticky_canary_is_refused_on_an_httproute(tmp_path: Path, state_dir: Path) -> None:
    async def test(rig: Rig) -> None:
        revision = rig.store.revision()
        done = await rig.done(await rig.run({
            "type": "canaryRollout", "service": "reviews", "httpRoute": "reviews", "stableService": "reviews-v1",
            "canaryService": "reviews-v2", "steps": [{"setWeight": 10, "sticky": {"cookie": {"name": "c"}}}]}))
        assert done.status == S.TERMINAL
        error = done.stage("0").context["exception"]["details"]["error"]
        assert "sticky canary is not supported on an HTTPRoute" in error, error
        assert rig.store.revision() == revision

    run_rig(tmp_path, WORLD, test)


def test_weights_keep_each_backendrefs_fields_and_new_services_take_the_rules_port() -> None:
    route = {"kind": "HTTPRoute", "metadata": {"name": "r"}, "spec": {"rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
         "backendRefs": [{"name": "a", "port": 8080, "filters": [{"type": "RequestHeaderModifier",
                                                                   "requestHeaderModifier": {"set": [
                                                                       {"name": "x", "value": "1"}]}}]}]}]}}
    assert httproute_edit.route_weights(route) == {"a": 100}
    moved = httproute_edit.set_weights(route, {"a": 70, "b": 30})
    [rule] = moved["spec"]["rules"]
    assert rule["backendRefs"][0]["filters"] == route["spec"]["rules"][0]["backendRefs"][0]["filters"]
    assert rule["backendRefs"][1] == {"name": "b", "port": 8080, "weight": 30}
    assert httproute_edit.route_weights(moved) == {"a": 70, "b": 30}
    assert route["spec"]["rules"][0]["backendRefs"][0].get("weight") is None  # the input is not changed
