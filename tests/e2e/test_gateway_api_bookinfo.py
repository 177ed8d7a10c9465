"""Istio's Kubernetes Gateway API Bookinfo samples, applied unchanged with `graylane apply` onto a running local
mesh: bookinfo-gateway.yaml (Gateway + HTTPRoute), the per-version Services of bookinfo-versions.yaml, and the
mesh (GAMMA) HTTPRoutes route-reviews-v1, -90-10 (exactly 90/10 over 100 pages), -50-v3 and -v3; statuses
through `graylane get httproute -o yaml`, and `graylane route` over the same files. Then the demo's
`reviews-canary-httproute` pipeline on a `graylane demo bookinfo` installation."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import yaml
from tests.e2e.test_article import Local as ArticleLocal
from tests.e2e.test_istio_tasks import KUBE, Local

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

from graylane.demos.bookinfo import demo  # noqa: E402

GAPI = demo.DEMO_ROOT / "gateway-api"
VERSIONS = KUBE / "bookinfo-versions.yaml"
DEPLOYMENTS = (KUBE / "bookinfo-reviews-v1.yaml", KUBE / "bookinfo-reviews-v2.yaml", KUBE / "bookinfo-reviews-v3.yaml")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("gateway-api") / "state"
    state.mkdir()
    env = Local(state)
    env.cli("up", "--admin-port", str(env.admin_port), "--gateway-port", f"80={env.gateway_port}")
    try:
        env.apply(*DEPLOYMENTS, VERSIONS, GAPI / "bookinfo-gateway.yaml", GAPI / "route-reviews-v1.yaml")
        for name in ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"):
            env.cli("rollout", "status", f"deploy/{name}")
        yield env
    finally:
        env.cli("down", check=False)


def resource_yaml(local: Local, kind: str, name: str, ready: str, timeout: float = 30) -> dict:
    """`graylane get KIND NAME -o yaml`, polled until `ready` appears in the status (written after the ACK)."""
    deadline = time.monotonic() + timeout
    while True:
        text = local.cli("get", kind, name, "-o", "yaml").stdout
        if ready in text or time.monotonic() > deadline:
            return yaml.safe_load(text)
        time.sleep(0.3)


def conditions(conds: list[dict]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conds}


def test_gateway_and_reviews_v1(local: Local) -> None:
    assert local.pages(20) == {"none": 20}
    gw = resource_yaml(local, "gateways.gateway.networking.k8s.io", "bookinfo-gateway", "attachedRoutes: 1")
    assert conditions(gw["status"]["conditions"]) == {"Accepted": ("True", "Accepted"),
                                                      "Programmed": ("True", "Programmed")}
    [listener] = gw["status"]["listeners"]
    assert listener["name"] == "http" and listener["attachedRoutes"] == 1
    route = resource_yaml(local, "httproute", "reviews", "ResolvedRefs")
    [parent] = route["status"]["parents"]
    assert parent["parentRef"] == {"group": "", "kind": "Service", "name": "reviews", "port": 9080}
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert conditions(parent["conditions"]) == {"Accepted": ("True", "Accepted"),
                                                "ResolvedRefs": ("True", "ResolvedRefs")}
    assert all(c["observedGeneration"] == route["metadata"]["generation"] and c["lastTransitionTime"]
               for c in parent["conditions"])
    with local.browser() as client:  # only the five bookinfo paths are routed by the HTTPRoute
        assert client.get("/static/tailwind/tailwind.css").status_code in (200, 404)
        assert client.get("/nothing-here").status_code == 404


REVIEWS_CALLS = ('sum by (destination_workload) (istio_requests_total{reporter="source",'
                 'source_workload="productpage-v1",destination_app="reviews"})')


def reviews_calls(local: Local) -> dict[str, float]:
    """productpage's calls to reviews by destination workload, from `graylane query` (PromQL on the local mesh)."""
    data = json.loads(local.cli("query", REVIEWS_CALLS, "-o", "json").stdout)
    return {r["metric"]["destination_workload"]: float(r["value"][1]) for r in data["result"]}


def test_reviews_90_10_exactly_over_100_pages(local: Local) -> None:
    """The split an HTTPRoute makes is measured and drawn as a VirtualService's is: istio_requests_total by
    destination workload, and the topology's productpage -> reviews-v1 / reviews-v2 edges."""
    local.apply(GAPI / "route-reviews-90-10.yaml")
    before = reviews_calls(local)
    assert local.pages(100) == {"none": 90, "black": 10}
    deadline = time.monotonic() + 20
    while True:  # the telemetry recorder scrapes the data plane every few seconds
        after = reviews_calls(local)
        delta = {w: after.get(w, 0) - before.get(w, 0) for w in after}
        if sum(delta.values()) >= 100 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {w: round(v) for w, v in delta.items() if v} == {"reviews-v1": 90, "reviews-v2": 10}
    graph = json.loads(local.cli("graph", "--window", "1m", "-o", "json").stdout)
    label = {n["id"]: n.get("label") or n["id"] for n in graph["nodes"]}
    edges = {(label.get(e["source"], e["source"]), label.get(e["target"], e["target"])) for e in graph["edges"]}
    assert {("productpage-v1", "reviews-v1"), ("productpage-v1", "reviews-v2")} <= edges, edges


def test_reviews_50_v3_then_v3(local: Local) -> None:
    local.apply(GAPI / "route-reviews-50-v3.yaml")
    assert local.pages(100) == {"none": 50, "red": 50}
    local.apply(GAPI / "route-reviews-v3.yaml")
    assert local.pages(20) == {"red": 20}


def test_missing_backend_status_and_500(local: Local) -> None:
    broken = local.state.parent / "reviews-missing.yaml"
    broken.write_text(yaml.safe_dump({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "reviews"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
                 "rules": [{"backendRefs": [{"name": "reviews-v9", "port": 9080}]}]}}))
    local.cli("apply", "-f", str(broken), "--wait")
    route = resource_yaml(local, "httproute", "reviews", "BackendNotFound")
    assert conditions(route["status"]["parents"][0]["conditions"])["ResolvedRefs"] == ("False", "BackendNotFound")
    with local.browser() as client:  # productpage gets 500 from reviews and says so on the page
        assert "Error fetching product reviews" in client.get("/productpage").text
    local.apply(GAPI / "route-reviews-v3.yaml")


def test_graylane_route_explains_the_httproutes() -> None:
    from typer.testing import CliRunner

    from graylane.cli.main import app

    files = ["-f", str(KUBE / "bookinfo-reviews-v1.yaml"), "-f", str(KUBE / "bookinfo-reviews-v2.yaml"),
             "-f", str(VERSIONS), "-f", str(GAPI / "bookinfo-gateway.yaml"),
             "-f", str(GAPI / "route-reviews-90-10.yaml")]
    res = CliRunner().invoke(app, ["route", *files, "--from", "productpage-v1", "http://reviews:9080/reviews/0",
                                   "--count", "100", "-o", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["rule"]["name"] == "default.reviews.0"
    assert out["split"] == {"outbound|9080||reviews-v1.default.svc.cluster.local": 90,
                            "outbound|9080||reviews-v2.default.svc.cluster.local": 10}
    res = CliRunner().invoke(app, ["route", *files, "--gateway", "bookinfo-gateway",
                                   "http://bookinfo.example/static/x.css", "-o", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rule"]["name"] == "default.bookinfo.0"


@pytest.fixture(scope="module")
def article(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArticleLocal]:
    """`graylane demo bookinfo` on a fresh installation (baseline: VirtualServices, all v1)."""
    state = tmp_path_factory.mktemp("httproute-canary") / "state"
    state.mkdir()
    env = ArticleLocal(state)
    try:
        env.cli("demo", "bookinfo", "--port", str(env.server_port), "--admin-port", str(env.admin_port),
                "--gateway-port", f"80={env.gateway_port}")
        yield env
    finally:
        env.cli("down", check=False)
        env.api.close()


def test_reviews_canary_httproute_pipeline_on_the_local_mesh(article: ArticleLocal) -> None:
    out = article.cli("pipeline", "run", "reviews-canary-httproute", "-p", "base_version=v1",
                      "-p", "canary_version=v2").stdout
    match = re.search(r"execution (\w+)", out)
    assert match, out
    execution = match.group(1)
    article.wait_stage(execution, "设置灰度比例", "RUNNING")
    # the HTTPRoute replaced the baseline's VirtualService and keeps everything on v1 until the ratio is set
    vs = article.api.get("/api/v1/resources/VirtualService/reviews", params={"namespace": "default"})
    assert vs.status_code == 404
    assert article.pages(4) == {"none": 4}
    article.cli("judge", execution, "--stage", "设置灰度比例", "--continue", "-P", "canary_ratio=30")
    article.wait_stage(execution, "是否全量发布", "RUNNING")
    assert article.pages(100) == {"none": 70, "black": 30}
    article.cli("judge", execution, "--stage", "是否全量发布", "--continue", "--input", "全量发布")
    done = article.wait_execution(execution)
    assert done["status"] == "SUCCEEDED", done
    assert article.pages(20) == {"black": 20}
    assert not article.deployment_exists("reviews-v1")
    route = article.api.get("/api/v1/resources/HTTPRoute/reviews", params={"namespace": "default"}).json()
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "reviews-v2", "port": 9080}]
