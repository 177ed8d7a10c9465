"""Control-plane replicas: a lease per execution (owner, expiry, fencing token) and commands sent to the
replica that drives an execution (graylane.pipelines.leases).

Revision ID: 0006_leases
Revises: 0005_trust
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_leases"
down_revision = "0005_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_executions") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_expires", sa.BigInteger, nullable=True))  # ms, the database's clock
        batch.add_column(sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_pipeline_executions_lease_owner", "pipeline_executions", ["lease_owner"])
    op.create_table(
        "pipeline_commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False, index=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("sent_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),  # pending | done
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("applied_by", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("pipeline_commands")
    op.drop_index("ix_pipeline_executions_lease_owner", "pipeline_executions")
    with op.batch_alter_table("pipeline_executions") as batch:
        batch.drop_column("lease_token")
        batch.drop_column("lease_expires")
        batch.drop_column("lease_owner")
