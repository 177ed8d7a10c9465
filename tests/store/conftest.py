"""Store fixtures: one contract suite over SQLite (a file in the test's state folder) and PostgreSQL.

PostgreSQL runs when `GRAYLANE_TEST_POSTGRES_URL` is set; each test gets a fresh schema (dropped
after) through `search_path`. With `GRAYLANE_REQUIRE_POSTGRES=1` a missing URL fails instead of skipping.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from tests import system

from graylane.store import Store


def postgres_url() -> str:
    return system.postgres_url()


def _create_schema(admin: sa.Engine, base: str) -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema of the test database."""
    base = postgres_url()
    assert base is not None
    admin = sa.create_engine(base)
    schema, url = _create_schema(admin, base)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_migrated() -> Iterator[tuple[sa.Engine, str, str]]:
    """One migrated schema for the session; `postgres_store_url` empties it before each test."""
    base = postgres_url()
    assert base is not None
    admin = sa.create_engine(base)
    schema, url = _create_schema(admin, base)
    Store.open(url).close()
    try:
        yield admin, schema, url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def postgres_store_url(_postgres_migrated: tuple[sa.Engine, str, str]) -> str:
    """The session's migrated schema with every table emptied and the revision counter at 0."""
    admin, schema, url = _postgres_migrated
    with admin.begin() as conn:
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'alembic_version'",
            (schema,))]
        if tables:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{schema}"."{t}"' for t in tables)
                                 + " RESTART IDENTITY CASCADE")
        conn.exec_driver_sql(f"INSERT INTO \"{schema}\".store_counters (name, value) VALUES ('revision', 0)")
    return url


class Clock:
    """A hand-moved clock for timestamps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_store_url"))


@pytest.fixture
def open_store(store_url: str, clock: Clock) -> Iterator[Callable[[], Store]]:
    """Opens stores on the test's database (several = several processes' worth of engines)."""
    opened: list[Store] = []

    def _open() -> Store:
        s = Store.open(store_url, clock=clock)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()
