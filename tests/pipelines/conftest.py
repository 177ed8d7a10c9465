"""Fixtures for the pipeline engine: a real SQLite database and an executor running on the test's loop."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from graylane.pipelines.tables import metadata


def store_available() -> bool:
    try:
        from graylane.store import Store  # noqa: F401
    except ImportError:
        return False
    return True


def expressions_available() -> bool:
    from graylane.pipelines import evaluation

    return evaluation.available()


needs_expressions = pytest.mark.skipif(not expressions_available(),
                                       reason="graylane.expressions (issue 4) has not landed yet")
needs_store = pytest.mark.skipif(not store_available(), reason="graylane.store (issue 2) has not landed yet")
needs_local_target = pytest.mark.skipif(importlib.util.find_spec("graylane.targets.local") is None,
                                        reason="graylane.targets.local has not landed yet")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """The pipelines' tables on a real SQLite file (WAL), created from our table definitions."""
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
