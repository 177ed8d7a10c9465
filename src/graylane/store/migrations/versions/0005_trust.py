"""Webhook deliveries already processed (replay refusal, graylane.pipelines.triggers) and the admin
audit log for actions that erase their own trail (graylane.server.audit).

Revision ID: 0005_trust
Revises: 0004_auth
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_trust"
down_revision = "0004_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("source", sa.String(256), primary_key=True),
        sa.Column("delivery_key", sa.String(256), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("executions", sa.Text, nullable=False),
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_audit")
    op.drop_table("webhook_deliveries")
