"""Bookinfo services call each other by name through $HTTP_PROXY, propagate Istio's header lists, and keep the
originals' timeouts and retries (the behaviour Istio's fault-injection tasks rely on)."""

from __future__ import annotations

import httpx
import pytest

TRACE = {
    "x-request-id": "4f5e2c1a-0000-4000-8000-000000000001",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-sampled": "1",
    "sw8": "1-MTIz-NDU2-0-c2VydmljZQ==-aW5zdGFuY2U=-L2FwaQ==-ZXhhbXBsZS5jb206ODA4MA==",
    "traceparent": "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
    "x-datadog-trace-id": "123",
    "authorization": "Bearer abc",
    "user-agent": "bookinfo-test/1.0",
}


@pytest.fixture
def route(bookinfo, mesh):
    mesh.reset()

    def to(reviews_version: str) -> str:
        mesh.routes["reviews"] = bookinfo[f"reviews-{reviews_version}"].port
        return bookinfo["productpage"].url

    return to


def test_calls_go_by_name_through_the_proxy(route, mesh):
    page = route("v2")
    html = httpx.get(f"{page}/productpage", trust_env=False, timeout=20).text
    assert "Book Details" in html and 'color="black"' in html
    assert [(s.host, s.path) for s in mesh.seen] == [
        ("details", "/details/0"), ("reviews", "/reviews/0"), ("ratings", "/ratings/0")]
    # Absolute-form request targets with the service name and port, as a sidecar sees them.
    assert mesh.seen[0].target == "http://details:9080/details/0"
    assert mesh.seen[2].target == "http://ratings:9080/ratings/0"


def test_reviews_v1_never_calls_ratings(route, mesh):
    page = route("v1")
    for _ in range(3):
        httpx.get(f"{page}/productpage", trust_env=False, timeout=20)
    assert mesh.requests_to("ratings") == []
    assert len(mesh.requests_to("reviews")) == 3


def test_headers_propagate_to_every_hop(route, mesh):
    page = route("v2")
    with httpx.Client(base_url=page, trust_env=False, timeout=20) as browser:
        browser.post("/login", data={"username": "jason", "passwd": ""}, headers={"referer": "/productpage"})
        browser.get("/productpage", headers=TRACE)
    for host in ("details", "reviews", "ratings"):
        [seen] = mesh.requests_to(host)
        for name, value in TRACE.items():
            assert seen.headers.get(name) == value, (host, name)
        assert seen.headers["end-user"] == "jason", host
        assert "session=" in seen.headers["cookie"], host


def test_end_user_comes_only_from_the_session(route, mesh):
    page = route("v2")
    httpx.get(f"{page}/productpage", headers={"end-user": "jason"}, trust_env=False, timeout=20)
    assert "end-user" not in mesh.requests_to("reviews")[0].headers
    assert "end-user" not in mesh.requests_to("ratings")[0].headers


def test_b3_single_header_becomes_multi_headers(route, mesh):
    page = route("v1")
    httpx.get(f"{page}/productpage", headers={"b3": "80f198ee56343ba8-e457b5a2e4d86bd1-1"}, trust_env=False,
              timeout=20)
    seen = mesh.requests_to("details")[0].headers
    assert seen["x-b3-traceid"] == "000000000000000080f198ee56343ba8"
    assert seen["x-b3-spanid"] == "e457b5a2e4d86bd1"
    assert seen["x-b3-sampled"] == "1"
    assert "b3" not in seen


def test_productpage_retries_reviews_once(route, mesh):
    page = route("v1")
    mesh.aborts["reviews"] = 503
    html = httpx.get(f"{page}/productpage", trust_env=False, timeout=20).text
    assert len(mesh.requests_to("reviews")) == 2
    assert "Error fetching product reviews!" in html
    assert "Sorry, product reviews are currently unavailable for this book." in html
    api = httpx.get(f"{page}/api/v1/products/0/reviews", trust_env=False, timeout=20)
    assert api.status_code == 503  # the upstream status is passed on


def test_ratings_abort_shows_unavailable(route, mesh):
    page = route("v2")
    mesh.aborts["ratings"] = 500
    html = httpx.get(f"{page}/productpage", trust_env=False, timeout=20).text
    assert html.count("Ratings service is currently unavailable") == 2
    assert "Error fetching" not in html


def test_ratings_delay_times_out_productpage_not_reviews(route, mesh):
    """A 4 s ratings delay: reviews v2 waits (10 s timeout) but productpage gives up after 3 s, twice."""
    page = route("v2")
    mesh.delays["ratings"] = 4
    html = httpx.get(f"{page}/productpage", trust_env=False, timeout=30).text
    assert "Sorry, product reviews are currently unavailable for this book." in html
    assert len(mesh.requests_to("reviews")) == 2


def test_ratings_timeout_is_10s_for_black_stars_and_2_5s_for_red(bookinfo, mesh):
    """The intentional asymmetry of Istio's reviews: with ratings 2.8 s slow, v2 still shows stars, v3 gives up."""
    mesh.reset()
    mesh.delays["ratings"] = 2.8
    v2 = httpx.get(f"{bookinfo['reviews-v2'].url}/reviews/0", trust_env=False, timeout=30).json()
    assert [r["rating"] for r in v2["reviews"]] == [{"stars": 5, "color": "black"}, {"stars": 4, "color": "black"}]
    v3 = httpx.get(f"{bookinfo['reviews-v3'].url}/reviews/0", trust_env=False, timeout=30).json()
    assert [r["rating"] for r in v3["reviews"]] == [{"error": "Ratings service is currently unavailable"}] * 2
