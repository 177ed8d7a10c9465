"""Manual judgments recorded once: one row per judged stage attempt; its primary key refuses a second
(graylane.pipelines.repository writes it in the transaction that records the judgment).

Revision ID: 0007_judgments
Revises: 0006_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_judgments"
down_revision = "0006_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_judgments",
        sa.Column("execution_id", sa.String(64), primary_key=True),
        sa.Column("stage_id", sa.String(64), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),  # a restarted stage is judged again
        sa.Column("judged_by", sa.String(255), nullable=False),
        sa.Column("judged_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pipeline_judgments")
