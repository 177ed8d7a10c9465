"""Manual starts recorded once per Idempotency-Key: one row per (user, key) naming the execution it started;
its primary key refuses a second (graylane.pipelines.start_keys; written in the transaction that inserts the
execution). Rows older than 24 h are pruned.

Revision ID: 0008_start_keys
Revises: 0007_judgments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_start_keys"
down_revision = "0007_judgments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_start_keys",
        sa.Column("user", sa.String(255), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("request", sa.String(64), nullable=False),  # SHA-256 of the pipeline, parameters, artifacts
        sa.Column("pipeline_config_id", sa.String(64), nullable=False),
        sa.Column("execution_id", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("pipeline_start_keys")
