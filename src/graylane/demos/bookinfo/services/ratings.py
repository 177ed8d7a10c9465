"""Bookinfo `ratings`: stars per reviewer (Istio's Node.js service, including its fault-demo versions).

One knob, off by default: `RATINGS_LOCAL_DB=true` gives the database-backed v2 a local in-memory database instead
of the connection error (no MongoDB/MySQL runs locally). Its rows differ visibly from v1's (Reviewer2 has 3 stars,
not 4) and its JSON says `"database": "local"`, so a page shows which ratings version answered (the lockstep
release demo, reviews-ratings-lockstep)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylane.demos.bookinfo.services._common import json_response, serve

_RATINGS_PATH = re.compile(r"^/ratings/[0-9]*")
_user_ratings: dict[int, dict[str, Any]] = {}
_started = time.monotonic()


def _version() -> str:
    return os.environ.get("SERVICE_VERSION") or "v1"


def local_db() -> bool:
    return (os.environ.get("RATINGS_LOCAL_DB") or "").lower() == "true"


LOCAL_DB_RATINGS = {"Reviewer1": 5, "Reviewer2": 3}


def _parse_int(raw: str) -> int | None:
    """JavaScript's `parseInt`: leading whitespace, optional sign, then the leading digits; else NaN (None)."""
    match = re.match(r"\s*([+-]?\d+)", raw)
    return int(match.group(1)) if match else None


def _toggled(period_seconds: float) -> bool:
    """v-unavailable / v-unhealthy flip between healthy and not every period (first period healthy)."""
    return int((time.monotonic() - _started) // period_seconds) % 2 == 1


def _unavailable() -> bool:
    version = _version()
    if version == "v-unavailable":
        return _toggled(60)
    if version == "v-unhealthy":
        return _toggled(15 * 60)
    return False


def local_ratings(product_id: int) -> dict[str, Any]:
    if product_id in _user_ratings:
        return _user_ratings[product_id]
    return {"id": product_id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}


def _product_id(request: Request) -> int | None:
    return _parse_int(request.url.path.split("/")[-1])


async def get_ratings(request: Request) -> Response:
    product_id = _product_id(request)
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, 400)
    version = _version()
    if version == "v2":
        if local_db():
            return json_response({"id": product_id, "ratings": dict(LOCAL_DB_RATINGS), "database": "local"})
        # The database-backed version; no MongoDB/MySQL is wired locally, so it answers like one that cannot connect.
        return json_response({"error": "could not connect to ratings database"}, 500)
    unavailable = json_response({"error": "Service unavailable"}, 503)
    if version == "v-faulty" and random.random() <= 0.5:
        return unavailable
    if version == "v-delayed" and random.random() <= 0.5:
        await asyncio.sleep(7)
    if _unavailable():
        return unavailable
    return json_response(local_ratings(product_id))


async def post_ratings(request: Request) -> Response:
    product_id = _product_id(request)
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, 400)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return json_response({"error": "please provide valid ratings JSON"}, 400)
    if _version() == "v2":
        return json_response({"error": "Post not implemented for database backed ratings"}, 501)
    _user_ratings[product_id] = {"id": product_id, "ratings": body}
    return json_response(local_ratings(product_id))


async def health(request: Request) -> Response:
    if _version() == "v-unhealthy" and _unavailable():
        return json_response({"status": "Ratings is not healthy"}, 500)
    return json_response({"status": "Ratings is healthy"})


async def ratings(request: Request) -> Response:
    if not _RATINGS_PATH.match(request.url.path):
        return Response(status_code=404)
    if request.method == "POST":
        return await post_ratings(request)
    return await get_ratings(request)


app = Starlette(routes=[
    Route("/health", health),
    Route("/ratings/{rest:path}", ratings, methods=["GET", "POST"]),
])


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
