"""ratings v2's RATINGS_LOCAL_DB knob: off, v2 cannot reach its database; on, it answers from a local one whose rows
differ visibly from v1's (the lockstep release demo tells the versions apart by it)."""

from __future__ import annotations

from typing import Any

import httpx


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=15, trust_env=False)


def test_ratings_v2_local_db_knob(services: Any) -> None:
    plain = services("ratings", SERVICE_VERSION="v2")
    assert get(f"{plain.url}/ratings/0").status_code == 500
    local = services("ratings", SERVICE_VERSION="v2", RATINGS_LOCAL_DB="true")
    assert get(f"{local.url}/ratings/0").json() == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 3},
                                                   "database": "local"}
    v1 = services("ratings", SERVICE_VERSION="v1", RATINGS_LOCAL_DB="true")  # the knob is v2's only
    assert get(f"{v1.url}/ratings/0").json() == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
