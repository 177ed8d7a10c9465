"""Resources, their revision history and the store's global revision counter.

Revision ID: 0001_resources
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_resources"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("store_counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
                   [{"name": "revision", "value": 0}])
    op.create_table(
        "resources",
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
    op.create_index("ix_resources_kind_namespace", "resources", ["kind", "namespace"])
    op.create_table(
        "resource_history",
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
    op.create_index("ix_history_resource_version", "resource_history", ["resource_version"])


def downgrade() -> None:
    op.drop_table("resource_history")
    op.drop_table("resources")
    op.drop_table("store_counters")
