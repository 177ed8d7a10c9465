"""Bookinfo `productpage`: the web page and API that call details and reviews (Istio's Flask service)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from graylane.demos.bookinfo.services import _pages
from graylane.demos.bookinfo.services._common import (
    env,
    json_response,
    outbound_client,
    pick_headers,
    serve,
    service_url,
)

# Copied from the incoming request after the B3 context and `end-user` (productpage's own list, in order).
INCOMING_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
)
UPSTREAM_TIMEOUT = 3.0  # seconds, connect and each read, like `requests.get(..., timeout=3.0)`
REVIEWS_ATTEMPTS = 2  # "Bug introduced explicitly for illustration in fault injection task": 3 s + 1 retry = 6 s

DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Sorry, product ratings are currently unavailable for this book."

PRODUCTS: list[dict[str, Any]] = [
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": (
            '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
            "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of "
            "his most farcical comedies, with a major part of the humour coming from slapstick and mistaken "
            "identity, in addition to puns and word play."
        ),
    }
]

SESSION_COOKIE = "session"
_SECRET = os.environ.get("SESSION_SECRET", "bookinfo-productpage-session").encode()

_registry = CollectorRegistry()
REQUEST_RESULT = Counter(
    "request_result", "Results of requests", ["destination_app", "response_code"], registry=_registry
)


def flood_factor() -> int:
    try:
        return int(env("FLOOD_FACTOR", "0") or 0)
    except ValueError:
        return 0


# ---- session (a signed cookie, like Flask's `session`) ----------------------------------------------------------

def _sign(payload: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(_SECRET, payload.encode(), hashlib.sha256).digest()[:18]).decode()


def encode_session(data: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(payload)}"


def decode_session(raw: str | None) -> dict[str, Any]:
    if not raw or "." not in raw:
        return {}
    payload, sig = raw.rsplit(".", 1)
    if not hmac.compare_digest(sig, _sign(payload)):
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def session_user(request: Request) -> str | None:
    user = decode_session(request.cookies.get(SESSION_COOKIE)).get("user")
    return user if isinstance(user, str) else None


# ---- header propagation -----------------------------------------------------------------------------------------

_HEX = re.compile(r"^[0-9a-f]+$")


def _b3_context(headers: Any) -> tuple[str, str, bool] | None:
    """What OpenTelemetry's B3 propagator extracts: (trace id, span id, sampled), from `b3` or the x-b3-* headers."""
    single = headers.get("b3")
    if single:
        fields = single.split("-")
        if len(fields) < 2:
            return None
        trace_id, span_id = fields[0], fields[1]
        sampled = len(fields) > 2 and fields[2] in ("1", "d")
    else:
        trace_id, span_id = headers.get("x-b3-traceid") or "", headers.get("x-b3-spanid") or ""
        sampled = (headers.get("x-b3-sampled") or "").lower() in ("1", "true") or headers.get("x-b3-flags") == "1"
    trace_id, span_id = trace_id.lower(), span_id.lower()
    if len(trace_id) not in (16, 32) or len(span_id) != 16 or not _HEX.match(trace_id + span_id):
        return None
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return trace_id.rjust(32, "0"), span_id, sampled


def forward_headers(request: Request) -> dict[str, str]:
    """productpage's `getForwardHeaders`: B3 (extract -> inject), `end-user` from the session, then the list."""
    out: dict[str, str] = {}
    b3 = _b3_context(request.headers)
    if b3 is not None:
        out["x-b3-traceid"], out["x-b3-spanid"] = b3[0], b3[1]
        out["x-b3-sampled"] = "1" if b3[2] else "0"
    user = session_user(request)
    if user is not None:
        out["end-user"] = user
    out.update(pick_headers(request.headers, INCOMING_HEADERS))
    return out


# ---- upstream calls ----------------------------------------------------------------------------------------------

async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response | None:
    try:
        return await client.get(url, headers=headers)
    except (httpx.HTTPError, OSError):
        return None


def _failure_status(resp: httpx.Response | None) -> int:
    return resp.status_code if resp is not None and resp.status_code else 500


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


async def get_product_details(product_id: int, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with outbound_client(UPSTREAM_TIMEOUT) as client:
        resp = await _get(client, f"{service_url('details')}/details/{product_id}", headers)
    if resp is not None and resp.status_code == 200 and (body := _json(resp)) is not None:
        REQUEST_RESULT.labels("details", "200").inc()
        return 200, body
    status = _failure_status(resp)
    REQUEST_RESULT.labels("details", str(status)).inc()
    return status, {"error": DETAILS_ERROR}


async def get_product_reviews(product_id: int, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp: httpx.Response | None = None
    async with outbound_client(UPSTREAM_TIMEOUT) as client:
        for _ in range(REVIEWS_ATTEMPTS):
            resp = await _get(client, f"{service_url('reviews')}/reviews/{product_id}", headers)
            if resp is not None and resp.status_code == 200 and (body := _json(resp)) is not None:
                REQUEST_RESULT.labels("reviews", "200").inc()
                return 200, body
    status = _failure_status(resp)
    REQUEST_RESULT.labels("reviews", str(status)).inc()
    return status, {"error": REVIEWS_ERROR}


async def get_product_ratings(product_id: int, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with outbound_client(UPSTREAM_TIMEOUT) as client:
        resp = await _get(client, f"{service_url('ratings')}/ratings/{product_id}", headers)
    if resp is not None and resp.status_code == 200 and (body := _json(resp)) is not None:
        REQUEST_RESULT.labels("ratings", "200").inc()
        return 200, body
    status = _failure_status(resp)
    REQUEST_RESULT.labels("ratings", str(status)).inc()
    return status, {"error": RATINGS_ERROR}


_background: set[asyncio.Task[Any]] = set()


def _flood(product_id: int, headers: dict[str, str]) -> None:
    """FLOOD_FACTOR > 0: fire that many extra reviews calls per page view without waiting (rate-limit demo)."""
    for _ in range(flood_factor()):
        task = asyncio.get_running_loop().create_task(get_product_reviews(product_id, headers))
        _background.add(task)
        task.add_done_callback(_background.discard)


# ---- routes -------------------------------------------------------------------------------------------------------

async def health(request: Request) -> Response:
    return PlainTextResponse("Product page is healthy")


async def index(request: Request) -> Response:
    return HTMLResponse(_pages.render_index(_service_tree()))


def _service_tree() -> dict[str, Any]:
    details = {"name": service_url("details"), "endpoint": "details", "children": []}
    ratings = {"name": service_url("ratings"), "endpoint": "ratings", "children": []}
    reviews = {"name": service_url("reviews"), "endpoint": "reviews", "children": [ratings]}
    return {"name": f"http://productpage{_domain()}:9080", "endpoint": "details", "children": [details, reviews]}


def _domain() -> str:
    domain = os.environ.get("SERVICES_DOMAIN")
    return "" if domain is None else "." + domain


def _back(request: Request) -> str:
    return request.headers.get("referer") or "/productpage"


async def login(request: Request) -> Response:
    form = await request.form()
    user = form.get("username")
    if user is None:
        user = request.query_params.get("username")
    response = RedirectResponse(_back(request), status_code=302)
    data = decode_session(request.cookies.get(SESSION_COOKIE))
    data["user"] = str(user) if user is not None else None
    response.set_cookie(SESSION_COOKIE, encode_session(data), httponly=True, path="/")
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse(_back(request), status_code=302)
    data = decode_session(request.cookies.get(SESSION_COOKIE))
    data.pop("user", None)
    if data:
        response.set_cookie(SESSION_COOKIE, encode_session(data), httponly=True, path="/")
    else:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def productpage(request: Request) -> Response:
    product_id = 0  # the page always shows product 0
    headers = forward_headers(request)
    user = session_user(request)
    product = PRODUCTS[product_id]
    details_status, details = await get_product_details(product_id, headers)
    if flood_factor() > 0:
        _flood(product_id, headers)
    reviews_status, reviews = await get_product_reviews(product_id, headers)
    html = _pages.render_productpage(product=product, details=details, reviews=reviews, user=user)
    return HTMLResponse(html)


async def api_products(request: Request) -> Response:
    return json_response(PRODUCTS)


def _product_id(request: Request) -> int | None:
    raw = request.path_params["product_id"]
    return int(raw) if raw.isdigit() and raw.isascii() else None


def _not_found() -> Response:
    return HTMLResponse(_pages.NOT_FOUND, status_code=404)


async def api_product(request: Request) -> Response:
    product_id = _product_id(request)
    if product_id is None:
        return _not_found()
    status, body = await get_product_details(product_id, forward_headers(request))
    return json_response(body, status)


async def api_product_reviews(request: Request) -> Response:
    product_id = _product_id(request)
    if product_id is None:
        return _not_found()
    status, body = await get_product_reviews(product_id, forward_headers(request))
    return json_response(body, status)


async def api_product_ratings(request: Request) -> Response:
    product_id = _product_id(request)
    if product_id is None:
        return _not_found()
    status, body = await get_product_ratings(product_id, forward_headers(request))
    return json_response(body, status)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    body = _pages.STATIC.get(name)
    if body is None:
        return _not_found()
    media = "text/css" if name.endswith(".css") else "application/javascript"
    return Response(body, media_type=media)


app = Starlette(routes=[
    Route("/", index),
    Route("/index.html", index),
    Route("/health", health),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["GET"]),
    Route("/productpage", productpage),
    Route("/api/v1/products", api_products),
    Route("/api/v1/products/{product_id}", api_product),
    Route("/api/v1/products/{product_id}/reviews", api_product_reviews),
    Route("/api/v1/products/{product_id}/ratings", api_product_ratings),
    Route("/metrics", metrics),
    Route("/static/{name:path}", static),
])


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
