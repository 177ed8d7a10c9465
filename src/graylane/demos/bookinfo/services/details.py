"""Bookinfo `details`: book facts for a product id (Istio's Ruby service, same paths, bodies and statuses)."""

from __future__ import annotations

import os
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graylane.demos.bookinfo.services._common import (
    FORWARD_HEADERS,
    json_response,
    outbound_client,
    pick_headers,
    serve,
)

EXTERNAL_ISBN = "0486424618"  # a Comedy of Errors edition with Shakespeare as the single author


def _parse_id(raw: str) -> int:
    """Ruby's `Integer(str)`: an optional sign and digits (underscores between digits allowed)."""
    text = raw.strip()
    if not re.fullmatch(r"[+-]?\d+(_\d+)*", text):
        raise ValueError(raw)
    return int(text.replace("_", ""))


def book_details(product_id: int) -> dict[str, Any]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def _isbn(book: dict[str, Any], kind: str) -> str:
    for entry in book.get("industryIdentifiers") or []:
        if entry.get("type") == kind:
            return str(entry.get("identifier"))
    return ""


async def external_details(product_id: int, headers: dict[str, str]) -> dict[str, Any]:
    """details v2: the same keys, filled from the Google Books API (HTTP on port 80 with DO_NOT_ENCRYPT=true)."""
    plain = os.environ.get("DO_NOT_ENCRYPT") == "true"
    url = f"{'http' if plain else 'https'}://www.googleapis.com/books/v1/volumes?q=isbn:{EXTERNAL_ISBN}"
    async with outbound_client(5.0, pooled=True) as client:
        resp = await client.get(url, headers=headers)
    book = resp.json()["items"][0]["volumeInfo"]
    return {
        "id": product_id,
        "author": book["authors"][0],
        "year": book.get("publishedDate"),
        "type": "paperback" if book.get("printType") == "BOOK" else "unknown",
        "pages": book.get("pageCount"),
        "publisher": book.get("publisher"),
        "language": "English" if book.get("language") == "en" else "unknown",
        "ISBN-10": _isbn(book, "ISBN_10"),
        "ISBN-13": _isbn(book, "ISBN_13"),
    }


async def health(request: Request) -> Response:
    return json_response({"status": "Details is healthy"})


async def details(request: Request) -> Response:
    parts = request.url.path.split("/")
    headers = pick_headers(request.headers, FORWARD_HEADERS)
    try:
        try:
            product_id = _parse_id(parts[-1])
        except ValueError:
            raise RuntimeError("please provide numeric product id") from None
        if os.environ.get("ENABLE_EXTERNAL_BOOK_SERVICE") == "true":
            body = await external_details(product_id, headers)
        else:
            body = book_details(product_id)
        return json_response(body)
    except Exception as exc:  # the original answers 400 with the message for any failure
        return json_response({"error": str(exc)}, 400)


app = Starlette(routes=[
    Route("/health", health),
    Route("/details", details),
    Route("/details/{rest:path}", details),
])


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
