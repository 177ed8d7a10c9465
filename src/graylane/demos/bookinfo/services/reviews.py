"""Bookinfo `reviews`: two reviews of the book; v2/v3 add stars from `ratings` (Istio's Java service).

Two optional knobs, off by default, make a "bad" version one Deployment env away (for canary analysis demos):
`FAULT_ERROR_PERCENT` (0-100: that share of /reviews requests answers 500, spread evenly and exactly: 10 means
every tenth request) and `FAULT_DELAY_MS` (added to every /reviews answer). /health is never affected."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylane.demos.bookinfo.services._common import FORWARD_HEADERS, outbound_client, pick_headers, serve, service_url

REVIEWS = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by "
                  "Shakespeare."),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


def ratings_enabled() -> bool:
    """Java's `Boolean.valueOf(System.getenv("ENABLE_RATINGS"))`: true only for "true", any case."""
    return (os.environ.get("ENABLE_RATINGS") or "").lower() == "true"


def star_color() -> str:
    return os.environ.get("STAR_COLOR") or "black"


def ratings_timeout() -> float:
    """The intentional asymmetry used by Istio's fault-injection task: 10 s for black stars (v2), 2.5 s otherwise."""
    return 10.0 if star_color() == "black" else 2.5


def fault_error_percent() -> float:
    try:
        value = float(os.environ.get("FAULT_ERROR_PERCENT") or 0)
    except ValueError:
        return 0.0
    return min(max(value, 0.0), 100.0)


def fault_delay_s() -> float:
    try:
        return max(float(os.environ.get("FAULT_DELAY_MS") or 0), 0.0) / 1000
    except ValueError:
        return 0.0


_requests = itertools.count()


def injected_error(n: int, percent: float) -> bool:
    """Whether request number `n` (0-based) fails: exactly `percent`% of any run of requests, evenly spread.

    >>> [injected_error(n, 25) for n in range(8)]
    [False, False, False, True, False, False, False, True]
    """
    return int((n + 1) * percent / 100) > int(n * percent / 100)


def pod_name() -> str:
    """The pod's name (`HOSTNAME` in a cluster; the local runtime also sets `POD_NAME`); Java prints "null" if unset."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or "null"


def _j(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def reviews_json(product_id: str, stars: tuple[int, int]) -> str:
    """The response text, built like the original (string concatenation, same key order and spacing)."""
    parts = []
    for (reviewer, text), n in zip(REVIEWS, stars, strict=True):
        item = "{" + f'  "reviewer": {_j(reviewer)},' + f'  "text": {_j(text)}'
        if ratings_enabled():
            if n != -1:
                item += f', "rating": {{"stars": {n}, "color": {_j(star_color())}}}'
            else:
                item += f', "rating": {{"error": {_j(RATINGS_UNAVAILABLE)}}}'
        parts.append(item + "}")
    cluster = os.environ.get("CLUSTER_NAME")
    return (
        "{"
        f'"id": {_j(product_id)},'
        f'"podname": {_j(pod_name())},'
        f'"clustername": {_j(cluster if cluster is not None else "null")},'
        '"reviews": [' + ",".join(parts) + "]"
        "}"
    )


async def fetch_ratings(product_id: str, headers: dict[str, str]) -> dict[str, Any] | None:
    url = f"{service_url('ratings')}/ratings/{product_id}"
    try:
        async with outbound_client(ratings_timeout(), pooled=True) as client:
            resp = await client.get(url, headers={**headers, "accept": "application/json"})
    except httpx.HTTPError as exc:
        print(f"Error: unable to contact {url} got exception {exc!r}", file=sys.stderr, flush=True)
        return None
    if resp.status_code != 200:
        print(f"Error: unable to contact {url} got status of {resp.status_code}", flush=True)
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _stars(ratings: dict[str, Any], reviewer: str) -> int:
    value = ratings.get(reviewer)
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


async def reviews(request: Request) -> Response:
    delay, percent = fault_delay_s(), fault_error_percent()
    if delay:
        await asyncio.sleep(delay)
    if percent and injected_error(next(_requests), percent):
        return Response('{"error": "injected by FAULT_ERROR_PERCENT"}', status_code=500, media_type="application/json")
    raw = request.path_params["product_id"]
    try:
        product_id = str(int(raw, 10)) if raw.lstrip("-").isdigit() else None
    except ValueError:
        product_id = None
    if product_id is None or not -(2**31) <= int(product_id) < 2**31:
        return Response(status_code=404)  # JAX-RS: an int path parameter that does not convert is a 404
    stars = (-1, -1)
    if ratings_enabled():
        body = await fetch_ratings(product_id, pick_headers(request.headers, FORWARD_HEADERS))
        if body is not None and isinstance(body.get("ratings"), dict):
            stars = (_stars(body["ratings"], "Reviewer1"), _stars(body["ratings"], "Reviewer2"))
    return Response(reviews_json(product_id, stars), media_type="application/json")


async def health(request: Request) -> Response:
    return Response('{"status": "Reviews is healthy"}', media_type="application/json")


app = Starlette(routes=[
    Route("/health", health),
    Route("/reviews/{product_id}", reviews),
])


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
