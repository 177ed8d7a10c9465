"""SQLAlchemy Core tables of the store, as the newest migration leaves them (only store/ speaks SQL)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

counters = sa.Table(
    "store_counters", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

resources = sa.Table(
    "resources", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("api_group", sa.String(253), nullable=False),
    sa.Column("kind", sa.String(63), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("resource_version", sa.BigInteger, nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.UniqueConstraint("api_group", "kind", "namespace", "name", name="uq_resources_key"),
)

history = sa.Table(
    "resource_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("api_group", sa.String(253), nullable=False),
    sa.Column("kind", sa.String(63), nullable=False),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("resource_version", sa.BigInteger, nullable=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("restored_from", sa.Integer, nullable=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.UniqueConstraint("api_group", "kind", "namespace", "name", "revision", name="uq_history_key_revision"),
)
