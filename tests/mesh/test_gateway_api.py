"""Kubernetes Gateway API through the real proxy: Gateway listeners, HTTPRoute matches and precedence, filters,
weights (exact smooth WRR), invalid backends (500), timeouts, GAMMA mesh routes, attachment and status."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from graylane.mesh import gateway_api
from graylane.mesh.config import compile_snapshot
from graylane.mesh.isolation import Rejection
from graylane.mesh.state import MeshOptions

from .helpers import free_port, sidecar

G = "gateway.networking.k8s.io/v1"


def service(name: str, app: str, version: str | None = None, ns: str = "default", port: int = 9080) -> dict:
    selector = {"app": app, **({"version": version} if version else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector, "ports": [{"port": port, "name": "http", "targetPort": 9080}]}}


def gateway(name: str = "gw", ns: str = "default", listeners: list[dict] | None = None) -> dict:
    return {"apiVersion": G, "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": "istio",
                     "listeners": listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}]}}


def route(name: str, rules: list[dict], parents: list[dict] | None = None, ns: str = "default",
          hostnames: list[str] | None = None, created: str = "") -> dict:
    md: dict[str, Any] = {"name": name, "namespace": ns, "generation": 1}
    if created:
        md["creationTimestamp"] = created
    spec: dict[str, Any] = {"parentRefs": parents or [{"name": "gw"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": G, "kind": "HTTPRoute", "metadata": md, "spec": spec}


def backend(name: str, weight: int | None = None, **extra: Any) -> dict:
    return {"name": name, "port": 9080, **({"weight": weight} if weight is not None else {}), **extra}


def status_of(snapshot: dict, kind: str, name: str) -> dict:
    [entry] = [s for s in snapshot[gateway_api.STATUS_KEY] if s["kind"] == kind and s["name"] == name]
    return entry["status"]


def conditions(parent: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


@pytest.fixture
def world(mesh):
    """Upstreams a, b, c (Services a, b, c; reviews-v1/v2 for app reviews), a gateway port and a sidecar port."""
    ups = {n: mesh.upstream(n) for n in ("a", "b", "c", "rv1", "rv2", "mirror")}
    eps = [mesh.endpoint(ups["a"], "a"), mesh.endpoint(ups["b"], "b"), mesh.endpoint(ups["c"], "c"),
           mesh.endpoint(ups["rv1"], "reviews", "v1"), mesh.endpoint(ups["rv2"], "reviews", "v2"),
           mesh.endpoint(ups["mirror"], "mirror")]
    base = [service("a", "a"), service("b", "b"), service("c", "c"), service("reviews", "reviews"),
            service("reviews-v1", "reviews", "v1"), service("reviews-v2", "reviews", "v2"),
            service("mirror", "mirror")]
    gw_port, sc_port = free_port(), free_port()

    def push(resources: list[dict]) -> dict:
        snap = compile_snapshot([*base, *resources], eps, [sidecar(sc_port)],
                                MeshOptions(gateway_port_map={80: gw_port}), next(mesh.version), isolate=True)
        mesh.put(snap)
        return snap

    def get(path: str, host: str = "example.com", client: httpx.Client | None = None, **kw: Any) -> httpx.Response:
        return (client or httpx).request(kw.pop("method", "GET"), f"http://127.0.0.1:{gw_port}{path}", headers={
            "host": host, **kw.pop("headers", {})}, timeout=10, follow_redirects=False, **kw)

    return push, get, ups, sc_port


def name_of(resp: httpx.Response) -> str:
    assert resp.status_code == 200, (resp.status_code, resp.text)
    return resp.json()["name"]


def test_bookinfo_style_matches_exact_and_element_wise_prefix(world):
    push, get, _, _ = world
    push([gateway(), route("r", [{"matches": [{"path": {"type": "Exact", "value": "/productpage"}},
                                              {"path": {"type": "PathPrefix", "value": "/static/"}}],
                                  "backendRefs": [backend("a")]}])])
    assert name_of(get("/productpage")) == "a"
    assert name_of(get("/static")) == "a"
    assert name_of(get("/static/css/x.css?v=1")) == "a"
    assert get("/staticfoo").status_code == 404  # element-wise, unlike a VirtualService prefix
    assert get("/productpage/").status_code == 404  # Exact is exact
    assert get("/other").headers["server"] == "istio-envoy"


def test_precedence_exact_longest_prefix_method_headers_queries_then_age(world):
    push, get, _, _ = world
    old, new = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"
    push([gateway(),
          route("young", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend("c")]},
                          {"matches": [{"path": {"type": "Exact", "value": "/x/y"}}], "backendRefs": [backend("b")]}],
                created=new),
          route("old", [{"matches": [{"path": {"type": "PathPrefix", "value": "/x"}}], "backendRefs": [backend("a")]},
                        {"matches": [{"path": {"type": "PathPrefix", "value": "/x"}, "method": "POST"}],
                         "backendRefs": [backend("b")]},
                        {"matches": [{"path": {"type": "PathPrefix", "value": "/x"},
                                      "headers": [{"name": "X-Canary", "value": "1"}]}],
                         "backendRefs": [backend("c")]},
                        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend("a")]}],
                created=old)])
    assert name_of(get("/x/y")) == "b"  # Exact beats any prefix, from the younger route
    assert name_of(get("/x/z")) == "a"  # longest prefix
    assert name_of(get("/x/z", method="POST")) == "b"  # method beats headers
    assert name_of(get("/x/z", headers={"x-canary": "1"})) == "c"  # a header match beats none
    assert name_of(get("/elsewhere")) == "a"  # the same match in two routes: the oldest route wins


def test_hostnames_and_listener_hostname_intersection(world):
    push, get, _, _ = world
    push([gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}]),
          route("r1", [{"backendRefs": [backend("a")]}], hostnames=["foo.example.com", "other.org"]),
          route("r2", [{"backendRefs": [backend("b")]}])])
    assert name_of(get("/", host="foo.example.com:8080")) == "a"  # the port of Host is ignored
    assert name_of(get("/", host="bar.example.com")) == "b"
    assert get("/", host="other.org").status_code == 404  # not in the listener's hostname
    assert get("/", host="example.com").status_code == 404  # *.example.com does not match example.com


def test_the_most_specific_hostname_owns_its_requests(world):
    push, get, _, _ = world
    push([gateway(),
          route("specific", [{"matches": [{"path": {"type": "PathPrefix", "value": "/only"}}],
                              "backendRefs": [backend("a")]}], hostnames=["foo.example.com"]),
          route("wild", [{"backendRefs": [backend("b")]}], hostnames=["*.example.com"]),
          route("any", [{"matches": [{"path": {"type": "Exact", "value": "/any"}}], "backendRefs": [backend("c")]}])])
    assert name_of(get("/only/x", host="FOO.example.com")) == "a"
    assert get("/elsewhere", host="foo.example.com").status_code == 404  # as Envoy: one virtual host per request
    assert name_of(get("/elsewhere", host="bar.example.com")) == "b"
    assert get("/any", host="bar.example.com").json()["name"] == "b"  # *.example.com beats the route without hostnames
    assert name_of(get("/any", host="other.org")) == "c"


def test_header_modifiers_redirect_rewrite_and_mirror(world):
    push, get, ups, _ = world
    push([gateway(), route("r", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/hdr"}}],
         "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
             "set": [{"name": "X-Set", "value": "s"}], "add": [{"name": "X-Add", "value": "a"}], "remove": ["X-Drop"]}},
             {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "X-Resp", "value": "r"}]}}],
         "backendRefs": [backend("a")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com", "statusCode": 301,
                                                                     "path": {"type": "ReplacePrefixMatch",
                                                                              "replacePrefixMatch": "/new"}}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/moved"}}],
         "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api/v1"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "internal", "path": {
             "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
             {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "mirror", "port": 9080}}}],
         "backendRefs": [backend("b")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/strip"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                    "replacePrefixMatch": "/"}}}],
         "backendRefs": [backend("c")]},
        {"matches": [{"path": {"type": "Exact", "value": "/full"}}],
         "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath",
                                                                    "replaceFullPath": "/replaced"}}}],
         "backendRefs": [backend("c")]}])])
    r = get("/hdr", headers={"x-add": "orig", "x-drop": "1", "x-set": "old"})
    seen = r.json()["headers"]
    assert seen["x-set"] == "s" and seen["x-add"] == "orig,a" and "x-drop" not in seen
    assert r.headers["x-resp"] == "r"
    r = get("/old/page?q=1")
    assert r.status_code == 301 and r.headers["location"] == "http://new.example.com/new/page?q=1"
    assert get("/old").headers["location"] == "http://new.example.com/new"
    r = get("/moved/x", host="example.com")
    assert r.status_code == 302 and r.headers["location"] == "https://example.com/moved/x"
    before = len(ups["mirror"].requests)
    r = get("/api/v1/items?x=2")
    assert r.json()["path"] == "/v2/items" and r.json()["headers"]["host"] == "internal"
    assert get("/api/v1").json()["path"] == "/v2"
    assert get("/strip/a/b").json()["path"] == "/a/b" and get("/strip").json()["path"] == "/"
    assert get("/full").json()["path"] == "/replaced"
    deadline = time.monotonic() + 5
    while len(ups["mirror"].requests) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ups["mirror"].requests) - before == 2  # responses of the mirror are ignored


def test_gamma_mesh_route_weights_exact_and_zero_weight(world):
    push, _, _, sc_port = world
    push([route("reviews", [{"backendRefs": [backend("reviews-v1", 90), backend("reviews-v2", 10)]}],
                parents=[{"kind": "Service", "name": "reviews", "port": 9080}])])
    with httpx.Client(proxy=f"http://127.0.0.1:{sc_port}", timeout=10) as c:
        names = [c.get("http://reviews:9080/reviews/0").json()["name"] for _ in range(100)]
    assert names.count("rv1") == 90 and names.count("rv2") == 10
    push([route("reviews", [{"backendRefs": [backend("reviews-v1", 0), backend("reviews-v2", 1)]}],
                parents=[{"group": "", "kind": "Service", "name": "reviews", "port": 9080}])])
    with httpx.Client(proxy=f"http://127.0.0.1:{sc_port}", timeout=10) as c:
        assert {c.get("http://reviews:9080/").json()["name"] for _ in range(10)} == {"rv2"}


def test_gamma_consumer_route_applies_only_to_its_namespace(mesh, world):
    push, _, _, sc_port = world
    client_port = free_port()
    snap = push([route("reviews", [{"backendRefs": [backend("reviews-v1")]}],
                       parents=[{"kind": "Service", "name": "reviews", "port": 9080}]),
                 route("reviews-for-client", [{"backendRefs": [backend("reviews-v2", namespace="default")]}],
                       parents=[{"kind": "Service", "name": "reviews", "namespace": "default", "port": 9080}],
                       ns="client")])
    # the same snapshot plus a sidecar in namespace client
    snap["listeners"].append({**snap["listeners"][0], "name": "sidecar~client~productpage-v1-0", "port": client_port,
                              "source": {**snap["listeners"][0]["source"], "namespace": "client"}})
    mesh.put({**snap, "version": next(mesh.version)})
    with httpx.Client(proxy=f"http://127.0.0.1:{client_port}", timeout=10) as c:
        assert {c.get("http://reviews.default:9080/").json()["name"] for _ in range(5)} == {"rv2"}
    with httpx.Client(proxy=f"http://127.0.0.1:{sc_port}", timeout=10) as c:
        assert {c.get("http://reviews:9080/").json()["name"] for _ in range(5)} == {"rv1"}


def test_missing_backends_get_500_in_proportion(world):
    push, get, _, _ = world
    snap = push([gateway(), route("r", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/none"}}], "backendRefs": [backend("nope")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/zero"}}], "backendRefs": [backend("a", 0)]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/half"}}],
         "backendRefs": [backend("a", 1), backend("gone", 1)]}])])
    assert get("/none").status_code == 500
    assert get("/zero").status_code == 500
    codes = [get("/half").status_code for _ in range(200)]
    assert set(codes) == {200, 500} and 60 <= codes.count(500) <= 140
    [parent] = status_of(snap, "HTTPRoute", "r")["parents"]
    assert conditions(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}


def test_request_timeout_is_504(world):
    push, get, _, _ = world
    push([gateway(), route("r", [{"timeouts": {"request": "200ms"}, "backendRefs": [backend("a")]}])])
    assert get("/delay/1").status_code == 504
    assert name_of(get("/fast")) == "a"


def test_attachment_status_reasons_and_reference_grants(world):
    push, get, _, _ = world
    other = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"gw": "yes"}}}
    snap = push([other, gateway(listeners=[
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS",
         "tls": {"certificateRefs": [{"name": "cert"}]}}]),
        route("wrong-section", [{"backendRefs": [backend("a")]}], parents=[{"name": "gw", "sectionName": "nope"}]),
        route("foreign", [{"backendRefs": [backend("a")]}], ns="team",
              parents=[{"name": "gw", "namespace": "default"}]),
        route("no-gw", [{"backendRefs": [backend("a")]}], parents=[{"name": "missing"}]),
        route("cross", [{"backendRefs": [backend("a", namespace="team")]}])])
    parents = {n: conditions(status_of(snap, "HTTPRoute", n)["parents"][0])
               for n in ("wrong-section", "foreign", "no-gw", "cross")}
    assert parents["wrong-section"]["Accepted"] == ("False", "NoMatchingParent")
    assert parents["foreign"]["Accepted"] == ("False", "NotAllowedByListeners")
    assert parents["no-gw"]["Accepted"] == ("False", "NoMatchingParent")
    assert parents["cross"]["ResolvedRefs"] == ("False", "RefNotPermitted")
    gw = status_of(snap, "Gateway", "gw")
    assert gw["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
    listeners = {lst["name"]: lst for lst in gw["listeners"]}
    assert listeners["http"]["attachedRoutes"] == 1  # only "cross" attached
    # HTTPS is served with a usable certificateRef; Secret "cert" does not exist (tests/mesh/proxy/test_tls_gateway.py)
    assert conditions(listeners["https"])["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert conditions(listeners["https"])["Programmed"] == ("False", "Invalid")
    assert conditions(gw)["Programmed"] == ("True", "Programmed")

    # Selector namespaces and a ReferenceGrant open the way
    grant = {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
             "metadata": {"name": "allow", "namespace": "team"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    team_svc = service("a", "a", ns="team")
    selector = {"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"gw": "yes"}}}}}
    default_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default", "labels": {"gw": "yes"}}}
    snap = push([other, default_ns, grant, team_svc, gateway(listeners=[selector]),
                 route("foreign", [{"matches": [{"path": {"type": "PathPrefix", "value": "/team"}}],
                                    "backendRefs": [backend("a")]}], ns="team",
                       parents=[{"name": "gw", "namespace": "default"}]),
                 route("cross", [{"backendRefs": [backend("a", namespace="team")]}])])
    assert conditions(status_of(snap, "HTTPRoute", "foreign")["parents"][0])["Accepted"] == ("True", "Accepted")
    assert conditions(status_of(snap, "HTTPRoute", "cross")["parents"][0])["ResolvedRefs"] == ("True", "ResolvedRefs")
    # both now reach Service a in team, which has no endpoints there: 503 UH (not the 500 of a refused backend)
    assert get("/team/x").status_code == 503 and get("/").status_code == 503



def test_bad_regex_leaves_only_that_route_out(world):
    push, get, _, _ = world
    snap = push([gateway(), route("bad", [{"matches": [{"path": {"type": "RegularExpression", "value": "/(?=x)"}}],
                                           "backendRefs": [backend("b")]}]),
                 route("good", [{"backendRefs": [backend("a")]}])])
    assert [r["name"] for r in snap["rejected"]] == ["bad"]
    assert conditions(status_of(snap, "HTTPRoute", "bad")["parents"][0])["Accepted"] == ("False", "UnsupportedValue")
    assert name_of(get("/x")) == "a"


def test_status_update_keeps_transition_times_and_reports_nothing_when_unchanged():
    wanted = {"parents": [{"parentRef": {"name": "gw"}, "controllerName": gateway_api.CONTROLLER, "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok", "observedGeneration": 1}]}]}
    first = gateway_api.status_update({}, wanted, None, "T1")
    assert first["parents"][0]["conditions"][0]["lastTransitionTime"] == "T1"
    assert gateway_api.status_update({"status": first}, wanted, None, "T2") is False
    rejection = Rejection("gateway.networking.k8s.io", "HTTPRoute", "default", "r", "3", 1, "HTTPRoute default/r: x")
    with_rec = gateway_api.status_update({"status": first}, wanted, rejection, "T3")
    assert [c["type"] for c in with_rec["conditions"]] == ["Reconciled"]
    assert gateway_api.status_update({"status": with_rec}, wanted, rejection, "T4") is False


def test_graylane_route_explains_an_httproute_request():
    from graylane.cli.route import explain

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a-v1", "namespace": "default"},
                  "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "a", "version": "v1"}},
                                                       "spec": {"containers": [{"name": "a", "ports": [
                                                           {"containerPort": 9080}]}]}}}}
    resources = [service("a", "a"), service("a-v1", "a", "v1"), deployment, gateway(),
                 route("r", [{"matches": [{"path": {"type": "PathPrefix", "value": "/shop"}}],
                              "backendRefs": [backend("a-v1")]}])]
    result = explain(resources, "http://example.com/shop/cart", gateway="gw")
    text = str(result)
    assert "a-v1.default.svc.cluster.local" in text and "default.r.0" in text


# --------------------------------------------------------------------------------------------- validation


def _findings(text: str, context: list[dict] | None = None) -> list[str]:
    from graylane.resources.load import load_text
    from graylane.resources.validate import validate

    return [f.plain() for f in validate(load_text(text, "r.yaml"), context)]


BAD_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: "api"}}, {path: {type: Exact, value: "/a//b"}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {statusCode: 302}}
    - {type: URLRewrite, urlRewrite: {hostname: x}}
    backendRefs: [{name: a, port: 9080}]
  - backendRefs: [{name: a}]
    timeouts: {request: 1s, backendRequest: 2s}
  - matches: [{path: {type: RegularExpression, value: "/(?=x)"}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}]
    backendRefs: [{name: a, port: 9080}]
"""


def test_validate_applies_the_crd_cel_rules() -> None:
    text = "\n".join(_findings(BAD_ROUTE))
    for expected in ("rules[0].matches[0].path.value: value must be an absolute path",
                     "rules[0].matches[1].path.value: must not contain '//'",
                     "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite",
                     "RequestRedirect filter must not be used together with backendRefs",
                     "rules[1].backendRefs[0]: Must have port for Service reference",
                     "backendRequest timeout cannot be longer than request timeout",
                     "rules[2].matches[0].path.value: invalid RE2 regular expression",
                     "exactly one PathPrefix match must be specified"):
        assert expected in text, text


def test_validate_schema_weight_range_and_enums() -> None:
    text = "\n".join(_findings("""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: w}
spec:
  rules:
  - backendRefs: [{name: a, port: 9080, weight: 1000001}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 304}}]
"""))
    assert "backendRefs[0].weight: Input should be less than or equal to 1000000" in text
    assert "requestRedirect.statusCode: must be one of 301, 302, 303, 307 or 308" in text


def test_validate_reports_missing_backends_and_parents_and_refused_grants() -> None:
    context = [service("a", "a"), service("a", "a", ns="team")]
    text = "\n".join(_findings("""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}, {name: https, port: 443, protocol: HTTPS}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}, {name: nogw}, {kind: Service, name: nosvc, port: 9080}]
  rules:
  - backendRefs: [{name: missing, port: 9080}, {name: a, port: 9999}, {name: a, namespace: team, port: 9080}]
""", context))
    assert 'spec.parentRefs[1].name: Referenced parent Gateway not found: "default/nogw"' in text
    assert 'Referenced parent Service not found: "default/nosvc"' in text
    assert 'Referenced backendRef Service not found: "default/missing"' in text
    assert 'Referenced backendRef Service port not found: "default/a:9999"' in text
    assert "no ReferenceGrant in team allows HTTPRoutes from default" in text
    assert "tls mode must be set for protocol HTTPS" in text


def test_istio_bookinfo_gateway_api_samples_validate_clean() -> None:
    from graylane.demos.bookinfo import demo
    from graylane.resources.load import load_paths
    from graylane.resources.validate import validate

    root = demo.DEMO_ROOT
    docs = load_paths([root / "gateway-api", root / "platform" / "kube"])
    assert [f.plain() for f in validate(docs)] == []


# --------------------------------------------------------------------------------------------- GRPCRoute


def grpc_route(name: str, rules: list[dict], parents: list[dict] | None = None, ns: str = "default",
               hostnames: list[str] | None = None) -> dict:
    body = route(name, rules, parents, ns, hostnames)
    return {**body, "kind": "GRPCRoute"}


def call(get: Any, path: str, host: str = "grpc.example.com", client: httpx.Client | None = None,
         **headers: str) -> httpx.Response:
    """What a gRPC client sends, as far as routing sees it: POST /package.Service/Method, content-type grpc."""
    return get(path, host=host, method="POST", content=b"\0\0\0\0\0", client=client,
               headers={"content-type": "application/grpc", "te": "trailers", **headers})


def test_grpcroute_method_matches_precedence_and_exact_weights(world):
    """GRPCRoute as Istio converts it: service+method exact, service-only prefix, method-only and regex matches,
    a header match, the spec's precedence (longer service, then method), weights exact over 100 calls."""
    push, get, _, _ = world
    snap = push([gateway(), grpc_route("greeter", [
        {"matches": [{"method": {"service": "helloworld.Greeter", "method": "SayHello"}}],
         "backendRefs": [backend("a")]},
        {"matches": [{"method": {"service": "helloworld.Greeter"}}], "backendRefs": [backend("b")]},
        {"matches": [{"method": {"method": "Check"}}], "backendRefs": [backend("c")]},
        {"matches": [{"method": {"type": "RegularExpression", "service": "routeguide\\..*", "method": "Get.*"}}],
         "backendRefs": [backend("reviews-v1", 80), backend("reviews-v2", 20)]},
        {"matches": [{"method": {"service": "helloworld.Greeter", "method": "SayHello"},
                      "headers": [{"name": "x-canary", "value": "yes"}]}],
         "backendRefs": [backend("c")]},
    ], hostnames=["grpc.example.com"])])
    assert conditions(status_of(snap, "GRPCRoute", "greeter")["parents"][0])["Accepted"] == ("True", "Accepted")
    assert name_of(call(get, "/helloworld.Greeter/SayHello")) == "a"
    assert name_of(call(get, "/helloworld.Greeter/SayHello", **{"x-canary": "yes"})) == "c"  # more headers win
    assert name_of(call(get, "/helloworld.Greeter/SayGoodbye")) == "b"  # service only
    assert name_of(call(get, "/grpc.health.v1.Health/Check")) == "c"  # method only, any service
    with httpx.Client() as one:  # one connection: the split is exact per proxy worker (docs/dataplane.md Workers)
        names = [name_of(call(get, "/routeguide.RouteGuide/GetFeature", client=one)) for _ in range(100)]
    assert names.count("rv1") == 80 and names.count("rv2") == 20
    # No route: Envoy's gRPC local reply, trailers-only in the HTTP/1.1 head (404 as UNIMPLEMENTED).
    for r in (call(get, "/routeguide.RouteGuide/ListFeatures"),
              call(get, "/helloworld.Greeter/SayHello", host="other.example.com")):
        assert (r.status_code, r.headers["grpc-status"], r.headers["content-type"]) == (200, "12", "application/grpc")


def test_grpcroute_in_the_mesh_and_listener_kinds(world):
    """A GRPCRoute whose parent is a Service routes in the mesh (GAMMA); a listener allowing only HTTPRoutes
    refuses it (NotAllowedByListeners) and a listener allowing GRPCRoutes accepts it."""
    push, get, _, sc_port = world
    push([grpc_route("reviews", [{"backendRefs": [backend("reviews-v1", 1), backend("reviews-v2", 1)]}],
                     parents=[{"kind": "Service", "name": "reviews", "port": 9080}])])
    with httpx.Client(proxy=f"http://127.0.0.1:{sc_port}", timeout=10) as c:
        names = [c.post("http://reviews:9080/reviews.Reviews/Get", content=b"\0\0\0\0\0",
                        headers={"content-type": "application/grpc"}).json()["name"] for _ in range(10)]
    assert names.count("rv1") == 5 and names.count("rv2") == 5
    http_only = {"name": "http", "port": 80, "protocol": "HTTP",
                 "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}]}}
    snap = push([gateway(listeners=[http_only]), grpc_route("g", [{"backendRefs": [backend("a")]}])])
    assert conditions(status_of(snap, "GRPCRoute", "g")["parents"][0])["Accepted"] == \
        ("False", "NotAllowedByListeners")
    both = {**http_only, "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}, {"kind": "GRPCRoute"}]}}
    snap = push([gateway(listeners=[both]), grpc_route("g", [{"backendRefs": [backend("a")]}])])
    assert conditions(status_of(snap, "GRPCRoute", "g")["parents"][0])["Accepted"] == ("True", "Accepted")
    assert name_of(call(get, "/any.Service/Method", host="example.com")) == "a"


BAD_GRPC_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: bad}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - method: {type: Exact}
    - method: {service: "bad service!", method: "Say-Hello"}
    - method: {type: RegularExpression, service: "(unclosed"}
    - headers: [{name: "bad header", value: x}]
    backendRefs: [{name: a}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rewrites}
spec:
  rules:
  - filters: [{type: URLRewrite, urlRewrite: {hostname: x}}]
"""


def test_validate_applies_the_grpcroute_crd_rules() -> None:
    text = "\n".join(_findings(BAD_GRPC_ROUTE))
    for expected in ("rules[0].matches[0].method: One or both of 'service' or 'method' must be specified",
                     "rules[0].matches[1].method.service: service must only contain valid characters",
                     "rules[0].matches[1].method.method: method must only contain valid characters",
                     "rules[0].matches[2].method.service: invalid RE2 regular expression",
                     "rules[0].matches[3].headers[0].name: invalid header name",
                     "rules[0].backendRefs[0]: Must have port for Service reference",
                     "rules[0].filters[0].type: must be one of 'RequestHeaderModifier', 'ResponseHeaderModifier', "
                     "'RequestMirror' or 'ExtensionRef' (got 'URLRewrite')"):
        assert expected in text, text
