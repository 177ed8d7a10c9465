"""Engines for the store's databases (SQLite in WAL mode, PostgreSQL) and running migrations.

Knows SQL connection setup and alembic; knows nothing of resources.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).parent / "migrations"
# Execution option read by the SQLite `begin` hook: "IMMEDIATE" takes the write lock at BEGIN,
# so two writers never both read and then both try to write (which SQLite answers with "locked").
SQLITE_BEGIN = "sqlite_begin"
MIGRATION_LOCK = 7380_0006  # PostgreSQL advisory lock key held while migrating


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_store_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and BEGIN issued by us (see SQLITE_BEGIN)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           **({"poolclass": StaticPool} if memory else {}))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Python < 3.12's sqlite3 only BEGINs before DML; take over so reads are repeatable and
        # DDL is transactional (SQLAlchemy docs, "Enabling Non-Legacy SQLite Transactional Modes").
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a crash of the process never loses a committed transaction.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        mode = conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent; safe with concurrent openers)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    with engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            # Control-plane replicas starting together (a rolling update): one migrates, the others wait for
            # its commit and then find the schema at head. Released with the transaction.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
