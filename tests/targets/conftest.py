"""Target tests: the store fixtures of tests/store (SQLite and PostgreSQL) for the local target's contract."""

from __future__ import annotations

from tests.store.conftest import (  # noqa: F401 (fixtures)
    _postgres_migrated,
    clock,
    open_store,
    postgres_store_url,
    store,
    store_url,
)
