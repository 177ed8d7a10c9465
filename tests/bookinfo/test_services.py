"""The Bookinfo services answer like Istio's originals: paths, JSON shapes and types, statuses, error pages."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml

SWAGGER = Path(__file__).parent / "data" / "bookinfo-swagger.yaml"  # Istio's Bookinfo API (see data/README.md)

REVIEW_TEXTS = {
    "Reviewer1": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    "Reviewer2": "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by "
                 "Shakespeare.",
}


def get(url: str, **kw: object) -> httpx.Response:
    return httpx.get(url, timeout=15, trust_env=False, **kw)  # type: ignore[arg-type]


def stars(html: str) -> dict[str, tuple[int, int]]:
    """Per colour: (filled, empty) star counts in the rendered page."""
    out: dict[str, tuple[int, int]] = {}
    for color, inner in re.findall(r'<font color="(\w+)"[^>]*>(.*?)</font>', html, re.S):
        full, empty = out.get(color, (0, 0))
        out[color] = (full + inner.count('"glyphicon glyphicon-star"'),
                      empty + inner.count('"glyphicon glyphicon-star-empty"'))
    return out


def check_schema(value: object, schema: dict, defs: dict) -> None:
    """Just enough Swagger 2.0 checking for Bookinfo's definitions: types, required keys, enums, ranges."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict)
        for key in schema.get("required", []):
            assert key in value, key
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                check_schema(value[key], sub, defs)
    elif kind == "array":
        assert isinstance(value, list)
        for item in value:
            check_schema(item, schema["items"], defs)
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), value
        if "minimum" in schema:
            assert value >= schema["minimum"]
        if "maximum" in schema:
            assert value <= schema["maximum"]
    elif kind == "string":
        assert isinstance(value, str), value
    if "enum" in schema:
        assert value in schema["enum"]


@pytest.fixture(scope="module")
def defs() -> dict:
    return yaml.safe_load(SWAGGER.read_text())["definitions"]


@pytest.fixture(scope="module")
def backends(bookinfo, mesh):
    """The proxied workloads, keyed the short way; reviews reach ratings through the mesh."""
    mesh.reset()
    return {"details": bookinfo["details"], "ratings": bookinfo["ratings"], "v1": bookinfo["reviews-v1"],
            "v2": bookinfo["reviews-v2"], "v3": bookinfo["reviews-v3"], "productpage": bookinfo["productpage"]}


@pytest.fixture(scope="module")
def direct_page(services, backends):
    """A productpage that reaches details, reviews v2 and ratings directly, by the *_HOSTNAME/_SERVICE_PORT env."""
    return services("productpage", **productpage_env(backends["details"].port, backends["v2"].port,
                                                     backends["ratings"].port))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def broken_page(services):
    """A productpage whose upstreams are all closed ports."""
    dead = closed_port()
    return services("productpage", **productpage_env(dead, dead, dead))


def productpage_env(details_port: int, reviews_port: int, ratings_port: int | None = None) -> dict[str, str]:
    env = {"DETAILS_HOSTNAME": "127.0.0.1", "DETAILS_SERVICE_PORT": str(details_port),
           "REVIEWS_HOSTNAME": "127.0.0.1", "REVIEWS_SERVICE_PORT": str(reviews_port)}
    if ratings_port is not None:
        env.update({"RATINGS_HOSTNAME": "127.0.0.1", "RATINGS_SERVICE_PORT": str(ratings_port)})
    return env


# ---- details ---------------------------------------------------------------------------------------------------

def test_details_shape_and_errors(backends, defs):
    url = backends["details"].url
    resp = get(f"{url}/details/0")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["id", "author", "year", "type", "pages", "publisher", "language", "ISBN-10", "ISBN-13"]
    assert body == {"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200,
                    "publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890",
                    "ISBN-13": "123-1234567890"}
    check_schema(body, {"$ref": "#/definitions/ProductDetails"}, defs)
    assert get(f"{url}/details/42").json()["id"] == 42
    bad = get(f"{url}/details/abc")
    assert bad.status_code == 400 and bad.json() == {"error": "please provide numeric product id"}
    assert get(f"{url}/health").json() == {"status": "Details is healthy"}


# ---- ratings ---------------------------------------------------------------------------------------------------

def test_ratings_get_post_and_errors(backends, defs):
    url = backends["ratings"].url
    body = get(f"{url}/ratings/0").json()
    assert body == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    assert isinstance(body["id"], int)
    bad = get(f"{url}/ratings/abc")
    assert bad.status_code == 400 and bad.json() == {"error": "please provide numeric product ID"}
    posted = httpx.post(f"{url}/ratings/7", json={"Reviewer1": 1, "Reviewer2": 2}, trust_env=False)
    assert posted.status_code == 200 and posted.json() == {"id": 7, "ratings": {"Reviewer1": 1, "Reviewer2": 2}}
    assert get(f"{url}/ratings/7").json() == {"id": 7, "ratings": {"Reviewer1": 1, "Reviewer2": 2}}
    junk = httpx.post(f"{url}/ratings/7", content=b"{not json", trust_env=False)
    assert junk.status_code == 400 and junk.json() == {"error": "please provide valid ratings JSON"}
    assert get(f"{url}/health").json() == {"status": "Ratings is healthy"}


def test_ratings_v2_refuses_posts(services):
    v2 = services("ratings", SERVICE_VERSION="v2")
    resp = httpx.post(f"{v2.url}/ratings/0", json={"Reviewer1": 3}, trust_env=False)
    assert resp.status_code == 501
    assert resp.json() == {"error": "Post not implemented for database backed ratings"}


# ---- reviews ---------------------------------------------------------------------------------------------------

def test_reviews_v1_has_no_ratings(backends, defs):
    body = get(f"{backends['v1'].url}/reviews/0").json()
    assert body["id"] == "0"  # a string here, unlike details and ratings
    assert body["podname"] == "reviews-v1-7d9f8c-abcde"
    assert body["clustername"] == "null"
    assert [(r["reviewer"], r["text"]) for r in body["reviews"]] == list(REVIEW_TEXTS.items())
    assert all("rating" not in r for r in body["reviews"])
    assert get(f"{backends['v1'].url}/reviews/abc").status_code == 404
    assert get(f"{backends['v1'].url}/health").json() == {"status": "Reviews is healthy"}


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
def test_reviews_with_ratings(backends, defs, version, color):
    body = get(f"{backends[version].url}/reviews/0").json()
    assert [r["rating"] for r in body["reviews"]] == [{"stars": 5, "color": color}, {"stars": 4, "color": color}]
    for review in body["reviews"]:
        check_schema(review, {"$ref": "#/definitions/Review"}, defs)


# ---- productpage -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "expected"), [
    ("v1", {}),
    ("v2", {"black": (9, 1)}),
    ("v3", {"red": (9, 1)}),
])
def test_productpage_renders_details_and_reviews(backends, mesh, version, expected):
    mesh.reset()
    mesh.routes["reviews"] = backends[version].port
    resp = get(f"{backends['productpage'].url}/productpage")
    assert resp.status_code == 200
    html = resp.text
    assert "<title>Simple Bookstore App</title>" in html
    assert "The Comedy of Errors" in html
    assert "Book Details" in html and "123-1234567890" in html and "PublisherA" in html
    assert "Book Reviews" in html and REVIEW_TEXTS["Reviewer2"] in html
    assert stars(html) == expected
    assert re.search(r"Reviews served by:</dt>\s*<u>reviews-" + version, html)
    assert ("on cluster <u>east</u>" in html) == (version == "v3")
    assert "Error fetching" not in html


def test_productpage_uses_hostname_env(direct_page):
    html = get(f"{direct_page.url}/productpage").text
    assert "Book Details" in html and stars(html) == {"black": (9, 1)}


def test_productpage_when_backends_fail(services, backends, broken_page, dead_port):
    html = get(f"{broken_page.url}/productpage").text
    assert "Error fetching product details!" in html
    assert "Sorry, product details are currently unavailable for this book." in html
    assert "Error fetching product reviews!" in html
    assert "Sorry, product reviews are currently unavailable for this book." in html
    assert "Book Details" not in html and "Book Reviews" not in html

    reviews_without_ratings = services("reviews", ENABLE_RATINGS="true", STAR_COLOR="black",
                                       RATINGS_HOSTNAME="127.0.0.1", RATINGS_SERVICE_PORT=str(dead_port))
    resp = get(f"{reviews_without_ratings.url}/reviews/0")
    assert resp.status_code == 200
    assert [r["rating"] for r in resp.json()["reviews"]] == [{"error": "Ratings service is currently unavailable"}] * 2


def test_productpage_api(direct_page, broken_page, defs):
    page = direct_page
    products = get(f"{page.url}/api/v1/products").json()
    check_schema(products, {"type": "array", "items": {"$ref": "#/definitions/Product"}}, defs)
    assert products[0]["id"] == 0 and products[0]["title"] == "The Comedy of Errors"
    details = get(f"{page.url}/api/v1/products/0")
    assert details.status_code == 200
    check_schema(details.json(), {"$ref": "#/definitions/ProductDetails"}, defs)
    reviews = get(f"{page.url}/api/v1/products/0/reviews").json()
    assert [r["rating"]["color"] for r in reviews["reviews"]] == ["black", "black"]
    ratings = get(f"{page.url}/api/v1/products/0/ratings").json()
    assert ratings == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    assert get(f"{page.url}/api/v1/products/x").status_code == 404

    for path, error in [("", "details"), ("/reviews", "reviews"), ("/ratings", "ratings")]:
        resp = get(f"{broken_page.url}/api/v1/products/0{path}")
        assert resp.status_code == 500
        assert resp.json() == {"error": f"Sorry, product {error} are currently unavailable for this book."}


def test_productpage_misc_endpoints(direct_page):
    page = direct_page
    health = get(f"{page.url}/health")
    assert health.status_code == 200 and health.text == "Product page is healthy"
    index = get(f"{page.url}/").text
    assert "Hello! This is a simple bookstore application consisting of three services as shown below" in index
    assert 'href="/productpage?u=normal"' in index and 'href="/productpage?u=test"' in index
    get(f"{page.url}/productpage")
    metrics = get(f"{page.url}/metrics").text
    assert re.search(r'request_result_total\{destination_app="details",response_code="200"\} [1-9]', metrics)


def test_sign_in_and_out(direct_page):
    page = direct_page
    with httpx.Client(base_url=page.url, trust_env=False, timeout=15) as browser:
        assert "Sign in" in browser.get("/productpage").text
        resp = browser.post("/login", data={"username": "jason", "passwd": "whatever"},
                            headers={"referer": f"{page.url}/productpage"})
        assert resp.status_code == 302 and resp.headers["location"] == f"{page.url}/productpage"
        html = browser.get("/productpage").text
        assert '<span id="signed-in-user">jason</span>' in html and "sign out" in html
        resp = browser.get("/logout", headers={"referer": f"{page.url}/productpage"})
        assert resp.status_code == 302
        html = browser.get("/productpage").text
        assert "jason" not in html and "Sign in" in html
    # A forged cookie is not a session.
    forged = get(f"{page.url}/productpage", cookies={"session": "eyJ1c2VyIjoiamFzb24ifQ.forged"}).text
    assert "signed-in-user" not in forged


# ---- fault knobs (a "bad" canary one env away) -----------------------------------------------------------------

def test_reviews_fault_knobs_fail_an_exact_share_and_add_latency(services):
    bad = services("reviews", FAULT_ERROR_PERCENT="25", FAULT_DELAY_MS="150")
    codes = []
    started = time.monotonic()
    for _ in range(8):
        codes.append(get(f"{bad.url}/reviews/0").status_code)
    elapsed = time.monotonic() - started
    assert codes == [200, 200, 200, 500, 200, 200, 200, 500]
    assert elapsed >= 8 * 0.150  # every answer waited the added latency (a lower bound: never flaky)
    assert get(f"{bad.url}/health").status_code == 200  # readiness is never affected


def test_reviews_without_fault_knobs_never_fails(backends):
    assert {get(f"{backends['v1'].url}/reviews/0").status_code for _ in range(20)} == {200}
