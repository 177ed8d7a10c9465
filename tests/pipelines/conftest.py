"""Fixtures for the pipeline engine: a real SQLite database and an executor running on the test's loop."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from tests import system

from graylane.pipelines.tables import metadata


def _postgres_engine() -> Iterator[sa.Engine]:
    """A fresh schema of the test PostgreSQL, migrated by Store.open (so 0002_pipelines runs for real)."""
    base = system.postgres_url()
    from graylane.store import Store

    schema = f"p_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    store = Store.open(f"{base}{sep}options={quote(f'-csearch_path={schema}')}")
    try:
        yield store.engine
    finally:
        store.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set RUN_ON_POSTGRES = True run their `engine` tests on SQLite and PostgreSQL."""
    if "engine" in metafunc.fixturenames:
        backends: list[Any] = ["sqlite"]
        if getattr(metafunc.module, "RUN_ON_POSTGRES", False):
            backends.append(pytest.param("postgres", marks=pytest.mark.postgres))
        metafunc.parametrize("engine", backends, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """The pipelines' tables on a real SQLite file (WAL), or on PostgreSQL when the test URL is set."""
    if getattr(request, "param", "sqlite") == "postgres":
        yield from _postgres_engine()
        return
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'pipelines.db'}")

    @sa.event.listens_for(eng, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    metadata.create_all(eng)
    yield eng
    eng.dispose()
