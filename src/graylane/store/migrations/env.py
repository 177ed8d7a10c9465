"""Alembic environment for the Graylane store, run programmatically by `graylane.store.engine.migrate`.

The caller passes an open connection (inside a transaction) in `config.attributes["connection"]`;
there is no alembic.ini and no offline mode.

Adding tables for another area: add ONE file in `versions/` named `NNNN_<area>.py` with
`revision = "NNNN_<area>"` and `down_revision` set to the newest existing revision, keeping the
chain linear: 0001_resources (store) <- 0002_pipelines <- 0003_traces <- 0004_auth <- ...
Write the DDL with `op.create_table(...)` inside the file (never import live table objects: a
shipped revision must stay as it was), and never edit a shipped revision; add a new one instead.
Every `Store.open()` upgrades to head, so a new revision is applied on the next start.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Serialise concurrent `Store.open()` calls from several processes on one database.
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7380)")

context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
