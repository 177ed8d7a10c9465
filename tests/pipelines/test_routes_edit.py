"""routes_edit: the managed route's weights change in place; the user's rules, Graylane's routes by name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from graylane.errors import ValidationError
from graylane.pipelines import routes_edit as edit

USER_VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default", "uid": "u1", "generation": 3, "resourceVersion": "7"},
    "spec": {"hosts": ["reviews"], "http": [
        {"match": [{"headers": {"end-user": {"exact": "tester"}}}], "fault": {"abort": {"httpStatus": 500,
                                                                                       "percentage": {"value": 100}}},
         "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
        {"match": [{"uri": {"prefix": "/other"}}], "route": [{"destination": {"host": "details"}}]},
        {"timeout": "2s", "retries": {"attempts": 3, "perTryTimeout": "1s"},
         "route": [{"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}}]},
    ]},
}


def weights(vs: dict[str, Any]) -> list[tuple[str, int]]:
    return list(edit.route_weights(vs, "reviews").items())


def test_set_weights_edits_only_the_default_route_and_keeps_its_fields() -> None:
    out = edit.set_weights(USER_VS, "reviews", {"v1": 90, "v2": 10})
    assert out["spec"]["http"][:2] == USER_VS["spec"]["http"][:2]  # the tester fault route, the details route
    rule = out["spec"]["http"][2]
    assert rule["timeout"] == "2s" and rule["retries"] == {"attempts": 3, "perTryTimeout": "1s"}
    assert rule["route"] == [
        {"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 90},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10}]
    assert USER_VS["spec"]["http"][2]["route"][0].get("weight") is None  # input untouched
    assert weights(edit.set_weights(out, "reviews", {"v2": 100})) == [("v2", 100)]


def test_a_new_managed_virtual_service_is_annotated() -> None:
    vs = edit.set_weights(edit.new_virtual_service("ratings", "bookinfo"), "ratings", {"v1": 50, "v2": 50})
    assert vs["metadata"]["annotations"] == {edit.MANAGED_BY: "graylane"}
    assert vs["metadata"]["namespace"] == "bookinfo" and vs["spec"]["hosts"] == ["ratings"]
    assert weights({**vs, "spec": {**vs["spec"], "hosts": ["reviews"]}}) == []
    assert edit.route_weights(vs, "ratings") == {"v1": 50, "v2": 50}


@pytest.mark.parametrize(("given", "message"), [
    ({"v1": 90, "v2": 20}, "add up to 110"), ({"v1": "x"}, "not a whole percent"), ({}, "map of subset"),
    ({"v1": 120, "v2": -20}, "outside 0-100")])
def test_bad_weights_are_refused_naming_the_problem(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        edit.check_weights(given, "stage 'x'")


def test_header_route_sits_above_the_users_rules_and_follows_weights_untouched() -> None:
    vs = edit.set_weights(USER_VS, "reviews", {"v1": 90, "v2": 10})
    match = edit.header_matches([{"headerName": "end-user", "headerValue": {"exact": "jason"}}], "step")
    vs = edit.set_header_route(vs, "reviews", "jason", match, "v2")
    assert vs["spec"]["http"][0] == {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                                     "timeout": "2s", "retries": {"attempts": 3, "perTryTimeout": "1s"},
                                     "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}
    assert edit.managed_names(vs) == ["jason"]
    vs = edit.set_weights(vs, "reviews", {"v1": 50, "v2": 50})  # the header route is not the managed route
    assert vs["spec"]["http"][0]["route"] == [{"destination": {"host": "reviews", "subset": "v2"}}]
    assert weights(vs) == [("v1", 50), ("v2", 50)]
    cookie = edit.header_matches({"cookie": {"canary": "always"}}, "step")
    vs = edit.set_header_route(vs, "reviews", "cookie", cookie, "v2")
    assert [r.get("name") for r in vs["spec"]["http"]][:2] == ["jason", "cookie"]
    assert cookie[0]["headers"]["cookie"]["regex"] == r"^(.*?;\s*)?(canary=always)(;.*)?$"
    cleared = edit.remove_managed_routes(vs, "reviews")
    assert cleared["spec"]["http"][:2] == USER_VS["spec"]["http"][:2]
    assert edit.MANAGED_ROUTES not in cleared["metadata"].get("annotations", {})


def test_mirror_on_the_managed_route_or_a_matched_route() -> None:
    vs = edit.set_weights(USER_VS, "reviews", {"v1": 100})
    plain = edit.set_mirror_route(vs, "reviews", "mirror", 20, "v2")
    rule = plain["spec"]["http"][2]
    assert rule["mirror"] == {"host": "reviews", "subset": "v2"} and rule["mirrorPercentage"] == {"value": 20.0}
    assert edit.routed_subsets(plain, "reviews") == {"v1", "v2", "v3"}
    assert "mirror" not in edit.remove_route(plain, "reviews", "mirror")["spec"]["http"][2]
    match = edit.header_matches({"headers": {"x-mirror": "yes"}}, "step")
    named = edit.set_mirror_route(vs, "reviews", "m2", 50, "v2", match)
    assert named["spec"]["http"][0]["name"] == "m2" and named["spec"]["http"][0]["mirror"]["subset"] == "v2"
    named = edit.set_weights(named, "reviews", {"v1": 80, "v2": 20})
    assert named["spec"]["http"][0]["route"] == named["spec"]["http"][3]["route"]  # follows the weights
    assert edit.remove_managed_routes(named, "reviews")["spec"]["http"][:2] == USER_VS["spec"]["http"][:2]


def test_writable_drops_server_fields_and_pick_prefers_routed_services() -> None:
    body = {**copy.deepcopy(USER_VS), "status": {"observedGeneration": 3}}
    out = edit.writable(body)
    assert out["metadata"] == {"name": "reviews", "namespace": "default", "resourceVersion": "7"}
    assert "status" not in out
    gateway_vs = {"metadata": {"name": "bookinfo"}, "spec": {"hosts": ["*"], "gateways": ["bookinfo-gateway"]}}
    other = {"metadata": {"name": "reviews-other"}, "spec": {"hosts": ["reviews.default.svc.cluster.local"]}}
    assert edit.pick_virtual_service([gateway_vs, other, USER_VS], "reviews", None) is USER_VS
    assert edit.pick_virtual_service([gateway_vs, other], "reviews", None) is other
    assert edit.pick_virtual_service([other, USER_VS], "reviews", "reviews-other") is other
    assert edit.pick_virtual_service([gateway_vs], "reviews", None) is None


def test_sticky_annotation_is_set_and_removed_and_a_bad_step_is_refused() -> None:
    from graylane.pipelines.stages.canary_rollout import check_steps
    from graylane.resources.sticky import parse_sticky

    body = edit.new_virtual_service("reviews", "default")
    on = edit.set_sticky(body, {"cookie": {"name": "gl-canary", "maxAge": "1h"}})
    raw = on["metadata"]["annotations"][edit.STICKY]
    assert parse_sticky(raw) == {"cookie": "gl-canary", "max_age_s": 3600, "path": "/", "same_site": "Lax"}
    assert edit.STICKY not in edit.set_sticky(on, None)["metadata"]["annotations"]
    assert edit.STICKY not in body["metadata"]["annotations"]  # the input is not changed
    check_steps([{"setWeight": 10, "sticky": {"header": "x-user-id"}}, {"setWeight": 50, "sticky": False}], "s")
    with pytest.raises(ValidationError, match=r"steps\[0\] sticky: cookie.sameSite"):
        check_steps([{"setWeight": 10, "sticky": {"cookie": {"sameSite": "sometimes"}}}], "s")
